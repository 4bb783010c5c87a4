/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json-print: the few pieces every `--json` output of the certagent CLI is written with, straight
 * to a FILE. Strings are escaped by common/json.c (json_buf_quote: quotes, control characters,
 * invalid UTF-8 as U+FFFD), the project's one JSON escaper, so a token label or a DN with odd
 * bytes still gives valid JSON. The schemas are in docs/cli.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

/* s as a JSON string, or null when s is NULL. */
void json_print_string(FILE *f, const char *s);

/* [s0, s1, ...]. */
void json_print_strings(FILE *f, const char *const *v, size_t n);

/* true / false. */
void json_print_bool(FILE *f, bool v);

/* t as "YYYY-MM-DDTHH:MM:SSZ" (UTC), or null when t is (time_t)-1 or cannot be shown. */
void json_print_time(FILE *f, time_t t);
