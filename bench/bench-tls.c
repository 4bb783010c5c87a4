/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-tls: the handshake case of certagent-bench. Mutual TLS against the server thread of
 * bench-server.c with the client key in-process (pkcs11: URL), behind the agent
 * (certagent_credentials_set) and, for P-256, in a PEM file; a handshake counts only when the
 * server has verified the client's chain.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <certagent.h>

#include "bench.h"

/* ---- small owners with cleanup ---- */

static void bench_cred_freep(gnutls_certificate_credentials_t *c)
{
	if (*c)
		gnutls_certificate_free_credentials(*c);
}

/* ---- the measured operation: one handshake ---- */

typedef struct HandshakeCtx {
	BenchServer *server;
	gnutls_priority_t prio;
	gnutls_certificate_credentials_t cred;
	certagent_client *agent; /* for the library's last error, when the agent signs */
	const char *what;
	unsigned long handshakes; /* handed to the server, warm-up included */
} HandshakeCtx;

static int bench_handshake_fail(HandshakeCtx *h, const char *step, int rc, CaError *err)
{
	char server_error[256];
	const certagent_error *aerr = h->agent ? certagent_client_last_error(h->agent) : NULL;

	usleep(100 * 1000); /* let the server thread record its side of the failure */
	bench_server_counts(h->server, NULL, NULL, server_error, sizeof(server_error));
	return ca_error_set(err, CA_E_FAILED, "%s: %s: %s%s%s%s%s", h->what, step,
			    gnutls_strerror(rc), server_error[0] ? "; server: " : "", server_error,
			    aerr && aerr->message[0] ? "; agent: " : "", aerr ? aerr->message : "");
}

static int bench_op_handshake(void *ctx, CaError *err)
{
	HandshakeCtx *h = ctx;
	const char *step;
	bool served;
	int rc = bench_client_handshake(h->server, h->prio, h->cred, BENCH_SERVER_NAME,
					BENCH_TIMEOUT_MS, &served, &step);

	if (served)
		h->handshakes++;
	if (rc == 0)
		return 0;
	if (!served)
		return rc;
	return bench_handshake_fail(h, step, rc, err);
}

/* Client credentials trusting the CA; the key is added by the caller. */
static int bench_cred_new(const Options *o, gnutls_certificate_credentials_t *ret, CaError *err)
{
	_cleanup_(bench_cred_freep) gnutls_certificate_credentials_t cred = NULL;

	int rc = gnutls_certificate_allocate_credentials(&cred);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "credentials: %s", gnutls_strerror(rc));
	rc = gnutls_certificate_set_x509_trust_file(cred, o->ca, GNUTLS_X509_FMT_PEM);
	if (rc <= 0)
		return ca_error_set(err, CA_E_FAILED, "CA file %s: %s", o->ca,
				    rc < 0 ? gnutls_strerror(rc) : "no certificate");
	*ret = TAKE_PTR(cred);
	return 0;
}

static int bench_cred_file(const Options *o, const char *chain, const char *key,
			   gnutls_certificate_credentials_t *ret, CaError *err)
{
	_cleanup_(bench_cred_freep) gnutls_certificate_credentials_t cred = NULL;

	int rc = bench_cred_new(o, &cred, err);
	if (rc != 0)
		return rc;
	rc = gnutls_certificate_set_x509_key_file2(cred, chain, key, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "client chain %s with key %s: %s", chain, key,
				    gnutls_strerror(rc));
	*ret = TAKE_PTR(cred);
	return 0;
}

static int bench_cred_agent(const Options *o, certagent_client *agent, const char *uri,
			    gnutls_certificate_credentials_t *ret, CaError *err)
{
	_cleanup_(bench_cred_freep) gnutls_certificate_credentials_t cred = NULL;
	certagent_error aerr = CERTAGENT_ERROR_INIT;

	int rc = bench_cred_new(o, &cred, err);
	if (rc != 0)
		return rc;
	if (certagent_credentials_set(agent, cred, uri, &aerr) < 0)
		return ca_error_set(err, CA_E_FAILED, "certagent_credentials_set(%s): %s", uri,
				    aerr.message);
	*ret = TAKE_PTR(cred);
	return 0;
}

/* ---- the handshake rows ---- */

/* libcertagent's observer: how long each signature the agent made for a handshake took, as the
 * library saw it (from sending the request to the reply). */
static void bench_sign_observer(const certagent_event *ev, void *userdata)
{
	Stats *signs = userdata;

	if (ev->kind == CERTAGENT_EVENT_SIGN_DONE && ev->code == CERTAGENT_OK)
		(void)stats_add(signs, (double)ev->elapsed_us / 1e6);
}

/* Handshake rows for one token key: in-process, through the agent, and (P-256) a PEM file. */
int bench_handshake_case(Bench *b, gnutls_priority_t prio, const certagent_identity *id,
			 const char *label, const char *chain, const char *name, bool with_pem,
			 CaError *err)
{
	_cleanup_(bench_cred_freep) gnutls_certificate_credentials_t inproc = NULL;
	_cleanup_(bench_cred_freep) gnutls_certificate_credentials_t via_agent = NULL;
	_cleanup_(bench_cred_freep) gnutls_certificate_credentials_t pem = NULL;
	char url[BENCH_URL_MAX];

	if (bench_key_url(b->opt.token, label, url, sizeof(url)) < 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "token or key label too long");
	int rc = bench_cred_file(&b->opt, chain, url, &inproc, err);
	if (rc == 0)
		rc = bench_cred_agent(&b->opt, b->agent, certagent_identity_uri(id), &via_agent,
				      err);
	if (rc == 0 && with_pem)
		rc = bench_cred_file(&b->opt, b->opt.pem_chain, b->opt.pem_key, &pem, err);
	if (rc != 0)
		return rc;

	HandshakeCtx ctx[] = {
		{b->server, prio, inproc, NULL, "handshake with the token key in-process"},
		{b->server, prio, via_agent, b->agent,
		 "handshake with the token key via the agent"},
		{b->server, prio, pem, NULL, "handshake with the PEM key file"},
	};
	Stats *base = bench_stats(b), *agent = bench_stats(b),
	      *file = with_pem ? bench_stats(b) : NULL;
	const BenchPath paths[] = {
		{bench_op_handshake, &ctx[0], base},
		{bench_op_handshake, &ctx[1], agent},
		{bench_op_handshake, &ctx[2], file},
	};
	unsigned long ok0, ok1, handshakes = 0;
	Stats signs = {0};

	bench_progress(b, name);
	bench_server_counts(b->server, &ok0, NULL, NULL, 0);
	ok1 = ok0;
	certagent_client_set_observer(b->agent, bench_sign_observer, &signs);
	rc = bench_measure(paths, with_pem ? 3 : 2, BENCH_HANDSHAKE_SECONDS_FACTOR * b->opt.seconds,
			   err);
	certagent_client_set_observer(b->agent, NULL, NULL);
	stats_finish(&signs);
	double sign_p50 = ms(stats_percentile(&signs, 50));

	stats_deinit(&signs);
	if (rc != 0)
		return rc;

	/* Every handshake the clients made must be one the server verified. */
	for (size_t i = 0; i < ELEMENTSOF(ctx); i++)
		handshakes += ctx[i].handshakes;
	for (int i = 0; i < 100 && ok1 - ok0 < handshakes; i++) {
		if (i)
			usleep(10 * 1000);
		bench_server_counts(b->server, &ok1, NULL, NULL, 0);
	}
	if (ok1 - ok0 != handshakes)
		return ca_error_set(err, CA_E_FAILED,
				    "%s: the server verified %lu of %lu client certificates", name,
				    ok1 - ok0, handshakes);

	Row *r = bench_row(b, name, "pkcs11 in-process", base, agent);

	r->target = ">=0.97";
	/* Where the added time goes: the agent's signature in a handshake (warm-up included). */
	snprintf(r->note, sizeof(r->note), "added p50 %+.3f ms; agent's signature p50 %.3f ms",
		 r->agent_p50 - r->base_p50, sign_p50);
	if (file)
		bench_row(b, name, "PEM key file", file, agent);
	return 0;
}
