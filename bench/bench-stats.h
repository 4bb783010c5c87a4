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
} Stats;

void stats_deinit(Stats *s);

/* Adds one latency; 0 or -ENOMEM. Past STATS_MAX_SAMPLES only the count grows. */
int stats_add(Stats *s, double seconds);

/* Sorts the samples: call once after measuring, before stats_percentile(). */
void stats_finish(Stats *s);

/* Operations per second over the loop's wall time (0 when nothing was measured). */
double stats_rate(const Stats *s);

/* The p-th percentile (0 < p <= 100) in seconds, nearest-rank; 0 when empty. */
double stats_percentile(const Stats *s, double p);

/* Monotonic clock in seconds. */
double stats_now(void);
