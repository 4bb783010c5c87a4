/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy: the rules are matched in file order, the first whose identity pattern matches the
 * identity URI applies (p11-kit URI matching: attributes the pattern leaves out match
 * anything). Everything a rule checks comes from the kernel (the caller's pid from the bus,
 * /proc through appinfo) or from the client (server name, server certificates): the latter
 * protect against a confused or misdirected client, not against a hostile process of the
 * same user (docs/threat-model.md says what that means).
 *
 * State: rate buckets per (rule, identity) and remembered confirmations, both capped, under
 * one mutex (checks run on the main thread, confirmations on workers).
 *
 * Reload: a Policy never changes after policy_new*(); a new configuration is a new Policy that
 * replaces the server's reference (methods.c, under the snapshot lock the signing channels
 * hold while they check). Tickets keep a reference to the policy that decided them, so a
 * confirmation or audit line in flight finishes with the rules it started with. The audit log
 * is shared between the two while its keys stay the same (one fd, one rotation mutex).
 */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <p11-kit/uri.h>

#include "appinfo.h"
#include "audit.h"
#include "confirm.h"
#include "ipc.h"
#include "log.h"
#include "policy.h"

#define NO_RULE ((size_t)-1)
#define POLICY_RULE_CACHE_MAX 64 /* identities whose rule is kept (a Policy never changes) */

typedef struct Bucket {
	size_t rule;
	char *identity;
	double tokens;
	uint64_t last_usec;
} Bucket;

typedef struct Remembered {
	size_t rule;
	char *key; /* identity \n application \n server */
	uint64_t expires_usec;
} Remembered;

/* The audit log, shared by the policies before and after a Reload that left its keys alone. */
typedef struct PolicyAudit {
	atomic_uint n_ref;
	AuditLog *log;
} PolicyAudit;

struct Policy {
	atomic_uint n_ref;
	const PolicyConfig *cfg; /* borrowed from the Settings, or &own_cfg after a Reload */
	PolicyConfig own_cfg;
	const char *pinentry;
	P11KitUri **patterns; /* per rule */
	PolicyAudit *shared_audit;
	AuditLog *audit; /* shared_audit->log, or NULL: audit-log = none */

	pthread_mutex_t lock; /* buckets and remembered */
	Bucket *buckets;
	size_t n_buckets;
	Remembered remembered[POLICY_REMEMBERED_MAX];
	size_t n_remembered;
	/* The rule of an identity URI, so a Sign does not parse its URI again (under lock). */
	struct {
		char *identity;
		size_t rule;
	} rule_cache[POLICY_RULE_CACHE_MAX];
	size_t n_rule_cache, next_rule_cache;
};

struct PolicyTicket {
	Policy *policy;
	size_t rule; /* NO_RULE: no policy applies */
	char *identity;
	char *server_name;
	char *bus_name;
	AppInfo app;
	bool need_confirm;
	char *remember_key;
};

static PolicyAudit *policy_audit_unref(PolicyAudit *a)
{
	if (a && atomic_fetch_sub(&a->n_ref, 1) == 1) {
		audit_free(a->log);
		free(a);
	}
	return NULL;
}

/* old: the policy whose log to share when the audit keys are unchanged, or NULL. */
static int policy_audit_setup(Policy *p, const Policy *old)
{
	PolicyAudit *a;
	int r;

	if (old && policy_config_audit_equal(old->cfg, p->cfg)) {
		atomic_fetch_add(&old->shared_audit->n_ref, 1);
		p->shared_audit = old->shared_audit;
		p->audit = p->shared_audit->log;
		return 0;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	atomic_init(&a->n_ref, 1);
	r = audit_new(p->cfg, &a->log);
	if (r < 0) {
		free(a);
		return r;
	}
	p->shared_audit = a;
	p->audit = a->log;
	if (old)
		log_info("policy: the audit-* settings changed: a new audit log %s",
			 p->audit ? "is set up" : "is off (audit-log = none)");
	return 0;
}

/*
 * cfg: borrowed; or NULL and take: its contents become the policy's own (take is left empty,
 * also on failure). old: see policy_audit_setup().
 */
static int policy_setup(const PolicyConfig *cfg, PolicyConfig *take, const char *pinentry,
			Policy *old, Policy **ret, CaError *err)
{
	Policy *p = calloc(1, sizeof(*p));
	int r;

	if (!p) {
		if (take)
			policy_config_deinit(take);
		return -ENOMEM;
	}
	atomic_init(&p->n_ref, 1);
	if (take) {
		p->own_cfg = *take;
		policy_config_init(take);
		cfg = &p->own_cfg;
	}
	p->cfg = cfg;
	p->pinentry = pinentry;
	pthread_mutex_init(&p->lock, NULL);
	p->patterns = calloc(cfg->n_rules ? cfg->n_rules : 1, sizeof(P11KitUri *));
	if (!p->patterns) {
		policy_free(p);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_rules; i++) {
		p->patterns[i] = p11_kit_uri_new();
		if (!p->patterns[i]) {
			policy_free(p);
			return -ENOMEM;
		}
		r = p11_kit_uri_parse(cfg->rules[i].identity, P11_KIT_URI_FOR_ANY, p->patterns[i]);
		if (r != P11_KIT_URI_OK) {
			r = ca_error_set(err, CA_E_INVALID_ARGS, "[policy %s]: bad identity %s: %s",
					 cfg->rules[i].name, cfg->rules[i].identity,
					 p11_kit_uri_message(r));
			policy_free(p);
			return r;
		}
	}
	r = policy_audit_setup(p, old);
	if (r < 0) {
		policy_free(p);
		return r;
	}
	if (cfg->n_rules || old)
		log_info("policy: %zu [policy] section(s) in force", cfg->n_rules);
	*ret = p;
	return 0;
}

int policy_new(const PolicyConfig *cfg, const char *pinentry, Policy **ret, CaError *err)
{
	return policy_setup(cfg, NULL, pinentry, NULL, ret, err);
}

int policy_new_reloaded(Policy *old, PolicyConfig *cfg, Policy **ret, CaError *err)
{
	return policy_setup(NULL, cfg, old->pinentry, old, ret, err);
}

static void policy_destroy(Policy *p)
{
	for (size_t i = 0; p->patterns && i < p->cfg->n_rules; i++)
		p11_kit_uri_free(p->patterns[i]);
	free(p->patterns);
	for (size_t i = 0; i < p->n_buckets; i++)
		free(p->buckets[i].identity);
	free(p->buckets);
	for (size_t i = 0; i < p->n_remembered; i++)
		free(p->remembered[i].key);
	for (size_t i = 0; i < p->n_rule_cache; i++)
		free(p->rule_cache[i].identity);
	policy_audit_unref(p->shared_audit);
	if (p->cfg == &p->own_cfg)
		policy_config_deinit(&p->own_cfg);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

Policy *policy_ref(Policy *p)
{
	if (p)
		atomic_fetch_add(&p->n_ref, 1);
	return p;
}

Policy *policy_unref(Policy *p)
{
	if (p && atomic_fetch_sub(&p->n_ref, 1) == 1)
		policy_destroy(p);
	return NULL;
}

Policy *policy_free(Policy *p)
{
	return policy_unref(p);
}

/* The index in next of old's rule i when it is unchanged there, else NO_RULE. */
static size_t carried_rule(const Policy *old, const Policy *next, size_t i)
{
	for (size_t j = 0; j < next->cfg->n_rules; j++)
		if (policy_rule_equal(&old->cfg->rules[i], &next->cfg->rules[j]))
			return j;
	return NO_RULE;
}

void policy_carry_over(Policy *old, Policy *next)
{
	size_t kept_b = 0, kept_r = 0, n_old_b, n_old_r;

	pthread_mutex_lock(&old->lock);
	pthread_mutex_lock(&next->lock);
	n_old_b = old->n_buckets;
	n_old_r = old->n_remembered;
	for (size_t i = 0; i < old->n_buckets; i++) {
		const Bucket *b = &old->buckets[i];
		size_t rule = carried_rule(old, next, b->rule);
		Bucket *grown;
		char *identity;

		if (rule == NO_RULE || next->n_buckets >= POLICY_BUCKETS_MAX)
			continue;
		/* Copies: tickets of the old policy may still use its entries. Out of memory:
		 * the rule starts afresh. */
		grown = realloc(next->buckets, (next->n_buckets + 1) * sizeof(*grown));
		if (!grown)
			break;
		next->buckets = grown;
		identity = strdup(b->identity);
		if (!identity)
			break;
		next->buckets[next->n_buckets] = *b;
		next->buckets[next->n_buckets].rule = rule;
		next->buckets[next->n_buckets++].identity = identity;
		kept_b++;
	}
	for (size_t i = 0; i < old->n_remembered; i++) {
		const Remembered *m = &old->remembered[i];
		size_t rule = carried_rule(old, next, m->rule);
		char *key;

		if (rule == NO_RULE || next->n_remembered >= POLICY_REMEMBERED_MAX)
			continue;
		key = strdup(m->key);
		if (!key)
			break;
		next->remembered[next->n_remembered] = *m;
		next->remembered[next->n_remembered].rule = rule;
		next->remembered[next->n_remembered++].key = key;
		kept_r++;
	}
	pthread_mutex_unlock(&next->lock);
	pthread_mutex_unlock(&old->lock);
	if (n_old_b || n_old_r)
		log_info("policy: kept %zu of %zu rate counters and %zu of %zu remembered "
			 "confirmations (those of unchanged [policy] sections)",
			 kept_b, n_old_b, kept_r, n_old_r);
}

PolicyTicket *policy_ticket_free(PolicyTicket *t)
{
	if (!t)
		return NULL;
	free(t->identity);
	free(t->server_name);
	free(t->bus_name);
	free(t->remember_key);
	policy_unref(t->policy);
	free(t);
	return NULL;
}

static void policy_ticket_freep(PolicyTicket **t)
{
	policy_ticket_free(*t);
}

/* ---- matching ---- */

static size_t policy_find_rule(const Policy *p, const char *identity)
{
	P11KitUri *u = p11_kit_uri_new();
	CK_ATTRIBUTE_PTR attrs;
	CK_ULONG n_attrs = 0;
	size_t found = NO_RULE;

	if (!p->cfg->n_rules || !u) {
		p11_kit_uri_free(u);
		return NO_RULE;
	}
	if (p11_kit_uri_parse(identity, P11_KIT_URI_FOR_ANY, u) != P11_KIT_URI_OK) {
		p11_kit_uri_free(u);
		return NO_RULE;
	}
	attrs = p11_kit_uri_get_attributes(u, &n_attrs);
	for (size_t i = 0; i < p->cfg->n_rules && found == NO_RULE; i++) {
		P11KitUri *pat = p->patterns[i];

		if (p11_kit_uri_match_token_info(pat, p11_kit_uri_get_token_info(u)) == 1 &&
		    p11_kit_uri_match_module_info(pat, p11_kit_uri_get_module_info(u)) == 1 &&
		    p11_kit_uri_match_attributes(pat, attrs, n_attrs) == 1)
			found = i;
	}
	p11_kit_uri_free(u);
	return found;
}

/* policy_find_rule(), remembered per identity (round robin when full). */
static size_t policy_rule_for(Policy *p, const char *identity)
{
	size_t rule = NO_RULE;
	char *copy;

	if (!p->cfg->n_rules)
		return NO_RULE;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n_rule_cache; i++)
		if (strcmp(p->rule_cache[i].identity, identity) == 0) {
			rule = p->rule_cache[i].rule;
			pthread_mutex_unlock(&p->lock);
			return rule;
		}
	pthread_mutex_unlock(&p->lock);
	rule = policy_find_rule(p, identity);
	copy = strdup(identity);
	if (!copy)
		return rule;
	pthread_mutex_lock(&p->lock);
	if (p->n_rule_cache < POLICY_RULE_CACHE_MAX) {
		p->rule_cache[p->n_rule_cache].identity = copy;
		p->rule_cache[p->n_rule_cache++].rule = rule;
	} else {
		size_t i = p->next_rule_cache++ % POLICY_RULE_CACHE_MAX;

		free(p->rule_cache[i].identity);
		p->rule_cache[i].identity = copy;
		p->rule_cache[i].rule = rule;
	}
	pthread_mutex_unlock(&p->lock);
	return rule;
}

static bool app_matches(char *const *patterns, const AppInfo *app, const char **ret_what)
{
	for (size_t i = 0; patterns[i]; i++) {
		const char *pat = patterns[i];

		if (pat[0] == '/' && app->exe[0] && fnmatch(pat, app->exe, FNM_PATHNAME) == 0)
			return true;
		if (strncmp(pat, "unit:", 5) == 0 && app->unit[0] &&
		    fnmatch(pat + 5, app->unit, 0) == 0)
			return true;
		if (strncmp(pat, "flatpak:", 8) == 0 && app->flatpak[0] &&
		    fnmatch(pat + 8, app->flatpak, 0) == 0)
			return true;
	}
	*ret_what = app->flatpak[0] ? app->flatpak : app->exe[0] ? app->exe : "an unknown program";
	return false;
}

static bool server_matches(char *const *patterns, const char *name)
{
	for (size_t i = 0; patterns[i]; i++)
		if (fnmatch(patterns[i], name, FNM_CASEFOLD) == 0)
			return true;
	return false;
}

/* "sha256:BASE64" of the SubjectPublicKeyInfo of a DER certificate, and its issuer DN. */
static int cert_facts(const gnutls_datum_t *der, char **ret_pin, char **ret_issuer)
{
	gnutls_x509_crt_t crt = NULL;
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t spki = {NULL, 0}, b64 = {NULL, 0}, dn = {NULL, 0};
	uint8_t digest[32];
	int r = -EINVAL;

	*ret_pin = *ret_issuer = NULL;
	if (gnutls_x509_crt_init(&crt) < 0 || gnutls_pubkey_init(&pub) < 0)
		goto out;
	if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) < 0 ||
	    gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, digest) < 0 ||
	    gnutls_base64_encode2(&(gnutls_datum_t){digest, sizeof(digest)}, &b64) < 0 ||
	    gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0) < 0)
		goto out;
	if (asprintf(ret_pin, "sha256:%.*s", (int)b64.size, (const char *)b64.data) < 0) {
		*ret_pin = NULL;
		r = -ENOMEM;
		goto out;
	}
	*ret_issuer = strndup((const char *)dn.data, dn.size);
	r = *ret_issuer ? 0 : -ENOMEM;
out:
	gnutls_free(spki.data);
	gnutls_free(b64.data);
	gnutls_free(dn.data);
	if (pub)
		gnutls_pubkey_deinit(pub);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	return r;
}

/* Checks server-issuer and server-pin against the leaf the client sent. */
static int check_server_cert(const PolicyRule *rule, const IpcBytesArray *certs,
			     const char *identity, CaError *err)
{
	_cleanup_free_ char *pin = NULL, *issuer = NULL;
	bool ok;

	if (!rule->server_pins && !rule->server_issuers)
		return 0;
	if (certs->n == 0)
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "policy \"%s\" allows %s only for servers with a given "
				    "certificate, but the client sent no server certificate "
				    "(server-certificates); use libcertagent >= this version",
				    rule->name, identity);
	if (cert_facts(&certs->items[0], &pin, &issuer) < 0)
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "policy \"%s\": the server certificate the client sent cannot "
				    "be read",
				    rule->name);
	if (rule->server_pins) {
		ok = false;
		for (size_t i = 0; rule->server_pins[i] && !ok; i++)
			ok = strcmp(rule->server_pins[i], pin) == 0;
		if (!ok)
			return ca_error_set(err, CA_E_POLICY_DENIED,
					    "policy \"%s\" does not allow %s for this server: its "
					    "key %s is not among the server-pin values",
					    rule->name, identity, pin);
	}
	if (rule->server_issuers) {
		ok = false;
		for (size_t i = 0; rule->server_issuers[i] && !ok; i++)
			ok = strcasecmp(rule->server_issuers[i], issuer) == 0;
		if (!ok)
			return ca_error_set(err, CA_E_POLICY_DENIED,
					    "policy \"%s\" does not allow %s for this server: its "
					    "certificate was issued by \"%s\", not a server-issuer",
					    rule->name, identity, issuer);
	}
	return 0;
}

/* Takes one signature from the (rule, identity) bucket; CA_E_POLICY_DENIED when empty. */
static int take_token(Policy *p, size_t rule_idx, const char *identity, CaError *err)
{
	const PolicyRule *rule = &p->cfg->rules[rule_idx];
	double rate = (double)rule->rate_n / ((double)rule->rate_period_sec * 1e6);
	uint64_t now = ca_now_usec();
	Bucket *b = NULL;
	char text[64];
	int r = 0;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n_buckets && !b; i++)
		if (p->buckets[i].rule == rule_idx && strcmp(p->buckets[i].identity, identity) == 0)
			b = &p->buckets[i];
	if (!b) {
		if (p->n_buckets >= POLICY_BUCKETS_MAX) {
			/* Full: drop the one that refilled completely longest ago. */
			size_t old = 0;

			for (size_t i = 1; i < p->n_buckets; i++)
				if (p->buckets[i].last_usec < p->buckets[old].last_usec)
					old = i;
			free(p->buckets[old].identity);
			p->buckets[old] = p->buckets[--p->n_buckets];
		} else {
			Bucket *grown = realloc(p->buckets, (p->n_buckets + 1) * sizeof(*grown));

			if (!grown) {
				pthread_mutex_unlock(&p->lock);
				return -ENOMEM;
			}
			p->buckets = grown;
		}
		b = &p->buckets[p->n_buckets];
		*b = (Bucket){.rule = rule_idx,
			      .identity = strdup(identity),
			      .tokens = rule->rate_n,
			      .last_usec = now};
		if (!b->identity) {
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;
		}
		p->n_buckets++;
	}
	b->tokens += (double)(now - b->last_usec) * rate;
	if (b->tokens > rule->rate_n)
		b->tokens = rule->rate_n;
	b->last_usec = now;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
	} else {
		policy_rule_rate_text(rule, text, sizeof(text));
		r = ca_error_set(err, CA_E_POLICY_DENIED,
				 "policy \"%s\" allows %s signatures with %s; the limit is "
				 "reached: try again in %.0f s",
				 rule->name, text, identity, (1.0 - b->tokens) / rate / 1e6 + 0.5);
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

static bool remembered(Policy *p, size_t rule, const char *key)
{
	uint64_t now = ca_now_usec();
	bool found = false;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n_remembered && !found; i++)
		found = p->remembered[i].rule == rule && p->remembered[i].expires_usec > now &&
			strcmp(p->remembered[i].key, key) == 0;
	pthread_mutex_unlock(&p->lock);
	return found;
}

static void remember(Policy *p, size_t rule, const char *key, unsigned minutes)
{
	uint64_t now = ca_now_usec();
	char *copy = strdup(key);
	size_t slot = 0;

	if (!copy)
		return;
	pthread_mutex_lock(&p->lock);
	/* An expired entry, else a free one, else the one closest to expiry. */
	for (size_t i = 0; i < p->n_remembered; i++) {
		if (p->remembered[i].expires_usec <= now) {
			slot = i;
			goto found;
		}
		if (p->remembered[i].expires_usec < p->remembered[slot].expires_usec)
			slot = i;
	}
	if (p->n_remembered < POLICY_REMEMBERED_MAX)
		slot = p->n_remembered++;
found:
	free(p->remembered[slot].key);
	p->remembered[slot] = (Remembered){
		.rule = rule,
		.key = copy,
		.expires_usec = now + (uint64_t)minutes * 60u * 1000000u,
	};
	pthread_mutex_unlock(&p->lock);
}

/* Whether the pattern URI pat names the identity whose full URI is u. */
static bool uri_names(P11KitUri *pat, P11KitUri *u)
{
	CK_ULONG n = 0;
	CK_ATTRIBUTE_PTR attrs = p11_kit_uri_get_attributes(u, &n);

	return p11_kit_uri_match_token_info(pat, p11_kit_uri_get_token_info(u)) == 1 &&
	       p11_kit_uri_match_module_info(pat, p11_kit_uri_get_module_info(u)) == 1 &&
	       p11_kit_uri_match_attributes(pat, attrs, n) == 1;
}

/*
 * The listed identity a request URI names: the store signs with any URI that matches exactly
 * one key, so rules are matched against that key's full URI, never against the caller's
 * spelling (pkcs11:id=%01 must not escape a rule written for object=client). NULL when the
 * URI names no listed identity or several.
 */
const char *policy_resolve(const StoreIdentityList *ids, const char *uri)
{
	P11KitUri *pat, *u;
	const char *found = NULL;
	unsigned n = 0;

	/* The URI ListIdentities gave, as libcertagent sends it: nothing to parse. */
	for (size_t i = 0; ids && i < ids->n; i++)
		if (strcmp(ids->items[i].uri, uri) == 0)
			return ids->items[i].uri;
	pat = p11_kit_uri_new();
	u = p11_kit_uri_new();
	if (!pat || !u || p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, pat) != P11_KIT_URI_OK)
		goto out;
	for (size_t i = 0; ids && i < ids->n && n < 2; i++) {
		if (p11_kit_uri_parse(ids->items[i].uri, P11_KIT_URI_FOR_ANY, u) ==
			    P11_KIT_URI_OK &&
		    uri_names(pat, u)) {
			found = ids->items[i].uri;
			n++;
		}
	}
out:
	p11_kit_uri_free(pat);
	p11_kit_uri_free(u);
	return n == 1 ? found : NULL;
}

bool policy_prepare_allowed(Policy *p, const char *uri, const AppInfo *app,
			    const StoreIdentityList *ids)
{
	const char *canonical = policy_resolve(ids, uri);
	const PolicyRule *rule;
	const char *what;
	size_t i;

	if (!canonical)
		return false; /* the store would have to resolve it: not worth it here */
	i = policy_rule_for(p, canonical);
	if (i == NO_RULE)
		return true;
	rule = &p->cfg->rules[i];
	if (rule->deny || rule->servers || rule->server_issuers || rule->server_pins ||
	    rule->confirm || rule->rate_n)
		return false;
	return !rule->applications || app_matches(rule->applications, app, &what);
}

int policy_sign_check(Policy *p, const IpcSignCall *call, const char *bus_name,
		      const AppInfo *caller, const StoreIdentityList *ids, PolicyTicket **ret,
		      CaError *err)
{
	const char *canonical, *uri = call->uri, *server_name = call->server_name;
	_cleanup_(policy_ticket_freep) PolicyTicket *t = NULL;
	const IpcBytesArray certs = {(gnutls_datum_t *)call->server_certs, call->n_server_certs};
	const PolicyRule *rule;
	const char *what;
	pid_t pid = caller->pid;
	int r;

	for (const char *c = server_name; c && *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '"' || *c == '\\')
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "server-name is not a host name (it holds a control "
					    "character, a space, a quote or a backslash)");
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->policy = policy_ref(p);
	canonical = policy_resolve(ids, uri);
	if (!canonical && p->cfg->n_rules) {
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "%s names no identity the agent lists (or several); with "
				    "[policy] sections in force, name the identity by the URI "
				    "ListIdentities gives",
				    uri);
	}
	uri = canonical ? canonical : uri;
	t->identity = strdup(uri);
	t->server_name = server_name ? strdup(server_name) : NULL;
	t->bus_name = bus_name ? strdup(bus_name) : NULL;
	t->app = *caller;
	t->rule = policy_rule_for(p, uri);
	if (!t->identity || (server_name && !t->server_name))
		return -ENOMEM;
	if (t->rule == NO_RULE) {
		*ret = TAKE_PTR(t);
		return 0;
	}
	rule = &p->cfg->rules[t->rule];

	if (rule->deny)
		r = ca_error_set(err, CA_E_POLICY_DENIED,
				 "policy \"%s\" forbids signing with %s (deny = yes)", rule->name,
				 uri);
	else if (rule->applications && !app_matches(rule->applications, &t->app, &what))
		r = ca_error_set(err, CA_E_POLICY_DENIED,
				 "policy \"%s\" does not allow %s (pid %d) to use %s; add it to "
				 "applications if it should",
				 rule->name, what, (int)pid, uri);
	else if (rule->servers && !server_name)
		r = ca_error_set(err, CA_E_POLICY_DENIED,
				 "policy \"%s\" allows %s only for named servers, and the client "
				 "named none (no server-name; does it set SNI?)",
				 rule->name, uri);
	else if (rule->servers && !server_matches(rule->servers, server_name))
		r = ca_error_set(err, CA_E_POLICY_DENIED,
				 "policy \"%s\" does not allow %s for server %s (servers: %s%s)",
				 rule->name, uri, server_name, rule->servers[0],
				 rule->servers[1] ? " …" : "");
	else
		r = check_server_cert(rule, &certs, uri, err);
	if (r)
		return r;
	if (rule->rate_n) {
		r = take_token(p, t->rule, uri, err);
		if (r)
			return r;
	}
	if (rule->confirm) {
		const char *app = t->app.flatpak[0] ? t->app.flatpak
				  : t->app.unit[0]  ? t->app.unit
						    : t->app.exe;

		if (asprintf(&t->remember_key, "%s\n%s\n%s", uri, app,
			     server_name ? server_name : "") < 0) {
			t->remember_key = NULL;
			return -ENOMEM;
		}
		t->need_confirm = !(rule->remember_min && remembered(p, t->rule, t->remember_key));
	}
	*ret = TAKE_PTR(t);
	return 0;
}

int policy_ticket_confirm(PolicyTicket *t, CaError *err)
{
	const PolicyRule *rule;
	char app[3 * APPINFO_FIELD_MAX + 128], desc[2048];
	bool keep = false;
	int r;

	if (!t || !t->need_confirm)
		return 0;
	rule = &t->policy->cfg->rules[t->rule];
	/* Another request may have been confirmed while this one waited for a worker. */
	if (rule->remember_min && remembered(t->policy, t->rule, t->remember_key))
		return 0;
	appinfo_describe(&t->app, app, sizeof(app));
	snprintf(desc, sizeof(desc), "%s wants to sign in to %s with your key\n%s.", app,
		 t->server_name ? t->server_name : "an unnamed server", t->identity);
	r = confirm_ask(t->policy->pinentry,
			&(ConfirmDialog){.title = "certagent: allow this sign-in?",
					 .desc = desc,
					 .remember_min = rule->remember_min},
			&keep, err);
	/* "Allow for N minutes": this program, server and identity ask no more until then. */
	if (r == 0 && keep)
		remember(t->policy, t->rule, t->remember_key, rule->remember_min);
	if (r == 0)
		t->need_confirm = false; /* a request run again after a PIN prompt asks no more */
	return r;
}

static void write_audit(Policy *p, const PolicyTicket *t, const char *scheme, const char *decision,
			const char *reason, uint64_t latency, CaError *err)
{
	AuditRecord rec = {
		.identity = t->identity,
		.bus_name = t->bus_name,
		.pid = t->app.pid,
		.exe = t->app.exe,
		.unit = t->app.unit,
		.app_id = t->app.flatpak,
		.server_name = t->server_name,
		.scheme = scheme,
		.decision = decision,
		.reason = reason,
		.policy = t->rule != NO_RULE ? p->cfg->rules[t->rule].name : NULL,
		.latency_usec = latency,
	};

	(void)audit_write(p->audit, &rec, err);
}

static void reason_text(int r, const CaError *err, char *buf, size_t size)
{
	snprintf(buf, size, "%s: %s", r < 0 ? "Failed" : ca_error_name(r),
		 err && err->message[0] ? err->message
		 : r < 0		? strerror(-r)
					: "");
}

int policy_ticket_finish(PolicyTicket *t, const char *scheme, int r, const CaError *err,
			 uint64_t latency_usec, CaError *ret_err)
{
	CaError werr = {0};
	char reason[CA_ERROR_MESSAGE_MAX + 32];

	if (!t || !t->policy->audit)
		return 0;
	if (r)
		reason_text(r, err, reason, sizeof(reason));
	write_audit(t->policy, t, scheme,
		    r == 0		      ? "allowed"
		    : r == CA_E_POLICY_DENIED ? "denied"
					      : "failed",
		    r ? reason : NULL, latency_usec, &werr);
	if (r == 0 && werr.code && audit_fail_closed(t->policy->audit))
		return ca_error_set(ret_err, CA_E_FAILED, "%s", werr.message);
	return 0;
}

void policy_audit_refused(Policy *p, const IpcSignCall *call, const char *bus_name,
			  const AppInfo *app, const StoreIdentityList *ids, int r,
			  const CaError *err)
{
	const char *canonical = NULL;
	const char *uri = call->uri, *scheme = call->scheme, *server_name = call->server_name;
	PolicyTicket t = {.policy = p, .rule = NO_RULE};
	char reason[CA_ERROR_MESSAGE_MAX + 32];
	CaError werr = {0};

	if (!p || !p->audit)
		return;
	if (uri && strncmp(uri, "pkcs11:", 7) == 0 && strlen(uri) <= IPC_URI_MAX)
		canonical = policy_resolve(ids, uri);
	if (canonical) {
		uri = canonical;
		t.rule = policy_rule_for(p, uri);
	}
	/* What a caller sent may be huge or not UTF-8: the writer escapes, we cut. */
	t.identity = uri ? strndup(uri, IPC_URI_MAX) : NULL;
	t.server_name = server_name ? strndup(server_name, IPC_SERVER_NAME_MAX) : NULL;
	t.bus_name = bus_name ? strdup(bus_name) : NULL;
	t.app = *app;
	reason_text(r, err, reason, sizeof(reason));
	write_audit(p, &t, scheme && strlen(scheme) <= IPC_SCHEME_MAX ? scheme : NULL, "denied",
		    reason, 0, &werr);
	free(t.identity);
	free(t.server_name);
	free(t.bus_name);
}
