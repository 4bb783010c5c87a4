/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy-config: parsing of [policy NAME] and the audit keys of [agent]. List keys take
 * space-separated words and may be repeated (each line adds), except server-issuer, whose DN
 * has spaces: one DN per line. Every list is capped (POLICY_LIST_MAX).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <p11-kit/uri.h>

#include "policy-config.h"

char *policy_audit_default_path(void)
{
	const char *xdg = secure_getenv("XDG_STATE_HOME");
	const char *home = secure_getenv("HOME");
	char *p = NULL;

	if (xdg && xdg[0] == '/') {
		if (asprintf(&p, "%s/certagent/audit.jsonl", xdg) < 0)
			return NULL;
	} else if (home && home[0] == '/') {
		if (asprintf(&p, "%s/.local/state/certagent/audit.jsonl", home) < 0)
			return NULL;
	}
	return p;
}

void policy_config_init(PolicyConfig *c)
{
	*c = (PolicyConfig){
		.audit_max_size = AUDIT_MAX_SIZE_DEFAULT,
		.audit_files = AUDIT_FILES_DEFAULT,
		.audit_fail_closed = false,
	};
}

static void rule_deinit(PolicyRule *r)
{
	free(r->name);
	free(r->identity);
	strv_free(r->servers);
	strv_free(r->server_issuers);
	strv_free(r->server_pins);
	strv_free(r->applications);
}

void policy_config_deinit(PolicyConfig *c)
{
	for (size_t i = 0; i < c->n_rules; i++)
		rule_deinit(&c->rules[i]);
	free(c->rules);
	free(c->audit_path);
	policy_config_init(c);
}

static int parse_bool(const char *v, bool *ret)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") ||
	    !strcmp(v, "1")) {
		*ret = true;
		return 0;
	}
	if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") ||
	    !strcmp(v, "0")) {
		*ret = false;
		return 0;
	}
	return -EINVAL;
}

static int parse_u64(const char *v, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long n;

	if (!v[0] || v[0] == '-')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v)
		return -EINVAL;
	/* Sizes may say K, M or G (powers of 1024). */
	if (*end && !end[1] && strchr("KMG", *end)) {
		unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : 30;

		if (n > (UINT64_MAX >> shift))
			return -EINVAL;
		n <<= shift;
		end++;
	}
	if (*end || n > max)
		return -EINVAL;
	*ret = n;
	return 0;
}

/* Appends value to *list: as one entry (whole) or split on white space. */
static int list_add(char ***list, const char *value, bool whole, const char *key,
		    const char *section, CaError *err)
{
	size_t n = 0;

	while (*list && (*list)[n])
		n++;
	while (*value) {
		size_t len;
		char **grown;

		value += strspn(value, " \t");
		len = whole ? strlen(value) : strcspn(value, " \t");
		if (!len)
			break;
		if (n >= POLICY_LIST_MAX)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "%s of [policy %s] has more than %d entries", key,
					    section, POLICY_LIST_MAX);
		grown = realloc(*list, (n + 2) * sizeof(char *));
		if (!grown)
			return -ENOMEM;
		*list = grown;
		(*list)[n] = strndup(value, len);
		if (!(*list)[n])
			return -ENOMEM;
		(*list)[++n] = NULL;
		value += len;
	}
	if (n == 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "%s of [policy %s] is empty", key,
				    section);
	return 0;
}

int policy_config_agent_key(PolicyConfig *c, const char *key, const char *value, bool *ret_known,
			    CaError *err)
{
	uint64_t n;

	*ret_known = true;
	if (strcmp(key, "audit-log") == 0) {
		free(c->audit_path);
		c->audit_path = NULL;
		c->audit_off = strcmp(value, "none") == 0;
		if (c->audit_off)
			return 0;
		if (value[0] != '/')
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "audit-log must be an absolute path or \"none\", not "
					    "\"%s\"",
					    value);
		c->audit_path = strdup(value);
		return c->audit_path ? 0 : -ENOMEM;
	}
	if (strcmp(key, "audit-max-size") == 0) {
		if (parse_u64(value, UINT64_MAX, &n) < 0 || n < AUDIT_MAX_SIZE_MIN)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "audit-max-size must be bytes (K, M or G allowed), at "
					    "least %d, not \"%s\"",
					    AUDIT_MAX_SIZE_MIN, value);
		c->audit_max_size = n;
		return 0;
	}
	if (strcmp(key, "audit-files") == 0) {
		if (parse_u64(value, AUDIT_FILES_MAX, &n) < 0 || n < 1)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "audit-files must be a number from 1 to %d, not \"%s\"",
					    AUDIT_FILES_MAX, value);
		c->audit_files = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "audit-fail-closed") == 0) {
		if (parse_bool(value, &c->audit_fail_closed) < 0)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "audit-fail-closed must be yes or no, not \"%s\"",
					    value);
		return 0;
	}
	*ret_known = false;
	return 0;
}

/* "N/second", "N/minute", "N/hour" (also "N/s", "N/min", "N/h"). */
static int parse_rate(const char *v, PolicyRule *r)
{
	static const struct {
		const char *name;
		unsigned sec;
	} units[] = {{"second", 1}, {"s", 1},  {"sec", 1},     {"minute", 60},
		     {"min", 60},   {"m", 60}, {"hour", 3600}, {"h", 3600}};
	char num[32];
	const char *slash = strchr(v, '/');
	uint64_t n;

	if (strcmp(v, "none") == 0) {
		r->rate_n = 0;
		return 0;
	}
	if (!slash || (size_t)(slash - v) >= sizeof(num))
		return -EINVAL;
	memcpy(num, v, (size_t)(slash - v));
	num[slash - v] = 0;
	if (parse_u64(num, POLICY_RATE_MAX, &n) < 0 || n == 0)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (strcmp(slash + 1, units[i].name) == 0) {
			r->rate_n = (unsigned)n;
			r->rate_period_sec = units[i].sec;
			return 0;
		}
	return -EINVAL;
}

void policy_rule_rate_text(const PolicyRule *r, char *buf, size_t size)
{
	if (!r->rate_n)
		snprintf(buf, size, "none");
	else
		snprintf(buf, size, "%u/%s", r->rate_n,
			 r->rate_period_sec == 1    ? "second"
			 : r->rate_period_sec == 60 ? "minute"
						    : "hour");
}

/* A pin is "sha256:" and the base64 of 32 bytes (44 characters with one '='). */
static bool pin_ok(const char *pin)
{
	size_t len;

	if (strncmp(pin, "sha256:", 7) != 0)
		return false;
	pin += 7;
	len = strlen(pin);
	if (len != 44 || pin[43] != '=')
		return false;
	for (size_t i = 0; i < 43; i++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
			    pin[i]))
			return false;
	return true;
}

int policy_config_section_key(PolicyConfig *c, const char *name, bool new_section, const char *key,
			      const char *value, CaError *err)
{
	PolicyRule *r;
	bool b;
	uint64_t n;

	if (new_section) {
		PolicyRule *grown;

		for (size_t i = 0; i < c->n_rules; i++)
			if (strcmp(c->rules[i].name, name) == 0)
				return ca_error_set(err, CA_E_INVALID_ARGS,
						    "[policy %s] appears twice", name);
		if (c->n_rules >= POLICY_RULES_MAX)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "more than %d [policy] sections", POLICY_RULES_MAX);
		grown = realloc(c->rules, (c->n_rules + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		c->rules = grown;
		c->rules[c->n_rules] = (PolicyRule){.name = strdup(name)};
		if (!c->rules[c->n_rules].name)
			return -ENOMEM;
		c->n_rules++;
	}
	r = &c->rules[c->n_rules - 1];

	if (strcmp(key, "identity") == 0) {
		P11KitUri *u = p11_kit_uri_new();
		int pr;

		if (!u)
			return -ENOMEM;
		pr = p11_kit_uri_parse(value, P11_KIT_URI_FOR_ANY, u);
		p11_kit_uri_free(u);
		if (pr != P11_KIT_URI_OK)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "identity of [policy %s] must be a pkcs11: URI such as "
					    "pkcs11:token=demo;object=client, not \"%s\" (%s)",
					    name, value, p11_kit_uri_message(pr));
		free(r->identity);
		r->identity = strdup(value);
		return r->identity ? 0 : -ENOMEM;
	}
	if (strcmp(key, "servers") == 0)
		return list_add(&r->servers, value, false, key, name, err);
	if (strcmp(key, "server-issuer") == 0)
		return list_add(&r->server_issuers, value, true, key, name, err);
	if (strcmp(key, "server-pin") == 0) {
		size_t before = 0;
		int e;

		while (r->server_pins && r->server_pins[before])
			before++;
		e = list_add(&r->server_pins, value, false, key, name, err);
		if (e)
			return e;
		for (size_t i = before; r->server_pins[i]; i++)
			if (!pin_ok(r->server_pins[i]))
				return ca_error_set(err, CA_E_INVALID_ARGS,
						    "server-pin of [policy %s] must be sha256: and "
						    "the base64 SHA-256 of the server key's "
						    "SubjectPublicKeyInfo, not \"%s\"",
						    name, r->server_pins[i]);
		return 0;
	}
	if (strcmp(key, "applications") == 0) {
		size_t before = 0;
		int e;

		while (r->applications && r->applications[before])
			before++;
		e = list_add(&r->applications, value, false, key, name, err);
		if (e)
			return e;
		for (size_t i = before; r->applications[i]; i++) {
			const char *a = r->applications[i];

			if (a[0] != '/' && strncmp(a, "unit:", 5) != 0 &&
			    strncmp(a, "flatpak:", 8) != 0)
				return ca_error_set(err, CA_E_INVALID_ARGS,
						    "applications of [policy %s]: \"%s\" is "
						    "neither an absolute executable path nor "
						    "unit:NAME nor flatpak:APP-ID",
						    name, a);
		}
		return 0;
	}
	if (strcmp(key, "confirm") == 0 || strcmp(key, "deny") == 0) {
		if (parse_bool(value, &b) < 0)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "%s of [policy %s] must be yes or no, not \"%s\"", key,
					    name, value);
		*(key[0] == 'c' ? &r->confirm : &r->deny) = b;
		return 0;
	}
	if (strcmp(key, "remember") == 0) {
		if (parse_u64(value, POLICY_REMEMBER_MAX, &n) < 0)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "remember of [policy %s] must be minutes from 0 to %d, "
					    "not \"%s\"",
					    name, POLICY_REMEMBER_MAX, value);
		r->remember_min = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "rate-limit") == 0) {
		if (parse_rate(value, r) < 0)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "rate-limit of [policy %s] must be N/second, N/minute "
					    "or N/hour (N from 1 to %d) or none, not \"%s\"",
					    name, POLICY_RATE_MAX, value);
		return 0;
	}
	return ca_error_set(err, CA_E_INVALID_ARGS,
			    "unknown key \"%s\" in [policy %s] (known: identity, servers, "
			    "server-issuer, server-pin, applications, confirm, remember, "
			    "rate-limit, deny)",
			    key, name);
}

static bool str_equal(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool strv_equal(char *const *a, char *const *b)
{
	size_t i = 0;

	if (!a || !b)
		return a == b;
	for (; a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return !a[i] && !b[i];
}

bool policy_rule_equal(const PolicyRule *a, const PolicyRule *b)
{
	return str_equal(a->name, b->name) && str_equal(a->identity, b->identity) &&
	       strv_equal(a->servers, b->servers) &&
	       strv_equal(a->server_issuers, b->server_issuers) &&
	       strv_equal(a->server_pins, b->server_pins) &&
	       strv_equal(a->applications, b->applications) && a->confirm == b->confirm &&
	       a->remember_min == b->remember_min && a->rate_n == b->rate_n &&
	       (!a->rate_n || a->rate_period_sec == b->rate_period_sec) && a->deny == b->deny;
}

bool policy_config_audit_equal(const PolicyConfig *a, const PolicyConfig *b)
{
	return str_equal(a->audit_path, b->audit_path) && a->audit_off == b->audit_off &&
	       a->audit_max_size == b->audit_max_size && a->audit_files == b->audit_files &&
	       a->audit_fail_closed == b->audit_fail_closed;
}

int policy_config_check(const PolicyConfig *c, const char *path, CaError *err)
{
	for (size_t i = 0; i < c->n_rules; i++) {
		const PolicyRule *r = &c->rules[i];

		if (!r->identity)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "%s: [policy %s] has no identity (use identity = "
					    "pkcs11: to make it apply to every identity)",
					    path, r->name);
		if (r->remember_min && !r->confirm)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "%s: [policy %s] has remember without confirm = yes",
					    path, r->name);
	}
	return 0;
}
