/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-bench-stats: the bench's 95 % interval of a ratio from paired turns, on turns whose
 * answer was worked out by hand, and the cases where it must say nothing rather than a number.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench-stats.h"

static int failed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #cond);           \
			failed = 1;                                                                \
		}                                                                                  \
	} while (0)

/* One turn of `ops` operations in one second. */
static void turn(Stats *s, size_t ops)
{
	s->ops += ops;
	s->elapsed += 1.0;
	if (stats_turn_end(s) < 0)
		abort();
}

int main(void)
{
	/* The machine halves its speed every other turn; the agent stays within 4 % of the
	 * baseline in each pair. Paired, the interval is narrow; worked out with Python's math:
	 * geometric mean 0.99151, t(5) = 2.571, interval 0.97143-1.01200. */
	static const size_t base_ops[] = {100, 200, 100, 200, 100, 200};
	static const size_t agent_ops[] = {98, 204, 97, 196, 101, 198};
	Stats base = {.group = 1}, agent = {.group = 1}, other = {.group = 2};
	double lo, hi;

	for (size_t i = 0; i < 6; i++) {
		turn(&base, base_ops[i]);
		turn(&agent, agent_ops[i]);
		turn(&other, agent_ops[i]);
	}
	CHECK(base.n_turns == 6 && base.turns[1] == 200.0);
	CHECK(stats_ratio_interval(&base, &agent, &lo, &hi) == 0);
	CHECK(fabs(lo - 0.97143) < 1e-4);
	CHECK(fabs(hi - 1.01200) < 1e-4);
	CHECK(lo < stats_rate(&agent) / stats_rate(&base) &&
	      stats_rate(&agent) / stats_rate(&base) < hi);

	/* Not measured in the same turns: no interval. */
	CHECK(stats_ratio_interval(&base, &other, &lo, &hi) < 0 && isnan(lo) && isnan(hi));
	base.group = agent.group = 0; /* measured apart (as P4's quiet and busy turns) */
	CHECK(stats_ratio_interval(&base, &agent, &lo, &hi) < 0 && isnan(lo));

	/* Fewer than four turns, or a turn with nothing done: no interval. */
	Stats b3 = {.group = 3}, a3 = {.group = 3};
	for (size_t i = 0; i < 3; i++) {
		turn(&b3, 100);
		turn(&a3, 100);
	}
	CHECK(stats_ratio_interval(&b3, &a3, &lo, &hi) < 0 && isnan(lo));
	turn(&b3, 100);
	turn(&a3, 0);
	CHECK(stats_ratio_interval(&b3, &a3, &lo, &hi) < 0 && isnan(hi));

	/* Identical paths: the interval is the single point 1. */
	Stats b4 = {.group = 4}, a4 = {.group = 4};
	for (size_t i = 0; i < 4; i++) {
		turn(&b4, 50 + 10 * i);
		turn(&a4, 50 + 10 * i);
	}
	CHECK(stats_ratio_interval(&b4, &a4, &lo, &hi) == 0 && fabs(lo - 1) < 1e-12 &&
	      fabs(hi - 1) < 1e-12);

	stats_deinit(&base);
	stats_deinit(&agent);
	stats_deinit(&other);
	stats_deinit(&b3);
	stats_deinit(&a3);
	stats_deinit(&b4);
	stats_deinit(&a4);
	if (!failed)
		printf("ok: paired-turn intervals\n");
	return failed;
}
