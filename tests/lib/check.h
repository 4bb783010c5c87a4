/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * check.h: the test programs' soft assertion. CHECK(cond, fmt, ...) prints a FAIL line with
 * the place, the condition and a message, counts it in `failures` and goes on, so one run
 * reports every broken check; main() exits 1 when failures is not 0.
 */
#pragma once

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
		}                                                                                  \
	} while (0)
