/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reply-wait: bounded, adaptive busy polling of the signing channel before a blocking recv
 * (reply-wait.h says why and when).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "reply-wait.h"
#include "util.h"

void reply_wait_init(ReplyWait *w)
{
	const char *env = secure_getenv("CERTAGENT_SPIN_US");
	unsigned long limit = REPLY_WAIT_SPIN_DEFAULT_US;

	if (env && *env) {
		char *end;

		errno = 0;
		limit = strtoul(env, &end, 10);
		if (errno || *end || limit > REPLY_WAIT_SPIN_MAX_US)
			limit = REPLY_WAIT_SPIN_DEFAULT_US;
	}
	/* One CPU: the agent cannot answer while we spin. */
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		limit = 0;
	*w = (ReplyWait){.limit_us = (uint32_t)limit, .avg_us = (uint32_t)(limit / 2)};
}

void reply_wait_sent(ReplyWait *w)
{
	w->start_us = ca_now_usec();
}

ssize_t reply_wait_spin(ReplyWait *w, int fd, void *buf, size_t size, int flags)
{
	uint64_t budget = 0;
	ssize_t n;

	if (w->limit_us > 0 && w->avg_us <= w->limit_us)
		budget = 2 * (uint64_t)w->avg_us < w->limit_us ? 2 * (uint64_t)w->avg_us
							       : w->limit_us;
	for (;;) {
		n = recv(fd, buf, size, flags | MSG_DONTWAIT);
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return n;
		if (ca_now_usec() - w->start_us >= budget)
			break;
		/* Whoever else is runnable here (the agent, its helper) goes first. */
		sched_yield();
	}
	errno = EAGAIN;
	return -1;
}

void reply_wait_done(ReplyWait *w)
{
	uint64_t took = ca_now_usec() - w->start_us;

	if (took > UINT32_MAX / 2)
		took = UINT32_MAX / 2;
	w->avg_us = (uint32_t)((7 * (uint64_t)w->avg_us + took) / 8);
}
