/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent csr KEY-URI --subject DN [--san TYPE:VALUE]... [--out FILE]: a PKCS#10 request
 * signed by a key on a token. GnuTLS builds the request; its private key is an "external"
 * key whose callbacks sign through pkcs11/admin-object.c (admin_sign, the enrolment signing path),
 * so the private key never leaves the token.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "cli.h"
#include "p11cli.h"
#include "util.h"

#define SANS_MAX 32

enum { OPT_SUBJECT = 1, OPT_SAN, OPT_OUT, OPT_PIN_FILE, OPT_MODULE };

static const CliOption options[] = {
	{OPT_SUBJECT, "subject", 's', "DN", "Subject, RFC 4514 (e.g. \"CN=alice,O=Example\")"},
	{OPT_SAN, "san", 0, "TYPE:VALUE",
	 "Subject alternative name: dns:NAME, email:ADDR, uri:URI or ip:ADDR (repeatable)"},
	{OPT_OUT, "out", 'o', "FILE", "Write the PEM request to FILE instead of stdout"},
	{OPT_PIN_FILE, "pin-file", 0, "FILE",
	 "Read the user PIN from FILE (else $CERTAGENT_PIN, else a prompt)"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

typedef struct Signer {
	AdminSession *a;
	const uint8_t *id;
	size_t id_len;
	gnutls_pk_algorithm_t pk;
	unsigned bits;
	CaError err;
	int r;
} Signer;

static int signer_out(Signer *sg, uint8_t *sig, size_t len, gnutls_datum_t *out)
{
	out->data = gnutls_malloc(len);
	if (!out->data) {
		free(sig);
		return GNUTLS_E_MEMORY_ERROR;
	}
	memcpy(out->data, sig, len);
	out->size = len;
	free(sig);
	return 0;
}

static int sign_hash_cb(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *ud,
			unsigned flags, const gnutls_datum_t *hash, gnutls_datum_t *out)
{
	Signer *sg = ud;
	CaSigKind kind;
	uint8_t *sig = NULL;
	size_t len = 0;

	if (algo == GNUTLS_SIGN_RSA_RAW && sg->pk == GNUTLS_PK_RSA)
		kind = CA_SIG_RSA_PKCS1;
	else if (sg->pk == GNUTLS_PK_ECDSA && gnutls_sign_get_pk_algorithm(algo) == GNUTLS_PK_ECDSA)
		kind = CA_SIG_ECDSA;
	else
		return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
	sg->r = admin_sign(sg->a, sg->id, sg->id_len, kind, hash->data, hash->size, &sig, &len,
			   &sg->err);
	if (sg->r != 0)
		return GNUTLS_E_PK_SIGN_FAILED;
	return signer_out(sg, sig, len, out);
}

static int sign_data_cb(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *ud,
			unsigned flags, const gnutls_datum_t *data, gnutls_datum_t *out)
{
	Signer *sg = ud;
	uint8_t *sig = NULL;
	size_t len = 0;

	if (sg->pk != GNUTLS_PK_EDDSA_ED25519)
		return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
	sg->r = admin_sign(sg->a, sg->id, sg->id_len, CA_SIG_EDDSA, data->data, data->size, &sig,
			   &len, &sg->err);
	if (sg->r != 0)
		return GNUTLS_E_PK_SIGN_FAILED;
	return signer_out(sg, sig, len, out);
}

static int info_cb(gnutls_privkey_t key, unsigned flags, void *ud)
{
	Signer *sg = ud;

	if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO) {
		gnutls_sign_algorithm_t algo = GNUTLS_FLAGS_TO_SIGN_ALGO(flags);

		/* PKCS#1 v1.5, ECDSA and Ed25519 only: we ask the token for nothing else. */
		return gnutls_sign_get_pk_algorithm(algo) == sg->pk;
	}
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
		return sg->pk;
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
		return sg->bits;
	return -1;
}

static int san_parse(const char *s, gnutls_x509_subject_alt_name_t *type, uint8_t *ip,
		     const void **data, size_t *len)
{
	const char *v = strchr(s, ':');

	if (!v || !v[1])
		return -1;
	v++;
	*data = v;
	*len = strlen(v);
	if (strncmp(s, "dns:", 4) == 0)
		*type = GNUTLS_SAN_DNSNAME;
	else if (strncmp(s, "email:", 6) == 0)
		*type = GNUTLS_SAN_RFC822NAME;
	else if (strncmp(s, "uri:", 4) == 0)
		*type = GNUTLS_SAN_URI;
	else if (strncmp(s, "ip:", 3) == 0) {
		*type = GNUTLS_SAN_IPADDRESS;
		*data = ip;
		if (inet_pton(AF_INET, v, ip) == 1)
			*len = 4;
		else if (inet_pton(AF_INET6, v, ip) == 1)
			*len = 16;
		else
			return -1;
	} else
		return -1;
	return 0;
}

/* Sets subject and SANs on crq; exit code (2 with a message) or 0. */
static int crq_set_names(gnutls_x509_crq_t crq, const char *subject, char *const *sans,
			 size_t n_sans)
{
	const char *errpos = NULL;
	int r;

	if (!subject || !*subject) {
		fputs("certagent: --subject DN is required (e.g. \"CN=alice,O=Example\")\n",
		      stderr);
		return CLI_EXIT_USAGE;
	}
	r = gnutls_x509_crq_set_dn(crq, subject, &errpos);
	if (r < 0) {
		fprintf(stderr,
			"certagent: bad subject \"%s\"%s%s: %s; write it as RFC 4514, e.g. "
			"\"CN=alice,O=Example,C=DE\"\n",
			subject, errpos ? " near " : "", errpos ? errpos : "", gnutls_strerror(r));
		return CLI_EXIT_USAGE;
	}
	if (n_sans > SANS_MAX) {
		fprintf(stderr, "certagent: at most %d --san\n", SANS_MAX);
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < n_sans; i++) {
		gnutls_x509_subject_alt_name_t type;
		uint8_t ip[16];
		const void *data;
		size_t len;

		if (san_parse(sans[i], &type, ip, &data, &len) < 0 ||
		    gnutls_x509_crq_set_subject_alt_name(crq, type, data, len, GNUTLS_FSAN_APPEND) <
			    0) {
			fprintf(stderr,
				"certagent: bad --san \"%s\": use dns:NAME, email:ADDR, uri:URI or "
				"ip:ADDR\n",
				sans[i]);
			return CLI_EXIT_USAGE;
		}
	}
	return 0;
}

int p11cli_check_subject(const char *subject, char *const *sans, size_t n_sans)
{
	gnutls_x509_crq_t crq;
	int rc;

	if (gnutls_x509_crq_init(&crq) < 0)
		return CLI_EXIT_FAILED;
	rc = crq_set_names(crq, subject, sans, n_sans);
	gnutls_x509_crq_deinit(crq);
	return rc;
}

int p11cli_crt_spki(gnutls_x509_crt_t crt, gnutls_datum_t *ret)
{
	gnutls_pubkey_t pub;
	int r;

	if (gnutls_pubkey_init(&pub) < 0)
		return -1;
	r = gnutls_pubkey_import_x509(pub, crt, 0);
	if (r == 0)
		r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, ret);
	gnutls_pubkey_deinit(pub);
	return r;
}

static bool datum_eq(const gnutls_datum_t *a, const gnutls_datum_t *b)
{
	return a->size > 0 && a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

static const AdminObject *private_with_id(const AdminObjectList *objs, const uint8_t *id,
					  size_t id_len)
{
	for (size_t i = 0; i < objs->n; i++) {
		const AdminObject *o = &objs->items[i];

		if (o->cls == ADMIN_OBJ_PRIVATE && id_len > 0 && o->id_len == id_len &&
		    memcmp(o->id, id, id_len) == 0)
			return o;
	}
	return NULL;
}

const AdminObject *p11cli_key_for_spki(const AdminObjectList *objs, const gnutls_datum_t *spki)
{
	for (size_t i = 0; i < objs->n; i++) {
		const AdminObject *o = &objs->items[i];

		if (o->cls == ADMIN_OBJ_PRIVATE && datum_eq(&o->spki, spki))
			return o;
	}
	for (size_t i = 0; i < objs->n; i++) {
		const AdminObject *o = &objs->items[i];

		if (o->cls == ADMIN_OBJ_PUBLIC && datum_eq(&o->spki, spki))
			return private_with_id(objs, o->id, o->id_len);
	}
	return NULL;
}

/* The SPKI of the key with this ID: its public key object, an RSA private key, or a cert. */
static const AdminObject *spki_for_id(const AdminObjectList *objs, const uint8_t *id, size_t id_len)
{
	static const int order[] = {ADMIN_OBJ_PUBLIC, ADMIN_OBJ_PRIVATE, ADMIN_OBJ_CERT};

	for (size_t k = 0; k < ELEMENTSOF(order); k++)
		for (size_t i = 0; i < objs->n; i++) {
			const AdminObject *o = &objs->items[i];

			if (o->cls == order[k] && o->spki.size > 0 && o->id_len == id_len &&
			    memcmp(o->id, id, id_len) == 0)
				return o;
		}
	return NULL;
}

int p11cli_make_csr(AdminSession *a, const AdminObjectList *objs, const uint8_t *id, size_t id_len,
		    const char *subject, char *const *sans, size_t n_sans, gnutls_x509_crq_t *ret)
{
	const AdminObject *src = spki_for_id(objs, id, id_len);
	Signer sg = {.a = a, .id = id, .id_len = id_len};
	gnutls_x509_crq_t crq = NULL;
	gnutls_pubkey_t pub = NULL;
	gnutls_privkey_t priv = NULL;
	gnutls_digest_algorithm_t dig = GNUTLS_DIG_SHA256;
	int r, rc = CLI_EXIT_FAILED;

	if (!src) {
		fprintf(stderr,
			"certagent: the public key of this private key is not on token \"%s\" "
			"(no public key object or certificate with its ID): certagent cannot "
			"build a request for it\n",
			admin_session_label(a));
		return CLI_EXIT_NOT_FOUND;
	}
	if (gnutls_x509_crq_init(&crq) < 0 || gnutls_pubkey_init(&pub) < 0 ||
	    gnutls_privkey_init(&priv) < 0)
		goto out;
	rc = crq_set_names(crq, subject, sans, n_sans);
	if (rc != 0)
		goto out;
	rc = CLI_EXIT_FAILED;
	r = gnutls_pubkey_import(pub, &src->spki, GNUTLS_X509_FMT_DER);
	if (r < 0) {
		fprintf(stderr, "certagent: cannot read the key's public key: %s\n",
			gnutls_strerror(r));
		goto out;
	}
	sg.pk = gnutls_pubkey_get_pk_algorithm(pub, &sg.bits);
	if (sg.pk == GNUTLS_PK_ECDSA)
		dig = sg.bits > 384   ? GNUTLS_DIG_SHA512
		      : sg.bits > 256 ? GNUTLS_DIG_SHA384
				      : GNUTLS_DIG_SHA256;
	else if (sg.pk == GNUTLS_PK_EDDSA_ED25519)
		dig = GNUTLS_DIG_SHA512;
	else if (sg.pk != GNUTLS_PK_RSA) {
		fprintf(stderr, "certagent: unsupported key algorithm %s\n",
			gnutls_pk_get_name(sg.pk));
		goto out;
	}
	r = gnutls_privkey_import_ext4(priv, &sg, sign_data_cb, sign_hash_cb, NULL, NULL, info_cb,
				       0);
	if (r >= 0)
		r = gnutls_x509_crq_set_pubkey(crq, pub);
	if (r >= 0)
		r = gnutls_x509_crq_set_version(crq, 1);
	if (r >= 0)
		r = gnutls_x509_crq_set_key_usage(crq, GNUTLS_KEY_DIGITAL_SIGNATURE);
	if (r >= 0)
		r = gnutls_x509_crq_set_key_purpose_oid(crq, GNUTLS_KP_TLS_WWW_CLIENT, 0);
	if (r >= 0)
		r = gnutls_x509_crq_privkey_sign(crq, priv, dig, 0);
	if (r < 0) {
		if (sg.r != 0)
			rc = p11cli_fail(sg.r, &sg.err);
		else
			fprintf(stderr, "certagent: cannot make the request: %s\n",
				gnutls_strerror(r));
		goto out;
	}
	r = gnutls_x509_crq_verify(crq, 0);
	if (r < 0) {
		fprintf(stderr,
			"certagent: the token's signature on the request does not verify: "
			"%s\n",
			gnutls_strerror(r));
		goto out;
	}
	*ret = TAKE_PTR(crq);
	rc = 0;
out:
	if (crq)
		gnutls_x509_crq_deinit(crq);
	gnutls_pubkey_deinit(pub);
	gnutls_privkey_deinit(priv);
	return rc;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	const char *subject = NULL, *out = NULL, *pin_file = NULL, *module = NULL, *uri = NULL;
	const char *arg;
	char *sans[SANS_MAX + 1];
	size_t n_sans = 0;
	const AdminObject *key = NULL;
	AdminObjectList *objs = NULL;
	AdminSession *a = NULL;
	gnutls_x509_crq_t crq = NULL;
	gnutls_datum_t pem = {NULL, 0};
	Store *s = NULL;
	CaError err = {0};
	CliParser p;
	size_t matches = 0;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_SUBJECT:
			subject = arg;
			break;
		case OPT_OUT:
			out = arg;
			break;
		case OPT_PIN_FILE:
			pin_file = arg;
			break;
		case OPT_MODULE:
			module = arg;
			break;
		case OPT_SAN:
			if (n_sans < SANS_MAX + 1)
				sans[n_sans++] = (char *)arg;
			break;
		}
	}
	if (o == 0 && (p.n_positional != 1 || strncmp(p.positional[0], "pkcs11:", 7) != 0))
		o = cli_usage_error(cmd, "csr needs one KEY-URI (pkcs11:token=…;object=…)");
	if (o == 0)
		uri = p.positional[0];
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;
	rc = p11cli_check_subject(subject, sans, n_sans);
	if (rc != 0)
		return rc;

	rc = p11cli_open(module, uri, false, &s, &a);
	if (rc == 0)
		rc = p11cli_login_user(a, pin_file);
	if (rc == 0)
		rc = p11cli_fail(admin_list_objects(a, &objs, &err), &err);
	for (size_t i = 0; rc == 0 && i < objs->n; i++) {
		bool m = false;

		if (objs->items[i].cls != ADMIN_OBJ_PRIVATE)
			continue;
		rc = p11cli_fail(admin_uri_matches(uri, &objs->items[i], &m, &err), &err);
		if (m && matches++ == 0)
			key = &objs->items[i];
	}
	if (rc == 0 && matches != 1) {
		if (matches)
			fprintf(stderr,
				"certagent: %s names %zu private keys on token \"%s\": add id= to "
				"the URI to name one\n",
				uri, matches, admin_session_label(a));
		else
			fprintf(stderr,
				"certagent: %s names no private key on token \"%s\" (`certagent "
				"list --tokens` shows its keys)\n",
				uri, admin_session_label(a));
		rc = matches ? CLI_EXIT_USAGE : CLI_EXIT_NOT_FOUND;
	}
	if (rc == 0 && key->id_len == 0) {
		fprintf(stderr, "certagent: the key has no CKA_ID: certagent cannot pair it\n");
		rc = CLI_EXIT_NOT_FOUND;
	}
	if (rc == 0)
		rc = p11cli_make_csr(a, objs, key->id, key->id_len, subject, sans, n_sans, &crq);
	if (rc == 0 && gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &pem) < 0)
		rc = CLI_EXIT_FAILED;
	if (rc == 0 && out)
		rc = p11cli_write_file(out, pem.data, pem.size, false);
	else if (rc == 0)
		rc = fwrite(pem.data, 1, pem.size, stdout) == pem.size && fflush(stdout) == 0
			     ? 0
			     : CLI_EXIT_IO;
	gnutls_free(pem.data);
	if (crq)
		gnutls_x509_crq_deinit(crq);
	admin_object_list_free(objs);
	admin_session_free(a);
	store_free(s);
	return rc;
}

const CliCommand cli_cmd_csr = {
	.name = "csr",
	.synopsis = "KEY-URI",
	.summary = "Make a certificate request (PKCS#10) signed by a key on a token",
	.description = "Builds a PKCS#10 certificate request for the private key KEY-URI names, "
		       "with the subject DN and alternative names given, asking for the TLS "
		       "client authentication extended key usage, and has the token sign it. "
		       "Writes PEM to stdout or --out FILE.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
