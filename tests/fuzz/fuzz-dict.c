/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-dict: D-Bus argument decoding. The input is a whole marshalled D-Bus message
 * (dbus_message_demarshal, which validates it as the bus would have); then:
 *
 *  - a Sign call ("ssaya{sv}") is decoded as agent/methods.c sign_submit() does: URI and
 *    scheme-name caps, the scheme lookup, the data cap, ca_scheme_check_input() and
 *    ipc_dict_read() of the options. The options table is a local of sign_submit() and cannot
 *    be linked, so this file repeats it (server-name, a string of at most IPC_SERVER_NAME_MAX);
 *    keep the two in step.
 *  - every top-level a{sv} of any message is read with a table that has one field of each
 *    IpcDictType, tight caps, and the credentials table of agent/caller.c (the bus's reply to
 *    GetConnectionCredentials goes through the same reader).
 *  - a message of signature "aa{sv}" goes through the client library's ListIdentities decoder
 *    (client-lib/identity.c): whoever owns the agent's name on the bus controls those bytes.
 *
 * Checks: no crash, no leak, caps honoured on success, nothing owned left behind on failure.
 */
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"
#include "fuzz.h"
#include "ipc.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* As sign_submit() in agent/methods.c, up to the point where it would queue the request. */
static void decode_sign(DBusMessage *msg)
{
	const char *uri, *scheme_name, *server_name = NULL;
	const unsigned char *data;
	const IpcDictField options[] = {
		{"server-name", IPC_DICT_STRING, &server_name, IPC_SERVER_NAME_MAX},
	};
	const CaScheme *scheme;
	DBusMessageIter iter, bytes;
	CaError err = {0};
	int len, r;

	dbus_message_iter_init(msg, &iter);
	dbus_message_iter_get_basic(&iter, &uri);
	dbus_message_iter_next(&iter);
	dbus_message_iter_get_basic(&iter, &scheme_name);
	dbus_message_iter_next(&iter);
	dbus_message_iter_recurse(&iter, &bytes);
	dbus_message_iter_get_fixed_array(&bytes, &data, &len);
	dbus_message_iter_next(&iter);

	if (strlen(uri) > IPC_URI_MAX || strncmp(uri, "pkcs11:", 7) != 0)
		return;
	scheme = strlen(scheme_name) <= IPC_SCHEME_MAX ? ca_scheme_by_name(scheme_name) : NULL;
	if (!scheme)
		return;
	if (len < 0 || (size_t)len > IPC_SIGN_DATA_MAX)
		return;
	if (ca_scheme_check_input(scheme, data, (size_t)len, &err))
		return;
	r = ipc_dict_read(&iter, options, ELEMENTSOF(options), IPC_OPTIONS_MAX, &err);
	check(r == 0 || r == CA_E_INVALID_ARGS || r == CA_E_TOO_LARGE);
	if (r == 0 && server_name)
		check(strlen(server_name) <= IPC_SERVER_NAME_MAX);
	if (r)
		check(err.message[0] != 0);
}

/* One field of each type with small caps, to reach every cap check. */
static void decode_dict_wide(DBusMessageIter *iter)
{
	const char *s = NULL;
	uint32_t u32 = 0;
	uint64_t u64 = 0;
	bool b = false, have_s = false;
	char **strv = NULL;
	IpcBytesArray bytes = {0};
	const IpcDictField fields[] = {
		{"uri", IPC_DICT_STRING, &s, 64, 0, &have_s},
		{"bits", IPC_DICT_U32, &u32},
		{"flags", IPC_DICT_U64, &u64},
		{"logged-in", IPC_DICT_BOOL, &b},
		{"schemes", IPC_DICT_STRV, &strv, 4, 16},
		{"certificates", IPC_DICT_BYTES_ARRAY, &bytes, 3, 64},
	};
	CaError err = {0};
	int r = ipc_dict_read(iter, fields, ELEMENTSOF(fields), 8, &err);

	if (r) {
		check(r == CA_E_INVALID_ARGS || r == CA_E_TOO_LARGE);
		/* Nothing owned left behind (a leak would also be caught by LeakSanitizer). */
		check(strv == NULL && bytes.items == NULL && bytes.n == 0);
		return;
	}
	if (have_s)
		check(s && strlen(s) <= 64);
	if (strv) {
		size_t n = 0;

		for (; strv[n]; n++)
			check(strlen(strv[n]) <= 16);
		check(n <= 4);
	}
	check(bytes.n <= 3);
	for (size_t i = 0; i < bytes.n; i++)
		check(bytes.items[i].size <= 64);
	strv_free(strv);
	ipc_bytes_array_clear(&bytes);
}

/* The table of caller_ask_bus() in agent/caller.c. */
static void decode_credentials(DBusMessageIter *iter)
{
	uint32_t uid = 0, pid = 0;
	bool have_uid = false, have_pid = false;
	const IpcDictField fields[] = {
		{"UnixUserID", IPC_DICT_U32, &uid, 0, 0, &have_uid},
		{"ProcessID", IPC_DICT_U32, &pid, 0, 0, &have_pid},
	};

	(void)ipc_dict_read(iter, fields, ELEMENTSOF(fields), 64, NULL);
}

static void decode_identities(DBusMessage *msg)
{
	certagent_identity_list *l = NULL;
	certagent_error err = CERTAGENT_ERROR_INIT;

	if (identity_list_from_reply(msg, &l, &err) == 0) {
		for (size_t i = 0; i < certagent_identity_list_count(l); i++) {
			const certagent_identity *id = certagent_identity_list_get(l, i);

			check(certagent_identity_uri(id) != NULL);
			check(certagent_identity_cert_count(id) <= CA_MAX_CERTS);
			check(certagent_identity_scheme_count(id) <= CA_MAX_SCHEMES);
		}
		certagent_identity_list_free(l);
	} else {
		check(l == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	DBusMessage *msg;
	DBusMessageIter iter;
	DBusError e = DBUS_ERROR_INIT;

	if (size > (size_t)DBUS_MAXIMUM_MESSAGE_LENGTH)
		return 0;
	msg = dbus_message_demarshal((const char *)data, (int)size, &e);
	if (!msg) {
		dbus_error_free(&e);
		return 0;
	}
	if (dbus_message_get_type(msg) == DBUS_MESSAGE_TYPE_METHOD_CALL &&
	    dbus_message_has_signature(msg, "ssaya{sv}"))
		decode_sign(msg);
	if (dbus_message_has_signature(msg, "aa{sv}"))
		decode_identities(msg);
	if (dbus_message_iter_init(msg, &iter)) {
		do {
			if (dbus_message_iter_get_arg_type(&iter) == DBUS_TYPE_ARRAY &&
			    dbus_message_iter_get_element_type(&iter) == DBUS_TYPE_DICT_ENTRY) {
				decode_dict_wide(&iter);
				decode_credentials(&iter);
			}
		} while (dbus_message_iter_next(&iter));
	}
	dbus_message_unref(msg);
	return 0;
}
