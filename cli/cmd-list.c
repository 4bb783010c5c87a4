/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent list: the identities (key + certificate chain) the agent sees, as text for people
 * or as JSON for scripts (schema in docs/cli.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json-print.h"
#include "util.h"

enum { OPT_JSON = 1, OPT_ADDRESS };

static const CliOption options[] = {
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli.md) instead of text"},
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "D-Bus address of the bus the agent is on "
	 "(default: the session bus)"},
};

static void print_json(const certagent_identity_list *l, FILE *f)
{
	size_t n = certagent_identity_list_count(l);

	fputs("{\"identities\": [", f);
	for (size_t i = 0; i < n; i++) {
		const certagent_identity *id = certagent_identity_list_get(l, i);
		size_t nc = certagent_identity_cert_count(id);

		fputs(i ? ",\n  {" : "\n  {", f);
		fputs("\"uri\": ", f);
		json_print_string(f, certagent_identity_uri(id));
		fputs(", \"label\": ", f);
		json_print_string(f, certagent_identity_label(id));
		fputs(", \"key_type\": ", f);
		json_print_string(f, certagent_identity_key_type(id));
		fprintf(f, ", \"bits\": %u", certagent_identity_bits(id));
		fputs(", \"token\": ", f);
		json_print_string(f, certagent_identity_token(id));
		fputs(", \"token_label\": ", f);
		json_print_string(f, certagent_identity_token_label(id));
		fprintf(f, ", \"logged_in\": %s",
			certagent_identity_logged_in(id) ? "true" : "false");
		fputs(", \"schemes\": [", f);
		for (size_t j = 0; j < certagent_identity_scheme_count(id); j++) {
			fputs(j ? ", " : "", f);
			json_print_string(f, certagent_identity_scheme(id, j));
		}
		fputs("], \"chain\": [", f);
		for (size_t j = 0; j < nc; j++) {
			_cleanup_free_ char *subject =
				cli_cert_dn(certagent_identity_cert(id, j), false);
			_cleanup_free_ char *issuer =
				cli_cert_dn(certagent_identity_cert(id, j), true);

			fputs(j ? ", {\"subject\": " : "{\"subject\": ", f);
			json_print_string(f, subject);
			fputs(", \"issuer\": ", f);
			json_print_string(f, issuer);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs(n ? "\n]}\n" : "]}\n", f);
}

static void print_text(const certagent_identity_list *l, FILE *f)
{
	size_t n = certagent_identity_list_count(l);

	if (n == 0) {
		fputs("No identities. Is the token inserted, and does it hold a certificate with "
		      "the "
		      "same ID as the key?\n",
		      f);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const certagent_identity *id = certagent_identity_list_get(l, i);
		size_t nc = certagent_identity_cert_count(id);
		_cleanup_free_ char *subject = NULL, *issuer = NULL;

		if (nc > 0) {
			subject = cli_cert_dn(certagent_identity_cert(id, 0), false);
			issuer = cli_cert_dn(certagent_identity_cert(id, 0), true);
		}
		fprintf(f, "%s%s\n", i ? "\n" : "",
			*certagent_identity_label(id) ? certagent_identity_label(id)
						      : "(no label)");
		fprintf(f, "  uri:      %s\n", certagent_identity_uri(id));
		fprintf(f, "  key:      %s %u\n", certagent_identity_key_type(id),
			certagent_identity_bits(id));
		fprintf(f, "  token:    %s (%s)\n", certagent_identity_token_label(id),
			certagent_identity_logged_in(id) ? "unlocked" : "locked");
		fputs("  schemes: ", f);
		for (size_t j = 0; j < certagent_identity_scheme_count(id); j++)
			fprintf(f, " %s", certagent_identity_scheme(id, j));
		fputc('\n', f);
		fprintf(f, "  subject:  %s\n", subject ? subject : "(no certificate)");
		if (issuer)
			fprintf(f, "  issuer:   %s\n", issuer);
		if (nc > 1)
			fprintf(f, "  chain:    %zu certificates (leaf + %zu intermediate%s)\n", nc,
				nc - 1, nc > 2 ? "s" : "");
	}
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	certagent_identity_list *l = NULL;
	const char *address = NULL, *arg;
	bool json = false;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_JSON)
			json = true;
		else if (o == OPT_ADDRESS)
			address = arg;
	}
	if (o == 0 && p.n_positional > 0)
		o = cli_usage_error(cmd, "list takes no arguments");
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	if (certagent_client_new(address, &c, &err) < 0)
		return cli_agent_error(&err);
	if (certagent_list_identities(c, &l, &err) < 0) {
		rc = cli_agent_error(&err);
	} else {
		if (json)
			print_json(l, stdout);
		else
			print_text(l, stdout);
		rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IO;
	}
	certagent_identity_list_free(l);
	certagent_client_free(c);
	return rc;
}

const CliCommand cli_cmd_list = {
	.name = "list",
	.synopsis = "",
	.summary = "List the identities (key + certificate) the agent can use",
	.description = "Lists every identity certagentd sees on its tokens: label, key type and "
		       "size, token, the TLS signature schemes the token can make with the key, "
		       "and the subject and issuer of the certificate.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
