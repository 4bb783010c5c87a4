/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc: certagent's D-Bus layer — the wire names, the caps on everything a peer controls, the one
 * table between CA_E_* codes and D-Bus error names, a{sv} helpers and a table-driven method
 * dispatcher. Used by the agent (server side), the client library and the CLI (client side).
 *
 * Only marshalling lives here: no policy, no PKCS#11, no threads. The interface itself is
 * described once, in dbus/org.certagent.Agent1.xml, embedded at build time as ipc_introspect_xml.
 *
 * Strings read from a message are borrowed from it and die with it: copy what you keep.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dbus/dbus.h>
#include <gnutls/gnutls.h>

#include "error.h"

#define IPC_BUS_NAME "org.certagent.Agent1"
#define IPC_OBJECT_PATH "/org/certagent/Agent1"
#define IPC_INTERFACE "org.certagent.Agent1"
#define IPC_ERROR_PREFIX "org.certagent.Error."

/*
 * Caps on what a peer controls; checked before anything is allocated.
 *   IPC_SIGN_DATA_MAX   Sign data bytes (an Ed25519 TLS 1.3 CertificateVerify is < 200)
 *   IPC_URI_MAX         identity and token URIs
 *   IPC_SCHEME_MAX      scheme name
 *   IPC_OPTIONS_MAX     entries in an options a{sv}
 *   IPC_PIN_MAX         PIN bytes
 *   IPC_SERVER_NAME_MAX DNS name in the server-name option
 *   IPC_LABEL_MAX       labels, serials, module names read by clients
 *   IPC_SCHEMES_MAX     entries in a schemes "as"
 *   IPC_CERTS_MAX       certificates per identity
 *   IPC_CERT_MAX        bytes per certificate
 *   IPC_LIST_MAX        entries in ListIdentities/ListTokens
 *   IPC_SIGNATURE_MAX   bytes of a signature (RSA 8192 = 1024)
 */
#define IPC_SIGN_DATA_MAX 65536
#define IPC_URI_MAX 4096
#define IPC_SCHEME_MAX 64
#define IPC_OPTIONS_MAX 32
#define IPC_PIN_MAX 256
#define IPC_SERVER_NAME_MAX 255
#define IPC_LABEL_MAX 256
#define IPC_SCHEMES_MAX 32
#define IPC_CERTS_MAX 16
#define IPC_CERT_MAX 65536
#define IPC_LIST_MAX 4096
#define IPC_SIGNATURE_MAX 1024

/* Default timeout of a client's call: a token may be slow, a PIN prompt slower. */
#define IPC_CALL_TIMEOUT_MS (120 * 1000)

/* The interface description, embedded from org.certagent.Agent1.xml at build time. */
extern const char ipc_introspect_xml[];

/* ---- errors ----------------------------------------------------------------------------- */

/*
 * The D-Bus error name of a code: "org.certagent.Error.PinIncorrect" for CA_E_PIN_INCORRECT;
 * a negative errno or an unknown code is "org.certagent.Error.Failed".
 */
const char *ipc_error_to_name(int code);

/*
 * The code of a D-Bus error name: the org.certagent.Error.* names map back to their CA_E_*;
 * org.freedesktop.DBus.Error.InvalidArgs to CA_E_INVALID_ARGS, AccessDenied to
 * CA_E_POLICY_DENIED, NoReply/Timeout to -ETIMEDOUT, ServiceUnknown/NameHasNoOwner/
 * NoServer/Disconnected to -ENOTCONN; everything else (and NULL) is CA_E_FAILED.
 */
int ipc_error_from_name(const char *dbus_name);

/*
 * Fills err from a DBusError (code from its name, message copied); returns the code.
 * Does not free e.
 */
int ipc_error_from_dbus(const DBusError *e, CaError *err);

/* An error reply to call for code (CA_E_* or negative errno) with message; NULL on OOM. */
DBusMessage *ipc_error_reply(DBusMessage *call, int code, const char *message);

/*
 * s itself when it is valid UTF-8 (all D-Bus strings must be), else a copy in *ret_copy with
 * every non-ASCII byte replaced by '?'. Token labels and truncated messages can be either.
 */
const char *ipc_utf8_safe(const char *s, char **ret_copy);

/* ---- a{sv} dictionaries ----------------------------------------------------------------- */

/* Writers: open an a{sv} in parent, append entries, close it. Return false on OOM. */
bool ipc_dict_open(DBusMessageIter *parent, DBusMessageIter *ret_dict);
bool ipc_dict_close(DBusMessageIter *parent, DBusMessageIter *dict);
bool ipc_dict_append_string(DBusMessageIter *dict, const char *key, const char *value);
bool ipc_dict_append_u32(DBusMessageIter *dict, const char *key, uint32_t value);
bool ipc_dict_append_u64(DBusMessageIter *dict, const char *key, uint64_t value);
bool ipc_dict_append_bool(DBusMessageIter *dict, const char *key, bool value);
/* "as" from n strings. */
bool ipc_dict_append_strv(DBusMessageIter *dict, const char *key, const char *const *v, size_t n);
/* "aay" from n byte strings. */
bool ipc_dict_append_bytes_array(DBusMessageIter *dict, const char *key, const gnutls_datum_t *v,
				 size_t n);

typedef enum IpcDictType {
	IPC_DICT_STRING = 1,  /* ret: const char ** — borrowed from the message */
	IPC_DICT_U32,	      /* ret: uint32_t * */
	IPC_DICT_U64,	      /* ret: uint64_t * */
	IPC_DICT_BOOL,	      /* ret: bool * */
	IPC_DICT_STRV,	      /* ret: char *** — owned copy, NULL-terminated (strv_free) */
	IPC_DICT_BYTES_ARRAY, /* ret: IpcBytesArray * — owned copy (ipc_bytes_array_clear) */
} IpcDictType;

typedef struct IpcBytesArray {
	gnutls_datum_t *items; /* each item's data malloc'd */
	size_t n;
} IpcBytesArray;

void ipc_bytes_array_clear(IpcBytesArray *a);

typedef struct IpcDictField {
	const char *key;
	IpcDictType type;
	void *ret;
	size_t max;	   /* STRING: bytes; STRV/BYTES_ARRAY: entries (0 = no cap beyond 4096) */
	size_t item_max;   /* BYTES_ARRAY: bytes per item; STRV: bytes per string (0 = none) */
	bool *ret_present; /* optional: set true when the key was there */
} IpcDictField;

/*
 * Reads an a{sv} at iter (which must point at it) into the fields named in the table.
 * Unknown keys are ignored; a key of the table with another type is CA_E_INVALID_ARGS; more than
 * max_entries entries, or an entry over its field's max, is CA_E_TOO_LARGE; a key twice is
 * CA_E_INVALID_ARGS. On failure nothing owned is left in the outputs. At most 64 fields.
 */
int ipc_dict_read(DBusMessageIter *iter, const IpcDictField *fields, size_t n_fields,
		  size_t max_entries, CaError *err);

/* ---- dispatcher ------------------------------------------------------------------------- */

/* Policy flags of a method or property row; a row with none is denied (default deny). */
enum {
	IPC_POLICY_ANYONE = 1u << 0, /* harmless: Introspect, Version */
	IPC_POLICY_OWNER = 1u << 1,  /* only the uid the agent runs as */
};

/*
 * A method handler. Arguments were checked against the row's in-signature before it runs.
 * Returns 0 with *ret_reply set (the dispatcher sends it), 0 with *ret_reply NULL (the
 * handler took a reference on msg and will reply later), or a CA_E_* code / negative errno
 * with err filled, which the dispatcher turns into an error reply.
 */
typedef int (*IpcMethodFn)(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err);

typedef struct IpcMethod {
	const char *member;
	const char *in_sig;
	const char *out_sig;
	IpcMethodFn fn;
	unsigned flags;
} IpcMethod;

/* Appends the property's value (of the row's signature) to a variant opened by the caller. */
typedef bool (*IpcPropertyFn)(void *userdata, DBusMessageIter *variant);

typedef struct IpcProperty {
	const char *name;
	const char *sig;
	IpcPropertyFn get;
	unsigned flags;
} IpcProperty;

typedef struct IpcInterface {
	const char *name;
	const IpcMethod *methods;
	size_t n_methods;
	const IpcProperty *properties;
	size_t n_properties;
} IpcInterface;

/*
 * Asked before any handler runs with the row's flags (never 0). Returns 0 to allow, or a
 * CA_E_* code (usually CA_E_POLICY_DENIED) with err filled.
 */
typedef int (*IpcPolicyFn)(void *userdata, DBusMessage *msg, unsigned flags, CaError *err);

typedef struct IpcObject {
	const char *path;
	const IpcInterface *interface; /* the one interface of the object */
	const char *introspect_xml;
	IpcPolicyFn policy;
	void *userdata;
} IpcObject;

/*
 * Handles a method call for obj: its own interface, org.freedesktop.DBus.Introspectable
 * (also on the parent paths, listing the child node) and org.freedesktop.DBus.Properties.
 * Checks path, interface, member and signature before the handler. Returns
 * DBUS_HANDLER_RESULT_NOT_YET_HANDLED for what is not a method call of ours (libdbus then
 * answers UnknownMethod), _HANDLED otherwise, _NEED_MEMORY on OOM.
 */
DBusHandlerResult ipc_object_dispatch(const IpcObject *obj, DBusConnection *conn, DBusMessage *msg);

/* Sends reply and drops the caller's reference to it (NULL is OOM: returns false). */
bool ipc_send(DBusConnection *conn, DBusMessage *reply);
