/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * options: the certagent CLI's commands and options, each described once in a static table
 * from which the parser, --help, and (via `certagent --help-table`) the man page and shell
 * completion are produced. A command's file owns its table; main.c owns the list of commands.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

typedef struct CliOption {
	int id;		  /* returned by cli_options_next(); > 0 */
	const char *name; /* long name without "--" */
	char short_name;  /* 0 if none */
	const char *arg;  /* metavariable ("FILE"); NULL for a flag */
	const char *help; /* one sentence, no trailing period */
} CliOption;

typedef struct CliCommand {
	const char *name;	 /* "connect" */
	const char *synopsis;	 /* positional arguments: "HOST:PORT" */
	const char *summary;	 /* one line for the command list */
	const char *description; /* a paragraph for --help and the man page */
	const CliOption *options;
	size_t n_options;
	int (*run)(const struct CliCommand *cmd, int argc, char **argv);
} CliCommand;

/*
 * Exit codes of every command, one table: cli_exit_codes[] below gives each its sentence for
 * --help, --help-table, the man page (cli/gen-docs.py) and docs/cli.md "Exit status".
 */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_TLS = 1,     /* could not connect, handshake failed, server rejected us */
	CLI_EXIT_USAGE = 2,   /* bad command line or input (DN, --type, no way to read a PIN) */
	CLI_EXIT_FAILED = 3,  /* agent not running, or the agent, module or token failed */
	CLI_EXIT_PIN = 4,     /* wrong/locked/final-try PIN, PIN required, token absent */
	CLI_EXIT_IO = 5,      /* a local file (certificate, CRL, configuration) unreadable or bad */
	CLI_EXIT_REFUSED = 6, /* refused for safety: exists already, needs --force/--yes */
	CLI_EXIT_NOT_FOUND = 7, /* nothing matches: no object, key or identity for the URI */
	/* The older name of 3, for commands written against it. */
	CLI_EXIT_AGENT = CLI_EXIT_FAILED,
};

typedef struct CliExitCode {
	int code;
	const char *name;    /* a few words, for --help */
	const char *meaning; /* one sentence, no trailing period */
} CliExitCode;

extern const CliExitCode cli_exit_codes[];
extern const size_t cli_n_exit_codes;

/* The environment variables the commands read, for --help-table and the man page. */
typedef struct CliEnvVar {
	const char *name;
	const char *meaning;
} CliEnvVar;

extern const CliEnvVar cli_env_vars[];
extern const size_t cli_n_env_vars;

/* Options every command takes (--help); they come after the command's own in --help. */
#define CLI_OPT_HELP (-1)

typedef struct CliParser {
	const CliCommand *cmd;
	int argc;
	char **argv;
	int index;	   /* next argv element */
	bool only_args;	   /* after "--" */
	char **positional; /* collected in order; pointers into argv */
	int n_positional;
} CliParser;

int cli_parser_init(CliParser *p, const CliCommand *cmd, int argc, char **argv);
void cli_parser_deinit(CliParser *p);
/*
 * Ends the parse: deinitialises p and turns o, the last cli_options_next() result (or a
 * cli_usage_error() of the command's own checks), into what run() does next: -1 to go on, else
 * the exit code to return now (0 after --help, 2 after a usage error).
 */
int cli_parser_done(CliParser *p, int o);

/*
 * Returns the id of the next option (its argument in *ret_arg), 0 at the end, or
 * -CLI_EXIT_USAGE after printing what was wrong. Positional arguments are collected in
 * p->positional. --help prints the help and returns CLI_OPT_HELP.
 */
int cli_options_next(CliParser *p, const char **ret_arg);

void cli_print_command_help(const CliCommand *cmd, FILE *f);
/*
 * The tables as tab-separated lines, for cli/gen-docs.py (man page, bash completion) and tests:
 * per command first "COMMAND<tab><tab><tab>SYNOPSIS<tab>SUMMARY<tab>DESCRIPTION", then one line
 * per option "COMMAND<tab>--name<tab>-s<tab>ARG<tab>HELP" (-s and ARG may be empty); then one
 * line per exit code "@exit<tab>CODE<tab>MEANING" and per environment variable
 * "@env<tab>NAME<tab>MEANING" (no command name starts with "@").
 */
void cli_print_table(const CliCommand *const *cmds, size_t n, FILE *f);
int cli_usage_error(const CliCommand *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
