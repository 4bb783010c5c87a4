/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * busy-poll: after answering a quick caller, keep polling its socket for the next request for
 * a moment instead of sleeping and being woken out of idle (docs/performance.md, "Busy polling
 * in the agent and the helper"). The agent's channel threads use it for signing channels
 * (agent/channel.c), a module helper's lane threads for lanes (pkcs11/helper-main.c).
 *
 * One BusyPoll per serving side, one BusyPollSource per channel or lane. A source is polled
 * only when its next request has come within limit_usec of the answer on average, it has been
 * the only source with requests for BUSY_POLL_QUIET_USEC, nothing else is being served, and
 * the machine has more than one CPU: several busy callers, a caller that pauses, or an idle
 * side are never polled for.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define BUSY_POLL_MAX_USEC 1000
/* Gaps are counted up to this, and a source must have been alone for this long. */
#define BUSY_POLL_QUIET_USEC 1000

typedef struct BusyPoll {
	unsigned limit_usec;		  /* 0: never poll */
	atomic_uint serving;		  /* requests between busy_poll_begin and _end */
	atomic_uint_fast64_t last_source; /* id of the latest request's source */
	atomic_uint_fast64_t mixed_usec;  /* when a request last came from another source */
} BusyPoll;

/* Touched by one thread at a time: the one serving that channel or lane. */
typedef struct BusyPollSource {
	uint64_t replied_usec; /* when its last answer went out; 0: none yet */
	uint32_t gap_avg_usec; /* smoothed time from an answer to the next request */
} BusyPollSource;

/* limit_usec is capped at BUSY_POLL_MAX_USEC, and 0 with a single CPU. */
void busy_poll_init(BusyPoll *bp, unsigned limit_usec);

/* A request from src (id: any number naming it) is being served from now on. */
void busy_poll_begin(BusyPoll *bp, BusyPollSource *src, uint64_t id);

/* Its serving ended; answered: a reply went out just now. */
void busy_poll_end(BusyPoll *bp, BusyPollSource *src, bool answered);

/* True when src's next request usually comes within the limit: busy_poll_wait() would poll. */
bool busy_poll_expects(const BusyPoll *bp, const BusyPollSource *src);

/*
 * True when src has been the only source with requests for BUSY_POLL_QUIET_USEC and its next
 * request usually comes within that long (one caller in a loop, quick or not; with more than
 * one CPU).
 */
bool busy_poll_alone(const BusyPoll *bp, const BusyPollSource *src);

/*
 * After an answer on fd found no next request: polls fd (non-blocking MSG_PEEK, with
 * sched_yield() between tries) while the rules above allow and *stop (if given) is not set.
 * True when fd became readable (a request, EOF or an error): read it as usual.
 */
bool busy_poll_wait(BusyPoll *bp, const BusyPollSource *src, int fd, const atomic_bool *stop);
