/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * methods: org.certagent.Agent1 — the method table, argument checks, and the requests handed
 * to the workers. Every size a caller controls is checked against its IPC_* cap before
 * anything is copied. A request owns copies of its arguments (the message's strings die with
 * it); the PIN of Unlock is wiped in the message and in our copy.
 *
 * The one place that decides "login needed -> ask the user -> log in -> sign": a Sign (or an
 * Unlock without PIN) whose token needs a PIN parks on the prompter (prompt.c) instead of
 * holding its worker, and comes back to a worker once the prompt is over, to sign once more
 * (never more than once per kind of prompt) or to report what the prompt ended with.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appinfo.h"
#include "channel.h"
#include "config.h" /* the build's: CERTAGENT_VERSION */
#include "log.h"
#include "prompt.h"
#include "policy.h"
#include "server.h"

typedef enum RequestKind {
	REQUEST_SIGN,
	REQUEST_UNLOCK,
	REQUEST_LOCK,
	REQUEST_RELOAD,
	REQUEST_RELOAD_POLICY, /* the policy part of RELOAD only: tokens and logins stay */
	REQUEST_REFRESH,       /* internal: list the store again (after an idle logout) */
} RequestKind;

typedef struct Request {
	WorkerJob job; /* first: a WorkerJob * is a Request * */
	Server *server;
	RequestKind kind;
	DBusMessage *msg; /* main thread only; NULL for internal requests */
	char *sender;
	pid_t pid;
	uint64_t start_usec;

	/* arguments */
	char *uri; /* identity (Sign) or token (Unlock) */
	const CaScheme *scheme;
	uint8_t *data;
	size_t data_len;
	char *server_name;
	char *pin; /* Unlock's PIN, or a per-signature PIN from a prompt; wiped after use */
	size_t pin_len;
	bool refresh;	/* list the store again after running */
	bool untracked; /* submitted from another thread: not counted in server->pending */

	/* prompting (prompt.c): the request is parked there while a prompt runs */
	PromptWaiter waiter;
	bool prompted_login, prompted_signature; /* each kind of prompt at most once */
	bool finished; /* the prompt decided the outcome: run() only lists */

	/* policy.c: the Sign's policy decision, confirmation and audit line */
	PolicyTicket *ticket;
	/* Reload: the policy read from the configuration; methods_complete swaps it in */
	Policy *policy;

	/* The signing channel the Sign came on (channel.h), which gets the reply; NULL: bus. */
	Channel *channel;

	/* results */
	int r;
	CaError err;
	uint8_t *sig;
	size_t sig_len;
	StoreSignInfo info;
	bool changed;
	uint64_t list_seq;
	StoreIdentityList *identities;
	StoreTokenList *tokens;
} Request;

static Request *request_free(Request *q)
{
	if (!q)
		return NULL;
	if (q->msg)
		dbus_message_unref(q->msg);
	free(q->sender);
	free(q->uri);
	erase_and_free(q->data, q->data_len);
	free(q->server_name);
	erase_and_free(q->pin, q->pin_len);
	erase_and_free(q->sig, q->sig_len);
	store_identity_list_free(q->identities);
	store_token_list_free(q->tokens);
	policy_ticket_free(q->ticket);
	policy_unref(q->policy);
	if (q->channel)
		channel_drop(q->channel); /* never answered: the channel closes */
	free(q);
	return NULL;
}

static void request_freep(Request **q)
{
	request_free(*q);
}
#define _cleanup_request_ _cleanup_(request_freep)

/* Set once by main() before the loop runs; NULL when prompting is off. */
static Prompter *methods_prompter;

void methods_set_prompter(Prompter *p)
{
	methods_prompter = p;
}

/* ---- on the prompt thread ---- */

static void request_prompt_done(PromptWaiter *w, int r, const CaError *err, char *pin,
				size_t pin_len)
{
	Request *q = (Request *)((char *)w - offsetof(Request, waiter));
	Server *s = q->server;

	erase_and_free(q->pin, q->pin_len);
	q->pin = pin; /* a per-signature PIN, for the one signature it was asked for */
	q->pin_len = pin_len;
	q->err = (CaError){0};
	q->r = r;
	if (r)
		q->err = *err;
	/* An Unlock is done when the prompt is; a Sign signs again (or reports the failure). */
	q->finished = r != 0 || q->kind != REQUEST_SIGN;
	worker_pool_submit(q->kind == REQUEST_SIGN ? s->sign_pool : s->control_pool, &q->job);
}

/* ---- on a worker thread ---- */

/*
 * q met CA_E_PIN_REQUIRED: hands it to the prompter. Returns true when it is parked there
 * (the worker must forget it); false to finish with q->r/q->err as they are (prompting is
 * off, this kind of prompt already happened, or the token refuses a try: PinLocked).
 */
static bool request_prompt(Request *q)
{
	StorePinRequest need = {0};
	CaError err = {0};
	AppInfo app;
	char app_text[APPINFO_FIELD_MAX * 3 + 96];
	PromptAsk ask;
	bool parked;
	int r;

	if (!methods_prompter)
		return false;
	r = store_pin_request(q->server->store, q->uri, q->kind == REQUEST_SIGN, &need, &err);
	if (r) {
		/* The policy refuses a try (final try, locked) or the token left. */
		q->r = r;
		q->err = err;
		return false;
	}
	if (need.per_signature ? q->prompted_signature : q->prompted_login) {
		store_pin_request_clear(&need);
		return false;
	}
	if (need.per_signature)
		q->prompted_signature = true;
	else
		q->prompted_login = true;
	appinfo_read(q->pid, &app);
	appinfo_describe(&app, app_text, sizeof(app_text));
	ask = (PromptAsk){
		.need = &need,
		.app = app_text,
		.server_name = q->server_name,
		.unlock = q->kind == REQUEST_UNLOCK,
	};
	q->waiter.done = request_prompt_done;
	worker_job_detach();
	parked = prompt_login(methods_prompter, &ask, &q->waiter);
	if (!parked)
		worker_job_attach();
	store_pin_request_clear(&need);
	return parked;
}

/* Reload, on the control thread: the [policy] sections and audit-* keys read again. */
static int methods_read_policy(Server *s, Policy **ret, CaError *err)
{
	PolicyConfig cfg;
	Policy *old;
	int r;

	policy_config_init(&cfg);
	r = settings_reload_policy(s->settings, &cfg, err);
	if (r == 0) {
		/* The main thread may be swapping in the previous Reload's policy right now. */
		pthread_rwlock_rdlock(&s->snapshot_lock);
		old = policy_ref(s->policy);
		pthread_rwlock_unlock(&s->snapshot_lock);
		r = policy_new_reloaded(old, &cfg, ret, err);
		policy_unref(old);
	}
	policy_config_deinit(&cfg);
	return r;
}

static void request_run(WorkerJob *job)
{
	Request *q = (Request *)job;
	Store *store = q->server->store;

	switch (q->kind) {
	case REQUEST_SIGN:
		/* A policy confirmation first (asked once; a refusal is the outcome). */
		if (!q->finished && (q->r = policy_ticket_confirm(q->ticket, &q->err)))
			q->finished = true;
		if (!q->finished) {
			if (q->pin)
				q->r = store_sign_pin(store, q->uri, q->scheme, q->data,
						      q->data_len, q->pin, q->pin_len, &q->sig,
						      &q->sig_len, &q->info, &q->err);
			else
				q->r = store_sign(store, q->uri, q->scheme, q->data, q->data_len,
						  &q->sig, &q->sig_len, &q->info, &q->err);
			q->pin = erase_and_free(q->pin, q->pin_len);
			q->pin_len = 0;
			if (q->r == CA_E_PIN_REQUIRED && request_prompt(q))
				return; /* parked: the prompt thread submits it again */
		}
		/* A pin source or a prompt may have logged the token in. */
		if (q->refresh || q->prompted_login)
			q->list_seq = server_take_listing(q->server, &q->identities, &q->tokens);
		return;
	case REQUEST_UNLOCK:
		if (q->finished)
			break;
		if (q->pin) {
			q->r = store_unlock(store, q->uri, q->pin, q->pin_len, &q->err);
		} else {
			q->r = ca_error_set(&q->err, CA_E_PIN_REQUIRED,
					    "no PIN given and no PIN prompt configured (pinentry = "
					    "none): pass the PIN (certagent unlock reads it from a "
					    "file or the terminal)");
			if (request_prompt(q))
				return;
		}
		erase_and_free(q->pin, q->pin_len);
		q->pin = NULL;
		q->pin_len = 0;
		break;
	case REQUEST_REFRESH:
		q->r = 0;
		break;
	case REQUEST_LOCK:
		q->r = store_lock(store);
		/* An absent (or never initialised) token has no login to drop. */
		if (q->r == CA_E_TOKEN_ABSENT)
			q->r = 0;
		else if (q->r)
			ca_error_set(&q->err, q->r,
				     "could not log out of every token (%s); the PINs are "
				     "forgotten anyway: run `certagent reload` to start afresh",
				     q->r < 0 ? "error" : ca_error_name(q->r));
		break;
	case REQUEST_RELOAD:
		/* The configuration first: one that does not load changes nothing at all. */
		q->r = methods_read_policy(q->server, &q->policy, &q->err);
		if (q->r == 0)
			q->r = store_reload(store, &q->changed, &q->err);
		break;
	case REQUEST_RELOAD_POLICY:
		q->r = methods_read_policy(q->server, &q->policy, &q->err);
		break;
	}
	/* Whatever happened, show the state as it is now. */
	q->list_seq = server_take_listing(q->server, &q->identities, &q->tokens);
}

/* ---- on the main thread ---- */

static Request *request_new(Server *s, RequestKind kind, DBusMessage *msg)
{
	Request *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->job.run = request_run;
	q->server = s;
	q->kind = kind;
	q->start_usec = ca_now_usec();
	if (msg) {
		q->msg = dbus_message_ref(msg);
		q->sender =
			strdup(dbus_message_get_sender(msg) ? dbus_message_get_sender(msg) : "?");
		if (!q->sender)
			return request_free(q);
	}
	return q;
}

/* Counts the request against its caller's and the global cap, then queues it. */
static int request_submit(Server *s, Request *q, WorkerPool *pool, CaError *err)
{
	Caller *c = q->sender ? caller_find(&s->callers, q->sender) : NULL;

	if (s->pending >= SERVER_PENDING_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "the agent has %d requests in flight; try again later",
				    SERVER_PENDING_MAX);
	if (c && c->pending >= CALLER_PENDING_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "%s already has %d requests in flight; wait for their replies",
				    q->sender, CALLER_PENDING_MAX);
	if (c) {
		c->pending++;
		q->pid = c->pid;
	}
	s->pending++;
	worker_pool_submit(pool, &q->job);
	return 0;
}

/*
 * The listed identity uri names: the URI ListIdentities gave by strcmp, or a shorter one
 * (pkcs11:token=demo;object=client) that names exactly one. Finding none makes the Sign list
 * the tokens again after it ran (a token that came since), so a hand-written URI must not
 * land here every time.
 */
static const StoreIdentity *snapshot_identity(Server *s, const char *uri)
{
	const char *full = policy_resolve(s->identities, uri);

	for (size_t i = 0; full && i < s->identities->n; i++)
		if (s->identities->items[i].uri == full)
			return &s->identities->items[i];
	return NULL;
}

/* "a, b, c" of the schemes an identity can do (or all we know), for error messages. */
static void schemes_text(const StoreIdentity *id, char *buf, size_t size)
{
	size_t n = 0, len = 0;
	const CaScheme *all = ca_scheme_table(&n);

	buf[0] = 0;
	for (size_t i = 0; i < (id ? id->n_schemes : n); i++) {
		const char *name = id ? id->schemes[i]->name : all[i].name;
		int w = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", name);

		if (w < 0 || (size_t)w >= size - len)
			break;
		len += (size_t)w;
	}
	if (!buf[0])
		snprintf(buf, size, "none");
}

static bool uri_ok(const char *uri)
{
	return strncmp(uri, "pkcs11:", 7) == 0;
}

/* Appends item i of a list as one a{sv}; false when out of memory. */
typedef bool (*MethodDictFn)(const void *items, size_t i, DBusMessageIter *dict);

/* The aa{sv} reply of a List method: one dict per item, written by append. */
static int method_reply_dict_list(DBusMessage *msg, const void *items, size_t n,
				  MethodDictFn append, DBusMessage **ret_reply)
{
	DBusMessage *reply = dbus_message_new_method_return(msg);
	DBusMessageIter iter, array;
	bool ok;

	if (!reply)
		return -ENOMEM;
	dbus_message_iter_init_append(reply, &iter);
	ok = dbus_message_iter_open_container(&iter, DBUS_TYPE_ARRAY, "a{sv}", &array);
	for (size_t i = 0; ok && i < n; i++) {
		DBusMessageIter dict;

		ok = ipc_dict_open(&array, &dict);
		if (!ok)
			break;
		ok = append(items, i, &dict);
		if (!ok) {
			dbus_message_iter_abandon_container(&array, &dict);
			break;
		}
		ok = ipc_dict_close(&array, &dict);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(&iter, &array);
		dbus_message_unref(reply);
		return -ENOMEM;
	}
	if (!dbus_message_iter_close_container(&iter, &array)) {
		dbus_message_unref(reply);
		return -ENOMEM;
	}
	*ret_reply = reply;
	return 0;
}

static bool method_identity_dict(const void *items, size_t i, DBusMessageIter *dict)
{
	const StoreIdentity *id = &((const StoreIdentity *)items)[i];
	const char *schemes[IPC_SCHEMES_MAX];
	size_t n_schemes = 0;

	for (size_t j = 0; j < id->n_schemes && n_schemes < IPC_SCHEMES_MAX; j++)
		schemes[n_schemes++] = id->schemes[j]->name;
	return ipc_dict_append_string(dict, "uri", id->uri) &&
	       ipc_dict_append_string(dict, "label", id->label) &&
	       ipc_dict_append_string(dict, "token", id->token_uri) &&
	       ipc_dict_append_string(dict, "token-label", id->token_label) &&
	       ipc_dict_append_string(dict, "module", id->module) &&
	       ipc_dict_append_string(dict, "key-type", ca_key_type_name(id->key_type)) &&
	       ipc_dict_append_u32(dict, "bits", id->bits) &&
	       ipc_dict_append_strv(dict, "schemes", schemes, n_schemes) &&
	       ipc_dict_append_bytes_array(dict, "certificates", id->certs,
					   id->n_certs < IPC_CERTS_MAX ? id->n_certs
								       : IPC_CERTS_MAX) &&
	       ipc_dict_append_bool(dict, "logged-in", id->logged_in) &&
	       ipc_dict_append_bool(dict, "always-authenticate", id->always_authenticate);
}

static int method_list_identities(void *userdata, DBusMessage *msg, DBusMessage **ret_reply,
				  CaError *err)
{
	Server *s = userdata;

	return method_reply_dict_list(msg, s->identities ? s->identities->items : NULL,
				      s->identities ? s->identities->n : 0, method_identity_dict,
				      ret_reply);
}

static bool method_token_dict(const void *items, size_t i, DBusMessageIter *dict)
{
	const StoreToken *t = &((const StoreToken *)items)[i];

	return ipc_dict_append_string(dict, "uri", t->uri) &&
	       ipc_dict_append_string(dict, "label", t->label) &&
	       ipc_dict_append_string(dict, "serial", t->serial) &&
	       ipc_dict_append_string(dict, "manufacturer", t->manufacturer) &&
	       ipc_dict_append_string(dict, "model", t->model) &&
	       ipc_dict_append_string(dict, "module", t->module) &&
	       ipc_dict_append_string(dict, "module-path", t->module_path) &&
	       ipc_dict_append_u64(dict, "slot-id", t->slot_id) &&
	       ipc_dict_append_u64(dict, "flags", t->flags) &&
	       ipc_dict_append_bool(dict, "logged-in", t->logged_in);
}

static int method_list_tokens(void *userdata, DBusMessage *msg, DBusMessage **ret_reply,
			      CaError *err)
{
	Server *s = userdata;

	return method_reply_dict_list(msg, s->tokens ? s->tokens->items : NULL,
				      s->tokens ? s->tokens->n : 0, method_token_dict, ret_reply);
}

static void policy_ticket_freep(PolicyTicket **t)
{
	policy_ticket_free(*t);
}

/*
 * The arguments of a Sign from the bus (signature ssaya{sv}, checked by the dispatcher), with
 * the options server-name (s) and server-certificates (aay). Returns 0, CA_E_INVALID_ARGS or
 * CA_E_TOO_LARGE (a malformed option, as ipc_dict_read), -ENOMEM. Also on failure the
 * arguments read so far stay set (uri and scheme always, for the audit line); call
 * sign_call_clear() either way.
 */
static int sign_call_from_message(DBusMessage *msg, IpcSignCall *ret, CaError *err)
{
	const IpcDictField options[] = {
		{"server-name", IPC_DICT_STRING, &ret->server_name, IPC_SERVER_NAME_MAX},
		{"server-certificates", IPC_DICT_BYTES_ARRAY, &ret->owned_certs, IPC_CERTS_MAX,
		 IPC_CERT_MAX},
	};
	DBusMessageIter iter, bytes;
	const unsigned char *data;
	int len, r;

	*ret = (IpcSignCall){0};
	if (!dbus_message_iter_init(msg, &iter) || !dbus_message_has_signature(msg, "ssaya{sv}"))
		return ca_error_set(err, CA_E_INVALID_ARGS, "Sign expects (ssaya{sv})");
	dbus_message_iter_get_basic(&iter, &ret->uri);
	dbus_message_iter_next(&iter);
	dbus_message_iter_get_basic(&iter, &ret->scheme);
	dbus_message_iter_next(&iter);
	dbus_message_iter_recurse(&iter, &bytes);
	dbus_message_iter_get_fixed_array(&bytes, &data, &len);
	ret->data = data;
	ret->data_len = len > 0 ? (size_t)len : 0;
	dbus_message_iter_next(&iter);
	r = ipc_dict_read(&iter, options, ELEMENTSOF(options), IPC_OPTIONS_MAX, err);
	if (r)
		return r;
	for (size_t i = 0; i < ret->owned_certs.n && i < IPC_CERTS_MAX; i++)
		ret->server_certs[ret->n_server_certs++] = ret->owned_certs.items[i];
	return 0;
}

static void sign_call_clear(IpcSignCall *call)
{
	ipc_bytes_array_clear(&call->owned_certs);
	*call = (IpcSignCall){0};
}

/*
 * The one Sign path, for the bus and the signing channel alike: every check of the arguments
 * (call: read from the bus message msg, or from a channel frame with msg NULL), then the
 * policy, then a Request ready to run. sender, app: the caller (bus name; program from its
 * pid, read once per caller). Reads the identity snapshot: on the main thread, or under
 * s->snapshot_lock.
 */
static int sign_prepare(Server *s, DBusMessage *msg, const IpcSignCall *call, const char *sender,
			const AppInfo *app, Request **ret, CaError *err)
{
	_cleanup_request_ Request *q = NULL;
	_cleanup_(policy_ticket_freep) PolicyTicket *ticket = NULL;
	const char *uri = call->uri;
	size_t uri_len = strlen(uri), len = call->data_len;
	const StoreIdentity *id;
	const CaScheme *scheme;
	int r;

	if (uri_len > IPC_URI_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "the identity URI is %zu bytes; at most %d are accepted",
				    uri_len, IPC_URI_MAX);
	if (!uri_ok(uri))
		return ca_error_set(
			err, CA_E_INVALID_ARGS,
			"the identity must be a pkcs11: URI as ListIdentities gives it, "
			"not \"%.64s\"",
			uri);
	id = snapshot_identity(s, uri);
	scheme = strlen(call->scheme) <= IPC_SCHEME_MAX ? ca_scheme_by_name(call->scheme) : NULL;
	if (!scheme) {
		char known[512];

		schemes_text(id, known, sizeof(known));
		return ca_error_set(err, CA_E_UNSUPPORTED_SCHEME,
				    "unknown scheme \"%.64s\"; %s: %s", call->scheme,
				    id ? "this identity can do" : "known schemes are", known);
	}
	if (len > IPC_SIGN_DATA_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "data to sign is %zu bytes; at most %d are accepted", len,
				    IPC_SIGN_DATA_MAX);
	r = ca_scheme_check_input(scheme, call->data, len, err);
	if (r)
		return r;
	/* The caps of the options, as ipc_dict_read applies them on the bus. */
	if (call->server_name && strlen(call->server_name) > IPC_SERVER_NAME_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE, "\"server-name\" is longer than %d bytes",
				    IPC_SERVER_NAME_MAX);
	for (size_t i = 0; i < call->n_server_certs; i++)
		if (call->server_certs[i].size > IPC_CERT_MAX)
			return ca_error_set(err, CA_E_TOO_LARGE,
					    "\"server-certificates\" has an entry over %d bytes",
					    IPC_CERT_MAX);
	r = policy_sign_check(s->policy, call, sender, app, s->identities, &ticket, err);
	if (r)
		return r;

	q = request_new(s, REQUEST_SIGN, msg);
	if (!q)
		return -ENOMEM;
	if (!msg && !(q->sender = strdup(sender)))
		return -ENOMEM;
	q->ticket = TAKE_PTR(ticket);
	q->uri = strndup(uri, uri_len);
	q->scheme = scheme;
	q->data = malloc(len ? len : 1);
	q->data_len = len;
	q->server_name = call->server_name ? strdup(call->server_name) : NULL;
	if (!q->uri || !q->data || (call->server_name && !q->server_name))
		return -ENOMEM;
	memcpy(q->data, call->data, len);
	q->refresh = !id || !id->logged_in;
	q->pid = app->pid;
	*ret = TAKE_PTR(q);
	return 0;
}

/* A refused Sign is logged (and audited) like one the token answered (methods_complete). */
static void sign_refused(Server *s, const IpcSignCall *call, const char *sender, const AppInfo *app,
			 int r, CaError *err)
{
	log_info("sign: %s (pid %d): refused: %s: %s", sender ? sender : "?", (int)app->pid,
		 r < 0 ? "Failed" : ca_error_name(r),
		 err->message[0] ? err->message : strerror(r < 0 ? -r : EIO));
	policy_audit_refused(s->policy, call, sender, app, s->identities, r, err);
}

static int method_sign(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	Server *s = userdata;
	const char *sender = dbus_message_get_sender(msg);
	Caller *c = sender ? caller_find(&s->callers, sender) : NULL;
	AppInfo unknown = {0};
	/* Read from /proc on the caller's first Sign, then kept with its bus name. */
	const AppInfo *app = c ? caller_app(c, &unknown) : &unknown;
	_cleanup_request_ Request *q = NULL;
	IpcSignCall call;
	int r = sign_call_from_message(msg, &call, err);

	if (r == 0)
		r = sign_prepare(s, msg, &call, sender, app, &q, err);
	if (r == 0)
		r = request_submit(s, q, s->sign_pool, err);
	if (r == 0)
		TAKE_PTR(q);
	else
		sign_refused(s, &call, sender, app, r, err);
	sign_call_clear(&call);
	*ret_reply = NULL; /* methods_complete answers, or the dispatcher the error */
	return r;
}

/*
 * OpenChannel: a signing channel bound to this caller (channel.h). The dispatcher's policy
 * already checked the caller's uid; every Sign on the channel still goes through sign_prepare.
 */
static int method_open_channel(void *userdata, DBusMessage *msg, DBusMessage **ret_reply,
			       CaError *err)
{
	Server *s = userdata;
	const char *sender = dbus_message_get_sender(msg);
	Caller *c = sender ? caller_find(&s->callers, sender) : NULL;
	DBusMessage *reply;
	bool ok;
	int fd, r;

	if (!s->channels || !c)
		return ca_error_set(err, CA_E_FAILED, "signing channels are off; use Sign");
	if (!dbus_connection_can_send_type(s->conn, DBUS_TYPE_UNIX_FD))
		return ca_error_set(err, CA_E_FAILED,
				    "this bus connection cannot pass file descriptors; use Sign");
	r = channel_open(s->channels, sender, c->pid, &fd, err);
	if (r)
		return r;
	reply = dbus_message_new_method_return(msg);
	ok = reply && dbus_message_append_args(reply, DBUS_TYPE_UNIX_FD, &fd, DBUS_TYPE_INVALID);
	/* libdbus holds its own duplicate; without a reply our end sees EOF and closes. */
	close(fd);
	if (!ok) {
		if (reply)
			dbus_message_unref(reply);
		return -ENOMEM;
	}
	*ret_reply = reply;
	return 0;
}

static int method_unlock(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	Server *s = userdata;
	_cleanup_request_ Request *q = NULL;
	const char *token, *pin;
	size_t pin_len;
	int r;

	if (!dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &token, DBUS_TYPE_STRING, &pin,
				   DBUS_TYPE_INVALID))
		return ca_error_set(err, CA_E_INVALID_ARGS, "Unlock expects (ss)");
	pin_len = strlen(pin);
	if (pin_len > IPC_PIN_MAX)
		r = ca_error_set(err, CA_E_TOO_LARGE, "the PIN is longer than %d bytes",
				 IPC_PIN_MAX);
	else if (strlen(token) > IPC_URI_MAX)
		r = ca_error_set(err, CA_E_TOO_LARGE, "the token URI is longer than %d bytes",
				 IPC_URI_MAX);
	else if (!uri_ok(token))
		r = ca_error_set(err, CA_E_INVALID_ARGS,
				 "the token must be a pkcs11: URI (such as pkcs11:token=LABEL), "
				 "not \"%.64s\"",
				 token);
	else
		r = 0;
	if (r == 0) {
		/* An empty PIN: the agent asks the user (request_run). */
		q = request_new(s, REQUEST_UNLOCK, msg);
		if (!q || !(q->uri = strdup(token)))
			r = -ENOMEM;
		else if (pin_len > 0 && !(q->pin = malloc(pin_len + 1)))
			r = -ENOMEM;
		else if (pin_len > 0) {
			memcpy(q->pin, pin, pin_len + 1);
			q->pin_len = pin_len;
		}
	}
	/* Nothing reads the message's PIN after this: wipe libdbus's copy too (best effort). */
	if (pin && pin_len > 0) /* pin: keeps GCC -Wnonnull quiet under UBSan */
		explicit_bzero((char *)pin, pin_len);
	if (r)
		return r;
	r = request_submit(s, q, s->control_pool, err);
	if (r)
		return r;
	TAKE_PTR(q);
	*ret_reply = NULL;
	return 0;
}

static int method_simple(Server *s, RequestKind kind, DBusMessage *msg, CaError *err)
{
	_cleanup_request_ Request *q = request_new(s, kind, msg);
	int r;

	if (!q)
		return -ENOMEM;
	r = request_submit(s, q, s->control_pool, err);
	if (r)
		return r;
	TAKE_PTR(q);
	return 0;
}

static int method_lock(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	return method_simple(userdata, REQUEST_LOCK, msg, err);
}

static int method_reload(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	return method_simple(userdata, REQUEST_RELOAD, msg, err);
}

static int method_reload_policy(void *userdata, DBusMessage *msg, DBusMessage **ret_reply,
				CaError *err)
{
	return method_simple(userdata, REQUEST_RELOAD_POLICY, msg, err);
}

void methods_refresh_internal(void *server)
{
	Server *s = server;
	Request *q = request_new(s, REQUEST_REFRESH, NULL);

	if (!q) {
		log_warning("cannot refresh the identities: out of memory");
		return;
	}
	q->untracked = true;
	worker_pool_submit(s->control_pool, &q->job);
}

void methods_reload_internal(Server *s)
{
	CaError err = {0};

	if (method_simple(s, REQUEST_RELOAD, NULL, &err))
		log_warning("cannot reload: %s", err.message[0] ? err.message : "out of memory");
}

static bool property_version(void *userdata, DBusMessageIter *variant)
{
	const char *v = CERTAGENT_VERSION;

	return dbus_message_iter_append_basic(variant, DBUS_TYPE_STRING, &v);
}

static const IpcMethod agent_methods[] = {
	{"ListIdentities", "", "aa{sv}", method_list_identities, IPC_POLICY_OWNER},
	{"ListTokens", "", "aa{sv}", method_list_tokens, IPC_POLICY_OWNER},
	{"Sign", "ssaya{sv}", "ay", method_sign, IPC_POLICY_OWNER},
	{"OpenChannel", "", "h", method_open_channel, IPC_POLICY_OWNER},
	{"Unlock", "ss", "", method_unlock, IPC_POLICY_OWNER},
	{"Lock", "", "", method_lock, IPC_POLICY_OWNER},
	{"Reload", "", "", method_reload, IPC_POLICY_OWNER},
	{"ReloadPolicy", "", "", method_reload_policy, IPC_POLICY_OWNER},
};

static const IpcProperty agent_properties[] = {
	{"Version", "s", property_version, IPC_POLICY_ANYONE},
};

const IpcInterface methods_interface = {
	.name = IPC_INTERFACE,
	.methods = agent_methods,
	.n_methods = ELEMENTSOF(agent_methods),
	.properties = agent_properties,
	.n_properties = ELEMENTSOF(agent_properties),
};

/* ---- completion ---- */

static const char *kind_name(RequestKind k)
{
	static const char *const names[] = {
		[REQUEST_SIGN] = "sign",       [REQUEST_UNLOCK] = "unlock",
		[REQUEST_LOCK] = "lock",       [REQUEST_RELOAD] = "reload",
		[REQUEST_REFRESH] = "refresh", [REQUEST_RELOAD_POLICY] = "reload-policy",
	};
	return names[k];
}

static void request_log(const Request *q, uint64_t total_usec)
{
	char who[128];

	/* The audit log is the record of every signature; its log line is for debugging. */
	if (q->kind == REQUEST_SIGN && q->r == 0 && !log_enabled(LOG_LEVEL_DEBUG))
		return;

	if (q->sender && q->pid > 0)
		snprintf(who, sizeof(who), "%s (pid %d)", q->sender, (int)q->pid);
	else
		snprintf(who, sizeof(who), "%s", q->sender ? q->sender : "SIGHUP");

	if (q->kind == REQUEST_SIGN) {
		char server[IPC_SERVER_NAME_MAX + 16] = "";

		if (q->server_name)
			snprintf(server, sizeof(server), ", server %s", q->server_name);
		if (q->r == 0)
			log_debug("sign: %s: signed with token \"%s\" using %s in %.1f ms "
				  "(%.1f ms in all): identity %s, scheme %s%s",
				  who, q->info.token_label, q->info.mechanism,
				  (double)q->info.token_usec / 1000.0, (double)total_usec / 1000.0,
				  q->uri, q->scheme->name, server);
		else
			log_info(
				"sign: %s: failed after %.1f ms: %s: %s (identity %s, scheme %s%s)",
				who, (double)total_usec / 1000.0,
				q->job.cancelled ? "Cancelled" : ca_error_name(q->r),
				q->err.message, q->uri, q->scheme->name, server);
		return;
	}
	if (q->kind == REQUEST_REFRESH)
		return;
	/* Never the PIN: only the token and the outcome. */
	if (q->r == 0)
		log_info("%s: %s%s%s: done in %.1f ms", kind_name(q->kind), who,
			 q->uri ? ": token " : "", q->uri ? q->uri : "",
			 (double)total_usec / 1000.0);
	else
		log_info("%s: %s%s%s: %s: %s", kind_name(q->kind), who, q->uri ? ": token " : "",
			 q->uri ? q->uri : "", q->r < 0 ? "Failed" : ca_error_name(q->r),
			 q->err.message[0] ? q->err.message : strerror(q->r < 0 ? -q->r : EIO));
}

static DBusMessage *request_reply(Request *q)
{
	DBusMessage *reply;

	if (q->job.cancelled)
		return ipc_error_reply(q->msg, CA_E_CANCELLED,
				       "the agent is shutting down; try again when it is back");
	if (q->r != 0)
		return ipc_error_reply(q->msg, q->r, q->err.message);
	reply = dbus_message_new_method_return(q->msg);
	if (reply && q->kind == REQUEST_SIGN) {
		const unsigned char *p = q->sig;

		if (!dbus_message_append_args(reply, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &p,
					      (int)q->sig_len, DBUS_TYPE_INVALID)) {
			dbus_message_unref(reply);
			reply = NULL;
		}
	}
	return reply;
}

/* The answer of a Sign that came on a signing channel, on that channel. */
static void request_reply_channel(Request *q)
{
	Channel *ch = TAKE_PTR(q->channel);

	if (q->job.cancelled)
		channel_reply(ch, CA_E_CANCELLED,
			      "the agent is shutting down; try again when it is back", NULL, 0);
	else
		channel_reply(ch, q->r, q->err.message, q->sig, q->sig_len);
}

void methods_complete(Server *s, WorkerJob *job)
{
	_cleanup_request_ Request *q = (Request *)job;
	uint64_t total = ca_now_usec() - q->start_usec;

	if (q->job.cancelled) {
		q->r = CA_E_CANCELLED;
		ca_error_set(&q->err, CA_E_CANCELLED, "the agent is shutting down");
	}
	if (s->pending && !q->untracked)
		s->pending--;
	if (q->sender && !q->channel)
		caller_release(&s->callers, q->sender);
	/* The audit line before the reply: with audit-fail-closed no unlogged signature leaves. */
	if (q->kind == REQUEST_SIGN && q->ticket &&
	    policy_ticket_finish(q->ticket, q->scheme->name, q->r, &q->err, total, &q->err)) {
		q->r = CA_E_FAILED;
		q->sig = erase_and_free(q->sig, q->sig_len);
		q->sig_len = 0;
	}
	if (q->policy && !q->job.cancelled) {
		/* Reload: the signing channels check under the snapshot lock; tickets keep
		 * the policy that decided them (policy.h). */
		Policy *old = s->policy;

		pthread_rwlock_wrlock(&s->snapshot_lock);
		policy_carry_over(old, q->policy);
		s->policy = TAKE_PTR(q->policy);
		pthread_rwlock_unlock(&s->snapshot_lock);
		policy_unref(old);
	}
	request_log(q, total);
	if (q->identities || q->tokens) {
		server_apply_snapshot(s, q->list_seq, TAKE_PTR(q->identities), TAKE_PTR(q->tokens));
	}
	if (q->channel) {
		request_reply_channel(q);
	} else if (q->msg && !dbus_message_get_no_reply(q->msg)) {
		if (!ipc_send(s->conn, request_reply(q)))
			log_error("cannot answer %s: out of memory", q->sender);
	}
}

/* ---- the signing channel (channel.h) ---- */

void methods_channel_prepare(Server *s, Channel *ch, const char *uri)
{
	bool allowed;

	if (strlen(uri) > IPC_URI_MAX || !uri_ok(uri))
		return; /* the Sign that follows gets the error */
	pthread_rwlock_rdlock(&s->snapshot_lock);
	allowed = policy_prepare_allowed(s->policy, uri, channel_app(ch), s->identities);
	pthread_rwlock_unlock(&s->snapshot_lock);
	if (allowed)
		store_prepare_sign(s->store, uri);
}

void methods_channel_sign(Server *s, Channel *ch, const IpcSignCall *call)
{
	Request *q = NULL;
	CaError err = {0};
	uint64_t total;
	int r;

	pthread_rwlock_rdlock(&s->snapshot_lock);
	r = sign_prepare(s, NULL, call, channel_bus_name(ch), channel_app(ch), &q, &err);
	if (r)
		sign_refused(s, call, channel_bus_name(ch), channel_app(ch), r, &err);
	pthread_rwlock_unlock(&s->snapshot_lock);
	if (r) {
		channel_reply(ch, r, err.message, NULL, 0);
		return;
	}
	q->channel = ch;
	q->untracked = true; /* bounded by the channels: one request each */

	/* Run here, as a worker would: no hand-over in the common case. */
	worker_job_attach();
	request_run(&q->job);
	if (worker_job_detached())
		return; /* parked on a PIN prompt; it finishes through a worker and the main loop */
	if (q->identities || q->tokens) {
		/* What the agent lists changed: only the main thread applies that (and replies). */
		worker_pool_complete(s->sign_pool, &q->job);
		return;
	}
	/* methods_complete() without the main thread's parts (pending counts, snapshot). */
	total = ca_now_usec() - q->start_usec;
	if (q->ticket &&
	    policy_ticket_finish(q->ticket, q->scheme->name, q->r, &q->err, total, &q->err)) {
		q->r = CA_E_FAILED;
		q->sig = erase_and_free(q->sig, q->sig_len);
		q->sig_len = 0;
	}
	request_reply_channel(q);
	/* After the reply: the audit line above is the record; this one is for the journal. */
	request_log(q, total);
	request_free(q);
}
