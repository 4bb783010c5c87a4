/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * server: the agent's D-Bus side. Owns the bus name, runs the one loop that touches the
 * DBusConnection (poll on the bus fd, an eventfd for finished jobs, a signalfd for SIGTERM,
 * SIGINT and SIGHUP), checks callers, and hands slow work to the worker pools. The
 * org.certagent.Agent1 methods themselves are in methods.c.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <dbus/dbus.h>

#include "caller.h"
#include "settings.h"
#include "error.h"
#include "ipc.h"
#include "policy.h"
#include "store.h"
#include "worker.h"

#define SERVER_PENDING_MAX 1024	    /* requests in flight from everyone together */
#define SERVER_STOP_TIMEOUT_MS 5000 /* how long shutdown waits for a token to answer */

typedef struct Server {
	DBusConnection *conn;
	Store *store;		  /* borrowed */
	const Settings *settings; /* borrowed */
	uid_t uid;		  /* the only user allowed to call */
	IpcObject object;

	WorkerPool *sign_pool;	  /* Sign */
	WorkerPool *control_pool; /* Unlock, Lock, Reload: one thread, in order */
	int event_fd;
	int signal_fd;

	CallerTable callers;
	unsigned pending;
	Policy *policy; /* [policy] rules, confirmations, the audit log (policy.h) */

	/* What ListIdentities/ListTokens answer: refreshed by the workers after anything that
	 * may change it, so listing never waits for a token. */
	StoreIdentityList *identities;
	StoreTokenList *tokens;
	/* Held for reading by the signing channel's threads while they use the snapshot; the
	 * main thread (its only writer) takes it to replace it. */
	pthread_rwlock_t snapshot_lock;
	struct ChannelServer *channels; /* the signing channels (channel.h) */
	uint64_t snapshot_seq;		/* main thread: seq of the snapshot in use */
	atomic_uint_fast64_t list_seq;	/* workers: seq of the latest listing started */

	struct AgentHotplug *hotplug; /* NULL when poll-interval = 0 */
	uint64_t idle_since_usec;     /* idle-exit: start of the current idle time */

	bool quit;
} Server;

/*
 * Connects to address (NULL: the session bus) and takes org.certagent.Agent1.
 * Codes: CA_E_FAILED (no bus, or the name is owned by another process: err says which pid).
 */
int server_connect(const char *address, DBusConnection **ret, CaError *err);

/* Sets up the loop's fds, pools and first snapshot. Codes: CA_E_FAILED. */
int server_new(DBusConnection *conn, Store *store, const Settings *settings, Server **ret,
	       CaError *err);

/* Runs until SIGTERM/SIGINT or the bus goes away. Returns 0 or a negative errno. */
int server_run(Server *s);

/*
 * Stops the pools (answering what is still queued), flushes and frees. Returns false when a
 * worker is stuck in a token, in which case the store must not be freed either.
 */
bool server_shutdown(Server *s);
Server *server_free(Server *s);

/* ---- used by methods.c ---- */

/* The org.certagent.Agent1 interface table. */
extern const IpcInterface methods_interface;

/* Called on the main thread for each finished job of either pool. */
void methods_complete(Server *s, WorkerJob *job);

/* Queues a Reload with no caller (SIGHUP). */
void methods_reload_internal(Server *s);

/* Replaces the snapshot if newer; emits IdentitiesChanged when the identities differ. */
void server_apply_snapshot(Server *s, uint64_t seq, StoreIdentityList *ids, StoreTokenList *tokens);

/* Takes a fresh listing from the store (any thread); returns its seq. */
uint64_t server_take_listing(Server *s, StoreIdentityList **ret_ids, StoreTokenList **ret_tokens);
