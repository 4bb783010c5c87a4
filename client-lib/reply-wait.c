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
	if (w->limit_us && !w->trial &&
	    w->count >= (w->tried ? REPLY_WAIT_TRIAL_EVERY : REPLY_WAIT_TRIAL_FIRST))
		w->trial = 1; /* a trial begins with this reply */
	if (w->trial)
		/* Blocks alternate: spinning first, then sleeping. */
		w->spin_now = ((w->trial - 1) / REPLY_WAIT_TRIAL_BLOCK) % 2 == 0;
	else
		w->spin_now = w->limit_us && !w->sleeping;
	w->start_us = ca_now_usec();
}

ssize_t reply_wait_spin(ReplyWait *w, int fd, void *buf, size_t size, int flags)
{
	uint64_t budget = 0;
	ssize_t n;

	if (w->limit_us > 0 && w->spin_now && w->avg_us <= w->limit_us)
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

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t median(uint32_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u32);
	return v[n / 2];
}

void reply_wait_note(ReplyWait *w, uint64_t took)
{
	uint32_t block, i;
	uint64_t spun, slept;

	if (took > UINT32_MAX / 2)
		took = UINT32_MAX / 2;
	w->avg_us = (uint32_t)((7 * (uint64_t)w->avg_us + took) / 8);
	if (!w->trial) {
		if (w->count < UINT32_MAX)
			w->count++;
		return;
	}
	/* Reply trial-1 is in block (trial-1)/BLOCK; blocks alternate between the two ways. */
	block = (w->trial - 1) / REPLY_WAIT_TRIAL_BLOCK;
	i = block / 2 * REPLY_WAIT_TRIAL_BLOCK + (w->trial - 1) % REPLY_WAIT_TRIAL_BLOCK;
	w->took[!w->spin_now][i] = (uint32_t)took;
	if (w->trial++ < REPLY_WAIT_TRIAL_N)
		return;
	spun = median(w->took[0], REPLY_WAIT_TRIAL_N / 2);
	slept = median(w->took[1], REPLY_WAIT_TRIAL_N / 2);
	/* The other way must be better by an eighth, so that noise does not flip it. */
	if (w->sleeping)
		w->sleeping = !(8 * spun < 7 * slept);
	else
		w->sleeping = 8 * slept < 7 * spun;
	w->trial = 0;
	w->count = 0;
	w->tried = true;
}

void reply_wait_done(ReplyWait *w)
{
	reply_wait_note(w, ca_now_usec() - w->start_us);
}
