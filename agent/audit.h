/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit: the agent's audit log — one JSON line per signing decision (allowed, denied, failed)
 * appended to $XDG_STATE_HOME/certagent/audit.jsonl (or audit-log = PATH), rotated by size to
 * audit.jsonl.1 … .N. Lines are written whole with one write(2) on an O_APPEND fd, under a
 * mutex; there is no fsync per line (a crash may lose the last lines the kernel had not
 * written back; the log is for accountability, not for crash consistency).
 * `certagent audit` reads it (cli/audit-read.c); docs/configuration.md lists the fields.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "policy-config.h"

typedef struct AuditLog AuditLog;

typedef struct AuditRecord {
	const char *identity;
	const char *bus_name; /* the caller's unique name */
	pid_t pid;	      /* 0: unknown */
	const char *exe, *unit, *app_id;
	const char *server_name;
	const char *scheme;
	const char *decision; /* "allowed", "denied" or "failed" */
	const char *reason;   /* why (error name and message), or NULL when allowed */
	const char *policy;   /* the [policy NAME] that applied, or NULL */
	uint64_t latency_usec;
} AuditRecord;

/*
 * Sets up the log (NULL in *ret when audit-log = none). The file is opened on first use; a
 * path that cannot be written is reported then. Codes: -ENOMEM.
 */
int audit_new(const PolicyConfig *cfg, AuditLog **ret);
AuditLog *audit_free(AuditLog *a);

/* Whether a failed write must stop the signature (audit-fail-closed). */
bool audit_fail_closed(const AuditLog *a);

/*
 * Appends one line, rotating first when it would pass audit-max-size. Any thread.
 * Codes: CA_E_FAILED (the line could not be written: err says why).
 */
int audit_write(AuditLog *a, const AuditRecord *rec, CaError *err);
