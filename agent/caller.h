/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * caller: who is calling. The uid and pid of each unique bus name, asked from the bus once and
 * cached (unique names are never reused), the program behind it (appinfo.h), read from /proc
 * on its first Sign and kept while the name is on the bus (a connection's pid never changes),
 * and the number of requests each has in flight, which is capped. Main thread only.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include <dbus/dbus.h>

#include "appinfo.h"
#include "error.h"

#define CALLER_CACHE_MAX 256  /* unique names remembered at once */
#define CALLER_PENDING_MAX 64 /* requests in flight per caller */

typedef struct Caller {
	char *name; /* unique bus name ":1.42" */
	uid_t uid;
	pid_t pid;	  /* 0 when the bus did not say */
	unsigned pending; /* requests in flight */
	bool gone;	  /* left the bus; forgotten when pending drops to 0 */
	AppInfo *app;	  /* caller_app(); NULL until then */
} Caller;

typedef struct CallerTable {
	Caller *items;
	size_t n;
} CallerTable;

void caller_table_deinit(CallerTable *t);

/*
 * The caller for a unique name, asking the bus (GetConnectionCredentials) the first time.
 * Codes: CA_E_POLICY_DENIED (the bus could not say who it is), CA_E_TOO_LARGE (too many callers
 * with requests in flight).
 */
int caller_get(CallerTable *t, DBusConnection *conn, const char *name, Caller **ret, CaError *err);

/* The cached entry, or NULL (no bus call). */
Caller *caller_find(CallerTable *t, const char *name);

/*
 * The program behind c (its pid's /proc, read the first time and then kept). Never NULL: an
 * AppInfo with only the pid when memory is short.
 */
const AppInfo *caller_app(Caller *c, AppInfo *fallback);

/* A request of name finished. */
void caller_release(CallerTable *t, const char *name);

/* name left the bus (NameOwnerChanged). */
void caller_gone(CallerTable *t, const char *name);
