/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent: the command-line tool for certagentd. main() picks the command from the table
 * below and hands it its slice of argv; each command lives in its own cmd-*.c with its option
 * table. Shared helpers (agent errors → messages and exit codes, certificate names) live here.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/x509.h>

#include "config.h"
#include "cli.h"
#include "util.h"

static const CliCommand *const commands[] = {
	&cli_cmd_list,	 &cli_cmd_unlock, &cli_cmd_connect, &cli_cmd_status,
	&cli_cmd_lock,	 &cli_cmd_reload, &cli_cmd_policy,  &cli_cmd_audit,
	&cli_cmd_tokens, &cli_cmd_token,  &cli_cmd_key,	    &cli_cmd_csr,
	&cli_cmd_cert,	 &cli_cmd_enroll, &cli_cmd_delete,  &cli_cmd_export_cert,
};

static void print_main_help(FILE *f)
{
	fputs("Usage: certagent COMMAND [OPTION...] [ARG...]\n\n"
	      "Talks to certagentd, the agent that keeps TLS client keys in PKCS#11 tokens.\n\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < ELEMENTSOF(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
	fputs("\nOptions:\n"
	      "  -h, --help     Show this help (`certagent COMMAND --help` for a command)\n"
	      "      --version  Show the version\n"
	      "      --help-table  Print every command's options as tab-separated rows\n"
	      "                    (for generating the man page and shell completion)\n",
	      f);
}

int cli_exit_code_for(certagent_code code)
{
	switch (code) {
	case CERTAGENT_E_PIN_REQUIRED:
	case CERTAGENT_E_PIN_INCORRECT:
	case CERTAGENT_E_PIN_LOCKED:
	case CERTAGENT_E_TOKEN_ABSENT:
		return CLI_EXIT_PIN;
	case CERTAGENT_E_INVALID_ARGS:
	case CERTAGENT_E_TOO_LARGE:
		return CLI_EXIT_USAGE;
	case CERTAGENT_E_POLICY_DENIED:
		return CLI_EXIT_REFUSED;
	case CERTAGENT_E_KEY_NOT_FOUND:
	case CERTAGENT_E_NO_IDENTITY:
		return CLI_EXIT_NOT_FOUND;
	default:
		return CLI_EXIT_FAILED;
	}
}

int cli_agent_error(const certagent_error *err)
{
	fprintf(stderr, "certagent: %s\n",
		err->message[0] ? err->message : certagent_strerror(err->code));
	return cli_exit_code_for(err->code);
}

char *cli_crt_dn(gnutls_x509_crt_t crt, bool issuer)
{
	gnutls_datum_t dn = {NULL, 0};
	char *s = NULL;

	if ((issuer ? gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0)
		    : gnutls_x509_crt_get_dn3(crt, &dn, 0)) == 0)
		s = strndup((const char *)dn.data, dn.size);
	gnutls_free(dn.data);
	return s;
}

char *cli_cert_dn(const gnutls_datum_t *der, bool issuer)
{
	gnutls_x509_crt_t crt;
	char *s = NULL;

	if (gnutls_x509_crt_init(&crt) < 0)
		return NULL;
	if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0)
		s = cli_crt_dn(crt, issuer);
	gnutls_x509_crt_deinit(crt);
	return s;
}

int main(int argc, char **argv)
{
	const char *name;

	/* A closed stdout or TLS peer must be an error we report, not a silent death. */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		print_main_help(stderr);
		return CLI_EXIT_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		print_main_help(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(name, "--version") == 0) {
		printf("certagent %s\n", CERTAGENT_VERSION);
		return CLI_EXIT_OK;
	}
	if (strcmp(name, "--help-table") == 0) {
		cli_print_table(commands, ELEMENTSOF(commands), stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < ELEMENTSOF(commands); i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i]->run(commands[i], argc - 1, argv + 1);

	cli_usage_error(NULL, "unknown command \"%s\"", name);
	return CLI_EXIT_USAGE;
}
