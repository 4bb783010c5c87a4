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

#include "appinfo.h"
#include "error.h"
#include "ipc-channel.h"
#include "policy-config.h"
#include "store.h"

/* Caps of the server-certificates Sign option (aay, DER, leaf first). */
#define POLICY_SERVER_CERTS_MAX 16
#define POLICY_SERVER_CERT_MAX 65536
#define POLICY_BUCKETS_MAX 1024	  /* (rule, identity) pairs with a rate limit in use */
#define POLICY_REMEMBERED_MAX 256 /* confirmations remembered at once */

typedef struct Policy Policy;
typedef struct PolicyTicket PolicyTicket;

/*
 * A Policy is shared: the server holds one reference to the policy in force, each ticket one
 * to the policy that decided it, so a Reload can swap in a new policy while signatures decided
 * by the old one are still being confirmed or audited (the old one goes with its last ticket).
 */

/* cfg and pinentry are borrowed (the Settings outlive the Policy). Codes: CA_E_INVALID_ARGS. */
int policy_new(const PolicyConfig *cfg, const char *pinentry, Policy **ret, CaError *err);

/*
 * Reload, any thread: a policy from a freshly read configuration. Takes the contents of *cfg
 * (left empty). Shares old's pinentry, and old's audit log when the audit-* keys are the same
 * (else opens its own). Codes: CA_E_INVALID_ARGS, -ENOMEM.
 */
int policy_new_reloaded(Policy *old, PolicyConfig *cfg, Policy **ret, CaError *err);

/*
 * Reload, main thread, before next replaces old: rate counters and remembered confirmations
 * of rules that did not change (same name and keys, policy_rule_equal) go over to next; those
 * of changed or removed rules are dropped (a changed rule starts afresh).
 */
void policy_carry_over(Policy *old, Policy *next);

Policy *policy_ref(Policy *p);
Policy *policy_unref(Policy *p);
/* The same as policy_unref: drops the owner's reference (the server's at exit). */
Policy *policy_free(Policy *p);

/*
 * Main thread or a channel thread (under the snapshot lock). Decides whether the Sign call
 * (from the bus or a signing channel, already checked by methods.c: sizes, uri, scheme, data)
 * may go on. ids: the listed identities, to resolve uri to the one full URI the rules are
 * matched against (with rules in force, a uri that names none or several is denied).
 * bus_name, app: the caller (app from its pid, read once per caller: caller.h, channel.h).
 * Returns 0 with a ticket for the rest of the request, CA_E_POLICY_DENIED (err says which
 * rule and why), CA_E_INVALID_ARGS (a server-name that is no host name), -ENOMEM.
 */
int policy_sign_check(Policy *p, const IpcSignCall *call, const char *bus_name, const AppInfo *app,
		      const StoreIdentityList *ids, PolicyTicket **ret, CaError *err);

/*
 * Channel thread (under the snapshot lock): whether a signature with uri may be begun ahead
 * for this caller before it asks for one (a PREPARE frame, channel.h). Only when no rule
 * applies to the identity, or its rule limits nothing but the applications and the caller
 * is one of them: rules on servers, counts (rate-limit) or the user (confirm) are decided when
 * the Sign comes, and nothing is begun for them. No side effect: no rate-limit token, no
 * audit line.
 */
bool policy_prepare_allowed(Policy *p, const char *uri, const AppInfo *app,
			    const StoreIdentityList *ids);

/*
 * The full URI of the one listed identity uri names: ids' own string when uri is one of them
 * (no parsing), else the one identity whose URI the pattern uri matches (p11-kit URI rules, as
 * the store resolves it to sign); NULL when it names none or several.
 */
const char *policy_resolve(const StoreIdentityList *ids, const char *uri);

/* The audit line of a Sign refused before it was queued (r, err: why); call may be partial. */
void policy_audit_refused(Policy *p, const IpcSignCall *call, const char *bus_name,
			  const AppInfo *app, const StoreIdentityList *ids, int r,
			  const CaError *err);

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
