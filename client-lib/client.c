/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client: libcertagent's connection to certagentd, the one table mapping D-Bus error names to
 * CERTAGENT_E_*, and the plain calls (ListIdentities, Sign, Unlock).
 *
 * Each certagent_client owns a private bus connection (never the shared one libdbus hands to
 * everybody), so an application's own D-Bus use is not disturbed and freeing the client closes
 * exactly what it opened. No global state, no threads, no printing.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client-internal.h"

/*
 * The one table from D-Bus error names to our codes. The agent's names come from
 * dbus/org.certagent.Agent1.xml; the bus's own names say the agent is not there or too slow.
 */
static const struct {
	const char *name;
	certagent_code code;
} error_table[] = {
	{"org.certagent.Error.KeyNotFound", CERTAGENT_E_KEY_NOT_FOUND},
	{"org.certagent.Error.PinRequired", CERTAGENT_E_PIN_REQUIRED},
	{"org.certagent.Error.PinIncorrect", CERTAGENT_E_PIN_INCORRECT},
	{"org.certagent.Error.PinLocked", CERTAGENT_E_PIN_LOCKED},
	{"org.certagent.Error.TokenAbsent", CERTAGENT_E_TOKEN_ABSENT},
	{"org.certagent.Error.UnsupportedScheme", CERTAGENT_E_UNSUPPORTED_SCHEME},
	{"org.certagent.Error.InvalidArgs", CERTAGENT_E_INVALID_ARGS},
	{"org.certagent.Error.TooLarge", CERTAGENT_E_TOO_LARGE},
	{"org.certagent.Error.Failed", CERTAGENT_E_FAILED},
	{"org.certagent.Error.Cancelled", CERTAGENT_E_CANCELLED},
	{"org.certagent.Error.PolicyDenied", CERTAGENT_E_POLICY_DENIED},
	{DBUS_ERROR_NO_REPLY, CERTAGENT_E_TIMEOUT},
	{DBUS_ERROR_TIMEOUT, CERTAGENT_E_TIMEOUT},
	{DBUS_ERROR_TIMED_OUT, CERTAGENT_E_TIMEOUT},
	{DBUS_ERROR_SERVICE_UNKNOWN, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_NAME_HAS_NO_OWNER, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_NO_SERVER, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_DISCONNECTED, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_BAD_ADDRESS, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_FILE_NOT_FOUND, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_SPAWN_EXEC_FAILED, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_SPAWN_CHILD_EXITED, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_SPAWN_FAILED, CERTAGENT_E_AGENT_NOT_RUNNING},
	{DBUS_ERROR_NO_MEMORY, CERTAGENT_E_NO_MEMORY},
	{DBUS_ERROR_INVALID_ARGS, CERTAGENT_E_INVALID_ARGS},
	{DBUS_ERROR_ACCESS_DENIED, CERTAGENT_E_POLICY_DENIED},
	{DBUS_ERROR_AUTH_FAILED, CERTAGENT_E_POLICY_DENIED},
};

static const char *const code_names[] = {
	[CERTAGENT_OK] = "ok",
	[CERTAGENT_E_AGENT_NOT_RUNNING] = "agent-not-running",
	[CERTAGENT_E_NO_IDENTITY] = "no-identity",
	[CERTAGENT_E_KEY_NOT_FOUND] = "key-not-found",
	[CERTAGENT_E_PIN_REQUIRED] = "pin-required",
	[CERTAGENT_E_PIN_INCORRECT] = "pin-incorrect",
	[CERTAGENT_E_PIN_LOCKED] = "pin-locked",
	[CERTAGENT_E_TOKEN_ABSENT] = "token-absent",
	[CERTAGENT_E_UNSUPPORTED_SCHEME] = "unsupported-scheme",
	[CERTAGENT_E_INVALID_ARGS] = "invalid-args",
	[CERTAGENT_E_TOO_LARGE] = "too-large",
	[CERTAGENT_E_TIMEOUT] = "timeout",
	[CERTAGENT_E_CANCELLED] = "cancelled",
	[CERTAGENT_E_POLICY_DENIED] = "policy-denied",
	[CERTAGENT_E_NO_MEMORY] = "no-memory",
	[CERTAGENT_E_FAILED] = "failed",
};

#define NOT_RUNNING_HINT                                                                           \
	"start it with `certagentd` or install its D-Bus service file "                            \
	"(org.certagent.Agent1.service) so the bus can start it"

_public_ const char *certagent_strerror(certagent_code code)
{
	if (code >= 0 && (size_t)code < ELEMENTSOF(code_names) && code_names[code])
		return code_names[code];
	return "unknown";
}

/* Fills err (if not NULL) and returns -code, the way every public function fails. */
int client_error_set(certagent_error *err, certagent_code code, const char *fmt, ...)
{
	if (err) {
		va_list ap;

		err->code = code;
		err->dbus_name[0] = '\0';
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -code;
}

static certagent_code error_code_from_name(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(error_table); i++)
		if (strcmp(error_table[i].name, name) == 0)
			return error_table[i].code;
	return CERTAGENT_E_FAILED;
}

/* Turns a D-Bus error into ours, keeping the agent's message (it says what to do next). */
static int error_from_dbus(certagent_error *err, const DBusError *derr)
{
	certagent_code code = error_code_from_name(derr->name);

	if (!err)
		return -code;
	if (code == CERTAGENT_E_AGENT_NOT_RUNNING)
		client_error_set(
			err, code,
			"certagentd is not running on the session bus (%s): " NOT_RUNNING_HINT,
			derr->message ? derr->message : derr->name);
	else if (code == CERTAGENT_E_TIMEOUT)
		client_error_set(err, code,
				 "certagentd did not answer in time (%s): it may be waiting for a "
				 "token or a PIN prompt; try again, or raise the timeout",
				 derr->message ? derr->message : derr->name);
	else
		client_error_set(err, code, "%s", derr->message ? derr->message : derr->name);
	snprintf(err->dbus_name, sizeof(err->dbus_name), "%s", derr->name);
	return -code;
}

int client_error_from_reply(DBusMessage *reply, certagent_error *err)
{
	DBusError derr;
	int r;

	dbus_error_init(&derr);
	if (!dbus_set_error_from_message(&derr, reply))
		return client_error_set(err, CERTAGENT_E_FAILED, "certagentd sent a bad error");
	r = error_from_dbus(err, &derr);
	dbus_error_free(&derr);
	return r;
}

int client_error_from_name(certagent_error *err, const char *name, const char *message)
{
	DBusError derr = {.name = name, .message = message};

	return error_from_dbus(err, &derr);
}

int client_malformed(certagent_error *err, const char *list, const char *what)
{
	return client_error_set(
		err, CERTAGENT_E_FAILED,
		"certagentd sent a malformed %s (%s): is the agent the same version "
		"as this library?",
		list, what);
}

/* The entries of one a{sv}, handed to kind->read_entry key by key, then kind->finish. */
static int client_read_dict(DBusMessageIter *dict, const ClientDictList *kind, void *item,
			    certagent_error *err)
{
	DBusMessageIter entry, var;
	int r;

	while (dbus_message_iter_get_arg_type(dict) == DBUS_TYPE_DICT_ENTRY) {
		const char *key;

		dbus_message_iter_recurse(dict, &entry);
		dbus_message_iter_get_basic(&entry, &key);
		dbus_message_iter_next(&entry);
		dbus_message_iter_recurse(&entry, &var);
		r = kind->read_entry(item, key, &var, err);
		if (r < 0)
			return r;
		dbus_message_iter_next(dict);
	}
	return kind->finish(item, err);
}

int client_read_dict_list(DBusMessage *reply, const ClientDictList *kind, void **items, size_t *n,
			  certagent_error *err)
{
	DBusMessageIter it, arr, dict;
	int r;

	if (!dbus_message_has_signature(reply, "aa{sv}"))
		return client_malformed(err, kind->name, "signature is not aa{sv}");
	dbus_message_iter_init(reply, &it);
	dbus_message_iter_recurse(&it, &arr);
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_ARRAY) {
		void *item;

		if (*n == kind->max)
			return client_malformed(err, kind->name, kind->too_many);
		if (*n % 16 == 0) {
			void *grown = realloc(*items, (*n + 16) * kind->item_size);

			if (!grown)
				return client_error_set(err, CERTAGENT_E_NO_MEMORY,
							"out of memory");
			*items = grown;
		}
		/* Counted before it is read, so the caller's cleanup frees a half-read item. */
		item = (char *)*items + *n * kind->item_size;
		memset(item, 0, kind->item_size);
		(*n)++;
		dbus_message_iter_recurse(&arr, &dict);
		r = client_read_dict(&dict, kind, item, err);
		if (r < 0)
			return r;
		dbus_message_iter_next(&arr);
	}
	return 0;
}

void client_record_error(certagent_client *c, const certagent_error *err)
{
	c->last_error = *err;
	c->last_error.version = CERTAGENT_API_VERSION;
	c->has_last_error = true;
}

void client_clear_error(certagent_client *c)
{
	c->has_last_error = false;
	c->last_error = (certagent_error)CERTAGENT_ERROR_INIT;
}

/* Sends msg to the agent and waits for the reply (the bus may start the agent on the way). */
/* client_call() without the translation: a failed call leaves the bus's error in *derr
 * (set, to be freed) and returns 1; 0 with *ret_reply, or a negative code. */
static int client_call_raw(certagent_client *c, DBusMessage *msg, DBusMessage **ret_reply,
			   DBusError *derr, certagent_error *err)
{
	if (!dbus_connection_get_is_connected(c->conn))
		return client_error_set(err, CERTAGENT_E_AGENT_NOT_RUNNING,
					"the connection to the session bus was lost: "
					"create a new certagent client");
	dbus_error_init(derr);
	*ret_reply = dbus_connection_send_with_reply_and_block(c->conn, msg, c->timeout_ms, derr);
	return *ret_reply ? 0 : 1;
}

int client_call(certagent_client *c, DBusMessage *msg, DBusMessage **ret_reply,
		certagent_error *err)
{
	DBusError derr;
	int r = client_call_raw(c, msg, ret_reply, &derr, err);

	if (r == 1) {
		r = error_from_dbus(err, &derr);
		dbus_error_free(&derr);
	}
	return r;
}

static DBusMessage *method_new(const char *member)
{
	return dbus_message_new_method_call(CA_BUS_NAME, CA_OBJECT_PATH, CA_INTERFACE, member);
}

static void messagep_unref(DBusMessage **m)
{
	if (*m)
		dbus_message_unref(*m);
}
#define _cleanup_message_ _cleanup_(messagep_unref)

void client_dispatch_signals(certagent_client *c)
{
	struct pollfd pfd = {.fd = -1, .events = POLLIN};
	DBusMessage *m;

	/*
	 * What has arrived, without blocking (only our match rule delivers signals here): what
	 * libdbus queued during an earlier call, and a read when the socket has something. Every
	 * handshake comes here; asking poll() first costs one syscall, asking libdbus to try a
	 * read costs about five times that.
	 */
	if (!dbus_connection_get_socket(c->conn, &pfd.fd) || poll(&pfd, 1, 0) != 0)
		dbus_connection_read_write(c->conn, 0);
	while ((m = dbus_connection_pop_message(c->conn))) {
		if (dbus_message_is_signal(m, CA_INTERFACE, "IdentitiesChanged") ||
		    dbus_message_is_signal(m, DBUS_INTERFACE_DBUS, "NameOwnerChanged"))
			c->cache = (certagent_identity_list_free(c->cache), NULL);
		if (dbus_message_is_signal(m, DBUS_INTERFACE_DBUS, "NameOwnerChanged"))
			client_channel_reset(c);
		dbus_message_unref(m);
	}
}

/* The session bus address: the caller's, else the environment, else the systemd user bus. */
static int bus_address(const char *address, char **ret, certagent_error *err)
{
	const char *env, *runtime;
	struct stat st;
	char *s;

	if (address) {
		s = strdup(address);
	} else if ((env = getenv("DBUS_SESSION_BUS_ADDRESS")) && *env) {
		s = strdup(env);
	} else if ((runtime = getenv("XDG_RUNTIME_DIR")) && *runtime) {
		_cleanup_free_ char *path = NULL;

		if (asprintf(&path, "%s/bus", runtime) < 0)
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
		if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
			return client_error_set(
				err, CERTAGENT_E_AGENT_NOT_RUNNING,
				"no session bus: DBUS_SESSION_BUS_ADDRESS is not set "
				"and %s does not exist; start a session bus "
				"(dbus-run-session) or pass its address",
				path);
		if (asprintf(&s, "unix:path=%s", path) < 0)
			s = NULL;
	} else {
		return client_error_set(err, CERTAGENT_E_AGENT_NOT_RUNNING,
					"no session bus: neither DBUS_SESSION_BUS_ADDRESS nor "
					"XDG_RUNTIME_DIR is set; start a session bus "
					"(dbus-run-session) or pass its address");
	}
	if (!s)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	*ret = s;
	return 0;
}

/* Asks for the Version property with auto-start allowed: the bus activates the agent if it can. */
static int client_ping(certagent_client *c, certagent_error *err)
{
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	const char *iface = CA_INTERFACE, *prop = "Version";
	DBusError derr;
	int r;

	msg = dbus_message_new_method_call(CA_BUS_NAME, CA_OBJECT_PATH, DBUS_INTERFACE_PROPERTIES,
					   "Get");
	if (!msg || !dbus_message_append_args(msg, DBUS_TYPE_STRING, &iface, DBUS_TYPE_STRING,
					      &prop, DBUS_TYPE_INVALID))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	dbus_message_set_auto_start(msg, TRUE);
	r = client_call_raw(c, msg, &reply, &derr, err);
	if (r != 1)
		return r;
	if (error_code_from_name(derr.name) == CERTAGENT_E_AGENT_NOT_RUNNING) {
		/* The bus's own words: error_from_dbus() would add the hint a second time. */
		r = client_error_set(err, CERTAGENT_E_AGENT_NOT_RUNNING,
				     "certagentd is not running on the session bus (no owner of "
				     "%s, and D-Bus activation failed: %s): " NOT_RUNNING_HINT,
				     CA_BUS_NAME, derr.message ? derr.message : derr.name);
		if (err)
			snprintf(err->dbus_name, sizeof(err->dbus_name), "%s", derr.name);
	} else {
		r = error_from_dbus(err, &derr);
	}
	dbus_error_free(&derr);
	return r;
}

_public_ int certagent_client_new(const char *address, certagent_client **ret, certagent_error *err)
{
	_cleanup_free_ char *addr = NULL;
	certagent_client *c;
	DBusError derr;
	int r;

	if (!ret)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS, "ret must not be NULL");
	r = bus_address(address, &addr, err);
	if (r < 0)
		return r;

	/* libdbus locks only when told to; the application may use other clients in threads. */
	dbus_threads_init_default();

	c = calloc(1, sizeof(*c));
	if (!c)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	c->timeout_ms = CA_DEFAULT_TIMEOUT_MS;
	c->channel_fd = -1;
	reply_wait_init(&c->reply_wait);
	client_clear_error(c);

	dbus_error_init(&derr);
	c->conn = dbus_connection_open_private(addr, &derr);
	if (!c->conn) {
		r = client_error_set(err, CERTAGENT_E_AGENT_NOT_RUNNING,
				     "cannot connect to the session bus at %s (%s): is a session "
				     "bus running? certagentd needs one",
				     addr, derr.message);
		dbus_error_free(&derr);
		free(c);
		return r;
	}
	dbus_connection_set_exit_on_disconnect(c->conn, FALSE);
	if (!dbus_bus_register(c->conn, &derr)) {
		r = client_error_set(err, CERTAGENT_E_AGENT_NOT_RUNNING,
				     "cannot register with the session bus at %s (%s)", addr,
				     derr.message);
		dbus_error_free(&derr);
		certagent_client_free(c);
		return r;
	}

	/* Hear when the identities change or the agent restarts, so the cache never goes stale. */
	dbus_bus_add_match(c->conn,
			   "type='signal',sender='" CA_BUS_NAME "',interface='" CA_INTERFACE
			   "',member='IdentitiesChanged'",
			   NULL);
	dbus_bus_add_match(c->conn,
			   "type='signal',sender='" DBUS_SERVICE_DBUS
			   "',interface='" DBUS_INTERFACE_DBUS
			   "',member='NameOwnerChanged',arg0='" CA_BUS_NAME "'",
			   NULL);

	r = client_ping(c, err);
	if (r < 0) {
		certagent_client_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

_public_ void certagent_client_free(certagent_client *c)
{
	if (!c)
		return;
	if (c->conn) {
		dbus_connection_close(c->conn);
		dbus_connection_unref(c->conn);
	}
	certagent_identity_list_free(c->cache);
	client_channel_free(c);
	c->creds = cred_context_free_all(c->creds);
	free(c->last_identity);
	explicit_bzero(&c->last_error, sizeof(c->last_error));
	free(c);
}

_public_ void certagent_client_set_timeout(certagent_client *c, int timeout_ms)
{
	if (c)
		c->timeout_ms = timeout_ms > 0 ? timeout_ms : CA_DEFAULT_TIMEOUT_MS;
}

_public_ void certagent_client_set_observer(certagent_client *c, certagent_observer_fn fn,
					    void *userdata)
{
	if (!c)
		return;
	c->observer = fn;
	c->observer_data = fn ? userdata : NULL;
}

void client_notify(certagent_client *c, certagent_event *ev)
{
	if (!c->observer)
		return;
	ev->version = CERTAGENT_API_VERSION;
	c->observer(ev, c->observer_data);
}

_public_ const char *certagent_client_last_identity(const certagent_client *c)
{
	return c ? c->last_identity : NULL;
}

_public_ const certagent_error *certagent_client_last_error(const certagent_client *c)
{
	return c && c->has_last_error ? &c->last_error : NULL;
}

_public_ int certagent_list_identities(certagent_client *c, certagent_identity_list **ret,
				       certagent_error *err)
{
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	int r;

	if (!c || !ret)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client and ret must not be NULL");
	msg = method_new("ListIdentities");
	if (!msg)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_call(c, msg, &reply, err);
	if (r < 0)
		return r;
	return identity_list_from_reply(reply, ret, err);
}

int client_identities(certagent_client *c, bool refresh, const certagent_identity_list **ret,
		      certagent_error *err)
{
	certagent_identity_list *l;
	int r;

	client_dispatch_signals(c);
	if (refresh || !c->cache) {
		r = certagent_list_identities(c, &l, err);
		if (r < 0)
			return r;
		certagent_identity_list_free(c->cache);
		c->cache = l;
	}
	*ret = c->cache;
	return 0;
}

/* Appends {"server-certificates": <aay>} with at most CA_MAX_CERTS certificates. */
static bool append_server_certs(DBusMessageIter *opts, const gnutls_datum_t *certs, size_t n)
{
	DBusMessageIter entry, var, arr, bytes;
	const char *key = "server-certificates";

	if (n > CA_MAX_CERTS)
		n = CA_MAX_CERTS;
	if (!dbus_message_iter_open_container(opts, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
	    !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) ||
	    !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "aay", &var) ||
	    !dbus_message_iter_open_container(&var, DBUS_TYPE_ARRAY, "ay", &arr))
		return false;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = certs[i].data;

		if (certs[i].size > CA_MAX_CERT_SIZE)
			break; /* the agent would refuse the whole call: send the chain up to here
				*/
		if (!dbus_message_iter_open_container(&arr, DBUS_TYPE_ARRAY, "y", &bytes) ||
		    !dbus_message_iter_append_fixed_array(&bytes, DBUS_TYPE_BYTE, &p,
							  (int)certs[i].size) ||
		    !dbus_message_iter_close_container(&arr, &bytes))
			return false;
	}
	return dbus_message_iter_close_container(&var, &arr) &&
	       dbus_message_iter_close_container(&entry, &var) &&
	       dbus_message_iter_close_container(opts, &entry);
}

_public_ int certagent_sign(certagent_client *c, const char *identity_uri, const char *scheme,
			    const void *data, size_t len, const char *server_name,
			    gnutls_datum_t *ret_sig, certagent_error *err)
{
	return client_sign(c, identity_uri, scheme, data, len, server_name, NULL, 0, ret_sig, err);
}

int client_sign(certagent_client *c, const char *identity_uri, const char *scheme, const void *data,
		size_t len, const char *server_name, const gnutls_datum_t *server_certs,
		size_t n_server_certs, gnutls_datum_t *ret_sig, certagent_error *err)
{
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	DBusMessageIter it, opts, entry, var;
	IpcSignCall call = {0};
	const uint8_t *sig;
	DBusError derr;
	int n, r;

	if (!c || !identity_uri || !scheme || !data || !ret_sig)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client, identity, scheme, data and ret_sig must be given");
	if (len == 0 || len > CA_MAX_SIGN_DATA)
		return client_error_set(err, CERTAGENT_E_TOO_LARGE,
					"data to sign must be 1 to %d bytes, not %zu",
					CA_MAX_SIGN_DATA, len);
	/* What the bus would refuse to carry, refused the same way on the channel. */
	if (!dbus_validate_utf8(identity_uri, NULL) || !dbus_validate_utf8(scheme, NULL))
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"the identity URI and the scheme must be valid UTF-8");
	if (server_name && *server_name && !dbus_validate_utf8(server_name, NULL))
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"the server name is not valid UTF-8");

	/* The signing channel when the agent offers it: no D-Bus message is built at all. */
	call.uri = identity_uri;
	call.scheme = scheme;
	call.data = data;
	call.data_len = len;
	call.server_name = server_name && *server_name ? server_name : NULL;
	for (size_t i = 0; i < n_server_certs && i < CA_MAX_CERTS; i++) {
		if (server_certs[i].size > CA_MAX_CERT_SIZE)
			break; /* as append_server_certs: the chain up to here */
		call.server_certs[call.n_server_certs++] = server_certs[i];
	}
	r = client_channel_sign(c, &call, ret_sig, err);
	if (r <= 0)
		return r;

	msg = method_new("Sign");
	if (!msg)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	dbus_message_iter_init_append(msg, &it);
	if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &identity_uri) ||
	    !dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &scheme))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	{
		DBusMessageIter arr;
		const uint8_t *p = data;

		if (!dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "y", &arr) ||
		    !dbus_message_iter_append_fixed_array(&arr, DBUS_TYPE_BYTE, &p, (int)len) ||
		    !dbus_message_iter_close_container(&it, &arr))
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	}
	if (!dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &opts))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	if (server_name && *server_name) {
		const char *key = "server-name";

		if (!dbus_message_iter_open_container(&opts, DBUS_TYPE_DICT_ENTRY, NULL, &entry) ||
		    !dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) ||
		    !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, "s", &var) ||
		    !dbus_message_iter_append_basic(&var, DBUS_TYPE_STRING, &server_name) ||
		    !dbus_message_iter_close_container(&entry, &var) ||
		    !dbus_message_iter_close_container(&opts, &entry))
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	}
	if (n_server_certs && !append_server_certs(&opts, server_certs, n_server_certs))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	if (!dbus_message_iter_close_container(&it, &opts))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");

	/* No channel (or it cannot take this request): the bus. */
	r = client_call(c, msg, &reply, err);
	if (r < 0)
		return r;

	dbus_error_init(&derr);
	if (!dbus_message_get_args(reply, &derr, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &sig, &n,
				   DBUS_TYPE_INVALID)) {
		r = client_error_set(err, CERTAGENT_E_FAILED,
				     "certagentd sent a malformed Sign reply (%s)", derr.message);
		dbus_error_free(&derr);
		return r;
	}
	if (n <= 0 || n > CA_MAX_SIGN_DATA)
		return client_error_set(err, CERTAGENT_E_FAILED,
					"certagentd sent a signature of %d bytes", n);
	ret_sig->data = gnutls_malloc(n);
	if (!ret_sig->data)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	memcpy(ret_sig->data, sig, n);
	ret_sig->size = n;
	return 0;
}

_public_ int certagent_unlock(certagent_client *c, const char *token_uri, const char *pin,
			      certagent_error *err)
{
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	int r;

	if (!c || !token_uri || !pin)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client, token URI and PIN must be given");
	if (!dbus_validate_utf8(token_uri, NULL) || !dbus_validate_utf8(pin, NULL))
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"the token URI and the PIN must be valid UTF-8");
	msg = method_new("Unlock");
	if (!msg || !dbus_message_append_args(msg, DBUS_TYPE_STRING, &token_uri, DBUS_TYPE_STRING,
					      &pin, DBUS_TYPE_INVALID))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_call(c, msg, &reply, err);
	/* The message held the PIN; libdbus frees it without wiping, so wipe its body now. */
	{
		DBusMessageIter it;
		const char *s;

		if (dbus_message_iter_init(msg, &it) && dbus_message_iter_next(&it) &&
		    dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_STRING) {
			dbus_message_iter_get_basic(&it, &s);
			explicit_bzero((char *)s, strlen(s));
		}
	}
	if (r < 0)
		return r;
	/* A login changes what the agent can do: list again next time. */
	c->cache = (certagent_identity_list_free(c->cache), NULL);
	return 0;
}

/* Calls a method with no arguments and no answer (Lock, Reload). */
static int client_call_void(certagent_client *c, const char *member, certagent_error *err)
{
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	int r;

	if (!c)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS, "no client given");
	msg = method_new(member);
	if (!msg)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_call(c, msg, &reply, err);
	if (r < 0)
		return r;
	/* Logins or tokens changed: list again next time. */
	c->cache = (certagent_identity_list_free(c->cache), NULL);
	return 0;
}

_public_ int certagent_lock(certagent_client *c, certagent_error *err)
{
	return client_call_void(c, "Lock", err);
}

_public_ int certagent_reload(certagent_client *c, certagent_error *err)
{
	return client_call_void(c, "Reload", err);
}

_public_ int certagent_reload_policy(certagent_client *c, certagent_error *err)
{
	return client_call_void(c, "ReloadPolicy", err);
}
