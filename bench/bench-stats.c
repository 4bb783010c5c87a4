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
	free(s->turns);
	*s = (Stats){0};
}

/* Appends v to the array *a of *n values (room for *cap), doubling it from `first`. */
static int append(double **a, size_t *n, size_t *cap, size_t first, double v)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : first;
		double *p = realloc(*a, c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return 0;
}

int stats_add(Stats *s, double seconds)
{
	s->ops++;
	if (s->n >= STATS_MAX_SAMPLES)
		return 0;
	return append(&s->lat, &s->n, &s->cap, 1024, seconds);
}

int stats_turn_end(Stats *s)
{
	double elapsed = s->elapsed - s->turn_elapsed;
	size_t ops = s->ops - s->turn_ops;

	if (append(&s->turns, &s->n_turns, &s->cap_turns, 16,
		   elapsed > 0 ? (double)ops / elapsed : 0) < 0)
		return -ENOMEM;
	s->turn_ops = s->ops;
	s->turn_elapsed = s->elapsed;
	return 0;
}

/* Student's t, two-sided 95 %, for 1-30 degrees of freedom; above, 1.96 + 2.4/df is within
 * 0.1 % of it. */
static double t95(size_t df)
{
	static const double t[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
				   2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
				   2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
				   2.060,  2.056, 2.052, 2.048, 2.045, 2.042};

	return df <= 30 ? t[df - 1] : 1.96 + 2.4 / (double)df;
}

int stats_ratio_interval(const Stats *base, const Stats *agent, double *lo, double *hi)
{
	size_t n = agent->n_turns;
	double sum = 0, sq = 0, mean, sd;

	*lo = *hi = NAN;
	if (!base->group || base->group != agent->group || base->n_turns != n || n < 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!(base->turns[i] > 0) || !(agent->turns[i] > 0))
			return -1;
		sum += log(agent->turns[i] / base->turns[i]);
	}
	mean = sum / (double)n;
	for (size_t i = 0; i < n; i++) {
		double d = log(agent->turns[i] / base->turns[i]) - mean;
		sq += d * d;
	}
	sd = sqrt(sq / (double)(n - 1));
	*lo = exp(mean - t95(n - 1) * sd / sqrt((double)n));
	*hi = exp(mean + t95(n - 1) * sd / sqrt((double)n));
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
