/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reply-wait: how libcertagent waits for the agent's answer on the signing channel.
 *
 * On this kind of machine much of a signature's round trip is not work but wake-ups: a thread
 * blocked in recv() on an idle CPU takes 20-40 µs to run again once the answer is there. When
 * this client's replies come back quickly, the caller first polls the socket without sleeping
 * for a bounded time (busy polling, as SO_BUSY_POLL does for network sockets), then blocks as
 * before. It is adaptive: only with more than one CPU online, only while the smoothed reply
 * time of this client is at most the spin limit, and never longer than twice that smoothed
 * time; between tries it yields the CPU, so a runnable agent or helper thread on the same CPU
 * goes first. A loaded agent or a slow token (replies in milliseconds) turns it off by itself.
 *
 * CERTAGENT_SPIN_US sets the limit in microseconds (0 turns spinning off; default
 * REPLY_WAIT_SPIN_DEFAULT_US, at most REPLY_WAIT_SPIN_MAX_US).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REPLY_WAIT_SPIN_DEFAULT_US 300
#define REPLY_WAIT_SPIN_MAX_US 10000

typedef struct ReplyWait {
	uint32_t limit_us; /* 0: never spin */
	uint32_t avg_us;   /* smoothed reply time (exponential, 1/8 weight per reply) */
	uint64_t start_us; /* of the request being waited for */
} ReplyWait;

/* Reads the CPU count and CERTAGENT_SPIN_US (once per client). */
void reply_wait_init(ReplyWait *w);

/* The request was just sent: the clock starts. */
void reply_wait_sent(ReplyWait *w);

/*
 * recv(fd, buf, size, flags | MSG_DONTWAIT) until it returns something or the spin budget is
 * spent. Returns what recv returned; -1 with errno EAGAIN when nothing came in time (or
 * spinning is off): block in recv then.
 */
ssize_t reply_wait_spin(ReplyWait *w, int fd, void *buf, size_t size, int flags);

/* The reply (or an error) came: its time goes into the average. */
void reply_wait_done(ReplyWait *w);
