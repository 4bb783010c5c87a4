/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent policy: the per-identity policy in force — the [policy NAME] sections and audit
 * settings of the agent's configuration, read with the agent's own parser (agent/settings.c)
 * so the CLI and the agent never disagree — and `policy pin`, the server-pin value of a
 * server certificate. Policies are edited in the file (docs/configuration.md); the agent
 * reads it at start, so restart it after a change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "cli.h"
#include "json-print.h"
#include "settings.h"
#include "util.h"

enum { OPT_JSON = 1, OPT_CONFIG };

static const CliOption options[] = {
	{OPT_JSON, "json", 0, NULL, "With list: print JSON instead of text"},
	{OPT_CONFIG, "config", 0, "FILE",
	 "The agent configuration (default: $XDG_CONFIG_HOME/certagent/agent.conf)"},
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
	printf("audit log:     %s\n", c->audit_off ? "none" : c->audit_path ? c->audit_path
							 : def		 ? def
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

static int run(const CliCommand *cmd, int argc, char **argv)
{
	CliParser p;
	const char *arg, *config = NULL, *sub = NULL;
	_cleanup_free_ char *default_conf = NULL;
	Settings *s = NULL;
	bool json = false;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_USAGE;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_JSON)
			json = true;
		else if (o == OPT_CONFIG)
			config = arg;
	}
	if (o == 0) {
		sub = p.n_positional > 0 ? p.positional[0] : "list";
		if (strcmp(sub, "list") == 0 && p.n_positional > 1)
			o = cli_usage_error(cmd, "policy list takes no arguments");
		else if (strcmp(sub, "pin") == 0 && p.n_positional != 2)
			o = cli_usage_error(cmd, "policy pin takes one certificate file");
		else if (strcmp(sub, "list") != 0 && strcmp(sub, "pin") != 0)
			o = cli_usage_error(cmd, "unknown subcommand \"%s\" (list, pin)", sub);
	}
	if (o == 0 && strcmp(sub, "pin") == 0) {
		const char *file = p.positional[1];

		cli_parser_deinit(&p);
		return pin(file);
	}
	cli_parser_deinit(&p);
	if (o == CLI_OPT_HELP)
		return CLI_EXIT_OK;
	if (o < 0)
		return CLI_EXIT_USAGE;

	if (!config)
		config = default_conf = settings_default_path();
	rc = cli_settings_load(config, &s);
	if (rc)
		return rc;
	if (json)
		list_json(s, stdout);
	else
		list_text(s, config);
	settings_free(s);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IO;
}

const CliCommand cli_cmd_policy = {
	.name = "policy",
	.synopsis = "[list|pin CERT]",
	.summary = "Show the per-identity signing policy, or a server's pin",
	.description = "policy list (the default) shows the policy certagentd applies to each "
		       "identity, read from its configuration ([policy NAME] sections: servers, "
		       "server-issuer, server-pin, applications, confirm, remember, rate-limit) "
		       "and where its audit log goes. Edit the file to change it and restart the "
		       "agent. policy pin CERT prints the server-pin value (sha256 of the "
		       "public key) of a server certificate file.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
