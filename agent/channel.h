/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * channel: the agent's side of the signing channel (dbus/ipc-channel.h). OpenChannel() on the
 * bus makes a SOCK_SEQPACKET socketpair bound to the caller the bus vouched for (unique name,
 * uid already checked by the dispatcher's policy, pid) and hands one end to it. Its Sign
 * requests are then served by a small pool of threads that wait on one epoll set: the thread
 * that reads a request runs the whole Sign (methods_channel_sign: the same checks, policy,
 * token call, audit line and log line as a Sign from the bus) and writes the reply itself, so
 * a signature costs one socket round trip and no thread hand-over. A slow token holds only the
 * thread that waits for it; the others keep serving the other channels.
 *
 * Each channel fd is armed EPOLLONESHOT: at most one thread handles a channel at a time and
 * the next request is read only after the reply went out. Who the caller is (bus name, pid,
 * and the program from /proc, appinfo.h) is read once, at OpenChannel: the pid is bound to
 * the channel, so every Sign on it is attributed to the program that opened it. A request that
 * has to wait for a PIN prompt, or that changed what the agent lists, finishes on the main
 * thread like any other (methods_complete), which then replies on the channel.
 *
 * A channel ends when its client closes it, sends something that is not a well-formed Sign
 * frame (dbus/ipc-channel.h), or when its bus name leaves the bus (the identity it was opened
 * with is gone).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "appinfo.h"
#include "error.h"
#include "ipc-channel.h"

#define CHANNELS_MAX 256	  /* open channels of everyone together */
#define CHANNELS_PER_CALLER_MAX 8 /* per unique bus name */

typedef struct Channel Channel;
typedef struct ChannelServer ChannelServer;
struct Server;

/*
 * Starts n_threads threads. After answering a quick client (one that usually sends its next
 * request within busy_poll_usec), a thread polls its channel for up to busy_poll_usec
 * before sleeping, while nothing else is being served; 0 never polls. Returns 0 or a negative
 * errno.
 */
int channel_server_new(struct Server *s, unsigned n_threads, unsigned busy_poll_usec,
		       ChannelServer **ret);

/*
 * Stops the threads (a request being served finishes first; new ones are not read) and waits
 * up to timeout_ms; false when one is stuck in a token (then the server must be leaked).
 */
bool channel_server_stop(ChannelServer *cs, unsigned timeout_ms);
ChannelServer *channel_server_free(ChannelServer *cs);

/*
 * Main thread, OpenChannel: a new channel for the caller bus_name (pid: from the bus, 0
 * unknown). *ret_fd is the client's end (close-on-exec; the caller closes it after appending
 * it to the reply). Codes: CA_E_TOO_LARGE (too many channels), CA_E_FAILED (no socket).
 */
int channel_open(ChannelServer *cs, const char *bus_name, pid_t pid, int *ret_fd, CaError *err);

/* Main thread: bus_name left the bus; its channels are closed. */
void channel_server_caller_gone(ChannelServer *cs, const char *bus_name);

/* When the last request on any channel arrived (CLOCK_MONOTONIC µs; 0: never). Any thread. */
uint64_t channel_server_last_use_usec(ChannelServer *cs);

/* The caller a channel was opened for: its unique bus name and the program, read then. */
const char *channel_bus_name(const Channel *ch);
const AppInfo *channel_app(const Channel *ch);

/*
 * Any thread: sends the answer to the request being served on ch — the signature sig when r
 * is 0, else the error r with message — re-arms ch for the next request and drops the
 * reference the request held. Called exactly once per request (or channel_drop()).
 */
void channel_reply(Channel *ch, int r, const char *message, const uint8_t *sig, size_t sig_len);

/* Any thread: the request being served on ch cannot be answered: closes ch, drops the ref. */
void channel_drop(Channel *ch);

/* ---- in methods.c ---- */

/*
 * On a channel thread: runs the Sign call received on ch (borrowed: the frame is reused after
 * this returns) through the one Sign path; replies through channel_reply(), now or later.
 */
void methods_channel_sign(struct Server *s, Channel *ch, const IpcSignCall *call);

/*
 * On a channel thread: a Sign with uri is coming on ch (a PREPARE frame). When the caller's
 * policy would let it sign with uri without asking anything of the user (policy.h:
 * policy_prepare_allowed), the token begins that signature ahead (store_prepare_sign).
 * Nothing is answered, signed, logged or audited: the Sign that follows is.
 */
void methods_channel_prepare(struct Server *s, Channel *ch, const char *uri);
