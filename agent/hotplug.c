/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hotplug (agent side): a queue between the store's watch thread and the main loop. The
 * watch thread owns nothing here but the queue entries it appends; the main thread takes the
 * whole queue at once and sends the signals in the order the store saw the changes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hotplug.h"
#include "log.h"
#include "server.h"

typedef struct HotplugItem {
	struct HotplugItem *next;
	StoreEventList *events;
	uint64_t seq;
	StoreIdentityList *ids;
	StoreTokenList *tokens;
} HotplugItem;

struct AgentHotplug {
	Server *server;
	pthread_mutex_t lock;
	HotplugItem *head, *tail;
	bool watching;
};

static HotplugItem *item_free(HotplugItem *it)
{
	if (!it)
		return NULL;
	store_event_list_free(it->events);
	store_identity_list_free(it->ids);
	store_token_list_free(it->tokens);
	free(it);
	return NULL;
}

/* On the store's watch thread. */
static void agent_hotplug_on_events(StoreEventList *events, void *userdata)
{
	AgentHotplug *h = userdata;
	HotplugItem *it = calloc(1, sizeof(*it));
	uint64_t one = 1;

	if (!it) {
		store_event_list_free(events);
		log_warning(
			"hotplug: out of memory; the token list is refreshed on the next change");
		return;
	}
	it->events = events;
	/* Listing here keeps the main loop from ever waiting for a token. */
	it->seq = server_take_listing(h->server, &it->ids, &it->tokens);
	pthread_mutex_lock(&h->lock);
	if (h->tail)
		h->tail->next = it;
	else
		h->head = it;
	h->tail = it;
	pthread_mutex_unlock(&h->lock);
	(void)!write(h->server->event_fd, &one, sizeof(one));
}

int agent_hotplug_new(Server *s, AgentHotplug **ret, CaError *err)
{
	AgentHotplug *h;
	int r;

	*ret = NULL;
	if (s->settings->poll_interval == 0) {
		log_info("hotplug is off (poll-interval = 0): run `certagent reload` after "
			 "inserting or removing a token");
		return 0;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->server = s;
	pthread_mutex_init(&h->lock, NULL);
	r = store_watch(s->store, s->settings->poll_interval * 1000u, agent_hotplug_on_events, h);
	if (r) {
		agent_hotplug_free(h);
		return ca_error_set(err, CA_E_FAILED, "cannot watch for tokens: %s", strerror(-r));
	}
	h->watching = true;
	*ret = h;
	return 0;
}

bool agent_hotplug_stop(AgentHotplug *h)
{
	if (!h || !h->watching)
		return true;
	if (!store_unwatch(h->server->store, SERVER_STOP_TIMEOUT_MS))
		return false;
	h->watching = false;
	return true;
}

AgentHotplug *agent_hotplug_free(AgentHotplug *h)
{
	if (!h)
		return NULL;
	agent_hotplug_stop(h);
	while (h->head) {
		HotplugItem *next = h->head->next;

		item_free(h->head);
		h->head = next;
	}
	pthread_mutex_destroy(&h->lock);
	free(h);
	return NULL;
}

static void agent_hotplug_emit(Server *s, const StoreEvent *e)
{
	const char *member = e->kind == STORE_EVENT_TOKEN_ADDED ? "TokenAdded" : "TokenRemoved";
	_cleanup_free_ char *uri_copy = NULL, *label_copy = NULL;
	const char *uri = ipc_utf8_safe(e->token_uri, &uri_copy);
	const char *label = ipc_utf8_safe(e->label, &label_copy);
	DBusMessage *sig = dbus_message_new_signal(IPC_OBJECT_PATH, IPC_INTERFACE, member);

	if (!uri || !label || !sig ||
	    !dbus_message_append_args(sig, DBUS_TYPE_STRING, &uri, DBUS_TYPE_STRING, &label,
				      DBUS_TYPE_INVALID)) {
		if (sig)
			dbus_message_unref(sig);
		log_warning("cannot emit %s: out of memory", member);
		return;
	}
	if (!ipc_send(s->conn, sig))
		log_warning("cannot emit %s: out of memory", member);
	else
		log_info("%s: token \"%s\"%s (serial %s)", member, e->label,
			 e->replaced ? ", a different token than the one removed before" : "",
			 e->serial);
}

void agent_hotplug_drain(Server *s)
{
	AgentHotplug *h = s->hotplug;
	HotplugItem *it;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	it = h->head;
	h->head = h->tail = NULL;
	pthread_mutex_unlock(&h->lock);
	while (it) {
		HotplugItem *next = it->next;

		for (size_t i = 0; i < it->events->n; i++)
			agent_hotplug_emit(s, &it->events->items[i]);
		/* Emits IdentitiesChanged when the identities differ. */
		server_apply_snapshot(s, it->seq, TAKE_PTR(it->ids), TAKE_PTR(it->tokens));
		item_free(it);
		it = next;
	}
}
