/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include "busy-poll.h"
#include "util.h"

void busy_poll_init(BusyPoll *bp, unsigned limit_usec)
{
	/* One CPU: the caller cannot send while we poll. */
	bp->limit_usec = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? limit_usec : 0;
	if (bp->limit_usec > BUSY_POLL_MAX_USEC)
		bp->limit_usec = BUSY_POLL_MAX_USEC;
	atomic_init(&bp->serving, 0);
	atomic_init(&bp->last_source, UINT64_MAX);
	atomic_init(&bp->mixed_usec, 0);
}

void busy_poll_begin(BusyPoll *bp, BusyPollSource *src, uint64_t id)
{
	uint64_t now = ca_now_usec(), gap;

	atomic_fetch_add(&bp->serving, 1);
	if (atomic_exchange(&bp->last_source, id) != id)
		atomic_store(&bp->mixed_usec, now);
	if (!src->replied_usec)
		return;
	gap = now - src->replied_usec;
	if (gap > BUSY_POLL_QUIET_USEC)
		gap = BUSY_POLL_QUIET_USEC; /* "not quick"; a pause is forgotten within a few */
	src->gap_avg_usec = (uint32_t)((7 * (uint64_t)src->gap_avg_usec + gap) / 8);
}

void busy_poll_end(BusyPoll *bp, BusyPollSource *src, bool answered)
{
	atomic_fetch_sub(&bp->serving, 1);
	if (answered)
		src->replied_usec = ca_now_usec();
}

bool busy_poll_expects(const BusyPoll *bp, const BusyPollSource *src)
{
	return bp->limit_usec && src->replied_usec && src->gap_avg_usec <= bp->limit_usec;
}

bool busy_poll_alone(const BusyPoll *bp, const BusyPollSource *src)
{
	return bp->limit_usec && src->replied_usec && src->gap_avg_usec < BUSY_POLL_QUIET_USEC &&
	       ca_now_usec() - atomic_load(&bp->mixed_usec) >= BUSY_POLL_QUIET_USEC;
}

bool busy_poll_wait(BusyPoll *bp, const BusyPollSource *src, int fd, const atomic_bool *stop)
{
	uint64_t t0;
	char c;

	if (!busy_poll_expects(bp, src))
		return false;
	t0 = ca_now_usec();
	if (t0 - atomic_load(&bp->mixed_usec) < BUSY_POLL_QUIET_USEC)
		return false;
	while (ca_now_usec() - t0 < bp->limit_usec && atomic_load(&bp->serving) == 0 &&
	       !(stop && atomic_load(stop))) {
		sched_yield(); /* whatever else is runnable here goes first */
		if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 ||
		    (errno != EAGAIN && errno != EINTR))
			return true;
	}
	return false;
}
