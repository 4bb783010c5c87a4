/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent enroll TOKEN --type T --subject DN (--ca-cert F --ca-key F | --csr-out F): from
 * nothing to a usable identity in one step: key pair on the token, a request signed by it,
 * then either a certificate from a lab CA (stored with the CA certificate) or the request
 * written out for a real CA (`certagent cert import` later).
 *
 * Crash safety (docs/cli-admin.md): everything this run creates carries the temporary label
 * "certagent-enroll-tmp-<id>" (CA certificate: "...-<id>-ca") and a fresh CKA_ID; the last
 * step renames them, the private key last, which is the commit. A failure or SIGINT/SIGTERM/
 * SIGHUP before the commit removes all of it and says so; after SIGKILL or a power cut the next
 * enroll, key generate or `certagent token cleanup` removes it (admin_cleanup_orphans), and
 * `certagent tokens` warns about it. Nothing that was on the token before is touched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "cli.h"
#include "json-print.h"
#include "p11cli.h"
#include "util.h"

#define SANS_MAX 32
#define DAYS_MAX 3650

enum {
	OPT_TYPE = 1,
	OPT_SUBJECT,
	OPT_SAN,
	OPT_LABEL,
	OPT_ID,
	OPT_CA_CERT,
	OPT_CA_KEY,
	OPT_DAYS,
	OPT_CSR_OUT,
	OPT_PIN_FILE,
	OPT_JSON,
	OPT_MODULE,
};

static const CliOption options[] = {
	{OPT_TYPE, "type", 't', "TYPE", "rsa2048, rsa3072, rsa4096, p256, p384, p521 or ed25519"},
	{OPT_SUBJECT, "subject", 's', "DN", "Subject, RFC 4514 (e.g. \"CN=alice,O=Example\")"},
	{OPT_SAN, "san", 0, "TYPE:VALUE",
	 "Subject alternative name: dns:NAME, email:ADDR, uri:URI or ip:ADDR (repeatable)"},
	{OPT_LABEL, "label", 'l', "LABEL", "Label of the key and certificate (default: the CN)"},
	{OPT_ID, "id", 0, "HEX", "CKA_ID of the new objects (default: 8 random bytes)"},
	{OPT_CA_CERT, "ca-cert", 0, "FILE", "Lab CA certificate (PEM) that signs here"},
	{OPT_CA_KEY, "ca-key", 0, "FILE", "Lab CA private key (PEM, unencrypted)"},
	{OPT_DAYS, "days", 0, "N", "With --ca-cert: validity in days (default 365)"},
	{OPT_CSR_OUT, "csr-out", 0, "FILE",
	 "Write the request to FILE instead (not overwritten); import the certificate later"},
	{OPT_PIN_FILE, "pin-file", 0, "FILE",
	 "Read the user PIN from FILE (else $CERTAGENT_PIN, else a prompt)"},
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli-admin.md) instead of text"},
	{OPT_MODULE, "module", 0, "PATH", P11CLI_OPT_MODULE_HELP},
};

typedef struct Enroll {
	const char *token, *type, *subject, *label_opt, *ca_cert, *ca_key, *csr_out, *pin_file;
	const char *module;
	char *sans[SANS_MAX + 1];
	size_t n_sans;
	unsigned days;
	uint8_t id[ADMIN_ID_MAX];
	size_t id_len;
	char id_hex[2 * ADMIN_ID_MAX + 1];
	char *label, *tmp_label, *tmp_ca_label;
	bool json;

	gnutls_x509_crt_t ca_crt;
	gnutls_x509_privkey_t ca_key_x509;
	gnutls_privkey_t ca_priv;

	AdminSession *a;
	bool created;		 /* objects with our ID may exist: remove them on failure */
	bool csr_written;	 /* we wrote csr_out: remove it on failure */
	bool committed;		 /* the private key has its final label: never roll back */
	unsigned long ca_handle; /* the CA certificate we stored, if any */
	char *key_uri, *cert_uri;
} Enroll;

static int load_ca(Enroll *e)
{
	gnutls_x509_crt_t *v = NULL;
	gnutls_datum_t d = {NULL, 0};
	size_t n = 0;
	int rc, r;

	rc = p11cli_read_certs(e->ca_cert, &v, &n);
	if (rc != 0)
		return rc;
	e->ca_crt = v[0];
	for (size_t i = 1; i < n; i++)
		gnutls_x509_crt_deinit(v[i]);
	gnutls_free(v);
	if (gnutls_x509_crt_get_ca_status(e->ca_crt, NULL) <= 0) {
		fprintf(stderr, "certagent: %s is not a CA certificate\n", e->ca_cert);
		return CLI_EXIT_IO;
	}
	r = gnutls_load_file(e->ca_key, &d);
	if (r < 0) {
		fprintf(stderr, "certagent: cannot read %s: %s\n", e->ca_key, gnutls_strerror(r));
		return CLI_EXIT_IO;
	}
	r = gnutls_x509_privkey_init(&e->ca_key_x509);
	if (r == 0)
		r = gnutls_x509_privkey_import2(e->ca_key_x509, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
	gnutls_free(d.data);
	if (r == 0)
		r = gnutls_privkey_init(&e->ca_priv);
	if (r == 0)
		r = gnutls_privkey_import_x509(e->ca_priv, e->ca_key_x509, 0);
	if (r < 0) {
		fprintf(stderr, "certagent: %s is not an unencrypted PEM private key: %s\n",
			e->ca_key, gnutls_strerror(r));
		return CLI_EXIT_IO;
	}
	/* A key of another CA would sign a certificate no one can verify. */
	uint8_t crt_id[64], key_id[64];
	size_t crt_id_size = sizeof(crt_id), key_id_size = sizeof(key_id);

	if (gnutls_x509_crt_get_key_id(e->ca_crt, GNUTLS_KEYID_USE_SHA256, crt_id, &crt_id_size) <
		    0 ||
	    gnutls_x509_privkey_get_key_id(e->ca_key_x509, GNUTLS_KEYID_USE_SHA256, key_id,
					   &key_id_size) < 0 ||
	    crt_id_size != key_id_size || memcmp(crt_id, key_id, crt_id_size) != 0) {
		fprintf(stderr,
			"certagent: %s is not the private key of the CA certificate in %s: give "
			"the "
			"key that belongs to that certificate\n",
			e->ca_key, e->ca_cert);
		return CLI_EXIT_IO;
	}
	return 0;
}

static int step_done(const char *step)
{
	p11cli_test_stop(step);
	if (p11cli_interrupted()) {
		fprintf(stderr, "certagent: interrupted after step \"%s\"\n", step);
		return CLI_EXIT_FAILED;
	}
	return 0;
}

/* Issues a client certificate for the request with the lab CA. */
static int issue(Enroll *e, gnutls_x509_crq_t crq, gnutls_x509_crt_t *ret)
{
	gnutls_x509_crt_t crt;
	uint8_t serial[16], kid[64];
	size_t kid_n = sizeof(kid);
	time_t now = time(NULL);
	int r;

	if (gnutls_x509_crt_init(&crt) < 0)
		return CLI_EXIT_FAILED;
	gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
	serial[0] &= 0x7f;
	serial[0] |= 0x01;
	r = gnutls_x509_crt_set_crq(crt, crq);
	if (r >= 0)
		r = gnutls_x509_crt_set_crq_extensions(crt, crq);
	if (r >= 0)
		r = gnutls_x509_crt_set_version(crt, 3);
	if (r >= 0)
		r = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
	if (r >= 0)
		r = gnutls_x509_crt_set_activation_time(crt, now - 60);
	if (r >= 0)
		r = gnutls_x509_crt_set_expiration_time(crt, now + (time_t)e->days * 86400);
	if (r >= 0)
		r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
	if (r >= 0 && gnutls_x509_crt_get_subject_key_id(e->ca_crt, kid, &kid_n, NULL) >= 0)
		r = gnutls_x509_crt_set_authority_key_id(crt, kid, kid_n);
	kid_n = sizeof(kid);
	if (r >= 0 && gnutls_x509_crt_get_key_id(crt, 0, kid, &kid_n) >= 0)
		r = gnutls_x509_crt_set_subject_key_id(crt, kid, kid_n);
	if (r >= 0)
		r = gnutls_x509_crt_privkey_sign(crt, e->ca_crt, e->ca_priv, GNUTLS_DIG_SHA256, 0);
	if (r < 0) {
		fprintf(stderr, "certagent: the lab CA could not issue the certificate: %s\n",
			gnutls_strerror(r));
		gnutls_x509_crt_deinit(crt);
		return CLI_EXIT_FAILED;
	}
	*ret = crt;
	return 0;
}

/*
 * Renames our objects (found by ID) to the final label, the private key last: that rename is
 * the commit. Then the CA certificate we stored gets its CN as label (cleanup finishes this
 * step if we are killed before it).
 */
static int commit(Enroll *e)
{
	static const int order[] = {ADMIN_OBJ_PUBLIC, ADMIN_OBJ_CERT, ADMIN_OBJ_PRIVATE};
	static const char *const steps[] = {"renamed-public", "renamed-cert", NULL};
	AdminObjectList *l = NULL;
	CaError err = {0};
	int rc;

	rc = p11cli_fail(admin_list_objects(e->a, &l, &err), &err);
	for (size_t k = 0; rc == 0 && k < ELEMENTSOF(order); k++) {
		for (size_t i = 0; rc == 0 && i < l->n; i++) {
			const AdminObject *o = &l->items[i];

			if (o->cls != order[k] || o->id_len != e->id_len ||
			    memcmp(o->id, e->id, e->id_len) != 0)
				continue;
			rc = p11cli_fail(admin_set_label(e->a, o->handle, e->label, &err), &err);
		}
		if (rc == 0 && steps[k])
			rc = step_done(steps[k]);
	}
	if (rc == 0) {
		/* Committed: from here on nothing is rolled back, not even on a signal. */
		e->committed = true;
		p11cli_test_stop("committed");
	}
	/* After the commit: the CA certificate's label. Killed here, cleanup rolls forward. */
	if (rc == 0 && e->ca_handle) {
		_cleanup_free_ char *cn = p11cli_crt_label(e->ca_crt);

		if (admin_set_label(e->a, e->ca_handle, cn ? cn : "CA", &err) != 0)
			fprintf(stderr,
				"certagent: warning: %s; the CA certificate keeps a temporary "
				"label until `certagent token cleanup %s`\n",
				err.message, e->token);
		p11cli_test_stop("renamed-ca");
	}
	admin_object_list_free(l);
	return rc;
}

static void rollback(Enroll *e)
{
	AdminObjectList *l = NULL;
	size_t n = 0;

	if (!e->a || e->committed || (!e->created && !e->ca_handle))
		return;
	/* Objects with our fresh ID are ours: the ID was checked unused before we began. */
	if (admin_list_objects(e->a, &l, NULL) == 0) {
		for (size_t i = 0; i < l->n; i++) {
			const AdminObject *o = &l->items[i];

			if (o->handle == e->ca_handle || (e->created && o->id_len == e->id_len &&
							  memcmp(o->id, e->id, e->id_len) == 0)) {
				if (admin_destroy(e->a, o->handle, NULL) == 0) {
					fprintf(stderr, "certagent: removed %s\n", o->uri);
					n++;
				}
			}
		}
		admin_object_list_free(l);
	}
	fprintf(stderr,
		"certagent: enrollment failed: removed the %zu object(s) it had created; "
		"the token is as it was\n",
		n);
}

static int enroll(Enroll *e)
{
	AdminObjectList *objs = NULL;
	gnutls_x509_crq_t crq = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t der = {NULL, 0}, ca_der = {NULL, 0}, pem = {NULL, 0};
	CaError err = {0};
	unsigned long leaf_handle = 0;
	bool ca_present = false;
	int rc;

	rc = p11cli_login_cleanup(e->a, e->pin_file);
	/* The final label must be free too (admin_generate_key checks the temporary one). */
	if (rc == 0)
		rc = p11cli_fail(admin_list_objects(e->a, &objs, &err), &err);
	for (size_t i = 0; rc == 0 && i < objs->n; i++) {
		if (strcmp(objs->items[i].label, e->label) == 0) {
			fprintf(stderr,
				"certagent: token \"%s\" already has an object labelled "
				"\"%s\" (%s): choose another --label\n",
				admin_session_label(e->a), e->label, objs->items[i].uri);
			rc = CLI_EXIT_REFUSED;
		}
		if (e->ca_crt && objs->items[i].cls == ADMIN_OBJ_CERT && !ca_present &&
		    gnutls_x509_crt_export2(e->ca_crt, GNUTLS_X509_FMT_DER, &ca_der) == 0) {
			ca_present = ca_der.size == objs->items[i].der.size &&
				     memcmp(ca_der.data, objs->items[i].der.data, ca_der.size) == 0;
			gnutls_free(ca_der.data);
			ca_der.data = NULL;
		}
	}
	admin_object_list_free(objs);
	objs = NULL;
	if (rc == 0)
		rc = step_done("checked");

	/* 1. The key pair, with the temporary label. */
	if (rc == 0) {
		p11cli_progress_start("generating the key pair on the token");
		e->created = true;
		rc = admin_generate_key(e->a, e->type, e->tmp_label, e->id, e->id_len, NULL, &err);
		p11cli_progress_stop();
		if (rc == CA_E_POLICY_DENIED)
			e->created = false; /* refused before anything was made */
		rc = p11cli_fail(rc, &err);
	}
	if (rc == 0)
		rc = step_done("generated");
	/* 2. The request, signed on the token. */
	if (rc == 0)
		rc = p11cli_fail(admin_list_objects(e->a, &objs, &err), &err);
	if (rc == 0)
		rc = p11cli_make_csr(e->a, objs, e->id, e->id_len, e->subject, e->sans, e->n_sans,
				     &crq);
	if (rc == 0)
		rc = step_done("csr");
	if (rc == 0 && e->csr_out) {
		/* 3a. The request to a file; then commit the key. */
		if (gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &pem) < 0)
			rc = CLI_EXIT_FAILED;
		if (rc == 0)
			rc = p11cli_write_file(e->csr_out, pem.data, pem.size, true);
		if (rc == 0) {
			e->csr_written = true;
			rc = step_done("csr-written");
		}
	} else if (rc == 0) {
		/* 3b. The lab CA issues; the certificate and the CA go on the token. */
		rc = issue(e, crq, &crt);
		if (rc == 0)
			rc = step_done("issued");
		if (rc == 0 && gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der) < 0)
			rc = CLI_EXIT_FAILED;
		if (rc == 0)
			rc = p11cli_fail(admin_store_cert(e->a, &der, e->tmp_label, e->id,
							  e->id_len, ADMIN_CERT_USER, &leaf_handle,
							  &err),
					 &err);
		if (rc == 0)
			rc = step_done("cert-stored");
		if (rc == 0 && !ca_present &&
		    gnutls_x509_crt_export2(e->ca_crt, GNUTLS_X509_FMT_DER, &ca_der) < 0)
			rc = CLI_EXIT_FAILED;
		if (rc == 0 && !ca_present)
			rc = p11cli_fail(admin_store_cert(e->a, &ca_der, e->tmp_ca_label, NULL, 0,
							  ADMIN_CERT_AUTHORITY, &e->ca_handle,
							  &err),
					 &err);
		if (rc == 0)
			rc = step_done("chain-stored");
	}
	/* 4. Commit: rename, the private key last. */
	if (rc == 0)
		rc = commit(e);
	if (rc != 0 && e->csr_written && !e->committed && unlink(e->csr_out) == 0)
		/* The request names a key we are about to remove: it must not survive either. */
		fprintf(stderr, "certagent: removed %s\n", e->csr_out);
	if (rc != 0)
		rollback(e);
	gnutls_free(der.data);
	gnutls_free(ca_der.data);
	gnutls_free(pem.data);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (crq)
		gnutls_x509_crq_deinit(crq);
	admin_object_list_free(objs);
	return rc;
}

static int uri_of(AdminSession *a, int cls, const uint8_t *id, size_t id_len, char **ret)
{
	AdminObjectList *l = NULL;

	if (admin_list_objects(a, &l, NULL) != 0)
		return -1;
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].cls == cls && l->items[i].id_len == id_len &&
		    memcmp(l->items[i].id, id, id_len) == 0 && !*ret)
			*ret = strdup(l->items[i].uri);
	admin_object_list_free(l);
	return 0;
}

static char *cn_of(const char *subject)
{
	gnutls_x509_crq_t crq;
	char buf[ADMIN_LABEL_MAX + 1];
	size_t n = sizeof(buf);
	char *s = NULL;

	if (gnutls_x509_crq_init(&crq) < 0)
		return NULL;
	if (gnutls_x509_crq_set_dn(crq, subject, NULL) == 0 &&
	    gnutls_x509_crq_get_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &n) == 0)
		s = strdup(buf);
	gnutls_x509_crq_deinit(crq);
	return s;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	Enroll e = {.days = 365, .id_len = 8};
	const char *id_hex = NULL, *days = NULL, *arg;
	Store *s = NULL;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_TYPE:
			e.type = arg;
			break;
		case OPT_SUBJECT:
			e.subject = arg;
			break;
		case OPT_LABEL:
			e.label_opt = arg;
			break;
		case OPT_ID:
			id_hex = arg;
			break;
		case OPT_CA_CERT:
			e.ca_cert = arg;
			break;
		case OPT_CA_KEY:
			e.ca_key = arg;
			break;
		case OPT_DAYS:
			days = arg;
			break;
		case OPT_CSR_OUT:
			e.csr_out = arg;
			break;
		case OPT_PIN_FILE:
			e.pin_file = arg;
			break;
		case OPT_JSON:
			e.json = true;
			break;
		case OPT_MODULE:
			e.module = arg;
			break;
		case OPT_SAN:
			if (e.n_sans < SANS_MAX + 1)
				e.sans[e.n_sans++] = (char *)arg;
			break;
		}
	}
	if (o == 0 && p.n_positional != 1)
		o = cli_usage_error(cmd, "enroll needs one TOKEN (a label or pkcs11: URI)");
	else if (o == 0 && (!e.type || !admin_key_type_valid(e.type)))
		o = cli_usage_error(cmd, "--type must be rsa2048, rsa3072, rsa4096, p256, p384, "
					 "p521 or ed25519");
	else if (o == 0 && !!e.csr_out == !!(e.ca_cert || e.ca_key))
		o = cli_usage_error(cmd, "give either --ca-cert FILE --ca-key FILE (a lab CA "
					 "signs here) or --csr-out FILE");
	else if (o == 0 && !e.csr_out && (!e.ca_cert || !e.ca_key))
		o = cli_usage_error(cmd, "--ca-cert and --ca-key go together");
	else if (o == 0 && id_hex && !p11cli_parse_hex(id_hex, e.id, sizeof(e.id), &e.id_len))
		o = cli_usage_error(cmd, "--id takes hex bytes, e.g. --id 01a2");
	else if (o == 0 && days &&
		 (sscanf(days, "%u", &e.days) != 1 || e.days == 0 || e.days > DAYS_MAX))
		o = cli_usage_error(cmd, "--days takes 1 to %d", DAYS_MAX);
	if (o == 0)
		e.token = p.positional[0];
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	/* Everything that can be checked without the token first: a bad DN changes nothing. */
	rc = p11cli_check_subject(e.subject, e.sans, e.n_sans);
	if (rc == 0 && e.ca_cert)
		rc = load_ca(&e);
	if (rc == 0 && e.csr_out && access(e.csr_out, F_OK) == 0) {
		fprintf(stderr, "certagent: %s exists: not overwritten; choose another --csr-out\n",
			e.csr_out);
		rc = CLI_EXIT_REFUSED;
	}
	if (rc == 0) {
		e.label = e.label_opt ? strdup(e.label_opt) : cn_of(e.subject);
		if (!e.label || !*e.label || strlen(e.label) > ADMIN_LABEL_MAX ||
		    strncmp(e.label, ADMIN_TMP_PREFIX, strlen(ADMIN_TMP_PREFIX)) == 0) {
			fprintf(stderr,
				"certagent: give a --label (1 to %d bytes, not starting "
				"with %s) or a subject with a CN\n",
				ADMIN_LABEL_MAX, ADMIN_TMP_PREFIX);
			rc = CLI_EXIT_USAGE;
		}
	}
	if (rc == 0 && !id_hex && gnutls_rnd(GNUTLS_RND_NONCE, e.id, e.id_len) < 0)
		rc = CLI_EXIT_FAILED;
	if (rc == 0) {
		p11cli_hex(e.id, e.id_len, e.id_hex);
		if (asprintf(&e.tmp_label, ADMIN_TMP_PREFIX "%s", e.id_hex) < 0 ||
		    asprintf(&e.tmp_ca_label, ADMIN_TMP_PREFIX "%s-ca", e.id_hex) < 0)
			rc = CLI_EXIT_FAILED;
	}
	if (rc == 0)
		rc = p11cli_open(e.module, e.token, false, &s, &e.a);
	if (rc == 0) {
		p11cli_trap_signals();
		rc = enroll(&e);
	}
	if (rc == 0) {
		uri_of(e.a, ADMIN_OBJ_PRIVATE, e.id, e.id_len, &e.key_uri);
		uri_of(e.a, ADMIN_OBJ_CERT, e.id, e.id_len, &e.cert_uri);
		if (e.json) {
			printf("{\"key_uri\": ");
			json_print_string(stdout, e.key_uri);
			printf(", \"certificate_uri\": ");
			json_print_string(stdout, e.cert_uri);
			printf(", \"label\": ");
			json_print_string(stdout, e.label);
			printf(", \"id\": \"%s\", \"subject\": ", e.id_hex);
			json_print_string(stdout, e.subject);
			printf(", \"csr_file\": ");
			json_print_string(stdout, e.csr_out);
			printf("}\n");
		} else {
			printf("key:         %s\n", e.key_uri ? e.key_uri : "?");
			if (e.cert_uri)
				printf("certificate: %s\n", e.cert_uri);
			if (e.csr_out)
				printf("request:     %s (send it to your CA, then `certagent cert "
				       "import %s CERT-FILE`)\n",
				       e.csr_out, e.token);
		}
		rc = fflush(stdout) == 0 ? 0 : CLI_EXIT_IO;
	}
	admin_session_free(e.a);
	store_free(s);
	if (e.ca_crt)
		gnutls_x509_crt_deinit(e.ca_crt);
	gnutls_privkey_deinit(e.ca_priv);
	gnutls_x509_privkey_deinit(e.ca_key_x509);
	free(e.label);
	free(e.tmp_label);
	free(e.tmp_ca_label);
	free(e.key_uri);
	free(e.cert_uri);
	return rc;
}

const CliCommand cli_cmd_enroll = {
	.name = "enroll",
	.synopsis = "TOKEN",
	.summary = "Key pair, request and certificate in one step (lab CA or CSR file)",
	.description = "Generates a key pair on TOKEN, has it sign a request for SUBJECT with the "
		       "clientAuth extended key usage, and either lets a lab CA (--ca-cert, "
		       "--ca-key) issue the certificate, stored on the token with the CA "
		       "certificate, or writes the request to --csr-out FILE. All or nothing: if a "
		       "step fails or the command is interrupted, what it created is removed; "
		       "after a hard kill the next enroll or `certagent token cleanup` removes it.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
