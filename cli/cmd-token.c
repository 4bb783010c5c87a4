/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent tokens: every slot with a token, straight from the PKCS#11 modules (no agent).
 * certagent token init|set-pin|unblock-pin|cleanup: setting a token up and its PINs.
 * PINs come from files, environment variables or a no-echo prompt, never from argv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "cli.h"
#include "json-print.h"
#include "p11cli.h"
#include "pin-input.h"
#include "util.h"

enum {
	OPT_JSON = 1,
	OPT_MODULE,
	OPT_LABEL,
	OPT_FORCE,
	OPT_SO_PIN_FILE,
	OPT_PIN_FILE,
	OPT_NEW_PIN_FILE,
};

/* --- tokens ------------------------------------------------------------------------------- */

static const CliOption tokens_options[] = {
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli-admin.md) instead of text"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

static const struct {
	unsigned long flag;
	const char *json, *text;
} flag_names[] = {
	{CKF_TOKEN_INITIALIZED, "initialized", "initialized"},
	{CKF_LOGIN_REQUIRED, "login_required", "login required"},
	{CKF_USER_PIN_INITIALIZED, "user_pin_initialized", "user PIN set"},
	{CKF_PROTECTED_AUTHENTICATION_PATH, "pinpad", "PIN pad"},
	{CKF_WRITE_PROTECTED, "write_protected", "write-protected"},
	{CKF_USER_PIN_COUNT_LOW, "user_pin_count_low", "USER PIN COUNT LOW"},
	{CKF_USER_PIN_FINAL_TRY, "user_pin_final_try", "USER PIN FINAL TRY"},
	{CKF_USER_PIN_LOCKED, "user_pin_locked", "USER PIN LOCKED"},
	{CKF_USER_PIN_TO_BE_CHANGED, "user_pin_to_be_changed", "user PIN must be changed"},
	{CKF_SO_PIN_COUNT_LOW, "so_pin_count_low", "SO PIN COUNT LOW"},
	{CKF_SO_PIN_FINAL_TRY, "so_pin_final_try", "SO PIN FINAL TRY"},
	{CKF_SO_PIN_LOCKED, "so_pin_locked", "SO PIN LOCKED"},
};

static void json_mem(FILE *f, const char *name, unsigned long v)
{
	if (v == CK_UNAVAILABLE_INFORMATION || v == CK_EFFECTIVELY_INFINITE)
		fprintf(f, ", \"%s\": null", name);
	else
		fprintf(f, ", \"%s\": %lu", name, v);
}

static void tokens_json(const AdminSlotList *l, FILE *f)
{
	fputs("{\"tokens\": [", f);
	for (size_t i = 0; i < l->n; i++) {
		const AdminSlot *s = &l->items[i];

		fputs(i ? ",\n  {" : "\n  {", f);
		fputs("\"module\": ", f);
		json_print_string(f, s->module);
		fputs(", \"module_path\": ", f);
		json_print_string(f, s->module_path);
		fprintf(f, ", \"slot_id\": %lu, \"slot_description\": ", s->slot_id);
		json_print_string(f, s->slot_description);
		fprintf(f, ", \"initialized\": %s, \"label\": ", s->initialized ? "true" : "false");
		json_print_string(f, s->label);
		fputs(", \"uri\": ", f);
		if (s->initialized) {
			json_print_string(f, s->uri);
		} else {
			/* A token with no label has no usable token URI: name its slot, as the
			 * text does (what `certagent token init` takes). */
			fprintf(f, "\"pkcs11:slot-id=%lu\"", s->slot_id);
		}
		fputs(", \"serial\": ", f);
		json_print_string(f, s->serial);
		fputs(", \"manufacturer\": ", f);
		json_print_string(f, s->manufacturer);
		fputs(", \"model\": ", f);
		json_print_string(f, s->model);
		fputs(", \"flags\": {", f);
		for (size_t k = 0; k < ELEMENTSOF(flag_names); k++)
			fprintf(f, "%s\"%s\": %s", k ? ", " : "", flag_names[k].json,
				s->flags & flag_names[k].flag ? "true" : "false");
		fputc('}', f);
		json_mem(f, "free_public_memory", s->free_public);
		json_mem(f, "total_public_memory", s->total_public);
		json_mem(f, "free_private_memory", s->free_private);
		json_mem(f, "total_private_memory", s->total_private);
		fprintf(f, ", \"min_pin_len\": %lu, \"max_pin_len\": %lu", s->min_pin, s->max_pin);
		fprintf(f, ", \"public_objects\": %zu, \"unfinished_enrollment_objects\": %zu}",
			s->n_objects, s->n_orphans);
	}
	fputs(l->n ? "\n]}\n" : "]}\n", f);
}

static void text_mem(FILE *f, const char *what, unsigned long free_b, unsigned long total)
{
	if (free_b == CK_UNAVAILABLE_INFORMATION || free_b == CK_EFFECTIVELY_INFINITE)
		fprintf(f, "%s not reported", what);
	else if (total == CK_UNAVAILABLE_INFORMATION || total == CK_EFFECTIVELY_INFINITE)
		fprintf(f, "%s %lu bytes free", what, free_b);
	else
		fprintf(f, "%s %lu of %lu bytes free", what, free_b, total);
}

static void tokens_text(const AdminSlotList *l, FILE *f)
{
	if (l->n == 0) {
		fputs("No tokens. Is the token inserted, and its module registered with p11-kit "
		      "(or given with --module PATH)?\n",
		      f);
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		const AdminSlot *s = &l->items[i];
		bool first = true;

		fprintf(f, "%s%s\n", i ? "\n" : "",
			s->initialized ? s->label : "(uninitialised token)");
		fprintf(f, "  module:       %s (%s)\n", s->module, s->module_path);
		fprintf(f, "  slot:         %lu (%s)\n", s->slot_id, s->slot_description);
		if (s->initialized)
			fprintf(f, "  uri:          %s\n", s->uri);
		else
			fprintf(f, "  uri:          pkcs11:slot-id=%lu  (for `certagent token init`)\n",
				s->slot_id);
		fprintf(f, "  serial:       %s\n", s->serial);
		fprintf(f, "  made by:      %s, model %s\n", s->manufacturer, s->model);
		fputs("  flags:       ", f);
		for (size_t k = 0; k < ELEMENTSOF(flag_names); k++)
			if (s->flags & flag_names[k].flag) {
				fprintf(f, "%s %s", first ? "" : ",", flag_names[k].text);
				first = false;
			}
		fputc('\n', f);
		fputs("  space:        ", f);
		text_mem(f, "public", s->free_public, s->total_public);
		fputs("; ", f);
		text_mem(f, "private", s->free_private, s->total_private);
		fputc('\n', f);
		if (s->initialized)
			fprintf(f, "  objects:      %zu visible without login\n", s->n_objects);
		if (s->flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY))
			fprintf(f,
				"  WARNING:      the user PIN is %s: certagent tries no PIN on it; "
				"reset it with the SO PIN: `certagent token unblock-pin '%s'`\n",
				s->flags & CKF_USER_PIN_LOCKED ? "locked" : "on its final try", s->uri);
		if (s->n_orphans)
			fprintf(f,
				"  WARNING:      %zu object(s) left by an unfinished enrollment: "
				"remove them with `certagent token cleanup '%s'`\n",
				s->n_orphans, s->uri);
	}
}

static int tokens_run(const CliCommand *cmd, int argc, char **argv)
{
	const char *module = NULL, *arg;
	AdminSlotList *l = NULL;
	Store *s = NULL;
	CaError err = {0};
	bool json = false;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_JSON)
			json = true;
		else if (o == OPT_MODULE)
			module = arg;
	}
	if (o == 0 && p.n_positional > 0)
		o = cli_usage_error(cmd, "tokens takes no arguments");
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	rc = p11cli_store_open(module, &s);
	if (rc != 0)
		return rc;
	rc = p11cli_fail(admin_list_slots(s, &l, &err), &err);
	if (rc == 0) {
		if (json)
			tokens_json(l, stdout);
		else
			tokens_text(l, stdout);
		rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IO;
	}
	admin_slot_list_free(l);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_tokens = {
	.name = "tokens",
	.synopsis = "",
	.summary = "List slots and tokens (straight from the modules, no agent)",
	.description = "Lists every slot with a token in the PKCS#11 modules: module, label, "
		       "serial, manufacturer and model, flags (login required, user PIN count "
		       "low, final try or locked, PIN pad), free space where the token reports it, "
		       "and objects left by an unfinished enrollment.",
	.options = tokens_options,
	.n_options = ELEMENTSOF(tokens_options),
	.run = tokens_run,
};

/* --- token init | set-pin | unblock-pin | cleanup ---------------------------------------- */

static const CliOption token_options[] = {
	{OPT_LABEL, "label", 0, "LABEL", "init: the new token label (1 to 32 bytes)"},
	{OPT_FORCE, "force", 0, NULL,
	 "init: re-initialise a token that holds objects (they are destroyed)"},
	{OPT_SO_PIN_FILE, "so-pin-file", 0, "FILE",
	 "Read the SO PIN from FILE (else $CERTAGENT_SO_PIN, else a prompt)"},
	{OPT_PIN_FILE, "pin-file", 0, "FILE",
	 "Read the user PIN (init, unblock-pin: the new one; set-pin: the current one) from FILE "
	 "(else $CERTAGENT_PIN, else a prompt)"},
	{OPT_NEW_PIN_FILE, "new-pin-file", 0, "FILE",
	 "set-pin: read the new user PIN from FILE (else $CERTAGENT_NEW_PIN, else a prompt)"},
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli-admin.md) instead of text"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

typedef struct TokenArgs {
	const char *sub, *token, *label, *module, *so_pin_file, *pin_file, *new_pin_file;
	bool force, json;
} TokenArgs;

static int read_pin(const char *file, const char *env, const char *what, AdminSession *a,
		    bool confirm, char **ret)
{
	_cleanup_free_ char *prompt = NULL;

	if (asprintf(&prompt, "%s of token \"%s\"", what,
		     *admin_session_label(a) ? admin_session_label(a) : "(new)") < 0)
		return CLI_EXIT_FAILED;
	return pin_input_get(file, env, prompt, confirm, ret);
}

static int token_init(Store *s, AdminSession *a, const TokenArgs *ta)
{
	_cleanup_erase_str_ char *so_pin = NULL, *pin = NULL;
	AdminObjectList *l = NULL;
	unsigned long flags = admin_session_flags(a);
	bool was_init = flags & CKF_TOKEN_INITIALIZED;
	bool hidden = was_init && (flags & CKF_USER_PIN_INITIALIZED) && (flags & CKF_LOGIN_REQUIRED);
	CaError err = {0};
	int rc = 0;

	if (!ta->label)
		return cli_usage_error(NULL, "token init needs --label LABEL"), CLI_EXIT_USAGE;
	if (was_init) {
		rc = p11cli_fail(admin_list_objects(a, &l, &err), &err);
		if (rc != 0)
			return rc;
		if ((l->n > 0 || hidden) && !ta->force) {
			fprintf(stderr,
				"certagent: token \"%s\" is already initialised; re-initialising "
				"it destroys everything on it:\n",
				admin_session_label(a));
			for (size_t i = 0; i < l->n; i++)
				fprintf(stderr, "  %s\n", l->items[i].uri);
			if (hidden)
				fprintf(stderr, "  %s (invisible without the user PIN)\n",
					l->n > 0 ? "and any private keys"
						 : "any private keys it holds");
			fprintf(stderr, "certagent: nothing changed; add --force to destroy them "
					"and initialise the token anyway\n");
			admin_object_list_free(l);
			return CLI_EXIT_REFUSED;
		}
	}
	if (!admin_session_pinpad(a)) {
		rc = read_pin(ta->so_pin_file, "CERTAGENT_SO_PIN",
			      was_init ? "SO PIN" : "new SO PIN", a, !was_init, &so_pin);
		if (rc == 0)
			rc = read_pin(ta->pin_file, "CERTAGENT_PIN", "new user PIN", a, true, &pin);
	}
	if (rc == 0)
		rc = p11cli_fail(admin_init_token(s, a, so_pin, so_pin ? strlen(so_pin) : 0,
						  ta->label, pin, pin ? strlen(pin) : 0, &err),
				 &err);
	if (rc == 0 && ta->json) {
		printf("{\"label\": ");
		json_print_string(stdout, admin_session_label(a));
		printf(", \"uri\": ");
		json_print_string(stdout, admin_session_uri(a));
		printf(", \"destroyed\": [");
		for (size_t i = 0; l && i < l->n; i++) {
			fputs(i ? ", " : "", stdout);
			json_print_string(stdout, l->items[i].uri);
		}
		printf("]}\n");
	} else if (rc == 0) {
		for (size_t i = 0; l && i < l->n; i++)
			fprintf(stderr, "certagent: destroyed %s\n", l->items[i].uri);
		printf("token initialised: %s (%s)\n", admin_session_label(a), admin_session_uri(a));
	}
	admin_object_list_free(l);
	return rc;
}

static int token_set_pin(AdminSession *a, const TokenArgs *ta)
{
	_cleanup_erase_str_ char *old = NULL, *pin = NULL;
	CaError err = {0};
	int rc;

	rc = p11cli_check_pin_state(a);
	if (rc == 0)
		rc = read_pin(ta->pin_file, "CERTAGENT_PIN", "current user PIN", a, false, &old);
	if (rc == 0)
		rc = read_pin(ta->new_pin_file, "CERTAGENT_NEW_PIN", "new user PIN", a, true, &pin);
	if (rc == 0)
		rc = p11cli_fail(admin_set_pin(a, old, strlen(old), pin, strlen(pin), &err), &err);
	if (rc == 0)
		fprintf(stderr, "certagent: user PIN of token \"%s\" changed\n",
			admin_session_label(a));
	return rc;
}

static int token_unblock_pin(AdminSession *a, const TokenArgs *ta)
{
	_cleanup_erase_str_ char *so_pin = NULL, *pin = NULL;
	CaError err = {0};
	int rc = 0;

	if (!admin_session_pinpad(a)) {
		rc = read_pin(ta->so_pin_file, "CERTAGENT_SO_PIN", "SO PIN", a, false, &so_pin);
		if (rc == 0)
			rc = read_pin(ta->pin_file, "CERTAGENT_PIN", "new user PIN", a, true, &pin);
	}
	if (rc == 0)
		rc = p11cli_fail(
			admin_login(a, ADMIN_SO, so_pin, so_pin ? strlen(so_pin) : 0, &err), &err);
	if (rc == 0)
		rc = p11cli_fail(admin_init_pin(a, pin, pin ? strlen(pin) : 0, &err), &err);
	if (rc == 0)
		fprintf(stderr, "certagent: user PIN of token \"%s\" reset by the SO\n",
			admin_session_label(a));
	return rc;
}

static int token_cleanup(AdminSession *a, const TokenArgs *ta)
{
	CaError err = {0};
	size_t n = 0;
	int rc = p11cli_login_user(a, ta->pin_file);

	if (rc == 0)
		rc = p11cli_fail(admin_cleanup_orphans(a, &n, &err), &err);
	if (rc == 0 && ta->json)
		printf("{\"removed\": %zu}\n", n);
	else if (rc == 0)
		printf("%zu object(s) left by unfinished enrollments removed from token \"%s\"\n",
		       n, admin_session_label(a));
	return rc;
}

static int token_run(const CliCommand *cmd, int argc, char **argv)
{
	TokenArgs ta = {0};
	AdminSession *a = NULL;
	Store *s = NULL;
	const char *arg;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_LABEL: ta.label = arg; break;
		case OPT_FORCE: ta.force = true; break;
		case OPT_SO_PIN_FILE: ta.so_pin_file = arg; break;
		case OPT_PIN_FILE: ta.pin_file = arg; break;
		case OPT_NEW_PIN_FILE: ta.new_pin_file = arg; break;
		case OPT_JSON: ta.json = true; break;
		case OPT_MODULE: ta.module = arg; break;
		}
	}
	if (o == 0 && p.n_positional != 2)
		o = cli_usage_error(cmd, "token needs a subcommand and a TOKEN "
					 "(e.g. `certagent token init pkcs11:slot-id=3 --label demo`)");
	if (o == 0) {
		ta.sub = p.positional[0];
		ta.token = p.positional[1];
		if (strcmp(ta.sub, "init") && strcmp(ta.sub, "set-pin") &&
		    strcmp(ta.sub, "unblock-pin") && strcmp(ta.sub, "cleanup"))
			o = cli_usage_error(cmd, "unknown subcommand \"%s\" (init, set-pin, "
						 "unblock-pin or cleanup)", ta.sub);
	}
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	rc = p11cli_open(ta.module, ta.token, strcmp(ta.sub, "init") == 0, &s, &a);
	if (rc == 0) {
		if (strcmp(ta.sub, "init") == 0)
			rc = token_init(s, a, &ta);
		else if (strcmp(ta.sub, "set-pin") == 0)
			rc = token_set_pin(a, &ta);
		else if (strcmp(ta.sub, "unblock-pin") == 0)
			rc = token_unblock_pin(a, &ta);
		else
			rc = token_cleanup(a, &ta);
	}
	admin_session_free(a);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_token = {
	.name = "token",
	.synopsis = "init|set-pin|unblock-pin|cleanup TOKEN",
	.summary = "Initialise a token, change or reset its user PIN, remove leftovers",
	.description =
		"init TOKEN-OR-SLOT --label L: sets the SO PIN and the user PIN of a new token "
		"(TOKEN-OR-SLOT: a label or a pkcs11: URI such as pkcs11:slot-id=N); a token that "
		"already holds objects is refused unless --force, after listing what would be "
		"destroyed. set-pin TOKEN: changes the user PIN. unblock-pin TOKEN: the SO logs "
		"in and sets a new user PIN (also after the user PIN locked). cleanup TOKEN: "
		"removes the objects an interrupted enrollment left. PINs are never taken from "
		"the command line.",
	.options = token_options,
	.n_options = ELEMENTSOF(token_options),
	.run = token_run,
};
