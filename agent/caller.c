/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * caller: a small array searched linearly; CALLER_CACHE_MAX bounds it. An entry is dropped when
 * its name leaves the bus and nothing of it is in flight, or evicted when the table is full.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "caller.h"
#include "ipc.h"
#include "log.h"

void caller_table_deinit(CallerTable *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->items[i].name);
		free(t->items[i].app);
	}
	free(t->items);
	*t = (CallerTable){0};
}

Caller *caller_find(CallerTable *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->items[i].name, name) == 0)
			return &t->items[i];
	return NULL;
}

static void caller_remove(CallerTable *t, Caller *c)
{
	free(c->name);
	free(c->app);
	*c = t->items[--t->n];
}

/* Asks the bus for the credentials of name. */
static int caller_ask_bus(DBusConnection *conn, const char *name, uid_t *ret_uid, pid_t *ret_pid,
			  CaError *err)
{
	DBusMessage *call, *reply;
	DBusError e = DBUS_ERROR_INIT;
	DBusMessageIter iter;
	uint32_t uid = 0, pid = 0;
	bool have_uid = false, have_pid = false;
	const IpcDictField fields[] = {
		{"UnixUserID", IPC_DICT_U32, &uid, 0, 0, &have_uid},
		{"ProcessID", IPC_DICT_U32, &pid, 0, 0, &have_pid},
	};
	int r;

	call = dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
					    "GetConnectionCredentials");
	if (!call || !dbus_message_append_args(call, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID)) {
		if (call)
			dbus_message_unref(call);
		return -ENOMEM;
	}
	reply = dbus_connection_send_with_reply_and_block(conn, call, 5000, &e);
	dbus_message_unref(call);
	if (!reply) {
		r = ca_error_set(err, CA_E_POLICY_DENIED, "cannot identify the caller %s: %s", name,
				 e.message ? e.message : "no answer from the bus");
		dbus_error_free(&e);
		return r;
	}
	dbus_message_iter_init(reply, &iter);
	r = ipc_dict_read(&iter, fields, ELEMENTSOF(fields), 64, NULL);
	dbus_message_unref(reply);
	if (r || !have_uid)
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "the bus did not say which user %s runs as", name);
	*ret_uid = uid;
	*ret_pid = have_pid ? (pid_t)pid : 0;
	return 0;
}

int caller_get(CallerTable *t, DBusConnection *conn, const char *name, Caller **ret, CaError *err)
{
	Caller *c = caller_find(t, name);
	uid_t uid = 0;
	pid_t pid = 0;
	int r;

	if (c) {
		*ret = c;
		return 0;
	}
	if (t->n >= CALLER_CACHE_MAX) {
		/* Evict one with nothing in flight; its credentials are asked again if needed. */
		for (size_t i = 0; i < t->n; i++)
			if (!t->items[i].pending) {
				caller_remove(t, &t->items[i]);
				break;
			}
		if (t->n >= CALLER_CACHE_MAX)
			return ca_error_set(err, CA_E_TOO_LARGE,
					    "%d callers have requests in flight; try again later",
					    CALLER_CACHE_MAX);
	}
	r = caller_ask_bus(conn, name, &uid, &pid, err);
	if (r)
		return r;
	if (!t->items) {
		t->items = calloc(CALLER_CACHE_MAX, sizeof(Caller));
		if (!t->items)
			return -ENOMEM;
	}
	c = &t->items[t->n];
	*c = (Caller){.name = strdup(name), .uid = uid, .pid = pid};
	if (!c->name)
		return -ENOMEM;
	t->n++;
	log_debug("caller %s is uid %u pid %d", name, (unsigned)uid, (int)pid);
	*ret = c;
	return 0;
}

const AppInfo *caller_app(Caller *c, AppInfo *fallback)
{
	if (c->app)
		return c->app;
	c->app = malloc(sizeof(*c->app));
	if (!c->app) {
		appinfo_read(c->pid, fallback);
		return fallback;
	}
	appinfo_read(c->pid, c->app);
	return c->app;
}

void caller_release(CallerTable *t, const char *name)
{
	Caller *c = caller_find(t, name);

	if (!c)
		return;
	if (c->pending)
		c->pending--;
	if (!c->pending && c->gone)
		caller_remove(t, c);
}

void caller_gone(CallerTable *t, const char *name)
{
	Caller *c = caller_find(t, name);

	if (!c)
		return;
	c->gone = true;
	if (!c->pending)
		caller_remove(t, c);
}
