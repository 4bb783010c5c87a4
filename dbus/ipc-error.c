/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-error: the one table between CA_E_* codes and D-Bus error names, both directions.
 * The agent uses it to answer, the client library to turn an error reply back into a code.
 * The names are org.certagent.Error.<ca_error_name(code)>.
 */
#include <errno.h>
#include <string.h>

#include "ipc.h"

static const char *const error_names[_CA_E_MAX] = {
	[CA_E_KEY_NOT_FOUND] = IPC_ERROR_PREFIX "KeyNotFound",
	[CA_E_PIN_REQUIRED] = IPC_ERROR_PREFIX "PinRequired",
	[CA_E_PIN_INCORRECT] = IPC_ERROR_PREFIX "PinIncorrect",
	[CA_E_PIN_LOCKED] = IPC_ERROR_PREFIX "PinLocked",
	[CA_E_TOKEN_ABSENT] = IPC_ERROR_PREFIX "TokenAbsent",
	[CA_E_UNSUPPORTED_SCHEME] = IPC_ERROR_PREFIX "UnsupportedScheme",
	[CA_E_INVALID_ARGS] = IPC_ERROR_PREFIX "InvalidArgs",
	[CA_E_TOO_LARGE] = IPC_ERROR_PREFIX "TooLarge",
	[CA_E_FAILED] = IPC_ERROR_PREFIX "Failed",
	[CA_E_CANCELLED] = IPC_ERROR_PREFIX "Cancelled",
	[CA_E_POLICY_DENIED] = IPC_ERROR_PREFIX "PolicyDenied",
};

/* Errors of the bus and of libdbus itself that a client can meet. */
static const struct {
	const char *name;
	int code;
} foreign_errors[] = {
	{DBUS_ERROR_INVALID_ARGS, CA_E_INVALID_ARGS},
	{DBUS_ERROR_ACCESS_DENIED, CA_E_POLICY_DENIED},
	{DBUS_ERROR_NO_REPLY, -ETIMEDOUT},
	{DBUS_ERROR_TIMEOUT, -ETIMEDOUT},
	{DBUS_ERROR_SERVICE_UNKNOWN, -ENOTCONN},
	{DBUS_ERROR_NAME_HAS_NO_OWNER, -ENOTCONN},
	{DBUS_ERROR_NO_SERVER, -ENOTCONN},
	{DBUS_ERROR_DISCONNECTED, -ENOTCONN},
	{DBUS_ERROR_NO_MEMORY, -ENOMEM},
};

const char *ipc_error_to_name(int code)
{
	if (code > 0 && code < _CA_E_MAX && error_names[code])
		return error_names[code];
	return error_names[CA_E_FAILED];
}

int ipc_error_from_name(const char *dbus_name)
{
	if (!dbus_name)
		return CA_E_FAILED;
	for (int code = 1; code < _CA_E_MAX; code++)
		if (error_names[code] && strcmp(error_names[code], dbus_name) == 0)
			return code;
	for (size_t i = 0; i < ELEMENTSOF(foreign_errors); i++)
		if (strcmp(foreign_errors[i].name, dbus_name) == 0)
			return foreign_errors[i].code;
	return CA_E_FAILED;
}

int ipc_error_from_dbus(const DBusError *e, CaError *err)
{
	int code = ipc_error_from_name(e->name);

	return ca_error_set(err, code, "%s", e->message ? e->message : e->name ? e->name : "?");
}

const char *ipc_utf8_safe(const char *s, char **ret_copy)
{
	char *copy;

	*ret_copy = NULL;
	if (!s)
		return "";
	if (dbus_validate_utf8(s, NULL))
		return s;
	copy = strdup(s);
	if (!copy)
		return "?";
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	*ret_copy = copy;
	return copy;
}

DBusMessage *ipc_error_reply(DBusMessage *call, int code, const char *message)
{
	_cleanup_free_ char *copy = NULL;
	char buf[128];

	if (!message || !*message) {
		if (code < 0)
			message = strerror_r(-code, buf, sizeof(buf));
		else
			message = ca_error_name(code);
	}
	return dbus_message_new_error(call, ipc_error_to_name(code), ipc_utf8_safe(message, &copy));
}
