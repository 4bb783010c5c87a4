/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * server: the main loop. Only this thread uses the DBusConnection: it reads and dispatches
 * requests, hands Sign to the signing pool and Unlock/Lock/Reload to the control thread, and
 * sends the replies when the eventfd says jobs finished. Listing is answered from a snapshot
 * the workers refresh, so no D-Bus call ever waits for a token.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "hotplug.h"
#include "log.h"
#include "server.h"

#define MATCH_NAME_OWNER_CHANGED                                                                   \
	"type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"            \
	"member='NameOwnerChanged',path='/org/freedesktop/DBus'"

/* The pid of the connection that owns name on the bus, or 0. */
static pid_t bus_owner_pid(DBusConnection *conn, const char *name)
{
	DBusError e = DBUS_ERROR_INIT;
	DBusMessage *call, *reply;
	const char *owner;
	dbus_uint32_t pid = 0;

	call = dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
					    "GetConnectionUnixProcessID");
	if (!call)
		return 0;
	/* The bus accepts a well-known name here and answers for its owner. */
	owner = name;
	if (!dbus_message_append_args(call, DBUS_TYPE_STRING, &owner, DBUS_TYPE_INVALID)) {
		dbus_message_unref(call);
		return 0;
	}
	reply = dbus_connection_send_with_reply_and_block(conn, call, 5000, &e);
	dbus_message_unref(call);
	if (!reply) {
		dbus_error_free(&e);
		return 0;
	}
	if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_UINT32, &pid, DBUS_TYPE_INVALID))
		pid = 0;
	dbus_message_unref(reply);
	return (pid_t)pid;
}

int server_connect(const char *address, DBusConnection **ret, CaError *err)
{
	DBusError e = DBUS_ERROR_INIT;
	DBusConnection *conn;
	int r;

	if (address) {
		conn = dbus_connection_open_private(address, &e);
		if (conn && !dbus_bus_register(conn, &e)) {
			dbus_connection_close(conn);
			dbus_connection_unref(conn);
			conn = NULL;
		}
	} else {
		conn = dbus_bus_get_private(DBUS_BUS_SESSION, &e);
	}
	if (!conn) {
		r = ca_error_set(err, CA_E_FAILED, "cannot connect to the %s: %s",
				 address ? address : "session bus",
				 e.message ? e.message : "unknown error");
		dbus_error_free(&e);
		return r;
	}
	dbus_connection_set_exit_on_disconnect(conn, FALSE);

	r = dbus_bus_request_name(conn, IPC_BUS_NAME, DBUS_NAME_FLAG_DO_NOT_QUEUE, &e);
	if (r != DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
		if (r < 0) {
			ca_error_set(err, CA_E_FAILED, "cannot own %s on the bus: %s", IPC_BUS_NAME,
				     e.message ? e.message : "unknown error");
		} else {
			pid_t pid = bus_owner_pid(conn, IPC_BUS_NAME);

			if (pid > 0)
				ca_error_set(err, CA_E_FAILED,
					     "another certagentd already owns %s on this bus "
					     "(pid %d)",
					     IPC_BUS_NAME, (int)pid);
			else
				ca_error_set(err, CA_E_FAILED,
					     "another certagentd already owns %s on this bus",
					     IPC_BUS_NAME);
		}
		dbus_error_free(&e);
		dbus_connection_close(conn);
		dbus_connection_unref(conn);
		return CA_E_FAILED;
	}
	*ret = conn;
	return 0;
}

/* The policy asked by the dispatcher before every handler. */
static int server_policy(void *userdata, DBusMessage *msg, unsigned flags, CaError *err)
{
	Server *s = userdata;
	const char *sender = dbus_message_get_sender(msg);
	Caller *c;
	int r;

	if (flags & IPC_POLICY_ANYONE)
		return 0;
	if (!(flags & IPC_POLICY_OWNER))
		return ca_error_set(err, CA_E_POLICY_DENIED, "%s is not callable",
				    dbus_message_get_member(msg));
	if (!sender)
		return ca_error_set(err, CA_E_POLICY_DENIED, "the caller has no bus name");
	r = caller_get(&s->callers, s->conn, sender, &c, err);
	if (r)
		return r;
	if (c->uid != s->uid)
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "%s runs as uid %u; this agent serves only uid %u", sender,
				    (unsigned)c->uid, (unsigned)s->uid);
	return 0;
}

/*
 * idle-exit: the poll timeout until the agent has had no call in flight and no token logged
 * in for idle-exit seconds (-1: never); sets quit when that time is up. Bus activation (or
 * systemd) starts the agent again on the next call.
 */
static int server_idle_ms(Server *s)
{
	uint64_t now = ca_now_usec(), end;
	bool busy = s->pending > 0;

	if (!s->settings->idle_exit)
		return -1;
	/* A Sign on a channel is a call too. */
	if (channel_server_last_use_usec(s->channels) > s->idle_since_usec)
		s->idle_since_usec = channel_server_last_use_usec(s->channels);
	for (size_t i = 0; !busy && s->tokens && i < s->tokens->n; i++)
		busy = s->tokens->items[i].logged_in;
	if (busy || !s->idle_since_usec)
		s->idle_since_usec = now;
	end = s->idle_since_usec + (uint64_t)s->settings->idle_exit * 1000000u;
	if (now >= end) {
		log_info("idle for %u s (no calls, no token logged in); exiting",
			 s->settings->idle_exit);
		s->quit = true;
		return 0;
	}
	return (int)((end - now + 999) / 1000);
}

static DBusHandlerResult server_filter(DBusConnection *conn, DBusMessage *msg, void *userdata)
{
	Server *s = userdata;

	if (dbus_message_get_type(msg) == DBUS_MESSAGE_TYPE_METHOD_CALL)
		s->idle_since_usec = ca_now_usec();

	if (dbus_message_is_signal(msg, DBUS_INTERFACE_LOCAL, "Disconnected")) {
		log_info("the bus connection closed; exiting");
		s->quit = true;
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (dbus_message_is_signal(msg, DBUS_INTERFACE_DBUS, "NameOwnerChanged")) {
		const char *name, *old_owner, *new_owner;
		const char *sender = dbus_message_get_sender(msg);

		if (sender && strcmp(sender, DBUS_SERVICE_DBUS) == 0 &&
		    dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING,
					  &old_owner, DBUS_TYPE_STRING, &new_owner,
					  DBUS_TYPE_INVALID) &&
		    name[0] == ':' && !new_owner[0]) {
			caller_gone(&s->callers, name);
			channel_server_caller_gone(s->channels, name);
		}
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	}
	return ipc_object_dispatch(&s->object, conn, msg);
}

uint64_t server_take_listing(Server *s, StoreIdentityList **ret_ids, StoreTokenList **ret_tokens)
{
	uint64_t seq = atomic_fetch_add(&s->list_seq, 1) + 1;
	CaError err = {0};

	*ret_ids = NULL;
	*ret_tokens = NULL;
	if (store_list_identities(s->store, ret_ids, &err) != 0) {
		log_warning("cannot list identities: %s", err.message);
		*ret_ids = NULL;
	}
	if (store_list_tokens(s->store, ret_tokens, &err) != 0) {
		log_warning("cannot list tokens: %s", err.message);
		*ret_tokens = NULL;
	}
	return seq;
}

static bool datum_equal(const gnutls_datum_t *a, const gnutls_datum_t *b)
{
	return a->size == b->size && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

static bool str_equal(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Whether a client would see a difference between the two lists. */
static bool identities_equal(const StoreIdentityList *a, const StoreIdentityList *b)
{
	if (!a || !b)
		return a == b;
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const StoreIdentity *x = &a->items[i], *y = &b->items[i];

		if (!str_equal(x->uri, y->uri) || !str_equal(x->label, y->label) ||
		    x->logged_in != y->logged_in || x->n_schemes != y->n_schemes ||
		    x->n_certs != y->n_certs)
			return false;
		for (size_t j = 0; j < x->n_schemes; j++)
			if (x->schemes[j] != y->schemes[j])
				return false;
		for (size_t j = 0; j < x->n_certs; j++)
			if (!datum_equal(&x->certs[j], &y->certs[j]))
				return false;
	}
	return true;
}

static void server_emit_identities_changed(Server *s)
{
	DBusMessage *sig =
		dbus_message_new_signal(IPC_OBJECT_PATH, IPC_INTERFACE, "IdentitiesChanged");

	if (!ipc_send(s->conn, sig))
		log_warning("cannot emit IdentitiesChanged: out of memory");
	else
		log_debug("emitted IdentitiesChanged");
}

void server_apply_snapshot(Server *s, uint64_t seq, StoreIdentityList *ids, StoreTokenList *tokens)
{
	bool changed;

	if (seq <= s->snapshot_seq || !ids || !tokens) {
		/* Older than what we show, or incomplete: keep what we have. */
		store_identity_list_free(ids);
		store_token_list_free(tokens);
		return;
	}
	/* The first snapshot is no change: nobody has seen a list yet. */
	changed = s->identities && !identities_equal(s->identities, ids);
	pthread_rwlock_wrlock(&s->snapshot_lock);
	store_identity_list_free(s->identities);
	store_token_list_free(s->tokens);
	s->identities = ids;
	s->tokens = tokens;
	pthread_rwlock_unlock(&s->snapshot_lock);
	s->snapshot_seq = seq;
	if (changed) {
		log_info("identities changed: %zu identities on %zu tokens", ids->n, tokens->n);
		server_emit_identities_changed(s);
	}
}

static int server_open_fds(Server *s, CaError *err)
{
	sigset_t mask;

	s->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->event_fd < 0)
		return ca_error_set(err, CA_E_FAILED, "cannot create an eventfd: %m");
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	s->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->signal_fd < 0)
		return ca_error_set(err, CA_E_FAILED, "cannot create a signalfd: %m");
	return 0;
}

int server_new(DBusConnection *conn, Store *store, const Settings *settings, Server **ret,
	       CaError *err)
{
	Server *s;
	DBusError e = DBUS_ERROR_INIT;
	StoreIdentityList *ids;
	StoreTokenList *tokens;
	uint64_t seq;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->conn = conn;
	s->store = store;
	s->settings = settings;
	s->uid = getuid();
	s->event_fd = s->signal_fd = -1;
	s->object = (IpcObject){
		.path = IPC_OBJECT_PATH,
		.interface = &methods_interface,
		.introspect_xml = ipc_introspect_xml,
		.policy = server_policy,
		.userdata = s,
	};
	atomic_init(&s->list_seq, 0);
	pthread_rwlock_init(&s->snapshot_lock, NULL);

	r = server_open_fds(s, err);
	if (r)
		goto fail;
	r = policy_new(&settings->policy, settings->pinentry, &s->policy, err);
	if (r)
		goto fail;
	r = worker_pool_new("ca-sign", settings->workers, s->event_fd, &s->sign_pool);
	if (r == 0)
		r = worker_pool_new("ca-control", 1, s->event_fd, &s->control_pool);
	if (r == 0)
		r = channel_server_new(s, settings->workers, settings->busy_poll, &s->channels);
	if (r) {
		r = ca_error_set(err, CA_E_FAILED, "cannot start worker threads: %s", strerror(-r));
		goto fail;
	}

	/* To forget callers that left; a missed signal only costs a cache entry. */
	dbus_bus_add_match(conn, MATCH_NAME_OWNER_CHANGED, &e);
	if (dbus_error_is_set(&e)) {
		log_warning("cannot watch callers leaving the bus: %s", e.message);
		dbus_error_free(&e);
	}
	if (!dbus_connection_add_filter(conn, server_filter, s, NULL)) {
		r = -ENOMEM;
		goto fail;
	}

	seq = server_take_listing(s, &ids, &tokens);
	if (!ids)
		ids = calloc(1, sizeof(*ids));
	if (!tokens)
		tokens = calloc(1, sizeof(*tokens));
	server_apply_snapshot(s, seq, ids, tokens);
	r = agent_hotplug_new(s, &s->hotplug, err);
	if (r)
		goto fail;
	*ret = s;
	return 0;
fail:
	server_shutdown(s);
	server_free(s);
	return r;
}

static void server_drain(Server *s)
{
	WorkerPool *pools[] = {s->sign_pool, s->control_pool};

	agent_hotplug_drain(s);

	for (size_t i = 0; i < ELEMENTSOF(pools); i++) {
		WorkerJob *job;

		if (!pools[i])
			continue;
		job = worker_pool_take_done(pools[i]);
		while (job) {
			WorkerJob *next = job->next;

			methods_complete(s, job);
			job = next;
		}
	}
}

static void server_handle_signal(Server *s)
{
	struct signalfd_siginfo si;

	while (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("received %s; shutting down", strsignal((int)si.ssi_signo));
			s->quit = true;
			break;
		case SIGHUP:
			log_info("received SIGHUP; reloading the policies and the tokens");
			methods_reload_internal(s);
			break;
		default:
			break;
		}
	}
}

int server_run(Server *s)
{
	int bus_fd;

	if (!dbus_connection_get_unix_fd(s->conn, &bus_fd))
		return -EBADF;
	log_info("ready: serving %s on the bus as %s", IPC_OBJECT_PATH,
		 dbus_bus_get_unique_name(s->conn));

	while (!s->quit) {
		struct pollfd fds[3] = {
			{.fd = bus_fd, .events = POLLIN},
			{.fd = s->event_fd, .events = POLLIN},
			{.fd = s->signal_fd, .events = POLLIN},
		};

		while (!s->quit &&
		       dbus_connection_get_dispatch_status(s->conn) == DBUS_DISPATCH_DATA_REMAINS)
			dbus_connection_dispatch(s->conn);
		if (s->quit)
			break;
		if (!dbus_connection_get_is_connected(s->conn)) {
			log_info("the bus connection closed; exiting");
			break;
		}
		if (dbus_connection_has_messages_to_send(s->conn))
			fds[0].events |= POLLOUT;

		if (poll(fds, ELEMENTSOF(fds), server_idle_ms(s)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (fds[0].revents)
			dbus_connection_read_write(s->conn, 0);
		if (fds[1].revents & POLLIN) {
			uint64_t n;

			(void)!read(s->event_fd, &n, sizeof(n));
			server_drain(s);
		}
		if (fds[2].revents & POLLIN)
			server_handle_signal(s);
		server_idle_ms(s);
	}
	return 0;
}

bool server_shutdown(Server *s)
{
	bool ok = true;

	if (!s)
		return true;
	/* First: no new request starts on a channel while the pools wind down. */
	if (s->channels && !channel_server_stop(s->channels, SERVER_STOP_TIMEOUT_MS))
		ok = false;
	if (s->sign_pool && !worker_pool_stop(s->sign_pool, SERVER_STOP_TIMEOUT_MS))
		ok = false;
	if (s->control_pool && !worker_pool_stop(s->control_pool, SERVER_STOP_TIMEOUT_MS))
		ok = false;
	/* After the pools: no job left that a poll could race with. */
	if (!agent_hotplug_stop(s->hotplug)) {
		ok = false;
		s->hotplug = NULL; /* its poll is stuck in a token and may still call back: leak */
	}
	/* Answer everything that finished or was cancelled, then make sure it left. */
	server_drain(s);
	if (s->conn && dbus_connection_get_is_connected(s->conn))
		dbus_connection_flush(s->conn);
	if (!ok) {
		log_error("a token did not answer within %d s; exiting without finalising it",
			  SERVER_STOP_TIMEOUT_MS / 1000);
		/* The stuck pools still own their threads and jobs: leak them on purpose. */
		s->sign_pool = NULL;
		s->control_pool = NULL;
		s->channels = NULL;
	}
	return ok;
}

Server *server_free(Server *s)
{
	if (!s)
		return NULL;
	if (s->conn)
		dbus_connection_remove_filter(s->conn, server_filter, s);
	worker_pool_free(s->sign_pool);
	worker_pool_free(s->control_pool);
	channel_server_free(s->channels);
	agent_hotplug_free(s->hotplug);
	if (s->event_fd >= 0)
		close(s->event_fd);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	store_identity_list_free(s->identities);
	store_token_list_free(s->tokens);
	caller_table_deinit(&s->callers);
	policy_free(s->policy);
	pthread_rwlock_destroy(&s->snapshot_lock);
	free(s);
	return NULL;
}
