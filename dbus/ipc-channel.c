/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-channel: packets of the signing channel are D-Bus messages in the wire format. libdbus's
 * demarshaller validates the whole message (header fields, signature, body, UTF-8) before we
 * see it; here we cap the size first and then accept exactly one shape per direction.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ipc-channel.h"
#include "ipc.h"

/* Size cap and libdbus's own framing check, before libdbus parses anything. */
static int channel_demarshal(const void *buf, size_t len, DBusMessage **ret, CaError *err)
{
	DBusError e = DBUS_ERROR_INIT;
	DBusMessage *msg;
	int need;

	if (len > IPC_CHANNEL_FRAME_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "channel packet of %zu bytes; at most %d are accepted", len,
				    IPC_CHANNEL_FRAME_MAX);
	/* libdbus reads the 16-byte fixed header to learn the length. */
	if (len < 16)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "channel packet of %zu bytes is not a D-Bus message", len);
	need = dbus_message_demarshal_bytes_needed(buf, (int)len);
	if (need < 0 || (size_t)need != len)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "channel packet of %zu bytes is not one whole D-Bus message",
				    len);
	msg = dbus_message_demarshal(buf, (int)len, &e);
	if (!msg) {
		int r = dbus_error_has_name(&e, DBUS_ERROR_NO_MEMORY)
				? -ENOMEM
				: ca_error_set(err, CA_E_INVALID_ARGS,
					       "channel packet is not a valid D-Bus message: %s",
					       e.message ? e.message : "?");
		dbus_error_free(&e);
		return r;
	}
	if (dbus_message_get_serial(msg) == 0 || dbus_message_contains_unix_fds(msg)) {
		dbus_message_unref(msg);
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "channel packet has no serial or announces unix fds");
	}
	*ret = msg;
	return 0;
}

static bool str_is(const char *a, const char *b)
{
	return a && strcmp(a, b) == 0;
}

int ipc_channel_decode_call(const void *buf, size_t len, DBusMessage **ret, CaError *err)
{
	DBusMessage *msg;
	int r = channel_demarshal(buf, len, &msg, err);

	if (r)
		return r;
	/* What the dispatcher checks for the bus, with the interface required. */
	if (dbus_message_get_type(msg) != DBUS_MESSAGE_TYPE_METHOD_CALL ||
	    !str_is(dbus_message_get_path(msg), IPC_OBJECT_PATH) ||
	    !str_is(dbus_message_get_interface(msg), IPC_INTERFACE) ||
	    !str_is(dbus_message_get_member(msg), IPC_CHANNEL_MEMBER)) {
		dbus_message_unref(msg);
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "a channel carries only calls of %s.%s on %s", IPC_INTERFACE,
				    IPC_CHANNEL_MEMBER, IPC_OBJECT_PATH);
	}
	if (!dbus_message_has_signature(msg, IPC_CHANNEL_SIGNATURE)) {
		r = ca_error_set(err, CA_E_INVALID_ARGS,
				 "Sign expects arguments of signature \"%s\", not \"%.32s\"",
				 IPC_CHANNEL_SIGNATURE, dbus_message_get_signature(msg));
		dbus_message_unref(msg);
		return r;
	}
	*ret = msg;
	return 0;
}

int ipc_channel_decode_reply(const void *buf, size_t len, uint32_t serial, DBusMessage **ret,
			     CaError *err)
{
	DBusMessage *msg;
	int type, r = channel_demarshal(buf, len, &msg, err);

	if (r)
		return r;
	type = dbus_message_get_type(msg);
	if ((type != DBUS_MESSAGE_TYPE_METHOD_RETURN && type != DBUS_MESSAGE_TYPE_ERROR) ||
	    dbus_message_get_reply_serial(msg) != serial) {
		dbus_message_unref(msg);
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "the agent sent something other than the reply to request %u "
				    "on the channel",
				    (unsigned)serial);
	}
	*ret = msg;
	return 0;
}

int ipc_channel_encode(DBusMessage *msg, uint8_t **ret_buf, size_t *ret_len, CaError *err)
{
	char *data = NULL;
	int len = 0;

	if (!dbus_message_marshal(msg, &data, &len))
		return -ENOMEM;
	if (len <= 0 || (size_t)len > IPC_CHANNEL_FRAME_MAX) {
		explicit_bzero(data, len > 0 ? (size_t)len : 0);
		dbus_free(data);
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "the message is %d bytes; a channel packet holds at most %d",
				    len, IPC_CHANNEL_FRAME_MAX);
	}
	/* Ours, with free(): callers need not know libdbus allocated it. */
	*ret_buf = malloc((size_t)len);
	if (*ret_buf)
		memcpy(*ret_buf, data, (size_t)len);
	explicit_bzero(data, (size_t)len);
	dbus_free(data);
	if (!*ret_buf)
		return -ENOMEM;
	*ret_len = (size_t)len;
	return 0;
}
