/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent export-cert URI [--chain]: a certificate from a token as PEM (with --chain, the CA
 * certificates on the token that it chains up to). The URI may name the certificate or its
 * key. No command exports a private key; this one cannot either.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "p11cli.h"
#include "util.h"

#define CHAIN_MAX 8

enum { OPT_CHAIN = 1, OPT_OUT, OPT_MODULE };

static const CliOption options[] = {
	{OPT_CHAIN, "chain", 0, NULL, "Also export the CA certificates on the token above it"},
	{OPT_OUT, "out", 'o', "FILE", "Write to FILE instead of stdout"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

static bool same_der(const AdminObject *a, const AdminObject *b)
{
	return a->der.size == b->der.size && memcmp(a->der.data, b->der.data, a->der.size) == 0;
}

/* The certificate among l that issued (and signed) c. */
static const AdminObject *issuer_of(const AdminObjectList *l, const AdminObject *c)
{
	gnutls_x509_crt_t crt = NULL, ca = NULL;
	const AdminObject *found = NULL;

	if (gnutls_x509_crt_init(&crt) < 0 ||
	    gnutls_x509_crt_import(crt, &c->der, GNUTLS_X509_FMT_DER) < 0)
		goto out;
	if (gnutls_x509_crt_check_issuer(crt, crt))
		goto out; /* self-signed: the top */
	for (size_t i = 0; i < l->n && !found; i++) {
		const AdminObject *o = &l->items[i];
		unsigned status = 0;

		if (o->cls != ADMIN_OBJ_CERT || o == c || same_der(o, c))
			continue;
		if (gnutls_x509_crt_init(&ca) < 0)
			break;
		if (gnutls_x509_crt_import(ca, &o->der, GNUTLS_X509_FMT_DER) == 0 &&
		    gnutls_x509_crt_check_issuer(crt, ca) &&
		    gnutls_x509_crt_verify(crt, &ca, 1,
					   GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
						   GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
					   &status) == 0 &&
		    !(status & (GNUTLS_CERT_SIGNATURE_FAILURE | GNUTLS_CERT_SIGNER_NOT_FOUND)))
			found = o;
		gnutls_x509_crt_deinit(ca);
		ca = NULL;
	}
out:
	if (crt)
		gnutls_x509_crt_deinit(crt);
	return found;
}

static int emit(FILE *f, const AdminObject *o)
{
	gnutls_datum_t pem = {NULL, 0};
	int r = gnutls_pem_base64_encode2("CERTIFICATE", &o->der, &pem);

	if (r < 0)
		return CLI_EXIT_FAILED;
	r = fwrite(pem.data, 1, pem.size, f) == pem.size ? 0 : CLI_EXIT_IO;
	gnutls_free(pem.data);
	return r;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	const char *module = NULL, *out = NULL, *uri = NULL, *arg;
	const AdminObject *leaf = NULL, *chain[CHAIN_MAX];
	AdminObjectList *l = NULL;
	AdminSession *a = NULL;
	Store *s = NULL;
	CaError err = {0};
	bool with_chain = false;
	size_t n = 0, n_leaves = 0;
	FILE *f = stdout;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_CHAIN)
			with_chain = true;
		else if (o == OPT_OUT)
			out = arg;
		else if (o == OPT_MODULE)
			module = arg;
	}
	if (o == 0 && (p.n_positional != 1 || strncmp(p.positional[0], "pkcs11:", 7) != 0))
		o = cli_usage_error(cmd, "export-cert needs one pkcs11: URI");
	if (o == 0)
		uri = p.positional[0];
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	rc = p11cli_open(module, uri, false, &s, &a);
	/* Certificates are public objects: no login needed. */
	if (rc == 0)
		rc = p11cli_fail(admin_list_objects(a, &l, &err), &err);
	/* The certificates the URI names, else those with the ID of the keys it names. */
	for (int pass = 0; rc == 0 && pass < 2 && n_leaves == 0; pass++)
		for (size_t i = 0; rc == 0 && i < l->n; i++) {
			const AdminObject *c = &l->items[i];
			bool m = false;

			if (c->cls != ADMIN_OBJ_CERT)
				continue;
			if (pass == 0) {
				rc = p11cli_fail(admin_uri_matches(uri, c, &m, &err), &err);
			} else if (c->id_len > 0) {
				/* A key URI: its certificate shares its ID and label. Private keys
				 * are invisible without login, so match the URI as if c were one. */
				AdminObject as_key = *c;

				as_key.cls = ADMIN_OBJ_PRIVATE;
				rc = p11cli_fail(admin_uri_matches(uri, &as_key, &m, &err), &err);
				as_key.cls = ADMIN_OBJ_PUBLIC;
				if (rc == 0 && !m)
					rc = p11cli_fail(admin_uri_matches(uri, &as_key, &m, &err),
							 &err);
			}
			if (m && (!leaf || !same_der(leaf, c))) {
				leaf = c;
				n_leaves++;
			}
		}
	if (rc == 0 && n_leaves != 1) {
		fprintf(stderr, "certagent: %s names %zu certificates on token \"%s\"%s\n", uri,
			n_leaves, admin_session_label(a),
			n_leaves ? ": add id= or object= to name one"
				 : " (nor a key that has one): store one with `certagent cert import`");
		rc = n_leaves ? CLI_EXIT_USAGE : CLI_EXIT_NOT_FOUND;
	}
	if (rc == 0) {
		chain[n++] = leaf;
		while (with_chain && n < CHAIN_MAX) {
			const AdminObject *up = issuer_of(l, chain[n - 1]);
			bool seen = false;

			for (size_t i = 0; up && i < n; i++)
				seen |= same_der(chain[i], up);
			if (!up || seen)
				break;
			chain[n++] = up;
		}
	}
	if (rc == 0 && out) {
		f = fopen(out, "we");
		if (!f) {
			fprintf(stderr, "certagent: cannot write %s: %m\n", out);
			rc = CLI_EXIT_IO;
		}
	}
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = emit(f, chain[i]);
	if (f && f != stdout && fclose(f) != 0 && rc == 0)
		rc = CLI_EXIT_IO;
	else if (f == stdout && fflush(stdout) != 0 && rc == 0)
		rc = CLI_EXIT_IO;
	admin_object_list_free(l);
	admin_session_free(a);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_export_cert = {
	.name = "export-cert",
	.synopsis = "URI",
	.summary = "Print a certificate from a token as PEM (--chain: with its CAs)",
	.description = "Prints, as PEM, the certificate the pkcs11: URI names (or the certificate "
		       "of the key it names); with --chain also the CA certificates on the token "
		       "it chains up to. Private keys are never exported.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
