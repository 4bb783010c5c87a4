/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent lock | reload: the agent's two argument-free control calls. `lock` logs the agent
 * out of every token (the next signature asks for the PIN again); `reload` has it
 * read its [policy] sections and audit keys again, re-initialise its PKCS#11 modules and scan
 * every token again (tokens created since it started, a reset PIN-source file; every login is
 * forgotten). Both share one runner.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util.h"

enum { OPT_ADDRESS = 1 };

static const CliOption options[] = {
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "D-Bus address of the bus the agent is on (default: the session bus)"},
};

static int run(const CliCommand *cmd, int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	const char *address = NULL, *arg;
	bool lock = strcmp(cmd->name, "lock") == 0;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0)
		if (o == OPT_ADDRESS)
			address = arg;
	if (o == 0 && p.n_positional > 0)
		o = cli_usage_error(cmd, "%s takes no arguments", cmd->name);
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	if (certagent_client_new(address, &c, &err) < 0)
		return cli_agent_error(&err);
	if ((lock ? certagent_lock(c, &err) : certagent_reload(c, &err)) < 0) {
		rc = cli_agent_error(&err);
		/* Reload's InvalidArgs is the agent's configuration file, not our command line. */
		if (!lock && err.code == CERTAGENT_E_INVALID_ARGS)
			rc = CLI_EXIT_IO;
	} else {
		fprintf(stderr, "certagent: %s\n",
			lock ? "the agent logged out of every token"
			     : "the agent read its policies, re-initialised its modules and "
			       "scanned its tokens again");
		rc = CLI_EXIT_OK;
	}
	certagent_client_free(c);
	return rc;
}

const CliCommand cli_cmd_lock = {
	.name = "lock",
	.synopsis = "",
	.summary = "Log the agent out of every token",
	.description = "Logs the agent out of every token it is logged in to. The next signature "
		       "on a token that needs a login asks for its PIN again (or fails with "
		       "\"PIN required\" when the agent cannot prompt).",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};

const CliCommand cli_cmd_reload = {
	.name = "reload",
	.synopsis = "",
	.summary = "Have the agent re-initialise its modules and scan its tokens again",
	.description = "Has the agent finalise and re-initialise every PKCS#11 module and scan "
		       "every token again, so tokens created since it started appear (SoftHSM "
		       "shows new tokens only then) and a PIN-source file that failed is read "
		       "again. Every login is forgotten. It also reads the [policy] sections and "
		       "audit keys of the configuration again (a file that does not load changes "
		       "nothing and is reported with file:line; `certagent policy add|remove` "
		       "reload the policies alone and keep the logins); other settings need a "
		       "restart.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
