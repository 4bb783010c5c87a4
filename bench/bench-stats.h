/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-stats: latency samples of one measured case, and the numbers the table prints from them
 * (rate over wall time, percentiles). A Stats starts zeroed and owns its sample array;
 * stats_deinit() frees it and zeroes the Stats again.
 */
#pragma once

#include <stddef.h>

/* Samples kept per case: enough for minutes at a million ops/s, small enough to sort. */
#define STATS_MAX_SAMPLES (4u * 1024 * 1024)

typedef struct Stats {
	double *lat; /* seconds per operation, in the order measured (sorted by stats_finish) */
	size_t n;    /* samples kept */
	size_t cap;
	size_t ops;	/* operations timed (n, unless STATS_MAX_SAMPLES was reached) */
	double elapsed; /* wall time of the timed loops, seconds (the caller adds them up) */
	double *turns;	/* rate of each turn (stats_turn_end), in order */
	size_t n_turns, cap_turns;
	size_t turn_ops; /* ops and elapsed when the last turn ended */
	double turn_elapsed;
	unsigned group; /* Stats measured in the same turns share it; 0: none */
} Stats;

void stats_deinit(Stats *s);

/* Adds one latency; 0 or -ENOMEM. Past STATS_MAX_SAMPLES only the count grows. */
int stats_add(Stats *s, double seconds);

/* A turn of this path ended (ops and elapsed are up to date): its rate is kept. 0 or -ENOMEM. */
int stats_turn_end(Stats *s);

/*
 * How sure the ratio agent/base is, from the turns the two took in the same rounds (same
 * group, as many turns each, at least four): the 95 % confidence interval of the geometric
 * mean of the per-turn ratios (Student's t over their logarithms). Pairing turns of the same
 * round takes out what the machine's slower and faster phases do to both.
 * 0, or -1 (*lo and *hi NAN) when there is nothing to pair.
 */
int stats_ratio_interval(const Stats *base, const Stats *agent, double *lo, double *hi);

/* Sorts the samples: call once after measuring, before stats_percentile(). */
void stats_finish(Stats *s);

/* Operations per second over the loop's wall time (0 when nothing was measured). */
double stats_rate(const Stats *s);

/* The p-th percentile (0 < p <= 100) in seconds, nearest-rank; 0 when empty. */
double stats_percentile(const Stats *s, double p);

/* Monotonic clock in seconds. */
double stats_now(void);
