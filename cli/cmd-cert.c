/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent cert import TOKEN FILE...: stores a leaf certificate and its chain on a token.
 * The leaf gets the CKA_ID and label of the private key whose public key it carries (refused
 * when no key matches, unless --no-key); the others are stored as CA certificates
 * (CKA_CERTIFICATE_CATEGORY 2). Nothing is overwritten: a leaf already on the token, or a key
 * that already has a certificate, is refused; a CA certificate already there is kept as is.
 * If storing fails half-way, what this run stored is removed again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json-print.h"
#include "p11cli.h"
#include "util.h"

#define FILES_MAX 16

enum { OPT_NO_KEY = 1, OPT_LABEL, OPT_ID, OPT_PIN_FILE, OPT_JSON, OPT_MODULE };

static const CliOption options[] = {
	{OPT_NO_KEY, "no-key", 0, NULL,
	 "Store the leaf even though no key on the token matches it"},
	{OPT_LABEL, "label", 0, "LABEL", "With --no-key: the leaf's label (default: its CN)"},
	{OPT_ID, "id", 0, "HEX", "With --no-key: the leaf's CKA_ID"},
	{OPT_PIN_FILE, "pin-file", 0, "FILE",
	 "Read the user PIN from FILE (else $CERTAGENT_PIN, else a prompt)"},
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli-admin.md) instead of text"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

typedef struct Item {
	gnutls_x509_crt_t crt;
	gnutls_datum_t der;
	char *subject;
	bool is_leaf;
	bool present; /* already on the token (CA certificates only) */
	unsigned long handle;
	char *uri;
} Item;

static bool der_on_token(const AdminObjectList *objs, const gnutls_datum_t *der, char **uri)
{
	for (size_t i = 0; i < objs->n; i++) {
		const AdminObject *o = &objs->items[i];

		if (o->cls == ADMIN_OBJ_CERT && o->der.size == der->size &&
		    memcmp(o->der.data, der->data, der->size) == 0) {
			*uri = o->uri;
			return true;
		}
	}
	return false;
}

static int import(AdminSession *a, Item *items, size_t n, bool no_key, const char *label_opt,
		  const uint8_t *id_opt, size_t id_opt_len, bool json)
{
	AdminObjectList *objs = NULL;
	CaError err = {0};
	const AdminObject *key = NULL;
	_cleanup_free_ char *leaf_label = NULL;
	const uint8_t *id = id_opt;
	size_t id_len = id_opt_len, leaf = n;
	int rc;

	rc = p11cli_fail(admin_list_objects(a, &objs, &err), &err);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (items[i].is_leaf)
			leaf = i;
	if (leaf < n) {
		gnutls_datum_t spki = {NULL, 0};
		char *dup = NULL;

		if (der_on_token(objs, &items[leaf].der, &dup)) {
			fprintf(stderr,
				"certagent: the certificate \"%s\" is already on token \"%s\" "
				"(%s): nothing stored\n",
				items[leaf].subject, admin_session_label(a), dup);
			rc = CLI_EXIT_REFUSED;
			goto out;
		}
		if (p11cli_crt_spki(items[leaf].crt, &spki) == 0)
			key = p11cli_key_for_spki(objs, &spki);
		gnutls_free(spki.data);
		if (key && !no_key) {
			id = key->id;
			id_len = key->id_len;
			leaf_label = strdup(key->label);
			for (size_t i = 0; i < objs->n; i++) {
				const AdminObject *o = &objs->items[i];

				if (o->cls == ADMIN_OBJ_CERT && id_len > 0 && o->id_len == id_len &&
				    memcmp(o->id, id, id_len) == 0) {
					fprintf(stderr,
						"certagent: key \"%s\" already has a certificate "
						"(%s): "
						"nothing stored; delete the old one first "
						"(`certagent delete '%s'`)\n",
						key->label, o->uri, o->uri);
					rc = CLI_EXIT_REFUSED;
					goto out;
				}
			}
		} else if (!no_key) {
			fprintf(stderr,
				"certagent: no private key on token \"%s\" matches the public key "
				"of \"%s\": nothing stored. Import it on the token that holds its "
				"key, or add --no-key to store it anyway\n",
				admin_session_label(a), items[leaf].subject);
			rc = CLI_EXIT_NOT_FOUND;
			goto out;
		} else {
			leaf_label =
				label_opt ? strdup(label_opt) : p11cli_crt_label(items[leaf].crt);
		}
		if (!leaf_label) {
			rc = CLI_EXIT_FAILED;
			goto out;
		}
		/* A certificate of its own (--no-key) must not share a label or ID with what is
		 * there: URIs by object= or id= would then name both (as key generate refuses). */
		if (no_key) {
			rc = p11cli_fail(admin_check_unused(a, leaf_label, id, id_len, &err), &err);
			if (rc != 0)
				goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		char *dup = NULL;

		if (!items[i].is_leaf && der_on_token(objs, &items[i].der, &dup)) {
			items[i].present = true;
			items[i].uri = strdup(dup);
		}
	}
	/* Store: the leaf, then the CA certificates not there yet; undo all on failure. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		_cleanup_free_ char *label = NULL;

		if (items[i].present)
			continue;
		label = items[i].is_leaf ? strdup(leaf_label) : p11cli_crt_label(items[i].crt);
		if (!label)
			rc = CLI_EXIT_FAILED;
		else
			rc = p11cli_fail(admin_store_cert(a, &items[i].der, label,
							  items[i].is_leaf ? id : NULL,
							  items[i].is_leaf ? id_len : 0,
							  !items[i].is_leaf ? ADMIN_CERT_AUTHORITY
							  : no_key	    ? ADMIN_CERT_OTHER
									    : ADMIN_CERT_USER,
							  &items[i].handle, &err),
					 &err);
	}
	if (rc != 0) {
		for (size_t i = 0; i < n; i++)
			if (items[i].handle && admin_destroy(a, items[i].handle, NULL) == 0)
				fprintf(stderr, "certagent: removed \"%s\" again\n",
					items[i].subject);
		goto out;
	}
	/* URIs of what we stored, from a fresh listing. */
	admin_object_list_free(objs);
	objs = NULL;
	rc = p11cli_fail(admin_list_objects(a, &objs, &err), &err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char *u = NULL;

		if (!items[i].present && der_on_token(objs, &items[i].der, &u))
			items[i].uri = strdup(u);
	}
	if (rc == 0 && json) {
		printf("{\"certificates\": [");
		for (size_t i = 0; i < n; i++) {
			printf("%s\n  {\"uri\": ", i ? "," : "");
			json_print_string(stdout, items[i].uri);
			printf(", \"subject\": ");
			json_print_string(stdout, items[i].subject);
			printf(", \"leaf\": %s, \"stored\": %s}",
			       items[i].is_leaf ? "true" : "false",
			       items[i].present ? "false" : "true");
		}
		printf("\n]}\n");
	} else if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			printf("%s %s: %s\n     %s\n", items[i].present ? "kept  " : "stored",
			       items[i].is_leaf ? "leaf" : "CA  ", items[i].subject,
			       items[i].uri ? items[i].uri : "");
	}
out:
	admin_object_list_free(objs);
	return rc;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	const char *label = NULL, *id_hex = NULL, *pin_file = NULL, *module = NULL, *arg;
	const char *token = NULL;
	uint8_t id[ADMIN_ID_MAX];
	size_t id_len = 0, n = 0, n_leaves = 0;
	bool no_key = false, json = false;
	Item items[FILES_MAX * 4] = {0};
	AdminSession *a = NULL;
	Store *s = NULL;
	CliParser p;
	int o, rc = 0;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_NO_KEY:
			no_key = true;
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
	if (o == 0 && (p.n_positional < 3 || strcmp(p.positional[0], "import") != 0))
		o = cli_usage_error(cmd, "usage: certagent cert import TOKEN FILE...");
	else if (o == 0 && p.n_positional - 2 > FILES_MAX)
		o = cli_usage_error(cmd, "at most %d files", FILES_MAX);
	else if (o == 0 && id_hex && !p11cli_parse_hex(id_hex, id, sizeof(id), &id_len))
		o = cli_usage_error(cmd, "--id takes hex bytes, e.g. --id 01a2");
	else if (o == 0 && (label || id_hex) && !no_key)
		o = cli_usage_error(cmd, "--label and --id only go with --no-key (otherwise the "
					 "key's are used)");
	/* Read every file before touching the token. */
	for (int i = 2; o == 0 && rc == 0 && i < p.n_positional; i++) {
		gnutls_x509_crt_t *v = NULL;
		size_t k = 0;

		rc = p11cli_read_certs(p.positional[i], &v, &k);
		for (size_t j = 0; rc == 0 && j < k; j++) {
			if (n >= ELEMENTSOF(items)) {
				fprintf(stderr,
					"certagent: more than %zu certificates in all: import "
					"one leaf with its chain at a time\n",
					ELEMENTSOF(items));
				rc = CLI_EXIT_USAGE;
				for (; j < k; j++)
					gnutls_x509_crt_deinit(v[j]);
				break;
			}
			items[n].crt = v[j];
			items[n].subject = cli_crt_dn(v[j], false);
			if (gnutls_x509_crt_export2(v[j], GNUTLS_X509_FMT_DER, &items[n].der) < 0)
				rc = CLI_EXIT_IO;
			n++;
		}
		gnutls_free(v);
	}
	if (o == 0)
		token = p.positional[1];
	o = cli_parser_done(&p, o);
	if (o == CLI_EXIT_OK)
		return CLI_EXIT_OK; /* --help: nothing was read */
	if (o > 0)
		rc = o;

	/* The leaf: the one certificate that is not a CA. Same certificate twice: once. */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		items[i].is_leaf = gnutls_x509_crt_get_ca_status(items[i].crt, NULL) <= 0;
		n_leaves += items[i].is_leaf;
		for (size_t j = 0; j < i; j++)
			if (items[j].der.size == items[i].der.size &&
			    memcmp(items[j].der.data, items[i].der.data, items[i].der.size) == 0) {
				fprintf(stderr, "certagent: \"%s\" is given twice\n",
					items[i].subject);
				rc = CLI_EXIT_USAGE;
			}
	}
	if (rc == 0 && n_leaves > 1) {
		fprintf(stderr,
			"certagent: the files hold %zu end-entity certificates: import one "
			"leaf (with its chain) at a time\n",
			n_leaves);
		rc = CLI_EXIT_USAGE;
	}
	if (rc == 0)
		rc = p11cli_open(module, token, false, &s, &a);
	if (rc == 0)
		rc = p11cli_login_user(a, pin_file);
	if (rc == 0)
		rc = import(a, items, n, no_key, label, id_hex ? id : NULL, id_len, json);
	for (size_t i = 0; i < n; i++) {
		gnutls_x509_crt_deinit(items[i].crt);
		gnutls_free(items[i].der.data);
		free(items[i].subject);
		free(items[i].uri);
	}
	admin_session_free(a);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_cert = {
	.name = "cert",
	.synopsis = "import TOKEN FILE...",
	.summary = "Store a certificate and its chain on a token, next to its key",
	.description = "import TOKEN FILE...: reads PEM or DER certificates (a leaf and its CA "
		       "chain) and stores them on TOKEN. The leaf gets the ID and label of the "
		       "private key whose public key it carries; without such a key it is refused "
		       "(unless --no-key). CA certificates are stored as authorities, once. A leaf "
		       "already on the token, or a key that already has a certificate, is refused; "
		       "nothing is overwritten.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
