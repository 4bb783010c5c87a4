/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit-read: reading the agent's audit log (agent/audit.c writes it): one line → one entry,
 * strictly (common/json.c), so a damaged or hostile line is skipped and counted, never
 * trusted. audit_parse_line() is what tests/fuzz feeds.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

typedef struct AuditEntry {
	JsonObject obj;				/* owns every string below */
	const char *time, *decision, *identity; /* always there */
	const char *scheme, *server, *bus_name, *exe, *unit, *app_id, *policy,
		*reason;    /* or NULL */
	int64_t pid;	    /* 0: unknown */
	int64_t latency_us; /* -1: unknown */
	int64_t time_usec;  /* time, as microseconds since the epoch */
} AuditEntry;

/*
 * Parses one line (without its newline). Returns 0, or -EINVAL (not an audit line: not the
 * flat JSON object, a field of the wrong type, a missing or malformed time, decision or
 * identity), -E2BIG, -ENOMEM. On failure *ret holds nothing.
 */
int audit_parse_line(const char *line, size_t len, AuditEntry *ret);
void audit_entry_clear(AuditEntry *e);

/*
 * RFC 3339 ("2024-05-01T12:00:00Z", fractions and ±HH:MM offsets allowed), a date
 * ("2024-05-01", midnight UTC), or an age ("30s", "10m", "2h", "7d": that long before now).
 * Returns 0 or -EINVAL.
 */
int audit_time_parse(const char *s, int64_t now_usec, int64_t *ret_usec);
