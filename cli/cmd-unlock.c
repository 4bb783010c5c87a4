/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent unlock TOKEN-URI: logs the agent in to a token. The PIN comes from --pin-file,
 * else $CERTAGENT_PIN (for scripts), else a prompt on /dev/tty without echo; never from argv
 * (pin-input.c, the same rules as the token commands). Every copy of the PIN we hold is wiped
 * before it is freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "cli.h"
#include "pin-input.h"
#include "util.h"

enum { OPT_PIN_FILE = 1, OPT_ADDRESS };

static const CliOption options[] = {
	{OPT_PIN_FILE, "pin-file", 0, "FILE", "Read the PIN from the first line of FILE"},
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "D-Bus address of the bus the agent is on "
	 "(default: the session bus)"},
};

/* "value" into a blank-padded CK_TOKEN_INFO field, for p11_kit_uri_match_token_info. */
static void pad(CK_UTF8CHAR *field, size_t size, const char *value)
{
	size_t n = value ? strlen(value) : 0;

	memset(field, ' ', size);
	memcpy(field, value, n < size ? n : size);
}

/*
 * Before a person types a PIN: the agent's view of the tokens the URI names. A token whose
 * user PIN is locked or on its final try will not be tried (the agent refuses too, without a
 * C_Login); say so now, and what to do. 0 to go on, else the exit code. When the agent cannot
 * list its tokens, Unlock itself will say why.
 */
static int check_tokens(certagent_client *c, const char *uri)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_token_list *l = NULL;
	P11KitUri *u = p11_kit_uri_new();
	int rc = 0;

	if (!u || p11_kit_uri_parse(uri, P11_KIT_URI_FOR_TOKEN, u) != P11_KIT_URI_OK ||
	    certagent_list_tokens(c, &l, &err) < 0)
		goto out;
	for (size_t i = 0; rc == 0 && i < certagent_token_list_count(l); i++) {
		const certagent_token *t = certagent_token_list_get(l, i);
		uint64_t flags = certagent_token_flags(t);
		CK_TOKEN_INFO ti;

		memset(&ti, 0, sizeof(ti));
		pad(ti.label, sizeof(ti.label), certagent_token_label(t));
		pad(ti.manufacturerID, sizeof(ti.manufacturerID), certagent_token_manufacturer(t));
		pad(ti.model, sizeof(ti.model), certagent_token_model(t));
		pad(ti.serialNumber, sizeof(ti.serialNumber), certagent_token_serial(t));
		if (!p11_kit_uri_match_token_info(u, &ti))
			continue;
		if (flags & CKF_USER_PIN_LOCKED) {
			fprintf(stderr,
				"certagent: the user PIN of token \"%s\" is locked (too many wrong "
				"tries); nothing was tried. Reset it with the SO PIN: `certagent "
				"token unblock-pin '%s'`, then unlock again\n",
				certagent_token_label(t), uri);
			rc = CLI_EXIT_PIN;
		} else if (flags & CKF_USER_PIN_FINAL_TRY) {
			fprintf(stderr,
				"certagent: token \"%s\" allows only one more user PIN try before "
				"it locks, so neither certagent nor the agent risks it; nothing was "
				"tried. Reset the PIN with the SO PIN (`certagent token unblock-pin "
				"'%s'`), or, if you are sure of the PIN, log in once with the token's "
				"own tools to reset the counter\n",
				certagent_token_label(t), uri);
			rc = CLI_EXIT_PIN;
		}
	}
out:
	certagent_token_list_free(l);
	p11_kit_uri_free(u);
	return rc;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	_cleanup_erase_str_ char *pin = NULL;
	_cleanup_free_ char *prompt = NULL;
	const char *address = NULL, *pin_file = NULL, *token, *arg;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_PIN_FILE)
			pin_file = arg;
		else if (o == OPT_ADDRESS)
			address = arg;
	}
	token = p.n_positional == 1 ? p.positional[0] : NULL;
	if (o == 0 && !token)
		o = cli_usage_error(cmd, "unlock needs exactly one TOKEN-URI "
					 "(e.g. pkcs11:token=alice; see `certagent list`)");
	else if (o == 0 && strncmp(token, "pkcs11:", 7) != 0)
		o = cli_usage_error(cmd, "\"%s\" is not a pkcs11: URI (e.g. pkcs11:token=alice)",
				    token);
	cli_parser_deinit(&p);
	if (o == CLI_OPT_HELP)
		return CLI_EXIT_OK;
	if (o < 0)
		return CLI_EXIT_USAGE;

	/* Connect first: no point asking a person for a PIN nobody can use. */
	if (certagent_client_new(address, &c, &err) < 0)
		return cli_agent_error(&err);
	rc = check_tokens(c, token);
	if (rc == 0)
		rc = asprintf(&prompt, "PIN for %s", token) < 0
		     ? CLI_EXIT_FAILED
		     : pin_input_get(pin_file, "CERTAGENT_PIN", prompt, false, &pin);
	if (rc == 0) {
		if (certagent_unlock(c, token, pin, &err) < 0) {
			rc = cli_agent_error(&err);
		} else {
			fprintf(stderr, "certagent: %s unlocked\n", token);
			rc = CLI_EXIT_OK;
		}
	}
	certagent_client_free(c);
	return rc;
}

const CliCommand cli_cmd_unlock = {
	.name = "unlock",
	.synopsis = "TOKEN-URI",
	.summary = "Log the agent in to a token (asks for the PIN)",
	.description = "Logs certagentd in to the token(s) TOKEN-URI names, so it can sign with "
		       "their keys. The PIN is read from --pin-file, else from the environment "
		       "variable CERTAGENT_PIN, else asked for on the terminal without echo; it is "
		       "never taken from the command line. A wrong PIN is not retried.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
