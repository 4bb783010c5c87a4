/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json-print: JSON values to a FILE for the CLI's --json outputs (see json-print.h).
 */
#include "json-print.h"
#include "json.h"

void json_print_string(FILE *f, const char *s)
{
	JsonBuf b = {0};

	if (!s) {
		fputs("null", f);
		return;
	}
	json_buf_quote(&b, s);
	/* Out of memory: null keeps the document valid; the caller's fflush reports nothing
	 * wrong, but a half-written string would be worse. */
	fputs(b.oom || !b.data ? "null" : b.data, f);
	json_buf_deinit(&b);
}

void json_print_strings(FILE *f, const char *const *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ", " : "", f);
		json_print_string(f, v[i]);
	}
	fputc(']', f);
}

void json_print_bool(FILE *f, bool v)
{
	fputs(v ? "true" : "false", f);
}

void json_print_time(FILE *f, time_t t)
{
	char b[40];
	struct tm tm;

	if (t == (time_t)-1 || !gmtime_r(&t, &tm) ||
	    !strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		fputs("null", f);
		return;
	}
	json_print_string(f, b);
}
