/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * make-seeds DIR: writes the seed corpus of fuzz-dict (marshalled D-Bus messages) into DIR.
 * The committed tests/fuzz/corpus/dict/ was made with it; run it again when the interface
 * changes. Each seed is a message the agent or the client library really decodes, plus a few
 * that must be refused (wrong type, duplicate key, too many entries).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

static DBusMessage *sign_call(const char *uri, const char *scheme, const uint8_t *data, int len)
{
	DBusMessage *m =
		dbus_message_new_method_call(IPC_BUS_NAME, IPC_OBJECT_PATH, IPC_INTERFACE, "Sign");

	if (!m || !dbus_message_append_args(m, DBUS_TYPE_STRING, &uri, DBUS_TYPE_STRING, &scheme,
					    DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &data, len,
					    DBUS_TYPE_INVALID))
		abort();
	return m;
}

static DBusMessage *method_return(void)
{
	DBusMessage *m = dbus_message_new(DBUS_MESSAGE_TYPE_METHOD_RETURN);

	if (!m || !dbus_message_set_reply_serial(m, 7))
		abort();
	return m;
}

static void save(const char *dir, const char *name, DBusMessage *m)
{
	char path[4096], *buf = NULL;
	int len = 0;
	FILE *f;

	dbus_message_set_serial(m, 1);
	if (!dbus_message_marshal(m, &buf, &len))
		abort();
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f || fwrite(buf, 1, (size_t)len, f) != (size_t)len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
	dbus_free(buf);
	dbus_message_unref(m);
}

static void must(bool ok)
{
	if (!ok)
		abort();
}

int main(int argc, char **argv)
{
	static const char *uri = "pkcs11:token=demo;object=client;type=private";
	static const uint8_t sha256_di[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
					      0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
					      0x01, 0x05, 0x00, 0x04, 0x20};
	const char *dir = argc > 1 ? argv[1] : ".";
	uint8_t hash[32], di[51], msg[130];
	DBusMessageIter it, d, arr;
	DBusMessage *m;

	for (size_t i = 0; i < sizeof(hash); i++)
		hash[i] = (uint8_t)(0xa0 + i);
	memcpy(di, sha256_di, sizeof(sha256_di));
	memcpy(di + sizeof(sha256_di), hash, sizeof(hash));
	/* TLS 1.3 CertificateVerify framing: 64 spaces, the context string, 0, the hash. */
	memset(msg, ' ', 64);
	memcpy(msg + 64, "TLS 1.3, client CertificateVerify", 33);
	msg[97] = 0;
	memcpy(msg + 98, hash, 32);

	m = sign_call(uri, "ecdsa_secp256r1_sha256", hash, 32);
	dbus_message_iter_init_append(m, &it);
	must(ipc_dict_open(&it, &d) && ipc_dict_append_string(&d, "server-name", "localhost") &&
	     ipc_dict_close(&it, &d));
	save(dir, "sign-ecdsa", m);

	m = sign_call(uri, "rsa_pkcs1_sha256", di, sizeof(di));
	dbus_message_iter_init_append(m, &it);
	must(ipc_dict_open(&it, &d) && ipc_dict_append_string(&d, "server-name", "example.org") &&
	     ipc_dict_append_u32(&d, "future-option", 1) && ipc_dict_close(&it, &d));
	save(dir, "sign-rsa-pkcs1", m);

	m = sign_call(uri, "ed25519", msg, sizeof(msg));
	dbus_message_iter_init_append(m, &it);
	must(ipc_dict_open(&it, &d) && ipc_dict_close(&it, &d));
	save(dir, "sign-ed25519", m);

	m = sign_call(uri, "rsa_pss_rsae_sha256", hash, 32);
	dbus_message_iter_init_append(m, &it);
	must(ipc_dict_open(&it, &d) && ipc_dict_append_u32(&d, "server-name", 5) &&
	     ipc_dict_close(&it, &d));
	save(dir, "sign-bad-option-type", m);

	m = sign_call(uri, "ecdsa_secp256r1_sha256", hash, 32);
	dbus_message_iter_init_append(m, &it);
	must(ipc_dict_open(&it, &d) && ipc_dict_append_string(&d, "server-name", "a") &&
	     ipc_dict_append_string(&d, "server-name", "b") && ipc_dict_close(&it, &d));
	save(dir, "sign-duplicate-option", m);

	m = dbus_message_new_method_call(IPC_BUS_NAME, IPC_OBJECT_PATH, IPC_INTERFACE, "Unlock");
	{
		const char *tok = "pkcs11:token=demo", *pin = "1234";

		must(m && dbus_message_append_args(m, DBUS_TYPE_STRING, &tok, DBUS_TYPE_STRING,
						   &pin, DBUS_TYPE_INVALID));
	}
	save(dir, "unlock", m);

	/* The bus's answer to GetConnectionCredentials, as agent/caller.c reads it. */
	m = method_return();
	dbus_message_iter_init_append(m, &it);
	{
		gnutls_datum_t label = {(unsigned char *)"unconfined", 11};

		must(ipc_dict_open(&it, &d) && ipc_dict_append_u32(&d, "UnixUserID", 1000) &&
		     ipc_dict_append_u32(&d, "ProcessID", 4242) &&
		     ipc_dict_append_bytes_array(&d, "LinuxSecurityLabel", &label, 1) &&
		     ipc_dict_close(&it, &d));
	}
	save(dir, "credentials-reply", m);

	/* ListIdentities' answer, as client-lib/identity.c reads it. */
	m = method_return();
	dbus_message_iter_init_append(m, &it);
	{
		static const char *const schemes[] = {"ecdsa_secp256r1_sha256"};
		gnutls_datum_t certs[2] = {{(unsigned char *)"\x30\x03\x02\x01\x01", 5},
					   {(unsigned char *)"\x30\x00", 2}};

		must(dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "a{sv}", &arr));
		must(ipc_dict_open(&arr, &d) && ipc_dict_append_string(&d, "uri", uri) &&
		     ipc_dict_append_string(&d, "label", "client") &&
		     ipc_dict_append_string(&d, "token", "pkcs11:token=demo") &&
		     ipc_dict_append_string(&d, "token-label", "demo") &&
		     ipc_dict_append_string(&d, "module", "softhsm") &&
		     ipc_dict_append_string(&d, "key-type", "ec") &&
		     ipc_dict_append_u32(&d, "bits", 256) &&
		     ipc_dict_append_strv(&d, "schemes", schemes, 1) &&
		     ipc_dict_append_bytes_array(&d, "certificates", certs, 2) &&
		     ipc_dict_append_bool(&d, "logged-in", true) &&
		     ipc_dict_append_bool(&d, "always-authenticate", false) &&
		     ipc_dict_close(&arr, &d));
		must(dbus_message_iter_close_container(&it, &arr));
	}
	save(dir, "identities-reply", m);

	/* Every field type of the wide table, one over its cap. */
	m = method_return();
	dbus_message_iter_init_append(m, &it);
	{
		static const char *const v[] = {"a", "bb", "ccc", "dddd", "eeeee"};
		gnutls_datum_t certs[1] = {{(unsigned char *)"0123456789", 10}};

		must(ipc_dict_open(&it, &d) && ipc_dict_append_string(&d, "uri", uri) &&
		     ipc_dict_append_u32(&d, "bits", 3072) &&
		     ipc_dict_append_u64(&d, "flags", 0x40d) &&
		     ipc_dict_append_bool(&d, "logged-in", false) &&
		     ipc_dict_append_strv(&d, "schemes", v, 5) &&
		     ipc_dict_append_bytes_array(&d, "certificates", certs, 1) &&
		     ipc_dict_close(&it, &d));
	}
	save(dir, "all-types", m);
	return 0;
}
