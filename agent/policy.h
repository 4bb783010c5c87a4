/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy: who may sign with which identity, for which server, how often, and whether the user
 * must confirm — the [policy NAME] sections of agent.conf (policy-config.h) applied to each
 * Sign — and the audit line that records every decision (audit.h).
 *
 * A Sign goes: policy_sign_check() on the main thread (cheap checks: the identity's rule,
 * the calling application from /proc via appinfo, the server name, the server's certificate
 * issuer and key pin, the rate limit) → policy_ticket_confirm() on the worker before the
 * token is touched (the pinentry dialog, unless remembered) → policy_ticket_finish() on the
 * main thread with the outcome (the audit line; with audit-fail-closed a line that cannot be
 * written turns a signature into an error). Refusals before a ticket exists are recorded
 * with policy_audit_refused(). An identity no rule matches is allowed for the agent's own
 * uid, as without any policy.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <dbus/dbus.h>

#include "error.h"
#include "policy-config.h"
#include "store.h"

/* Caps of the server-certificates Sign option (aay, DER, leaf first). */
#define POLICY_SERVER_CERTS_MAX 16
#define POLICY_SERVER_CERT_MAX 65536
#define POLICY_BUCKETS_MAX 1024	  /* (rule, identity) pairs with a rate limit in use */
#define POLICY_REMEMBERED_MAX 256 /* confirmations remembered at once */

typedef struct Policy Policy;
typedef struct PolicyTicket PolicyTicket;

/* cfg and pinentry are borrowed (the Settings outlive the Policy). Codes: CA_E_INVALID_ARGS. */
int policy_new(const PolicyConfig *cfg, const char *pinentry, Policy **ret, CaError *err);
Policy *policy_free(Policy *p);

/*
 * Main thread. Decides whether the Sign msg (already checked by methods.c: uri, scheme, data,
 * server_name) may go on. ids: the listed identities, to resolve uri to the one full URI the
 * rules are matched against (with rules in force, a uri that names none or several is denied). pid:
 * the caller's, from the bus (0 unknown). Returns 0 with a ticket for the rest of the request,
 * CA_E_POLICY_DENIED (err says which rule and why), CA_E_INVALID_ARGS/CA_E_TOO_LARGE (a malformed
 * server-certificates option), -ENOMEM.
 */
int policy_sign_check(Policy *p, DBusMessage *msg, pid_t pid, const char *uri,
		      const StoreIdentityList *ids, const char *server_name, PolicyTicket **ret,
		      CaError *err);

/* Main thread: the audit line of a Sign refused before it was queued (r, err: why). */
void policy_audit_refused(Policy *p, DBusMessage *msg, pid_t pid, const StoreIdentityList *ids,
			  int r, const CaError *err);

/*
 * Worker thread, before signing: asks the user when the rule wants a confirmation that is not
 * remembered. Codes: CA_E_POLICY_DENIED (refused, timed out), CA_E_FAILED (no dialog).
 */
int policy_ticket_confirm(PolicyTicket *t, CaError *err);

/*
 * Main thread, with the outcome (r, err) of the request: writes the audit line. Returns 0, or
 * CA_E_FAILED with ret_err filled when r was 0 but the line could not be written and
 * audit-fail-closed is set: the signature must not be sent.
 */
int policy_ticket_finish(PolicyTicket *t, const char *scheme, int r, const CaError *err,
			 uint64_t latency_usec, CaError *ret_err);

PolicyTicket *policy_ticket_free(PolicyTicket *t);
