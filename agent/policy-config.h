/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy-config: the security parts of the agent's configuration — the [policy NAME] sections
 * (who may use an identity, for which servers, how often, with or without a confirmation)
 * and the audit-log keys of [agent]. Pure parsing, no I/O beyond what settings.c reads, so
 * the CLI (`certagent policy list`) shares it. docs/configuration.md describes every key.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define POLICY_RULES_MAX 256		   /* [policy] sections */
#define POLICY_LIST_MAX 64		   /* entries of one list key */
#define POLICY_REMEMBER_MAX (24 * 60)	   /* minutes a confirmation may be remembered */
#define POLICY_RATE_MAX 1000000		   /* signatures per period */
#define AUDIT_MAX_SIZE_DEFAULT (10u << 20) /* bytes before the log is rotated */
#define AUDIT_MAX_SIZE_MIN 1024
#define AUDIT_FILES_DEFAULT 5 /* rotated files kept: audit.jsonl.1 … .5 */
#define AUDIT_FILES_MAX 100

typedef struct PolicyRule {
	char *name;
	char *identity;	       /* pkcs11: URI pattern (p11-kit matching); NULL: every identity */
	char **servers;	       /* server-name globs; NULL: any server (or none named) */
	char **server_issuers; /* RFC 4514 issuer DNs of the server's certificate; NULL: any */
	char **server_pins;    /* "sha256:BASE64" SPKI pins of the server's leaf; NULL: any */
	char **applications;   /* "/path/exe", "unit:NAME", "flatpak:APP-ID" (globs); NULL: any */
	bool confirm;	       /* ask the user (pinentry CONFIRM) before signing */
	unsigned remember_min; /* how long a confirmation holds, per app+server; 0: ask each time */
	unsigned rate_n;       /* at most rate_n signatures per rate_period_sec; 0: no limit */
	unsigned rate_period_sec;
	bool deny; /* "deny = yes": the identity may not be used at all */
} PolicyRule;

typedef struct PolicyConfig {
	PolicyRule *rules; /* in file order: the first rule whose identity matches applies */
	size_t n_rules;
	char *audit_path; /* audit-log; NULL: $XDG_STATE_HOME/certagent/audit.jsonl */
	bool audit_off;	  /* audit-log = none */
	uint64_t audit_max_size;
	unsigned audit_files;
	bool audit_fail_closed; /* refuse to sign when the audit line cannot be written */
} PolicyConfig;

void policy_config_init(PolicyConfig *c);
void policy_config_deinit(PolicyConfig *c);

/*
 * A key of [agent] that belongs to us (audit-*). *ret_known is false when the key is not ours
 * (settings.c goes on with its own keys). Codes: CA_E_INVALID_ARGS (bad value), -ENOMEM.
 */
int policy_config_agent_key(PolicyConfig *c, const char *key, const char *value, bool *ret_known,
			    CaError *err);

/*
 * A key of [policy NAME]; new_section is true for the first key of a section.
 * Codes: CA_E_INVALID_ARGS (unknown key, bad value, a section twice), -ENOMEM.
 */
int policy_config_section_key(PolicyConfig *c, const char *name, bool new_section, const char *key,
			      const char *value, CaError *err);

/* After the whole file: every rule is complete. Codes: CA_E_INVALID_ARGS. */
int policy_config_check(const PolicyConfig *c, const char *path, CaError *err);

/* $XDG_STATE_HOME/certagent/audit.jsonl, else ~/.local/state/certagent/audit.jsonl; or NULL. */
char *policy_audit_default_path(void);

/*
 * Whether two rules say the same (name and every key): a Reload keeps the rate counters and
 * remembered confirmations of rules that did not change, and `certagent policy add` checks
 * that the file it wrote reads back as the rule it meant.
 */
bool policy_rule_equal(const PolicyRule *a, const PolicyRule *b);

/* Whether two configurations have the same audit-* keys (a Reload keeps the open log). */
bool policy_config_audit_equal(const PolicyConfig *a, const PolicyConfig *b);

/* "3/minute"-style text of a rule's rate into buf ("none" when unlimited). */
void policy_rule_rate_text(const PolicyRule *r, char *buf, size_t size);
