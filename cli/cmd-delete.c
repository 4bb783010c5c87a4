/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent delete URI... [--yes]: removes objects from a token. It first prints what the URIs
 * select; it deletes only with --yes (or a "y" on the terminal); it refuses to delete a
 * private key whose certificate would stay (name both), and URIs that name no object
 * (pkcs11:token=x alone would select everything).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/uri.h>

#include "cli.h"
#include "json-print.h"
#include "p11cli.h"
#include "pin-input.h"
#include "util.h"

#define URIS_MAX 64

enum { OPT_YES = 1, OPT_PIN_FILE, OPT_JSON, OPT_MODULE };

static const CliOption options[] = {
	{OPT_YES, "yes", 'y', NULL, "Delete without asking"},
	{OPT_PIN_FILE, "pin-file", 0, "FILE",
	 "Read the user PIN from FILE (else $CERTAGENT_PIN, else a prompt)"},
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli-admin.md) instead of text"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

static const char *class_name(int cls)
{
	switch (cls) {
	case ADMIN_OBJ_CERT:
		return "cert";
	case ADMIN_OBJ_PUBLIC:
		return "public";
	case ADMIN_OBJ_PRIVATE:
		return "private";
	case ADMIN_OBJ_SECRET:
		return "secret-key";
	case ADMIN_OBJ_DATA:
		return "data";
	default:
		return "other";
	}
}

/* A URI that names objects: it has an id= or object= (type= alone is too broad). */
static bool uri_names_object(const char *uri)
{
	P11KitUri *u = p11_kit_uri_new();
	bool ok;

	if (!u)
		return false;
	ok = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, u) == P11_KIT_URI_OK &&
	     (p11_kit_uri_get_attribute(u, CKA_ID) || p11_kit_uri_get_attribute(u, CKA_LABEL));
	p11_kit_uri_free(u);
	return ok;
}

static bool same_id(const AdminObject *a, const AdminObject *b)
{
	return a->id_len > 0 && a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

static void print_json(const AdminObjectList *l, const bool *sel, bool deleted)
{
	bool first = true;

	printf("{\"objects\": [");
	for (size_t i = 0; i < l->n; i++) {
		char hx[2 * ADMIN_ID_MAX + 1];

		if (!sel[i])
			continue;
		p11cli_hex(l->items[i].id, l->items[i].id_len, hx);
		printf("%s\n  {\"uri\": ", first ? "" : ",");
		json_print_string(stdout, l->items[i].uri);
		printf(", \"class\": \"%s\", \"label\": ", class_name(l->items[i].cls));
		json_print_string(stdout, l->items[i].label);
		printf(", \"id\": \"%s\"}", hx);
		first = false;
	}
	printf("\n], \"deleted\": %s}\n", deleted ? "true" : "false");
}

static int delete (AdminSession *a, char **uris, int n_uris, bool yes, bool json)
{
	AdminObjectList *l = NULL;
	_cleanup_free_ bool *sel = NULL;
	CaError err = {0};
	size_t n_sel = 0;
	int rc;

	rc = p11cli_fail(admin_list_objects(a, &l, &err), &err);
	if (rc != 0)
		return rc;
	sel = calloc(l->n + 1, sizeof(bool));
	if (!sel) {
		admin_object_list_free(l);
		return CLI_EXIT_FAILED;
	}
	for (int k = 0; k < n_uris && rc == 0; k++) {
		size_t hits = 0;

		for (size_t i = 0; i < l->n && rc == 0; i++) {
			bool m = false;

			rc = p11cli_fail(admin_uri_matches(uris[k], &l->items[i], &m, &err), &err);
			if (m) {
				hits++;
				n_sel += !sel[i];
				sel[i] = true;
			}
		}
		if (rc == 0 && hits == 0) {
			fprintf(stderr,
				"certagent: no object on token \"%s\" matches %s: nothing "
				"deleted\n",
				admin_session_label(a), uris[k]);
			rc = CLI_EXIT_NOT_FOUND;
		}
	}
	/* A private key must not leave its certificate behind. */
	for (size_t i = 0; i < l->n && rc == 0; i++) {
		if (!sel[i] || l->items[i].cls != ADMIN_OBJ_PRIVATE)
			continue;
		for (size_t j = 0; j < l->n; j++)
			if (!sel[j] && l->items[j].cls == ADMIN_OBJ_CERT &&
			    same_id(&l->items[i], &l->items[j])) {
				fprintf(stderr,
					"certagent: refusing to delete the private key %s: its "
					"certificate %s would stay, useless and misleading. Name "
					"the "
					"certificate too to delete both. Nothing deleted\n",
					l->items[i].uri, l->items[j].uri);
				rc = CLI_EXIT_REFUSED;
				break;
			}
	}
	if (rc == 0) {
		if (!json) {
			printf("%s %zu object(s) on token \"%s\":\n",
			       yes ? "deleting" : "would delete", n_sel, admin_session_label(a));
			for (size_t i = 0; i < l->n; i++)
				if (sel[i])
					printf("  %-8s %s\n", class_name(l->items[i].cls),
					       l->items[i].uri);
			fflush(stdout);
		}
		if (!yes && isatty(STDIN_FILENO))
			yes = pin_input_confirm("Delete these objects for good?");
		if (!yes) {
			if (json)
				print_json(l, sel, false);
			fprintf(stderr, "certagent: nothing deleted: add --yes to delete\n");
			rc = CLI_EXIT_REFUSED;
		}
	}
	for (size_t i = 0; i < l->n && rc == 0; i++) {
		if (!sel[i])
			continue;
		rc = p11cli_fail(admin_destroy(a, l->items[i].handle, &err), &err);
		if (rc != 0)
			fprintf(stderr,
				"certagent: stopped at %s; the objects listed before it are "
				"deleted\n",
				l->items[i].uri);
	}
	if (rc == 0 && json)
		print_json(l, sel, true);
	else if (rc == 0)
		printf("deleted\n");
	admin_object_list_free(l);
	return rc;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	const char *pin_file = NULL, *module = NULL, *arg;
	char *uris[URIS_MAX] = {0};
	int n_uris = 0;
	bool yes = false, json = false;
	AdminSession *a = NULL, *other = NULL;
	Store *s = NULL;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_YES:
			yes = true;
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
	if (o == 0 && (p.n_positional < 1 || p.n_positional > URIS_MAX))
		o = cli_usage_error(cmd, "delete needs 1 to %d object URIs", URIS_MAX);
	for (int i = 0; o == 0 && i < p.n_positional; i++) {
		uris[n_uris++] = p.positional[i];
		if (strncmp(p.positional[i], "pkcs11:", 7) != 0 ||
		    !uri_names_object(p.positional[i]))
			o = cli_usage_error(cmd,
					    "\"%s\" does not name objects: a pkcs11: URI with "
					    "id= or object= is needed",
					    p.positional[i]);
	}
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	rc = p11cli_open(module, uris[0], false, &s, &a);
	for (int i = 1; rc == 0 && i < n_uris; i++) {
		rc = p11cli_session(s, uris[i], false, &other);
		if (rc == 0 && strcmp(admin_session_uri(a), admin_session_uri(other)) != 0) {
			fprintf(stderr, "certagent: the URIs name objects on different tokens: run "
					"delete once per token\n");
			rc = CLI_EXIT_USAGE;
		}
		other = admin_session_free(other);
	}
	if (rc == 0)
		rc = p11cli_login_user(a, pin_file);
	if (rc == 0)
		rc = delete (a, uris, n_uris, yes, json);
	admin_session_free(a);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_delete = {
	.name = "delete",
	.synopsis = "URI...",
	.summary = "Delete objects from a token (asks first)",
	.description = "Prints the objects the pkcs11: URIs select (each needs id= or object=), "
		       "then deletes them with --yes or after a \"y\" on the terminal. A private "
		       "key whose certificate would stay is refused: name both.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
