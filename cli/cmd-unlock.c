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
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	/* Connect first: no point asking a person for a PIN nobody can use. */
	if (certagent_client_new(address, &c, &err) < 0)
		return cli_agent_error(&err);
	/*
	 * A locked or final-try PIN is refused by the agent on fresh token flags, before any
	 * C_Login. Its ListTokens answers from a snapshot that may be older (an SO may have
	 * reset the PIN since), so it is not asked here: that could refuse a good unlock.
	 */
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
