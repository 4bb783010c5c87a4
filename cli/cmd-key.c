/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent key generate TOKEN --type T --label L [--id HEX]: a key pair made ON the token
 * (pkcs11/admin-object.c: sensitive, never extractable, sign-only). Prints the new key's URI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "cli.h"
#include "json-print.h"
#include "p11cli.h"
#include "util.h"

enum { OPT_TYPE = 1, OPT_LABEL, OPT_ID, OPT_PIN_FILE, OPT_JSON, OPT_MODULE };

static const CliOption options[] = {
	{OPT_TYPE, "type", 't', "TYPE", "rsa2048, rsa3072, rsa4096, p256, p384, p521 or ed25519"},
	{OPT_LABEL, "label", 'l', "LABEL", "CKA_LABEL of the new key pair"},
	{OPT_ID, "id", 0, "HEX", "CKA_ID of the new key pair (default: 8 random bytes)"},
	{OPT_PIN_FILE, "pin-file", 0, "FILE",
	 "Read the user PIN from FILE (else $CERTAGENT_PIN, else a prompt)"},
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli-admin.md) instead of text"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

static int run(const CliCommand *cmd, int argc, char **argv)
{
	const char *type = NULL, *label = NULL, *id_hex = NULL, *pin_file = NULL, *module = NULL;
	const char *token = NULL, *arg;
	_cleanup_free_ char *uri = NULL;
	uint8_t id[ADMIN_ID_MAX];
	char id_str[2 * ADMIN_ID_MAX + 1];
	size_t id_len = 8;
	AdminSession *a = NULL;
	Store *s = NULL;
	CaError err = {0};
	bool json = false;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_TYPE:
			type = arg;
			break;
		case OPT_LABEL:
			label = arg;
			break;
		case OPT_ID:
			id_hex = arg;
			break;
		case OPT_PIN_FILE:
			pin_file = arg;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_MODULE:
			module = arg;
			break;
		}
	}
	if (o == 0 && (p.n_positional != 2 || strcmp(p.positional[0], "generate") != 0))
		o = cli_usage_error(cmd,
				    "usage: certagent key generate TOKEN --type TYPE --label L");
	else if (o == 0 && (!type || !admin_key_type_valid(type)))
		o = cli_usage_error(cmd, "--type must be rsa2048, rsa3072, rsa4096, p256, p384, "
					 "p521 or ed25519");
	else if (o == 0 && (!label || !*label || strlen(label) > ADMIN_LABEL_MAX))
		o = cli_usage_error(cmd, "--label LABEL (1 to %d bytes) is required",
				    ADMIN_LABEL_MAX);
	else if (o == 0 && strncmp(label, ADMIN_TMP_PREFIX, strlen(ADMIN_TMP_PREFIX)) == 0)
		o = cli_usage_error(cmd, "labels starting with %s are reserved", ADMIN_TMP_PREFIX);
	else if (o == 0 && id_hex && !p11cli_parse_hex(id_hex, id, sizeof(id), &id_len))
		o = cli_usage_error(cmd, "--id takes 1 to %d bytes in hex, e.g. --id 01a2",
				    ADMIN_ID_MAX);
	if (o == 0)
		token = p.positional[1];
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;
	if (!id_hex && gnutls_rnd(GNUTLS_RND_NONCE, id, id_len) < 0)
		return CLI_EXIT_FAILED;

	rc = p11cli_open(module, token, false, &s, &a);
	if (rc == 0)
		rc = p11cli_login_cleanup(a, pin_file);
	if (rc == 0) {
		p11cli_progress_start("generating the key pair on the token");
		rc = admin_generate_key(a, type, label, id, id_len, &uri, &err);
		p11cli_progress_stop();
		rc = p11cli_fail(rc, &err);
	}
	if (rc == 0) {
		p11cli_hex(id, id_len, id_str);
		if (json) {
			printf("{\"uri\": ");
			json_print_string(stdout, uri);
			printf(", \"label\": ");
			json_print_string(stdout, label);
			printf(", \"id\": \"%s\", \"type\": \"%s\", \"token\": ", id_str, type);
			json_print_string(stdout, admin_session_uri(a));
			printf("}\n");
		} else {
			printf("%s\n", uri);
		}
		rc = fflush(stdout) == 0 ? 0 : CLI_EXIT_IO;
	}
	admin_session_free(a);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_key = {
	.name = "key",
	.synopsis = "generate TOKEN",
	.summary = "Generate a key pair on a token",
	.description = "generate TOKEN --type T --label L [--id HEX]: generates the key pair on "
		       "the token itself; the private key is sensitive, never extractable and may "
		       "only sign (no decrypt, unwrap or derive). A label or ID already on the "
		       "token is refused. Prints the private key's pkcs11: URI.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
