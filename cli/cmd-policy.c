/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent policy: the per-identity policy in force — the [policy NAME] sections and audit
 * settings of the agent's configuration, read with the agent's own parser (agent/settings.c)
 * so the CLI and the agent never disagree — `policy add` and `policy remove`, which change
 * one section of that file (policy-edit.c) and have a running agent Reload it, and
 * `policy pin`, the server-pin value of a server certificate. One option per key of a
 * [policy] section (docs/configuration.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "cli.h"
#include "json-print.h"
#include "pin-input.h"
#include "policy-edit.h"
#include "settings.h"
#include "util.h"

enum {
	OPT_JSON = 1,
	OPT_CONFIG,
	OPT_ADDRESS,
	OPT_FORCE,
	OPT_YES,
	/* add: one per key of [policy NAME], in the order the section is written */
	OPT_IDENTITY,
	OPT_SERVERS,
	OPT_SERVER_ISSUER,
	OPT_SERVER_PIN,
	OPT_APPLICATIONS,
	OPT_CONFIRM,
	OPT_REMEMBER,
	OPT_RATE_LIMIT,
	OPT_DENY,
};

static const CliOption options[] = {
	{OPT_JSON, "json", 0, NULL, "With list, add and remove: print JSON instead of text"},
	{OPT_CONFIG, "config", 0, "FILE",
	 "The agent configuration (default: $XDG_CONFIG_HOME/certagent/agent.conf)"},
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "With add and remove: D-Bus address of the bus the agent to reload is on (default: the "
	 "session bus)"},
	{OPT_FORCE, "force", 'f', NULL, "With add: replace a policy of that name, in its place"},
	{OPT_YES, "yes", 'y', NULL, "With remove: remove without asking"},
	{OPT_IDENTITY, "identity", 0, "URI",
	 "With add: the identities the policy is for, a pkcs11: URI pattern (required; "
	 "pkcs11: alone is every identity)"},
	{OPT_SERVERS, "servers", 0, "GLOB",
	 "With add: a server name (glob) the identity may sign in to; repeatable"},
	{OPT_SERVER_ISSUER, "server-issuer", 0, "DN",
	 "With add: an issuer DN (RFC 4514) the server's certificate must have; repeatable"},
	{OPT_SERVER_PIN, "server-pin", 0, "PIN",
	 "With add: a key pin (sha256:BASE64, see policy pin) the server's certificate must "
	 "have; repeatable"},
	{OPT_APPLICATIONS, "applications", 0, "APP",
	 "With add: a program that may use the identity: /path/exe, unit:NAME or "
	 "flatpak:APP-ID (globs); repeatable"},
	{OPT_CONFIRM, "confirm", 0, NULL, "With add: ask the user before each signature"},
	{OPT_REMEMBER, "remember", 0, "MINUTES",
	 "With add and --confirm: how long an \"Allow\" holds per program and server"},
	{OPT_RATE_LIMIT, "rate-limit", 0, "N/PERIOD",
	 "With add: at most N signatures per second, minute or hour"},
	{OPT_DENY, "deny", 0, NULL, "With add: the identity may not be used at all"},
};

/* The [policy] key each add option writes; flags write "yes". */
static const char *const option_keys[] = {
	[OPT_IDENTITY] = "identity",
	[OPT_SERVERS] = "servers",
	[OPT_SERVER_ISSUER] = "server-issuer",
	[OPT_SERVER_PIN] = "server-pin",
	[OPT_APPLICATIONS] = "applications",
	[OPT_CONFIRM] = "confirm",
	[OPT_REMEMBER] = "remember",
	[OPT_RATE_LIMIT] = "rate-limit",
	[OPT_DENY] = "deny",
};

/* "key": [v0, v1, ...], or nothing when the key was left out of the section (v NULL). */
static void strv_json(FILE *f, const char *key, char *const *v)
{
	size_t n = 0;

	if (!v)
		return;
	while (v[n])
		n++;
	fprintf(f, ", \"%s\": ", key);
	json_print_strings(f, (const char *const *)v, n);
}

/* One line per entry for DNs (they hold spaces), else space-separated. */
static void print_list_text(char *const *v, const char *label, const char *none, bool lines)
{
	printf("  %-14s", label);
	if (!v) {
		printf("%s\n", none);
		return;
	}
	for (size_t i = 0; v[i]; i++)
		printf("%s%s", i ? (lines ? "\n                " : " ") : "", v[i]);
	putchar('\n');
}

static void list_text(const Settings *s, const char *path)
{
	const PolicyConfig *c = &s->policy;
	_cleanup_free_ char *def = c->audit_path ? NULL : policy_audit_default_path();

	printf("configuration: %s\n", s->path ? s->path : path ? path : "(none: defaults)");
	printf("audit log:     %s\n", c->audit_off    ? "none"
				      : c->audit_path ? c->audit_path
				      : def	      ? def
						      : "(no path)");
	if (!c->audit_off)
		printf("               rotated at %llu bytes, %u old files kept, %s\n",
		       (unsigned long long)c->audit_max_size, c->audit_files,
		       c->audit_fail_closed ? "fail-closed (no signature without its line)"
					    : "fail-open (signs and warns when it cannot write)");
	if (c->n_rules == 0) {
		printf("\nNo [policy] sections: every identity may be used by any program of this "
		       "user,\nfor any server, without confirmation or rate limit.\n");
		return;
	}
	printf("\nThe first policy whose identity matches applies; identities no policy matches "
	       "are\nallowed for every program of this user.\n");
	for (size_t i = 0; i < c->n_rules; i++) {
		const PolicyRule *r = &c->rules[i];
		char rate[64];

		policy_rule_rate_text(r, rate, sizeof(rate));
		printf("\n[policy %s]\n", r->name);
		printf("  %-14s%s\n", "identity", r->identity);
		if (r->deny) {
			printf("  %-14s%s\n", "deny", "yes: never used");
			continue;
		}
		print_list_text(r->servers, "servers", "any (named or not)", false);
		print_list_text(r->server_issuers, "server-issuer", "any", true);
		print_list_text(r->server_pins, "server-pin", "any", false);
		print_list_text(r->applications, "applications", "any program of this user", false);
		if (r->confirm && r->remember_min)
			printf("  %-14syes, remembered %u min per program and server\n", "confirm",
			       r->remember_min);
		else
			printf("  %-14s%s\n", "confirm", r->confirm ? "yes, every time" : "no");
		printf("  %-14s%s\n", "rate-limit", rate);
	}
}

static void list_json(const Settings *s, FILE *f)
{
	const PolicyConfig *c = &s->policy;
	_cleanup_free_ char *def = c->audit_path ? NULL : policy_audit_default_path();

	fputs("{\"settings\": {\"configuration\": ", f);
	json_print_string(f, s->path);
	fputs(", \"audit_log\": ", f);
	json_print_string(f, c->audit_off ? NULL : c->audit_path ? c->audit_path : def);
	fprintf(f, ", \"audit_max_size\": %llu, \"audit_files\": %u",
		(unsigned long long)c->audit_max_size, c->audit_files);
	fprintf(f, ", \"audit_fail_closed\": \"%s\"},\n \"policies\": [",
		c->audit_fail_closed ? "yes" : "no");
	for (size_t i = 0; i < c->n_rules; i++) {
		const PolicyRule *r = &c->rules[i];
		char rate[64];

		policy_rule_rate_text(r, rate, sizeof(rate));
		fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
		json_print_string(f, r->name);
		fputs(", \"identity\": ", f);
		json_print_string(f, r->identity);
		strv_json(f, "servers", r->servers);
		strv_json(f, "server_issuer", r->server_issuers);
		strv_json(f, "server_pin", r->server_pins);
		strv_json(f, "applications", r->applications);
		fprintf(f, ", \"confirm\": \"%s\", \"remember_minutes\": %u",
			r->confirm ? "yes" : "no", r->remember_min);
		fputs(", \"rate_limit\": ", f);
		json_print_string(f, rate);
		fprintf(f, ", \"deny\": \"%s\"}", r->deny ? "yes" : "no");
	}
	fputs(c->n_rules ? "\n]}\n" : "]}\n", f);
}

/* server-pin of the first certificate in a PEM or DER file. */
static int pin(const char *file)
{
	gnutls_datum_t data = {NULL, 0}, spki = {NULL, 0}, b64 = {NULL, 0};
	gnutls_x509_crt_t crt = NULL;
	gnutls_pubkey_t pub = NULL;
	uint8_t digest[32];
	int r, rc = CLI_EXIT_IO;

	r = gnutls_load_file(file, &data);
	if (r < 0) {
		fprintf(stderr, "certagent: cannot read %s: %s\n", file, gnutls_strerror(r));
		return CLI_EXIT_IO;
	}
	if (gnutls_x509_crt_init(&crt) < 0 || gnutls_pubkey_init(&pub) < 0)
		goto out;
	r = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM);
	if (r < 0)
		r = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_DER);
	if (r < 0) {
		fprintf(stderr, "certagent: %s holds no certificate (PEM or DER): %s\n", file,
			gnutls_strerror(r));
		goto out;
	}
	if (gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) < 0 ||
	    gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, digest) < 0 ||
	    gnutls_base64_encode2(&(gnutls_datum_t){digest, sizeof(digest)}, &b64) < 0) {
		fprintf(stderr, "certagent: cannot read the public key of %s\n", file);
		goto out;
	}
	printf("sha256:%.*s\n", (int)b64.size, (const char *)b64.data);
	rc = CLI_EXIT_OK;
out:
	gnutls_free(data.data);
	gnutls_free(spki.data);
	gnutls_free(b64.data);
	if (pub)
		gnutls_pubkey_deinit(pub);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	return rc;
}

int cli_settings_load(const char *config, Settings **ret)
{
	CaError err = {0};
	int r = settings_load(config, false, ret, &err);

	if (r == 0)
		return 0;
	/* A configuration that cannot be read or does not parse is a file error (5) for every
	 * command that reads it: the command line was fine. */
	fprintf(stderr, "certagent: %s\n", err.message[0] ? err.message : strerror(-r));
	return CLI_EXIT_IO;
}

/*
 * A configuration named with --config must be there: the agent reads no other file than the one
 * it was started with, so policies added to (or listed from) a mistyped name would apply to
 * nothing while the output said they were in force. Without --config the default file may be
 * missing (no configuration yet: add creates it).
 */
int cli_named_file_exists(const char *path, const char *what_to_do)
{
	struct stat st;
	int r = stat(path, &st);

	if (r == 0 && S_ISREG(st.st_mode))
		return 0;
	fprintf(stderr, "certagent: %s: %s: %s\n", path,
		r < 0 ? strerror(errno) : "not a regular file", what_to_do);
	return CLI_EXIT_IO;
}

int cli_config_exists(const char *config)
{
	_cleanup_free_ char *default_conf = settings_default_path();
	_cleanup_free_ char *hint = NULL;

	if (asprintf(&hint,
		     "name the file certagentd was started with (--config), or leave out "
		     "--config for %s",
		     default_conf ? default_conf : "the default configuration") < 0)
		hint = NULL;
	return cli_named_file_exists(config, hint ? hint : "name the agent's configuration");
}

/* The outcome of add/remove, and whether a running agent took it. */
static int edit_report(const char *change, const char *name, const char *path, const char *address,
		       bool json)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	const char *agent;
	int rc = CLI_EXIT_OK;

	if (certagent_client_new(address, &c, &err) == 0 && certagent_reload_policy(c, &err) == 0)
		agent = "reloaded";
	else if (err.code == CERTAGENT_E_AGENT_NOT_RUNNING)
		agent = "not-running";
	else {
		agent = "reload-failed";
		rc = CLI_EXIT_FAILED;
	}
	certagent_client_free(c);
	if (json) {
		fputs("{\"policy\": ", stdout);
		json_print_string(stdout, name);
		fprintf(stdout, ", \"change\": \"%s\", \"configuration\": ", change);
		json_print_string(stdout, path);
		fprintf(stdout, ", \"agent\": \"%s\", \"agent_error\": ", agent);
		json_print_string(stdout, rc ? err.message : NULL);
		fputs("}\n", stdout);
	}
	fprintf(stderr, "certagent: %s [policy %s] %s %s\n", change, name,
		strcmp(change, "removed") == 0 ? "from"
		: strcmp(change, "added") == 0 ? "to"
					       : "in",
		path);
	if (strcmp(agent, "reloaded") == 0)
		fprintf(stderr, "certagent: the agent read its policies again: the change "
				"applies now (token logins stay)\n");
	else if (strcmp(agent, "not-running") == 0)
		fprintf(stderr, "certagent: no agent is running: the change applies when it "
				"starts\n");
	else
		fprintf(stderr,
			"certagent: the file is changed, but the agent did not take it: %s\n"
			"certagent: it applies when the agent starts again (or after `certagent "
			"reload`, which also forgets token logins)\n",
			err.message[0] ? err.message : certagent_strerror(err.code));
	if (fflush(stdout) != 0)
		rc = CLI_EXIT_IO;
	return rc;
}

static int edit_exit_code(int r, const CaError *err)
{
	fprintf(stderr, "certagent: %s\n", r < 0 ? strerror(-r) : err->message);
	switch (r) {
	case POLICY_EDIT_E_EXISTS:
		return CLI_EXIT_REFUSED;
	case POLICY_EDIT_E_NOT_FOUND:
		return CLI_EXIT_NOT_FOUND;
	case POLICY_EDIT_E_INVALID:
		return CLI_EXIT_USAGE;
	case POLICY_EDIT_E_FILE:
		return CLI_EXIT_IO;
	default:
		return CLI_EXIT_FAILED;
	}
}

typedef struct PolicyArgs {
	const char *config, *address;
	bool json, force, yes;
	PolicyEditKey keys[ELEMENTSOF(option_keys) * POLICY_LIST_MAX];
	size_t n_keys;
	unsigned seen[ELEMENTSOF(option_keys)];
} PolicyArgs;

static int add(const CliCommand *cmd, const char *name, const char *path, PolicyArgs *a)
{
	PolicyEditKey sorted[ELEMENTSOF(a->keys)];
	size_t n = 0;
	CaError err = {0};
	bool replaced = false;
	int r;

	if (!a->seen[OPT_IDENTITY])
		return -cli_usage_error(cmd, "policy add needs --identity URI (pkcs11: alone "
					     "makes the policy apply to every identity)");
	/* The section in the order of the table, each option's values in the order given. */
	for (size_t o = OPT_IDENTITY; o < ELEMENTSOF(option_keys); o++)
		for (size_t i = 0; i < a->n_keys; i++)
			if (a->keys[i].key == option_keys[o])
				sorted[n++] = a->keys[i];
	r = policy_edit_apply(path, name, sorted, n, a->force, &replaced, &err);
	if (r)
		return edit_exit_code(r, &err);
	return edit_report(replaced ? "replaced" : "added", name, path, a->address, a->json);
}

static int remove_policy(const char *name, const char *path, PolicyArgs *a)
{
	Settings *s = NULL;
	CaError err = {0};
	bool found = false, replaced;
	int r;

	r = settings_load(path, true, &s, &err);
	if (r) {
		fprintf(stderr, "certagent: %s; nothing was changed: fix the file first\n",
			err.message[0] ? err.message : strerror(-r));
		return CLI_EXIT_IO;
	}
	for (size_t i = 0; i < s->policy.n_rules; i++)
		found = found || strcmp(s->policy.rules[i].name, name) == 0;
	settings_free(s);
	if (!found) {
		fprintf(stderr,
			"certagent: %s has no [policy %s] (certagent policy list shows "
			"the policies)\n",
			path, name);
		return CLI_EXIT_NOT_FOUND;
	}
	if (!a->yes && isatty(STDIN_FILENO)) {
		char q[256];

		snprintf(q, sizeof(q), "Remove [policy %s] from %s?", name, path);
		a->yes = pin_input_confirm(q);
	}
	if (!a->yes) {
		fprintf(stderr, "certagent: nothing removed: add --yes to remove [policy %s]\n",
			name);
		return CLI_EXIT_REFUSED;
	}
	r = policy_edit_apply(path, name, NULL, 0, false, &replaced, &err);
	if (r)
		return edit_exit_code(r, &err);
	return edit_report("removed", name, path, a->address, a->json);
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	CliParser p;
	const char *arg, *sub = "list", *operand = NULL;
	_cleanup_free_ char *default_conf = NULL;
	_cleanup_free_ PolicyArgs *a = calloc(1, sizeof(*a));
	Settings *s = NULL;
	bool add_opts = false;
	int o, rc;

	if (!a)
		return CLI_EXIT_FAILED;
	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_JSON)
			a->json = true;
		else if (o == OPT_CONFIG)
			a->config = arg;
		else if (o == OPT_ADDRESS)
			a->address = arg;
		else if (o == OPT_FORCE)
			a->force = true;
		else if (o == OPT_YES)
			a->yes = true;
		else if ((size_t)o < ELEMENTSOF(option_keys) && option_keys[o]) {
			bool flag = o == OPT_CONFIRM || o == OPT_DENY;
			bool list = o == OPT_SERVERS || o == OPT_SERVER_ISSUER ||
				    o == OPT_SERVER_PIN || o == OPT_APPLICATIONS;

			add_opts = true;
			if (a->seen[o]++ && !list) {
				o = cli_usage_error(cmd, "--%s is given twice", option_keys[o]);
				break;
			}
			if (a->seen[o] > POLICY_LIST_MAX) {
				o = cli_usage_error(cmd, "--%s is given more than %d times",
						    option_keys[o], POLICY_LIST_MAX);
				break;
			}
			a->keys[a->n_keys++] = (PolicyEditKey){option_keys[o], flag ? "yes" : arg};
		}
	}
	if (o == 0) {
		sub = p.n_positional > 0 ? p.positional[0] : "list";
		operand = p.n_positional > 1 ? p.positional[1] : NULL;
		if (strcmp(sub, "list") == 0 && p.n_positional > 1)
			o = cli_usage_error(cmd, "policy list takes no arguments");
		else if (strcmp(sub, "pin") == 0 && p.n_positional != 2)
			o = cli_usage_error(cmd, "policy pin takes one certificate file");
		else if ((strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0) &&
			 p.n_positional != 2)
			o = cli_usage_error(cmd, "policy %s takes one policy NAME", sub);
		else if (strcmp(sub, "list") != 0 && strcmp(sub, "pin") != 0 &&
			 strcmp(sub, "add") != 0 && strcmp(sub, "remove") != 0)
			o = cli_usage_error(
				cmd, "unknown subcommand \"%s\" (list, pin, add, remove)", sub);
		else if (strcmp(sub, "add") != 0 && (add_opts || a->force))
			o = cli_usage_error(cmd, "the options of a policy's keys (and --force) go "
						 "with policy add only");
		else if (strcmp(sub, "remove") != 0 && a->yes)
			o = cli_usage_error(cmd, "--yes goes with policy remove only");
	}
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;
	if (strcmp(sub, "pin") == 0)
		return pin(operand);

	if (a->config) {
		rc = cli_config_exists(a->config);
		if (rc)
			return rc;
	} else {
		a->config = default_conf = settings_default_path();
	}
	if (!a->config && strcmp(sub, "list") != 0) {
		fprintf(stderr, "certagent: neither XDG_CONFIG_HOME nor HOME is set: name the "
				"configuration with --config FILE\n");
		return CLI_EXIT_USAGE;
	}
	if (strcmp(sub, "add") == 0)
		return add(cmd, operand, a->config, a);
	if (strcmp(sub, "remove") == 0)
		return remove_policy(operand, a->config, a);
	rc = cli_settings_load(a->config, &s);
	if (rc)
		return rc;
	if (a->json)
		list_json(s, stdout);
	else
		list_text(s, a->config);
	settings_free(s);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IO;
}

const CliCommand cli_cmd_policy = {
	.name = "policy",
	.synopsis = "[list|pin CERT|add NAME|remove NAME]",
	.summary = "Show, add or remove per-identity signing policies, or show a server's pin",
	.description = "policy list (the default) shows the policy certagentd applies to each "
		       "identity, read from its configuration ([policy NAME] sections: servers, "
		       "server-issuer, server-pin, applications, confirm, remember, rate-limit) "
		       "and where its audit log goes. policy add NAME --identity URI [--servers "
		       "GLOB...] ... writes a [policy NAME] section at the end of the file (with "
		       "--force it replaces one of that name in its place); policy remove NAME "
		       "takes one out (asks first, or --yes). Both check the section with the "
		       "agent's own parser, leave the rest of the file byte for byte, replace "
		       "the file atomically and have a running agent reload it. policy pin CERT "
		       "prints the server-pin value (sha256 of the public key) of a server "
		       "certificate file.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
