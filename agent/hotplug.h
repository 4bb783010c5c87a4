/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hotplug (agent side): wires the store's watch thread (pkcs11/hotplug.c) to the main loop.
 * Changes arrive on the store's thread, which also takes a fresh listing; they are queued and
 * the main loop is woken through the server's eventfd, as for finished jobs. The main thread
 * then emits TokenRemoved / TokenAdded and applies the listing, which emits IdentitiesChanged
 * when a client would see a difference. Only the main thread touches the DBusConnection.
 *
 * Functions are prefixed agent_hotplug_ (pkcs11/ already uses hotplug_ in the same binary).
 */
#pragma once

#include <stdbool.h>

#include "error.h"

typedef struct Server Server;
typedef struct AgentHotplug AgentHotplug;

/*
 * Starts watching the server's store (poll interval from the settings; 0 turns hotplug off,
 * *ret is then NULL). Codes: CA_E_FAILED (no thread).
 */
int agent_hotplug_new(Server *s, AgentHotplug **ret, CaError *err);

/* Stops the store's watch thread; false when it is stuck in a token (leak the store then). */
bool agent_hotplug_stop(AgentHotplug *h);
AgentHotplug *agent_hotplug_free(AgentHotplug *h);

/* Main thread, when the eventfd fired: emits the queued signals and applies the listings. */
void agent_hotplug_drain(Server *s);
