/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-stats: latency samples and their summary (rate, nearest-rank percentiles).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "bench-stats.h"

void stats_deinit(Stats *s)
{
	free(s->lat);
	*s = (Stats){0};
}

int stats_add(Stats *s, double seconds)
{
	s->ops++;
	if (s->n >= STATS_MAX_SAMPLES)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		double *p = realloc(s->lat, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->lat = p;
		s->cap = cap;
	}
	s->lat[s->n++] = seconds;
	return 0;
}

static int stats_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

void stats_finish(Stats *s)
{
	if (s->n > 1)
		qsort(s->lat, s->n, sizeof(*s->lat), stats_cmp);
}

double stats_rate(const Stats *s)
{
	return s->elapsed > 0 ? (double)s->ops / s->elapsed : 0;
}

double stats_percentile(const Stats *s, double p)
{
	if (s->n == 0)
		return 0;
	double rank = ceil(p / 100.0 * (double)s->n);
	size_t i = rank < 1 ? 0 : (size_t)rank - 1;
	return s->lat[i < s->n ? i : s->n - 1];
}

double stats_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
