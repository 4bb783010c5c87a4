/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent status: is the agent running, on which bus, which version, which tokens it sees
 * (locked or unlocked, PIN warnings) and how many identities. When the agent is not running it
 * says so (text or JSON) and exits 3, so scripts can test for it.
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
	 "D-Bus address of the bus the agent is on (default: the session bus)"},
};

/* CK_TOKEN_INFO.flags bits (PKCS#11 v2.40 §3.2), under our own names. */
#define TOKEN_LOGIN_REQUIRED UINT64_C(0x4)
#define TOKEN_PROTECTED_AUTH_PATH UINT64_C(0x100)
#define TOKEN_USER_PIN_COUNT_LOW UINT64_C(0x10000)
#define TOKEN_USER_PIN_FINAL_TRY UINT64_C(0x20000)
#define TOKEN_USER_PIN_LOCKED UINT64_C(0x40000)

typedef struct Status {
	const char *bus; /* what we tried */
	bool running;
	char *version;
	certagent_error err; /* why not running, or what failed */
	bool failed;
	certagent_token_list *tokens;
	certagent_identity_list *ids;
} Status;

/* The bus libcertagent will use (the same order as certagent_client_new), for display. */
static const char *bus_shown(const char *address, char *buf, size_t size)
{
	const char *env = getenv("DBUS_SESSION_BUS_ADDRESS"), *run = getenv("XDG_RUNTIME_DIR");

	if (address)
		return address;
	if (env && *env)
		return env;
	if (run && *run) {
		snprintf(buf, size, "unix:path=%s/bus", run);
		return buf;
	}
	return "(no session bus)";
}

static size_t ids_on_token(const Status *st, const certagent_token *t)
{
	size_t n = 0;

	for (size_t i = 0; i < certagent_identity_list_count(st->ids); i++)
		if (strcmp(certagent_identity_token(certagent_identity_list_get(st->ids, i)),
			   certagent_token_uri(t)) == 0)
			n++;
	return n;
}

static const char *pin_warning(uint64_t flags)
{
	if (flags & TOKEN_USER_PIN_LOCKED)
		return "user PIN locked";
	if (flags & TOKEN_USER_PIN_FINAL_TRY)
		return "final PIN try";
	if (flags & TOKEN_USER_PIN_COUNT_LOW)
		return "a wrong PIN was entered";
	return NULL;
}

static void print_text(const Status *st, FILE *f)
{
	size_t nt = certagent_token_list_count(st->tokens);

	if (!st->running) {
		fprintf(f, "agent:      not running (bus %s)\n", st->bus);
		fprintf(f, "            %s\n", st->err.message);
		return;
	}
	fprintf(f, "agent:      running, certagentd %s, on %s\n", st->version ? st->version : "?",
		st->bus);
	if (st->failed) {
		fprintf(f, "            but it failed a request: %s\n", st->err.message);
		return;
	}
	fprintf(f, "tokens:     %zu\n", nt);
	for (size_t i = 0; i < nt; i++) {
		const certagent_token *t = certagent_token_list_get(st->tokens, i);
		uint64_t flags = certagent_token_flags(t);
		const char *warn = pin_warning(flags);
		size_t n = ids_on_token(st, t);

		fprintf(f, "  %-16s %-8s %zu identit%s; %s %s, serial %s%s%s%s\n",
			*certagent_token_label(t) ? certagent_token_label(t) : "(no label)",
			certagent_token_logged_in(t)	  ? "unlocked"
			: !(flags & TOKEN_LOGIN_REQUIRED) ? "no-login"
							  : "locked",
			n, n == 1 ? "y" : "ies", certagent_token_manufacturer(t),
			certagent_token_model(t), certagent_token_serial(t),
			flags & TOKEN_PROTECTED_AUTH_PATH ? ", PIN pad" : "", warn ? ", " : "",
			warn ? warn : "");
		fprintf(f, "  %-16s %s\n", "", certagent_token_uri(t));
	}
	fprintf(f, "identities: %zu\n", certagent_identity_list_count(st->ids));
	for (size_t i = 0; i < nt; i++) {
		const certagent_token *t = certagent_token_list_get(st->tokens, i);

		if (!certagent_token_logged_in(t) &&
		    (certagent_token_flags(t) & TOKEN_LOGIN_REQUIRED)) {
			fprintf(f, "hint:       unlock a token with `certagent unlock '%s'`\n",
				certagent_token_uri(t));
			break;
		}
	}
}

static void print_json(const Status *st, FILE *f)
{
	size_t nt = certagent_token_list_count(st->tokens);

	fprintf(f, "{\"agent\": {\"running\": %s, \"bus\": ", st->running ? "true" : "false");
	json_print_string(f, st->bus);
	fputs(", \"version\": ", f);
	json_print_string(f, st->version);
	fputs("},\n \"error\": ", f);
	if (!st->running || st->failed) {
		fputs("{\"code\": ", f);
		json_print_string(f, certagent_strerror(st->err.code));
		fputs(", \"message\": ", f);
		json_print_string(f, st->err.message);
		fputc('}', f);
	} else {
		fputs("null", f);
	}
	fputs(",\n \"tokens\": [", f);
	for (size_t i = 0; i < nt; i++) {
		const certagent_token *t = certagent_token_list_get(st->tokens, i);
		uint64_t flags = certagent_token_flags(t);

		fputs(i ? ",\n   {\"uri\": " : "\n   {\"uri\": ", f);
		json_print_string(f, certagent_token_uri(t));
		fputs(", \"label\": ", f);
		json_print_string(f, certagent_token_label(t));
		fputs(", \"serial\": ", f);
		json_print_string(f, certagent_token_serial(t));
		fputs(", \"manufacturer\": ", f);
		json_print_string(f, certagent_token_manufacturer(t));
		fputs(", \"model\": ", f);
		json_print_string(f, certagent_token_model(t));
		fputs(", \"module\": ", f);
		json_print_string(f, certagent_token_module(t));
		fprintf(f,
			", \"logged_in\": %s, \"login_required\": %s, \"pin_pad\": %s, "
			"\"pin_count_low\": %s, \"pin_final_try\": %s, \"pin_locked\": %s, "
			"\"identities\": %zu}",
			certagent_token_logged_in(t) ? "true" : "false",
			flags & TOKEN_LOGIN_REQUIRED ? "true" : "false",
			flags & TOKEN_PROTECTED_AUTH_PATH ? "true" : "false",
			flags & TOKEN_USER_PIN_COUNT_LOW ? "true" : "false",
			flags & TOKEN_USER_PIN_FINAL_TRY ? "true" : "false",
			flags & TOKEN_USER_PIN_LOCKED ? "true" : "false", ids_on_token(st, t));
	}
	fprintf(f, "],\n \"identities\": %zu}\n", certagent_identity_list_count(st->ids));
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	Status st = {.err = CERTAGENT_ERROR_INIT};
	certagent_client *c = NULL;
	const char *address = NULL, *arg;
	char busbuf[4200];
	bool json = false;
	CliParser p;
	int o, rc = CLI_EXIT_OK;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_JSON)
			json = true;
		else if (o == OPT_ADDRESS)
			address = arg;
	}
	if (o == 0 && p.n_positional > 0)
		o = cli_usage_error(cmd, "status takes no arguments");
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;
	rc = CLI_EXIT_OK;

	st.bus = bus_shown(address, busbuf, sizeof(busbuf));
	if (certagent_client_new(address, &c, &st.err) < 0) {
		rc = cli_exit_code_for(st.err.code);
	} else {
		st.running = true;
		if (certagent_agent_version(c, &st.version, &st.err) < 0 ||
		    certagent_list_tokens(c, &st.tokens, &st.err) < 0 ||
		    certagent_list_identities(c, &st.ids, &st.err) < 0) {
			st.failed = true;
			rc = cli_exit_code_for(st.err.code);
			/* Not running after all: the agent went away between the calls. */
			st.running = st.err.code != CERTAGENT_E_AGENT_NOT_RUNNING;
		}
	}
	if (json)
		print_json(&st, stdout);
	else
		print_text(&st, stdout);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IO;

	free(st.version);
	certagent_token_list_free(st.tokens);
	certagent_identity_list_free(st.ids);
	certagent_client_free(c);
	return rc;
}

const CliCommand cli_cmd_status = {
	.name = "status",
	.synopsis = "",
	.summary = "Say whether the agent runs, its version, its tokens (locked or unlocked)",
	.description =
		"Says whether certagentd answers on the bus (and which bus), its version, "
		"the tokens it sees with their state (unlocked, locked, PIN warnings) and "
		"how many identities each holds. Exits 3 when the agent is not running, so "
		"scripts can test for it. If the bus can start the agent (D-Bus activation), "
		"asking starts it.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
