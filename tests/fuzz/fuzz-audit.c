/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-audit: the reader of `certagent audit` (cli/audit-read.c on common/json.c). The audit
 * log is written by the agent but lives in a user-writable file, so every line is untrusted
 * input. The input is one line; its first 64 bytes also go to audit_time_parse() (--since).
 * Besides "no crash, no leak", it checks what cmd-audit.c relies on: an accepted line has a
 * time, a decision among allowed/denied/failed and an identity, pid >= 0 and latency >= -1;
 * and the line `certagent audit --json` prints for it (string and integer members re-encoded
 * by common/json.c) is accepted again as the same entry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit-read.h"
#include "fuzz.h"
#include "json.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Strict UTF-8 (RFC 3629): the writer turns anything else into U+FFFD, so only such strings
 * must come back byte for byte. */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p, n, min;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, min = 0x80, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, min = 0x800, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return false;
		}
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

/* What cmd-audit.c's print_json() writes for e, parsed back. */
static void check_round_trip(const AuditEntry *e)
{
	AuditEntry again;
	JsonBuf b;
	bool exact = true;
	int r;

	json_buf_begin(&b);
	for (size_t i = 0; i < e->obj.n; i++) {
		const JsonField *f = &e->obj.fields[i];

		if (f->type == JSON_STRING) {
			json_buf_string(&b, f->key, f->str);
			exact = exact && utf8_valid(f->key) && utf8_valid(f->str);
		} else if (f->type == JSON_INT) {
			json_buf_int(&b, f->key, f->num);
			exact = exact && utf8_valid(f->key);
		}
	}
	json_buf_end(&b);
	if (b.oom) {
		json_buf_deinit(&b);
		return;
	}
	r = audit_parse_line(b.data, b.len, &again);
	if (!exact) {
		/* Replacement characters may merge keys: only "no crash" is promised. */
		if (r == 0)
			audit_entry_clear(&again);
		json_buf_deinit(&b);
		return;
	}
	check(r == 0);
	check(strcmp(again.time, e->time) == 0 && strcmp(again.decision, e->decision) == 0 &&
	      strcmp(again.identity, e->identity) == 0);
	check(again.time_usec == e->time_usec && again.pid == e->pid &&
	      again.latency_us == e->latency_us);
	check(same_str(again.scheme, e->scheme) && same_str(again.server, e->server) &&
	      same_str(again.bus_name, e->bus_name) && same_str(again.exe, e->exe) &&
	      same_str(again.unit, e->unit) && same_str(again.app_id, e->app_id) &&
	      same_str(again.policy, e->policy) && same_str(again.reason, e->reason));
	audit_entry_clear(&again);
	json_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char when[65];
	size_t n = size < sizeof(when) - 1 ? size : sizeof(when) - 1;
	int64_t usec;
	AuditEntry e;
	int r;

	/* --since: NUL-terminated, as from argv; "now" fixed so a result can be checked. */
	memcpy(when, data, n);
	when[n] = 0;
	r = audit_time_parse(when, INT64_C(1700000000000000), &usec);
	check(r == 0 || r == -EINVAL);

	r = audit_parse_line((const char *)data, size, &e);
	if (r < 0) {
		check(r == -EINVAL || r == -E2BIG || r == -ENOMEM);
		return 0;
	}
	check(e.time && e.decision && e.identity);
	check(strcmp(e.decision, "allowed") == 0 || strcmp(e.decision, "denied") == 0 ||
	      strcmp(e.decision, "failed") == 0);
	check(e.pid >= 0 && e.latency_us >= -1);
	check_round_trip(&e);
	audit_entry_clear(&e);
	return 0;
}
