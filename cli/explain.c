/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * explain: collects what happened in one mutual-TLS handshake and tells it the way a textbook
 * tells mTLS: what the client offered, the server's chain and every check on it, what the
 * server asked of the client, which identity answered and why, which token signed with which
 * PKCS#11 mechanism and how long it took, what was negotiated, and whether the server
 * accepted the client.
 *
 * The checks on the server's chain are made again here, link by link, so each can be named
 * (GnuTLS's verification during the handshake only gives one status word). They explain; the
 * handshake's own verification decides, and its verdict is listed too.
 *
 * The mechanism is derived from the TLS scheme (the agent's Sign reply carries only the
 * signature): rsa_pkcs1_* → CKM_RSA_PKCS, rsa_pss_* → CKM_RSA_PKCS_PSS, ecdsa_* → CKM_ECDSA,
 * ed25519 → CKM_EDDSA. The time is the D-Bus round trip measured by libcertagent.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/ocsp.h>
#include <gnutls/x509.h>

#include "cert-info.h"
#include "cli.h"
#include "json-print.h"
#include "explain.h"
#include "scheme.h"
#include "util.h"

#define MAX_LIST 64
#define MAX_CHAIN 16
#define MAX_CHECKS 64
#define MAX_SIGNS 8
#define MAX_CRLS 16

typedef struct ChainCert {
	CertInfo cert; /* subject and issuer "?" when unreadable */
	const char *sig_algo;
	const char *source; /* "server" or "trust store" */
} ChainCert;

typedef struct Check {
	const char *kind;   /* validity, signature, trust-anchor, hostname, crl, ocsp, gnutls */
	int link;	    /* index in the chain, -1 for the chain as a whole */
	const char *status; /* "ok", "failed", "info" */
	char *detail;
} Check;

typedef struct Sign {
	char *scheme;
	const char *mechanism;
	uint64_t elapsed_us;
	certagent_code code;
} Sign;

struct Explain {
	char *host, *port, *server_name, *address;

	const char *versions[MAX_LIST], *groups[MAX_LIST], *sigs[MAX_LIST], *ciphers[MAX_LIST];
	size_t n_versions, n_groups, n_sigs, n_ciphers;

	char *trust;
	int n_trusted;
	char *crl_file;
	gnutls_x509_crl_t crls[MAX_CRLS];
	unsigned n_crls;

	ChainCert chain[MAX_CHAIN];
	size_t n_chain;
	Check checks[MAX_CHECKS];
	size_t n_checks;

	bool requested;
	char *ca_names[MAX_LIST];
	size_t n_ca_names;
	const char *req_sigs[MAX_LIST];
	size_t n_req_sigs;

	char *identity_uri, *identity_label, *identity_subject, *token_label, *key_type;
	char *reason;	   /* why this identity */
	char *none_reason; /* why none */

	Sign signs[MAX_SIGNS];
	size_t n_signs;

	bool negotiated;
	const char *version, *cipher, *mac, *kx, *group, *server_sig, *client_sig;
	char *desc;

	const char *result;
	char *result_detail;
};

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

Explain *explain_new(const char *host, const char *port, const char *server_name)
{
	Explain *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->host = xstrdup(host);
	e->port = xstrdup(port);
	e->server_name = xstrdup(server_name);
	return e;
}

Explain *explain_free(Explain *e)
{
	if (!e)
		return NULL;
	free(e->host);
	free(e->port);
	free(e->server_name);
	free(e->address);
	free(e->trust);
	free(e->crl_file);
	for (unsigned i = 0; i < e->n_crls; i++)
		gnutls_x509_crl_deinit(e->crls[i]);
	for (size_t i = 0; i < e->n_chain; i++)
		cert_info_deinit(&e->chain[i].cert);
	for (size_t i = 0; i < e->n_checks; i++)
		free(e->checks[i].detail);
	for (size_t i = 0; i < e->n_ca_names; i++)
		free(e->ca_names[i]);
	free(e->identity_uri);
	free(e->identity_label);
	free(e->identity_subject);
	free(e->token_label);
	free(e->key_type);
	free(e->reason);
	free(e->none_reason);
	for (size_t i = 0; i < e->n_signs; i++)
		free(e->signs[i].scheme);
	gnutls_free(e->desc);
	free(e->result_detail);
	free(e);
	return NULL;
}

static void add_check(Explain *e, const char *kind, int link, const char *status, const char *fmt,
		      ...) __attribute__((format(printf, 5, 6)));
static void add_check(Explain *e, const char *kind, int link, const char *status, const char *fmt,
		      ...)
{
	Check *c;
	va_list ap;

	if (e->n_checks == MAX_CHECKS)
		return;
	c = &e->checks[e->n_checks];
	va_start(ap, fmt);
	if (vasprintf(&c->detail, fmt, ap) < 0)
		c->detail = NULL;
	va_end(ap);
	c->kind = kind;
	c->link = link;
	c->status = status;
	e->n_checks++;
}

static const char *mechanism_for(const char *scheme)
{
	const CaScheme *s = ca_scheme_by_name(scheme);

	if (!s)
		return "?";
	switch (s->kind) {
	case CA_SIG_RSA_PKCS1:
		return "CKM_RSA_PKCS";
	case CA_SIG_RSA_PSS:
		return "CKM_RSA_PKCS_PSS";
	case CA_SIG_ECDSA:
		return "CKM_ECDSA";
	case CA_SIG_EDDSA:
		return "CKM_EDDSA";
	}
	return "?";
}

/* --- the library's observer ------------------------------------------------------------------ */

static void on_event(const certagent_event *ev, void *userdata)
{
	Explain *e = userdata;

	switch (ev->kind) {
	case CERTAGENT_EVENT_REQUEST:
		e->requested = true;
		for (size_t i = 0; i < ev->n_ca_names && e->n_ca_names < MAX_LIST; i++) {
			gnutls_datum_t s = {NULL, 0};

			if (gnutls_x509_rdn_get2(&ev->ca_names[i], &s, 0) == 0)
				e->ca_names[e->n_ca_names++] = strndup((char *)s.data, s.size);
			gnutls_free(s.data);
		}
		for (size_t i = 0; i < ev->n_sign_algos && e->n_req_sigs < MAX_LIST; i++) {
			const char *n = gnutls_sign_get_name(ev->sign_algos[i]);

			if (n)
				e->req_sigs[e->n_req_sigs++] = n;
		}
		break;
	case CERTAGENT_EVENT_CHOSEN:
		free(e->identity_uri);
		free(e->identity_label);
		free(e->token_label);
		free(e->key_type);
		free(e->reason);
		free(e->identity_subject);
		e->identity_uri = xstrdup(ev->identity_uri);
		e->identity_label = xstrdup(certagent_identity_label(ev->identity));
		e->token_label = xstrdup(certagent_identity_token_label(ev->identity));
		e->key_type = xstrdup(certagent_identity_key_type(ev->identity));
		e->reason = xstrdup(ev->reason);
		e->identity_subject =
			certagent_identity_cert_count(ev->identity) > 0
				? cli_cert_dn(certagent_identity_cert(ev->identity, 0), false)
				: NULL;
		break;
	case CERTAGENT_EVENT_NONE_FITS:
		free(e->none_reason);
		e->none_reason = xstrdup(ev->reason);
		break;
	case CERTAGENT_EVENT_SIGN_DONE:
		if (e->n_signs < MAX_SIGNS) {
			Sign *s = &e->signs[e->n_signs++];

			s->scheme = xstrdup(ev->scheme);
			s->mechanism = mechanism_for(ev->scheme);
			s->elapsed_us = ev->elapsed_us;
			s->code = ev->code;
		}
		break;
	default:
		break;
	}
}

void explain_observe(Explain *e, certagent_client *c)
{
	certagent_client_set_observer(c, on_event, e);
}

void explain_set_address(Explain *e, const char *addr)
{
	free(e->address);
	e->address = xstrdup(addr);
}

void explain_set_trust(Explain *e, const char *what, int n_cas)
{
	free(e->trust);
	e->trust = xstrdup(what);
	e->n_trusted = n_cas;
}

/* --- what the client offered ------------------------------------------------------------------ */

void explain_offered(Explain *e, gnutls_priority_t prio)
{
	const unsigned *list;
	int n;

	n = gnutls_priority_protocol_list(prio, &list);
	/* The list holds DTLS too; this is a TCP connection. */
	for (int i = 0; i < n && e->n_versions < MAX_LIST; i++)
		if (gnutls_protocol_get_name(list[i]) &&
		    strncmp(gnutls_protocol_get_name(list[i]), "DTLS", 4) != 0)
			e->versions[e->n_versions++] = gnutls_protocol_get_name(list[i]);
	n = gnutls_priority_group_list(prio, &list);
	for (int i = 0; i < n && e->n_groups < MAX_LIST; i++)
		if (gnutls_group_get_name(list[i]))
			e->groups[e->n_groups++] = gnutls_group_get_name(list[i]);
	n = gnutls_priority_sign_list(prio, &list);
	for (int i = 0; i < n && e->n_sigs < MAX_LIST; i++)
		if (gnutls_sign_get_name(list[i]))
			e->sigs[e->n_sigs++] = gnutls_sign_get_name(list[i]);
	n = gnutls_priority_cipher_list(prio, &list);
	for (int i = 0; i < n && e->n_ciphers < MAX_LIST; i++)
		if (gnutls_cipher_get_name(list[i]))
			e->ciphers[e->n_ciphers++] = gnutls_cipher_get_name(list[i]);
}

/* --- CRLs ----------------------------------------------------------------------------------- */

int explain_load_crl(Explain *e, const char *file)
{
	gnutls_datum_t data = {NULL, 0};
	gnutls_x509_crl_t *list = NULL;
	unsigned n = 0;
	int r;

	r = gnutls_load_file(file, &data);
	if (r < 0) {
		fprintf(stderr, "certagent: cannot read the CRL file %s: %s\n", file,
			gnutls_strerror(r));
		return -CLI_EXIT_IO;
	}
	r = gnutls_x509_crl_list_import2(&list, &n, &data, GNUTLS_X509_FMT_PEM, 0);
	if (r < 0)
		r = gnutls_x509_crl_list_import2(&list, &n, &data, GNUTLS_X509_FMT_DER, 0);
	gnutls_free(data.data);
	if (r < 0 || n == 0) {
		fprintf(stderr, "certagent: %s holds no CRL (PEM \"X509 CRL\" or DER)%s%s\n", file,
			r < 0 ? ": " : "", r < 0 ? gnutls_strerror(r) : "");
		return -CLI_EXIT_IO;
	}
	for (unsigned i = 0; i < n; i++) {
		if (e->n_crls < MAX_CRLS)
			e->crls[e->n_crls++] = list[i];
		else
			gnutls_x509_crl_deinit(list[i]);
	}
	gnutls_free(list);
	free(e->crl_file);
	e->crl_file = xstrdup(file);
	return 0;
}

/* --- the server's chain ------------------------------------------------------------------- */

static void chain_add(Explain *e, gnutls_x509_crt_t crt, const char *source)
{
	ChainCert *c;

	if (e->n_chain == MAX_CHAIN)
		return;
	c = &e->chain[e->n_chain++];
	cert_info_init(&c->cert, crt);
	/* The checks name certificates by DN: "?" when it cannot be read. */
	if (!c->cert.subject)
		c->cert.subject = strdup("?");
	if (!c->cert.issuer)
		c->cert.issuer = strdup("?");
	c->sig_algo = gnutls_sign_get_name(gnutls_x509_crt_get_signature_algorithm(crt));
	c->source = source;
}

static void status_text(unsigned status, char *buf, size_t size)
{
	gnutls_datum_t out = {NULL, 0};

	snprintf(buf, size, "status 0x%x", status);
	if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
		while (out.size > 0 && out.data[out.size - 1] == ' ')
			out.size--;
		snprintf(buf, size, "%.*s", (int)out.size, (const char *)out.data);
	}
	gnutls_free(out.data);
}

/* The signature on crt made by issuer: names match, issuer may sign, signature verifies. */
static void check_signature(Explain *e, int link, gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
			    int issuer_link, const char *issuer_name)
{
	unsigned status = 0;
	const char *algo = gnutls_sign_get_name(gnutls_x509_crt_get_signature_algorithm(crt));
	int r;

	if (!gnutls_x509_crt_check_issuer(crt, issuer)) {
		add_check(e, "signature", link, "failed",
			  "its issuer name does not match the subject of [%d] %s: the chain is "
			  "broken here",
			  issuer_link, issuer_name);
		return;
	}
	/* Times are checked on their own (validity); this isolates the signature. */
	r = gnutls_x509_crt_verify(crt, &issuer, 1,
				   GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
					   GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
				   &status);
	if (r == 0 && status == 0) {
		add_check(e, "signature", link, "ok",
			  "signed by [%d] %s; the %s signature verifies with that certificate's "
			  "public key, and it is a CA allowed to sign",
			  issuer_link, issuer_name, algo ? algo : "?");
	} else {
		char why[256];

		status_text(status, why, sizeof(why));
		add_check(e, "signature", link, "failed",
			  "the signature by [%d] %s does not hold: %s", issuer_link, issuer_name,
			  r < 0 ? gnutls_strerror(r) : why);
	}
}

static void check_validity(Explain *e, int link, gnutls_x509_crt_t crt, time_t now)
{
	time_t nb = gnutls_x509_crt_get_activation_time(crt);
	time_t na = gnutls_x509_crt_get_expiration_time(crt);
	char b1[40], b2[40], b3[40];

	cert_info_time_str(nb, b1, sizeof(b1));
	cert_info_time_str(na, b2, sizeof(b2));
	cert_info_time_str(now, b3, sizeof(b3));
	if (now < nb)
		add_check(e, "validity", link, "failed",
			  "not yet valid: valid from %s to %s, and now is %s", b1, b2, b3);
	else if (now > na)
		add_check(e, "validity", link, "failed",
			  "expired: valid from %s to %s, and now is %s", b1, b2, b3);
	else
		add_check(e, "validity", link, "ok",
			  "now (%s) is inside its validity window, %s to %s (%ld days left)", b3,
			  b1, b2, (long)((na - now) / 86400));
}

static void check_crl(Explain *e, int link, gnutls_x509_crt_t crt)
{
	gnutls_datum_t want = {NULL, 0};
	bool any = false;

	if (e->n_crls == 0 || gnutls_x509_crt_get_raw_issuer_dn(crt, &want) < 0)
		return;
	for (unsigned i = 0; i < e->n_crls; i++) {
		gnutls_datum_t have = {NULL, 0};
		bool same = gnutls_x509_crl_get_raw_issuer_dn(e->crls[i], &have) == 0 &&
			    have.size == want.size && memcmp(have.data, want.data, want.size) == 0;
		char b1[40], b2[40];
		int r;

		gnutls_free(have.data);
		if (!same)
			continue;
		any = true;
		cert_info_time_str(gnutls_x509_crl_get_this_update(e->crls[i]), b1, sizeof(b1));
		cert_info_time_str(gnutls_x509_crl_get_next_update(e->crls[i]), b2, sizeof(b2));
		r = gnutls_x509_crt_check_revocation(crt, &e->crls[i], 1);
		if (r == 1)
			add_check(e, "crl", link, "failed",
				  "REVOKED: its serial number is listed in the CRL from its issuer "
				  "(%s, issued %s, next update %s)",
				  e->crl_file, b1, b2);
		else if (r == 0)
			add_check(
				e, "crl", link, "ok",
				"not revoked: the CRL from its issuer (%s, issued %s, next update "
				"%s) does not list its serial number",
				e->crl_file, b1, b2);
		else
			add_check(e, "crl", link, "failed", "the CRL cannot be checked: %s",
				  gnutls_strerror(r));
	}
	if (!any)
		add_check(e, "crl", link, "info",
			  "no CRL from its issuer was given (%s), so revocation was not checked",
			  e->crl_file);
	gnutls_free(want.data);
}

static void check_ocsp(Explain *e, gnutls_session_t session)
{
	gnutls_datum_t data = {NULL, 0};
	gnutls_ocsp_resp_t resp;
	unsigned cert_status = 0;
	time_t this_update, next_update, revoked;
	unsigned reason;
	char b1[40], b2[40], b3[40];

	if (gnutls_ocsp_status_request_get2(session, 0, &data) < 0) {
		add_check(e, "ocsp", 0, "info",
			  "the server stapled no OCSP response (revocation was not checked that "
			  "way)");
		return;
	}
	if (gnutls_ocsp_resp_init(&resp) < 0)
		return;
	if (gnutls_ocsp_resp_import(resp, &data) < 0 ||
	    gnutls_ocsp_resp_get_single(resp, 0, NULL, NULL, NULL, NULL, &cert_status, &this_update,
					&next_update, &revoked, &reason) < 0) {
		add_check(e, "ocsp", 0, "failed",
			  "the server stapled an OCSP response that cannot "
			  "be read");
	} else {
		/* next_update is -1 when the response has none ("?" then). */
		cert_info_time_str(this_update, b1, sizeof(b1));
		cert_info_time_str(next_update, b2, sizeof(b2));
		if (cert_status == GNUTLS_OCSP_CERT_GOOD)
			add_check(e, "ocsp", 0, "ok",
				  "the server stapled an OCSP response saying \"good\" (this "
				  "update %s, next update %s)",
				  b1, b2);
		else if (cert_status == GNUTLS_OCSP_CERT_REVOKED)
			add_check(e, "ocsp", 0, "failed",
				  "the server stapled an OCSP response saying REVOKED (revoked "
				  "%s; this update %s, next update %s)",
				  cert_info_time_str(revoked, b3, sizeof(b3)), b1, b2);
		else
			add_check(e, "ocsp", 0, "info",
				  "the server stapled an OCSP response saying \"unknown\" (this "
				  "update %s, next update %s)",
				  b1, b2);
	}
	gnutls_ocsp_resp_deinit(resp);
}

void explain_server_chain(Explain *e, gnutls_session_t session,
			  gnutls_certificate_credentials_t cred)
{
	const gnutls_datum_t *peers;
	gnutls_x509_crt_t crts[MAX_CHAIN];
	gnutls_x509_trust_list_t tl = NULL;
	gnutls_x509_crt_t anchor = NULL;
	const char *name = e->server_name ? e->server_name : e->host;
	unsigned n = 0, status;
	time_t now = time(NULL);
	size_t m = 0;
	char why[512];

	peers = gnutls_certificate_get_peers(session, &n);
	if (!peers || n == 0)
		return;
	for (unsigned i = 0; i < n && m < MAX_CHAIN; i++) {
		if (gnutls_x509_crt_init(&crts[m]) < 0)
			break;
		if (gnutls_x509_crt_import(crts[m], &peers[i], GNUTLS_X509_FMT_DER) < 0) {
			gnutls_x509_crt_deinit(crts[m]);
			add_check(e, "parse", (int)i, "failed", "certificate [%u] cannot be parsed",
				  i);
			break;
		}
		chain_add(e, crts[m], "server");
		m++;
	}
	if (m == 0)
		return;

	for (size_t i = 0; i < m; i++) {
		check_validity(e, (int)i, crts[i], now);
		if (i + 1 < m)
			check_signature(e, (int)i, crts[i], crts[i + 1], (int)i + 1,
					e->chain[i + 1].cert.subject);
		check_crl(e, (int)i, crts[i]);
	}

	/* The top of what the server sent must lead to a CA in our trust store. */
	gnutls_certificate_get_trust_list(cred, &tl);
	if (tl &&
	    gnutls_x509_trust_list_get_issuer(tl, crts[m - 1], &anchor, GNUTLS_TL_GET_COPY) == 0) {
		bool self = gnutls_x509_crt_check_issuer(crts[m - 1], crts[m - 1]) &&
			    gnutls_x509_crt_equals(crts[m - 1], anchor);
		int top = (int)m - 1;

		if (!self) {
			chain_add(e, anchor, "trust store");
			check_signature(e, top, crts[m - 1], anchor, (int)m,
					e->chain[e->n_chain - 1].cert.subject);
			check_validity(e, (int)m, anchor, now);
			top = (int)m;
		}
		add_check(e, "trust-anchor", top, "ok",
			  "the chain ends at %s, a CA in the trust store (%s)",
			  e->chain[top].cert.subject, e->trust ? e->trust : "?");
		gnutls_x509_crt_deinit(anchor);
	} else {
		add_check(e, "trust-anchor", (int)m - 1, "failed",
			  "no CA in the trust store (%s) issued %s (issuer %s): the chain does "
			  "not lead to a CA the client trusts",
			  e->trust ? e->trust : "?", e->chain[m - 1].cert.subject,
			  e->chain[m - 1].cert.issuer);
	}

	if (gnutls_x509_crt_check_hostname2(crts[0], name, 0))
		add_check(e, "hostname", 0, "ok",
			  "the server's certificate is valid for \"%s\" (the name we connected "
			  "to)",
			  name);
	else
		add_check(e, "hostname", 0, "failed",
			  "the server's certificate (%s) is not valid for \"%s\": neither its "
			  "subject alternative names nor its CN match",
			  e->chain[0].cert.subject, name);
	check_ocsp(e, session);

	status = gnutls_session_get_verify_cert_status(session);
	status_text(status, why, sizeof(why));
	add_check(e, "gnutls", -1, status == 0 ? "ok" : "failed",
		  "GnuTLS's verification during the handshake (what decides): %s", why);

	for (size_t i = 0; i < m; i++)
		gnutls_x509_crt_deinit(crts[i]);
}

/* --- what was negotiated ---------------------------------------------------------------------- */

void explain_negotiated(Explain *e, gnutls_session_t session)
{
	gnutls_protocol_t v = gnutls_protocol_get_version(session);
	gnutls_sign_algorithm_t s;

	e->negotiated = true;
	e->version = gnutls_protocol_get_name(v);
	e->cipher = gnutls_cipher_get_name(gnutls_cipher_get(session));
	e->mac = gnutls_mac_get_name(gnutls_mac_get(session));
	e->kx = v == GNUTLS_TLS1_3 ? NULL : gnutls_kx_get_name(gnutls_kx_get(session));
	e->group = gnutls_group_get_name(gnutls_group_get(session));
	s = gnutls_sign_algorithm_get(session);
	e->server_sig = s != GNUTLS_SIGN_UNKNOWN ? gnutls_sign_get_name(s) : NULL;
	s = gnutls_sign_algorithm_get_client(session);
	e->client_sig = s != GNUTLS_SIGN_UNKNOWN ? gnutls_sign_get_name(s) : NULL;
	gnutls_free(e->desc);
	e->desc = gnutls_session_get_desc(session);
}

void explain_set_result(Explain *e, const char *result, const char *fmt, ...)
{
	va_list ap;

	e->result = result;
	free(e->result_detail);
	va_start(ap, fmt);
	if (vasprintf(&e->result_detail, fmt, ap) < 0)
		e->result_detail = NULL;
	va_end(ap);
}

/* --- text ------------------------------------------------------------------------------------ */

#define TEXT_WIDTH 99

/* Prints text from column col, wrapping at TEXT_WIDTH and indenting new lines to indent. */
static void wrap(const char *text, size_t col, size_t indent, FILE *f)
{
	const char *p = text;
	bool first = true;

	while (*p) {
		size_t word = strcspn(p, " ");

		if (!first && col + 1 + word > TEXT_WIDTH) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
		} else if (!first) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, word, f);
		col += word;
		first = false;
		p += word;
		while (*p == ' ')
			p++;
	}
	fputc('\n', f);
}

static void print_list(const char *label, const char *const *v, size_t n, FILE *f)
{
	size_t col = 4 + 22;

	fprintf(f, "    %-21s", label);
	if (n == 0)
		fputs(" (none)", f);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(v[i]) + 1;

		if (col + len > TEXT_WIDTH && i > 0) {
			fprintf(f, "\n%25s", "");
			col = 25;
		}
		fprintf(f, " %s", v[i]);
		col += len;
	}
	fputc('\n', f);
}

static void print_para(const char *text, FILE *f)
{
	fputs("    ", f);
	wrap(text, 4, 4, f);
}

/* "    label      text", text wrapped under itself. */
static void print_field(const char *label, const char *text, FILE *f)
{
	fprintf(f, "    %-10s ", label);
	wrap(text ? text : "?", 15, 15, f);
}

static const char *status_mark(const char *status)
{
	if (strcmp(status, "ok") == 0)
		return "ok    ";
	if (strcmp(status, "failed") == 0)
		return "FAILED";
	return "note  ";
}

void explain_print_text(const Explain *e, FILE *f)
{
	char b1[40], b2[40];

	fprintf(f, "Mutual TLS with %s port %s%s%s%s, step by step\n", e->host, e->port,
		e->address ? " (" : "", e->address ? e->address : "", e->address ? ")" : "");

	fputs("\n1. The client says hello (ClientHello)\n", f);
	print_para("The client opens by listing what it can do; the server picks one of each. "
		   "From the client's priority settings:",
		   f);
	print_list("TLS versions", e->versions, e->n_versions, f);
	print_list("key exchange groups", e->groups, e->n_groups, f);
	print_list("signature algorithms", e->sigs, e->n_sigs, f);
	print_list("ciphers", e->ciphers, e->n_ciphers, f);
	fprintf(f, "    %-21s %s\n", "server name (SNI)",
		e->server_name ? e->server_name : e->host);

	fputs("\n2. The server proves who it is: its certificate chain, and each check on it\n", f);
	print_para("The server sends its certificate and the intermediates, leaf first. The "
		   "client checks that each link is signed by the next, that each is inside its "
		   "validity window, that the last one leads to a CA in the client's trust store, "
		   "that the leaf names the server, and that none is revoked.",
		   f);
	if (e->n_chain == 0)
		fputs("    (the server sent no certificate)\n", f);
	for (size_t i = 0; i < e->n_chain; i++) {
		const ChainCert *c = &e->chain[i];

		fprintf(f, "    [%zu] %s  (%s)\n", i, c->cert.subject,
			strcmp(c->source, "server") == 0 ? "sent by the server"
							 : "from the trust store");
		fprintf(f, "        issuer     %s\n", c->cert.issuer);
		fprintf(f, "        valid      %s to %s\n",
			cert_info_time_str(c->cert.not_before, b1, sizeof(b1)),
			cert_info_time_str(c->cert.not_after, b2, sizeof(b2)));
		fprintf(f, "        serial     %s, signed with %s\n",
			c->cert.serial ? c->cert.serial : "?", c->sig_algo ? c->sig_algo : "?");
	}
	if (e->n_checks > 0) {
		fprintf(f, "    Checks (trust store: %s):\n", e->trust ? e->trust : "?");
		for (size_t i = 0; i < e->n_checks; i++) {
			const Check *c = &e->checks[i];
			char where[16] = "   ";

			if (c->link >= 0)
				snprintf(where, sizeof(where), "[%d]", c->link);
			fprintf(f, "      %s %-4s %-12s ", status_mark(c->status), where, c->kind);
			wrap(c->detail ? c->detail : "", 31, 31, f);
		}
	}

	fputs("\n3. The server asks for a client certificate (CertificateRequest)\n", f);
	if (!e->requested) {
		print_para("The server did not ask for a client certificate: this connection is "
			   "not mutual TLS, and no identity was used.",
			   f);
	} else {
		print_para(
			"In mutual TLS the server names the CAs whose certificates it accepts "
			"and the signature algorithms it can verify; the client must answer with "
			"a certificate that fits both.",
			f);
		print_list("acceptable CAs", (const char *const *)e->ca_names, e->n_ca_names, f);
		print_list("signature algorithms", e->req_sigs, e->n_req_sigs, f);
	}

	fputs("\n4. The identity the client chose\n", f);
	if (e->identity_uri) {
		fprintf(f, "    %-10s %s\n", "identity",
			e->identity_label && *e->identity_label ? e->identity_label : "(no label)");
		fprintf(f, "    %-10s %s\n", "uri", e->identity_uri);
		fprintf(f, "    %-10s %s\n", "subject",
			e->identity_subject ? e->identity_subject : "?");
		fprintf(f, "    %-10s %s (%s key)\n", "token",
			e->token_label ? e->token_label : "?", e->key_type ? e->key_type : "?");
		print_field("why", e->reason, f);
	} else if (e->none_reason) {
		fputs("    ", f);
		wrap("No identity fits, so no certificate was sent:", 4, 4, f);
		print_field("why", e->none_reason, f);
	} else {
		fputs("    None was needed.\n", f);
	}

	fputs("\n5. The client proves it holds the key (CertificateVerify)\n", f);
	print_para("The client signs the handshake so far. The private key never leaves the "
		   "token: libcertagent asks certagentd over D-Bus, and the agent asks the token "
		   "through PKCS#11. The mechanism below follows from the TLS scheme (the agent "
		   "reports only the signature); the time is the round trip through the agent, "
		   "the token's work included.",
		   f);
	if (e->n_signs == 0)
		fputs("    No signature was made.\n", f);
	for (size_t i = 0; i < e->n_signs; i++) {
		const Sign *s = &e->signs[i];

		fprintf(f, "    %-10s %s\n", "scheme", s->scheme ? s->scheme : "?");
		fprintf(f, "    %-10s %s, on token %s\n", "mechanism", s->mechanism,
			e->token_label ? e->token_label : "?");
		fprintf(f, "    %-10s %.1f ms\n", "time", s->elapsed_us / 1000.0);
		fprintf(f, "    %-10s %s\n", "result",
			s->code == CERTAGENT_OK ? "signed" : certagent_strerror(s->code));
	}

	fputs("\n6. What was negotiated\n", f);
	if (!e->negotiated) {
		fputs("    Nothing: the handshake did not complete.\n", f);
	} else {
		fprintf(f, "    %-22s %s\n", "version", e->version ? e->version : "?");
		fprintf(f, "    %-22s %s\n", "cipher", e->cipher ? e->cipher : "?");
		fprintf(f, "    %-22s %s\n", "MAC", e->mac ? e->mac : "?");
		if (e->kx)
			fprintf(f, "    %-22s %s\n", "key exchange", e->kx);
		fprintf(f, "    %-22s %s\n", "group", e->group ? e->group : "?");
		fprintf(f, "    %-22s %s\n", "server's signature",
			e->server_sig ? e->server_sig : "?");
		fprintf(f, "    %-22s %s\n", "client's signature",
			e->client_sig ? e->client_sig : "(none)");
		fprintf(f, "    %-22s %s\n", "in short", e->desc ? e->desc : "?");
	}

	fputs("\n7. Did the server accept the client?\n", f);
	print_field("result", e->result ? e->result : "failed", f);
	print_field("why", e->result_detail, f);
}

/* --- JSON ------------------------------------------------------------------------------------ */

void explain_print_json(const Explain *e, FILE *f)
{
	fputs("{\"server\": {\"host\": ", f);
	json_print_string(f, e->host);
	fputs(", \"port\": ", f);
	json_print_string(f, e->port);
	fputs(", \"address\": ", f);
	json_print_string(f, e->address);
	fputs(", \"server_name\": ", f);
	json_print_string(f, e->server_name ? e->server_name : e->host);
	fputs("},\n \"offered\": {\"versions\": ", f);
	json_print_strings(f, e->versions, e->n_versions);
	fputs(", \"groups\": ", f);
	json_print_strings(f, e->groups, e->n_groups);
	fputs(", \"signature_algorithms\": ", f);
	json_print_strings(f, e->sigs, e->n_sigs);
	fputs(", \"ciphers\": ", f);
	json_print_strings(f, e->ciphers, e->n_ciphers);
	fputs("},\n \"trust_store\": ", f);
	json_print_string(f, e->trust);
	fputs(", \"crl_file\": ", f);
	json_print_string(f, e->crl_file);
	fputs(",\n \"server_chain\": [", f);
	for (size_t i = 0; i < e->n_chain; i++) {
		const ChainCert *c = &e->chain[i];

		fputs(i ? ",\n   {" : "\n   {", f);
		cert_info_print_json(&c->cert, f);
		fputs(", \"signature_algorithm\": ", f);
		json_print_string(f, c->sig_algo);
		fputs(", \"source\": ", f);
		json_print_string(f, c->source);
		fputc('}', f);
	}
	fputs("],\n \"checks\": [", f);
	for (size_t i = 0; i < e->n_checks; i++) {
		const Check *c = &e->checks[i];

		fputs(i ? ",\n   {\"check\": " : "\n   {\"check\": ", f);
		json_print_string(f, c->kind);
		if (c->link >= 0)
			fprintf(f, ", \"link\": %d", c->link);
		else
			fputs(", \"link\": null", f);
		fputs(", \"status\": ", f);
		json_print_string(f, c->status);
		fputs(", \"detail\": ", f);
		json_print_string(f, c->detail);
		fputc('}', f);
	}
	fputs("],\n \"certificate_request\": ", f);
	if (!e->requested) {
		fputs("null", f);
	} else {
		fputs("{\"acceptable_cas\": ", f);
		json_print_strings(f, (const char *const *)e->ca_names, e->n_ca_names);
		fputs(", \"signature_algorithms\": ", f);
		json_print_strings(f, e->req_sigs, e->n_req_sigs);
		fputc('}', f);
	}
	fputs(",\n \"identity\": ", f);
	if (!e->identity_uri) {
		fputs("null", f);
	} else {
		fputs("{\"uri\": ", f);
		json_print_string(f, e->identity_uri);
		fputs(", \"label\": ", f);
		json_print_string(f, e->identity_label);
		fputs(", \"subject\": ", f);
		json_print_string(f, e->identity_subject);
		fputs(", \"token_label\": ", f);
		json_print_string(f, e->token_label);
		fputs(", \"key_type\": ", f);
		json_print_string(f, e->key_type);
		fputs(", \"reason\": ", f);
		json_print_string(f, e->reason);
		fputc('}', f);
	}
	fputs(",\n \"no_identity_reason\": ", f);
	json_print_string(f, e->none_reason);
	fputs(",\n \"signatures\": [", f);
	for (size_t i = 0; i < e->n_signs; i++) {
		const Sign *s = &e->signs[i];

		fputs(i ? ", {\"scheme\": " : "{\"scheme\": ", f);
		json_print_string(f, s->scheme);
		fputs(", \"mechanism\": ", f);
		json_print_string(f, s->mechanism);
		fputs(", \"token_label\": ", f);
		json_print_string(f, e->token_label);
		fprintf(f,
			", \"elapsed_us\": %llu, \"error\": ", (unsigned long long)s->elapsed_us);
		if (s->code == CERTAGENT_OK)
			fputs("null", f);
		else
			json_print_string(f, certagent_strerror(s->code));
		fputc('}', f);
	}
	fputs("],\n \"negotiated\": ", f);
	if (!e->negotiated) {
		fputs("null", f);
	} else {
		fputs("{\"version\": ", f);
		json_print_string(f, e->version);
		fputs(", \"cipher\": ", f);
		json_print_string(f, e->cipher);
		fputs(", \"mac\": ", f);
		json_print_string(f, e->mac);
		fputs(", \"kx\": ", f);
		json_print_string(f, e->kx);
		fputs(", \"group\": ", f);
		json_print_string(f, e->group);
		fputs(", \"server_signature\": ", f);
		json_print_string(f, e->server_sig);
		fputs(", \"client_signature\": ", f);
		json_print_string(f, e->client_sig);
		fputs(", \"description\": ", f);
		json_print_string(f, e->desc);
		fputc('}', f);
	}
	fputs(",\n \"result\": ", f);
	json_print_string(f, e->result ? e->result : "failed");
	fputs(", \"accepted\": ", f);
	fputs(e->result && strcmp(e->result, "accepted") == 0 ? "true" : "false", f);
	fputs(", \"detail\": ", f);
	json_print_string(f, e->result_detail);
	fputs("}\n", f);
}
