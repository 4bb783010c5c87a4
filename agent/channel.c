/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * channel: a table of CHANNELS_MAX slots under one mutex, one epoll set and a few threads.
 * epoll hands out a slot number with a generation (never a pointer), so a channel closed by
 * another thread in the meantime is simply not found. A Channel is reference counted: the
 * table holds one reference, a request being served holds another; the fd is closed with the
 * last one, after it left the epoll set.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "busy-poll.h"
#include "channel.h"
#include "ipc-channel.h"
#include "log.h"
#include "server.h"

#define CHANNEL_STOP_ID UINT64_MAX

/* Requests one thread serves from one channel in a row before going back through epoll. */
#define CHANNEL_BATCH_MAX 64

struct Channel {
	atomic_uint refs;
	int fd;
	uint32_t slot, gen;
	char *bus_name;
	AppInfo app;		       /* read at OpenChannel: the pid is bound to the channel */
	uint32_t serial;	       /* of the request being served, which the reply carries */
	BusyPollSource poll;	       /* by the thread serving it */
	atomic_ulong requests, polled; /* read; of them, caught by busy polling (for the log) */
	bool closed;		       /* under the server's lock */
	ChannelServer *server;
};

struct ChannelServer {
	struct Server *server;
	pthread_mutex_t lock;
	Channel *slots[CHANNELS_MAX];
	uint32_t gens[CHANNELS_MAX];
	int epoll_fd;
	int stop_fd;
	pthread_t *threads;
	unsigned n_threads, n_joined;
	atomic_uint_fast64_t last_use_usec;
	atomic_bool stopping; /* set before the threads are told to stop: no next request */
	BusyPoll poll;	      /* busy-poll; sources are the channels, by channel_id() */
	bool stopped;
};

/*
 * The channel this thread is serving a request of (channel_serve), if any, and whether this
 * thread answered it without arming the channel. Per thread: once a request was answered from
 * another thread (after a PIN prompt), the channel is armed and another thread may be serving
 * its next request while this one returns.
 */
static _Thread_local Channel *channel_serving;
static _Thread_local bool channel_answered;

static uint64_t channel_id(const Channel *ch)
{
	return (uint64_t)ch->gen << 32 | ch->slot;
}

static Channel *channel_ref(Channel *ch)
{
	atomic_fetch_add(&ch->refs, 1);
	return ch;
}

static void channel_unref(Channel *ch)
{
	if (!ch || atomic_fetch_sub(&ch->refs, 1) != 1)
		return;
	if (ch->fd >= 0)
		close(ch->fd);
	free(ch->bus_name);
	free(ch);
}

const char *channel_bus_name(const Channel *ch)
{
	return ch->bus_name;
}

const AppInfo *channel_app(const Channel *ch)
{
	return &ch->app;
}

/*
 * Under cs->lock: takes ch out of the table and the epoll set; drops the table's reference.
 * why (NULL: already said) goes into the debug log with the channel's counts, however it ended.
 */
static void channel_close_locked(ChannelServer *cs, Channel *ch, const char *why)
{
	if (ch->closed)
		return;
	if (why)
		log_debug("channel of %s (pid %d) closed: %s (%lu requests, %lu of them caught by "
			  "busy polling)",
			  ch->bus_name, (int)ch->app.pid, why, atomic_load(&ch->requests),
			  atomic_load(&ch->polled));
	ch->closed = true;
	cs->slots[ch->slot] = NULL;
	cs->gens[ch->slot]++;
	(void)epoll_ctl(cs->epoll_fd, EPOLL_CTL_DEL, ch->fd, NULL);
	/* A request still being served finds the peer gone when it replies. */
	(void)shutdown(ch->fd, SHUT_RDWR);
	channel_unref(ch);
}

static void channel_close(ChannelServer *cs, Channel *ch, const char *why)
{
	pthread_mutex_lock(&cs->lock);
	channel_close_locked(cs, ch, why);
	pthread_mutex_unlock(&cs->lock);
}

/* Arms ch for its next request (one thread, one request at a time). */
static void channel_arm(ChannelServer *cs, Channel *ch)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = channel_id(ch)};

	pthread_mutex_lock(&cs->lock);
	if (!ch->closed && epoll_ctl(cs->epoll_fd, EPOLL_CTL_MOD, ch->fd, &ev) < 0) {
		log_warning("channel of %s: cannot wait for its next request: %m", ch->bus_name);
		channel_close_locked(cs, ch, NULL);
	}
	pthread_mutex_unlock(&cs->lock);
}

void channel_reply(Channel *ch, int r, const char *message, const uint8_t *sig, size_t sig_len)
{
	ChannelServer *cs = ch->server;
	uint8_t buf[IPC_CHANNEL_REPLY_MAX];
	char tmp[128];
	ssize_t n = -1;
	size_t len;

	if (r && (!message || !*message))
		message = r < 0 ? strerror_r(-r, tmp, sizeof(tmp)) : ca_error_name(r);
	len = ipc_channel_encode_reply(ch->serial, r ? ipc_error_to_name(r) : NULL, message, sig,
				       sig_len, buf, sizeof(buf));

	/* One reply per request: the socket buffer always has room, never block on it. */
	if (len)
		n = send(ch->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (len && n == (ssize_t)len && channel_serving == ch)
		channel_answered = true; /* the serving thread reads the next request itself */
	else if (len && n == (ssize_t)len)
		channel_arm(cs, ch);
	else
		channel_close(cs, ch,
			      !len			? "cannot encode the reply"
			      : n < 0 && errno == EPIPE ? "the client went away"
							: "cannot send a reply");
	explicit_bzero(buf, len);
	channel_unref(ch);
}

void channel_drop(Channel *ch)
{
	channel_close(ch->server, ch, "the request could not be answered");
	channel_unref(ch);
}

/* Takes the channel of an epoll event, with a reference; NULL when it was closed since. */
static Channel *channel_take(ChannelServer *cs, uint64_t id)
{
	uint32_t slot = (uint32_t)id, gen = (uint32_t)(id >> 32);
	Channel *ch = NULL;

	pthread_mutex_lock(&cs->lock);
	if (slot < CHANNELS_MAX && cs->gens[slot] == gen && cs->slots[slot])
		ch = channel_ref(cs->slots[slot]);
	pthread_mutex_unlock(&cs->lock);
	return ch;
}

/* One request frame of ch into buf (at most IPC_CHANNEL_FRAME_MAX + 1 bytes), without waiting. */
static ssize_t channel_recv(Channel *ch, uint8_t *buf)
{
	ssize_t n;

	do
		n = recv(ch->fd, buf, IPC_CHANNEL_FRAME_MAX + 1, MSG_DONTWAIT | MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	return n;
}

/*
 * Reads and serves the requests waiting on ch; ch comes with a reference, which this drops.
 *
 * (_nonnull_: GCC 12 with -fsanitize=address,undefined otherwise finds a path where buf is
 * NULL at the explicit_bzero() below and fails the -Werror build.)
 *
 * A request answered right here is followed by a look for the next one before the channel
 * is armed again: a client that sends its next request as soon as it has a reply (a burst of
 * handshakes, a loop) finds this thread still awake, instead of arming, which would wake
 * another thread in epoll_wait on the other CPU while this one goes to sleep. A quick client
 * whose request is not there yet is busy-polled for (common/busy-poll.h).
 */
static _nonnull_ void channel_serve(ChannelServer *cs, Channel *ch, uint8_t *buf)
{
	for (unsigned served = 0;; served++) {
		IpcSignCall call;
		IpcChannelOp op;
		CaError err = {0};
		bool answered;
		ssize_t n;
		int r;

		if (served == CHANNEL_BATCH_MAX || (served && atomic_load(&cs->stopping))) {
			channel_arm(cs, ch); /* the others' turn */
			break;
		}
		n = channel_recv(ch, buf);
		if (n < 0 && errno == EAGAIN && served &&
		    busy_poll_wait(&cs->poll, &ch->poll, ch->fd, &cs->stopping)) {
			n = channel_recv(ch, buf);
			if (n > 0)
				atomic_fetch_add_explicit(&ch->polled, 1, memory_order_relaxed);
		}
		if (n < 0 && errno == EAGAIN) {
			channel_arm(cs, ch);
			break;
		}
		if (n <= 0) {
			channel_close(cs, ch, n == 0 ? "the client closed it" : "read error");
			break;
		}
		atomic_store(&cs->last_use_usec, ca_now_usec());
		atomic_fetch_add_explicit(&ch->requests, 1, memory_order_relaxed);
		r = ipc_channel_decode_request(buf, (size_t)n, &ch->serial, &op, &call, &err);
		if (r) {
			/* Our library never sends such a thing: its sender loses the channel. */
			log_info("channel of %s (pid %d): %s; closing it", ch->bus_name,
				 (int)ch->app.pid, err.message);
			channel_close(cs, ch, "bad frame");
			break;
		}
		if (op == IPC_CHANNEL_OP_PREPARE) {
			/* No reply: the Sign it announces is the next frame. */
			methods_channel_prepare(cs->server, ch, call.uri);
			explicit_bzero(buf, (size_t)n);
			continue;
		}
		/* The identity is the one the bus vouched for when the channel was opened; the
		 * request takes a reference of its own, dropped by its reply. */
		channel_answered = false;
		channel_serving = ch;
		busy_poll_begin(&cs->poll, &ch->poll, channel_id(ch));
		methods_channel_sign(cs->server, channel_ref(ch), &call);
		channel_serving = NULL;
		answered = channel_answered;
		busy_poll_end(&cs->poll, &ch->poll, answered);
		/* The request's bytes are the data to sign: gone from our buffer once served. */
		if ((size_t)n > IPC_CHANNEL_FRAME_MAX)
			n = IPC_CHANNEL_FRAME_MAX; /* MSG_TRUNC gives the length it had */
		explicit_bzero(buf, (size_t)n);
		if (!answered)
			break; /* parked on a prompt, closed, or left to the main thread: armed by
				* whoever replies */
	}
	channel_unref(ch);
}

static void *channel_thread(void *userdata)
{
	ChannelServer *cs = userdata;
	uint8_t *buf = malloc(IPC_CHANNEL_FRAME_MAX + 1);

	if (!buf) {
		log_error("channel thread: out of memory");
		return NULL;
	}
	for (;;) {
		struct epoll_event ev;
		Channel *ch;
		int n = epoll_wait(cs->epoll_fd, &ev, 1, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("channel thread: epoll_wait: %m");
			break;
		}
		if (n == 0)
			continue;
		if (ev.data.u64 == CHANNEL_STOP_ID)
			break;
		ch = channel_take(cs, ev.data.u64);
		if (ch)
			channel_serve(cs, ch, buf);
	}
	free(buf);
	return NULL;
}

int channel_server_new(struct Server *s, unsigned n_threads, unsigned busy_poll_usec,
		       ChannelServer **ret)
{
	ChannelServer *cs = calloc(1, sizeof(*cs));
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CHANNEL_STOP_ID};
	sigset_t all, old;
	int r = 0;

	if (!cs)
		return -ENOMEM;
	cs->server = s;
	cs->epoll_fd = cs->stop_fd = -1;
	pthread_mutex_init(&cs->lock, NULL);
	atomic_init(&cs->last_use_usec, 0);
	atomic_init(&cs->stopping, false);
	busy_poll_init(&cs->poll, busy_poll_usec);
	cs->threads = calloc(n_threads, sizeof(pthread_t));
	cs->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	cs->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!cs->threads || cs->epoll_fd < 0 || cs->stop_fd < 0 ||
	    epoll_ctl(cs->epoll_fd, EPOLL_CTL_ADD, cs->stop_fd, &ev) < 0) {
		r = cs->threads ? -errno : -ENOMEM;
		channel_server_free(cs);
		return r;
	}
	/* Signals belong to the main thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < n_threads; i++) {
		char name[16];

		r = -pthread_create(&cs->threads[i], NULL, channel_thread, cs);
		if (r)
			break;
		snprintf(name, sizeof(name), "ca-chan-%u", i % 100);
		pthread_setname_np(cs->threads[i], name);
		cs->n_threads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		channel_server_free(cs);
		return r;
	}
	*ret = cs;
	return 0;
}

bool channel_server_stop(ChannelServer *cs, unsigned timeout_ms)
{
	uint64_t one = 1;

	if (!cs || cs->stopped)
		return true;
	atomic_store(&cs->stopping, true);
	/* Level-triggered and never read: wakes every thread, now and later. */
	(void)!write(cs->stop_fd, &one, sizeof(one));
	if (!worker_join_threads(cs->threads, cs->n_threads, &cs->n_joined, timeout_ms))
		return false;
	cs->stopped = true;
	return true;
}

ChannelServer *channel_server_free(ChannelServer *cs)
{
	if (!cs)
		return NULL;
	if (cs->stop_fd >= 0) {
		uint64_t one = 1;

		(void)!write(cs->stop_fd, &one, sizeof(one));
	}
	for (; cs->n_joined < cs->n_threads; cs->n_joined++)
		pthread_join(cs->threads[cs->n_joined], NULL);
	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < CHANNELS_MAX; i++)
		if (cs->slots[i])
			channel_close_locked(cs, cs->slots[i], "the agent is stopping");
	pthread_mutex_unlock(&cs->lock);
	if (cs->epoll_fd >= 0)
		close(cs->epoll_fd);
	if (cs->stop_fd >= 0)
		close(cs->stop_fd);
	pthread_mutex_destroy(&cs->lock);
	free(cs->threads);
	free(cs);
	return NULL;
}

int channel_open(ChannelServer *cs, const char *bus_name, pid_t pid, int *ret_fd, CaError *err)
{
	Channel *ch;
	unsigned mine = 0;
	size_t slot = CHANNELS_MAX;
	int sv[2], r;

	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < CHANNELS_MAX; i++) {
		if (!cs->slots[i]) {
			if (slot == CHANNELS_MAX)
				slot = i;
		} else if (strcmp(cs->slots[i]->bus_name, bus_name) == 0) {
			mine++;
		}
	}
	pthread_mutex_unlock(&cs->lock);
	if (mine >= CHANNELS_PER_CALLER_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "%s already has %d signing channels open; close one first",
				    bus_name, CHANNELS_PER_CALLER_MAX);
	if (slot == CHANNELS_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "the agent has %d signing channels open; use Sign on the bus",
				    CHANNELS_MAX);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return ca_error_set(err, CA_E_FAILED, "cannot create a socket pair: %m");
	ch = calloc(1, sizeof(*ch));
	if (!ch || !(ch->bus_name = strdup(bus_name))) {
		free(ch);
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	atomic_init(&ch->refs, 1);
	ch->fd = sv[0];
	ch->server = cs;
	/* Once per channel, not per Sign: the pid cannot change under the channel. */
	appinfo_read(pid, &ch->app);

	pthread_mutex_lock(&cs->lock);
	/* Main thread only opens: the slot found above is still free. */
	ch->slot = (uint32_t)slot;
	ch->gen = cs->gens[slot];
	cs->slots[slot] = ch;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = channel_id(ch)};
	r = epoll_ctl(cs->epoll_fd, EPOLL_CTL_ADD, ch->fd, &ev) < 0 ? -errno : 0;
	if (r)
		channel_close_locked(cs, ch, NULL);
	pthread_mutex_unlock(&cs->lock);
	if (r) {
		close(sv[1]);
		return ca_error_set(err, CA_E_FAILED, "cannot watch the channel: %s", strerror(-r));
	}
	log_debug("channel opened for %s (pid %d)", bus_name, (int)pid);
	*ret_fd = sv[1];
	return 0;
}

void channel_server_caller_gone(ChannelServer *cs, const char *bus_name)
{
	if (!cs)
		return;
	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < CHANNELS_MAX; i++)
		if (cs->slots[i] && strcmp(cs->slots[i]->bus_name, bus_name) == 0)
			channel_close_locked(cs, cs->slots[i], "its client left the bus");
	pthread_mutex_unlock(&cs->lock);
}

uint64_t channel_server_last_use_usec(ChannelServer *cs)
{
	return cs ? atomic_load(&cs->last_use_usec) : 0;
}
