/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * options: a small parser driven by each command's CliOption table (no getopt state, so each
 * command parses its own argv slice), and the --help/--help-table printers fed by the same
 * tables. Accepts --name VALUE, --name=VALUE, -s VALUE, -sVALUE and "--" to end options;
 * options and positional arguments may be mixed.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "util.h"

static const CliOption help_option = {CLI_OPT_HELP, "help", 'h', NULL, "Show this help"};

const CliExitCode cli_exit_codes[] = {
	{CLI_EXIT_OK, "success", "success"},
	{CLI_EXIT_TLS, "TLS failure",
	 "could not connect, the TLS handshake failed, the server rejected the client, or the "
	 "server's certificate is not trusted"},
	{CLI_EXIT_USAGE, "usage",
	 "usage error: bad option or argument, bad subject DN or SAN, bad --type, --id or "
	 "--label, no way to read a PIN"},
	{CLI_EXIT_FAILED, "agent or token failed",
	 "the agent is not running, or the agent, the PKCS#11 module or the token failed the "
	 "request (token full, unexpected error)"},
	{CLI_EXIT_PIN, "PIN or token problem",
	 "PIN or token problem: PIN required, wrong PIN, PIN locked or on its final try, token "
	 "absent"},
	{CLI_EXIT_IO, "file error",
	 "a local file could not be read or written, or does not hold what it should (a "
	 "certificate, a key, a CRL, an agent configuration that does not parse)"},
	{CLI_EXIT_REFUSED, "refused for safety",
	 "refused for safety, nothing changed: the label, ID or certificate is already there, "
	 "enroll --csr-out names a file that exists, re-initialising a token without --force, "
	 "deleting without --yes, deleting a key whose certificate stays, a policy refused the "
	 "signature"},
	{CLI_EXIT_NOT_FOUND, "nothing matches",
	 "nothing matches: no object, key or identity for the URI, no private key for the "
	 "certificate"},
};
const size_t cli_n_exit_codes = ELEMENTSOF(cli_exit_codes);

const CliEnvVar cli_env_vars[] = {
	{"CERTAGENT_PIN", "the user PIN, for scripts, when no --pin-file is given (the current "
			  "one for token set-pin, the new one for token init and unblock-pin); "
			  "wiped from the environment once read"},
	{"CERTAGENT_NEW_PIN", "token set-pin: the new user PIN when no --new-pin-file is given"},
	{"CERTAGENT_SO_PIN", "token init, unblock-pin: the SO PIN when no --so-pin-file is given"},
	{"CERTAGENT_MODULE", "the token commands, and list when it reads the tokens itself: load "
			     "only the PKCS#11 module at this absolute "
			     "path instead of those registered with p11-kit (as --module)"},
	{"CERTAGENT_DEBUG", "when set, the token commands also print every failing PKCS#11 call"},
	{"DBUS_SESSION_BUS_ADDRESS", "the bus the agent is on (else $XDG_RUNTIME_DIR/bus); "
				     "--address overrides it"},
};
const size_t cli_n_env_vars = ELEMENTSOF(cli_env_vars);

int cli_parser_init(CliParser *p, const CliCommand *cmd, int argc, char **argv)
{
	memset(p, 0, sizeof(*p));
	p->cmd = cmd;
	p->argc = argc;
	p->argv = argv;
	p->index = 1; /* argv[0] is the command name */
	p->positional = calloc(argc > 0 ? argc : 1, sizeof(char *));
	return p->positional ? 0 : -1;
}

void cli_parser_deinit(CliParser *p)
{
	free(p->positional);
	p->positional = NULL;
}

int cli_parser_done(CliParser *p, int o)
{
	cli_parser_deinit(p);
	if (o == CLI_OPT_HELP)
		return CLI_EXIT_OK;
	return o < 0 ? CLI_EXIT_USAGE : -1;
}

int cli_usage_error(const CliCommand *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("certagent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "\nTry `certagent %s --help'.\n", cmd->name);
	else
		fputs("\nTry `certagent --help'.\n", stderr);
	return -CLI_EXIT_USAGE;
}

static const CliOption *find_long(const CliCommand *cmd, const char *name, size_t len)
{
	for (size_t i = 0; i < cmd->n_options; i++)
		if (strlen(cmd->options[i].name) == len &&
		    strncmp(cmd->options[i].name, name, len) == 0)
			return &cmd->options[i];
	if (strlen(help_option.name) == len && strncmp(help_option.name, name, len) == 0)
		return &help_option;
	return NULL;
}

static const CliOption *find_short(const CliCommand *cmd, char c)
{
	for (size_t i = 0; i < cmd->n_options; i++)
		if (cmd->options[i].short_name && cmd->options[i].short_name == c)
			return &cmd->options[i];
	return c == help_option.short_name ? &help_option : NULL;
}

static int found(CliParser *p, const CliOption *o, const char *inline_arg, const char *shown,
		 const char **ret_arg)
{
	*ret_arg = NULL;
	if (o->arg) {
		if (inline_arg)
			*ret_arg = inline_arg;
		else if (p->index < p->argc)
			*ret_arg = p->argv[p->index++];
		else
			return cli_usage_error(p->cmd, "option %s needs an argument (%s)", shown,
					       o->arg);
	} else if (inline_arg) {
		return cli_usage_error(p->cmd, "option %s takes no argument", shown);
	}
	if (o->id == CLI_OPT_HELP)
		cli_print_command_help(p->cmd, stdout);
	return o->id;
}

int cli_options_next(CliParser *p, const char **ret_arg)
{
	while (p->index < p->argc) {
		char *a = p->argv[p->index++];
		const CliOption *o;

		if (p->only_args || a[0] != '-' || a[1] == '\0') {
			p->positional[p->n_positional++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			p->only_args = true;
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);

			o = find_long(p->cmd, name, len);
			if (!o)
				return cli_usage_error(p->cmd, "unknown option --%.*s", (int)len,
						       name);
			return found(p, o, eq ? eq + 1 : NULL, a, ret_arg);
		}
		o = find_short(p->cmd, a[1]);
		if (!o)
			return cli_usage_error(p->cmd, "unknown option -%c", a[1]);
		if (!o->arg && a[2])
			return cli_usage_error(p->cmd, "option -%c takes no argument", a[1]);
		return found(p, o, a[2] ? a + 2 : NULL, a, ret_arg);
	}
	return 0;
}

/* Prints text from column col, wrapping at 79 columns and indenting new lines to indent. */
static void print_wrapped(const char *text, size_t col, size_t indent, FILE *f)
{
	const char *p = text;

	while (*p) {
		size_t word = strcspn(p, " ");

		if (col > indent && col + 1 + word > 79) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
		} else if (p != text) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, word, f);
		col += word;
		p += word;
		while (*p == ' ')
			p++;
	}
	fputc('\n', f);
}

static void print_option(const CliOption *o, FILE *f)
{
	char left[64];

	if (o->short_name)
		snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name,
			 o->arg ? " " : "", o->arg ? o->arg : "");
	else
		snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
	fprintf(f, "  %-28s ", left);
	print_wrapped(o->help, 31, 31, f);
}

void cli_print_command_help(const CliCommand *cmd, FILE *f)
{
	fprintf(f, "Usage: certagent %s [OPTION...]%s%s\n\n", cmd->name, *cmd->synopsis ? " " : "",
		cmd->synopsis);
	print_wrapped(cmd->description, 0, 0, f);
	fputc('\n', f);
	fputs("Options:\n", f);
	for (size_t i = 0; i < cmd->n_options; i++)
		print_option(&cmd->options[i], f);
	print_option(&help_option, f);
	{
		char line[512] = "Exit status:";
		size_t n = strlen(line);

		for (size_t i = 0; i < cli_n_exit_codes && n < sizeof(line); i++)
			n += snprintf(line + n, sizeof(line) - n, " %d %s%s",
				      cli_exit_codes[i].code, cli_exit_codes[i].name,
				      i + 1 < cli_n_exit_codes ? ","
							       : " (details: man certagent).");
		fputc('\n', f);
		print_wrapped(line, 0, 2, f);
	}
}

static void print_row(const char *cmd, const CliOption *o, FILE *f)
{
	char s[3] = {'-', o->short_name, '\0'};

	fprintf(f, "%s\t--%s\t%s\t%s\t%s\n", cmd, o->name, o->short_name ? s : "",
		o->arg ? o->arg : "", o->help);
}

void cli_print_table(const CliCommand *const *cmds, size_t n, FILE *f)
{
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s\t\t\t%s\t%s\t%s\n", cmds[i]->name, cmds[i]->synopsis,
			cmds[i]->summary, cmds[i]->description);
		for (size_t j = 0; j < cmds[i]->n_options; j++)
			print_row(cmds[i]->name, &cmds[i]->options[j], f);
		print_row(cmds[i]->name, &help_option, f);
	}
	for (size_t i = 0; i < cli_n_exit_codes; i++)
		fprintf(f, "@exit\t%d\t%s\n", cli_exit_codes[i].code, cli_exit_codes[i].meaning);
	for (size_t i = 0; i < cli_n_env_vars; i++)
		fprintf(f, "@env\t%s\t%s\n", cli_env_vars[i].name, cli_env_vars[i].meaning);
}
