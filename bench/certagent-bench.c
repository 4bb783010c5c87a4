/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent-bench: what going through the agent costs, measured against a baseline in the
 * same run on the same token. One client, one operation at a time:
 *
 *   sign       certagent_sign() (D-Bus → certagentd → PKCS#11)  vs  the same token key used
 *              in-process by GnuTLS through its pkcs11: URL;
 *   isolation  with --compare-address: the same P-256 signature through this agent (modules in
 *              helper processes, isolation = process) vs a second agent on another bus whose
 *              module runs inside it (isolation = none): the cost of the helper hop;
 *   handshake  TLS 1.3 mutual TLS with the client key behind the agent (certagent_credentials_set)
 *              vs the same key in-process (pkcs11: URL) vs a software P-256 key in a PEM file.
 *
 * The TLS server runs on a thread of this program (bench-server.c) over a socketpair, so every
 * case pays the same server and transport cost and differs only in the client's key path.
 * Every signature is checked once against the identity's certificate, and every handshake
 * counts only when the server has verified the client's chain.
 *
 * Setup (token, keys, CA, bus, agent) is done by bench/run-bench.sh; scripts/bench builds and
 * runs it. This program owns its GnuTLS objects and the PIN buffer (wiped at exit).
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <gnutls/x509.h>

#include <certagent.h>

#include "bench-server.h"
#include "bench-stats.h"
#include "util.h"

#define BENCH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define BENCH_DEFAULT_SECONDS 3
#define BENCH_QUICK_SECONDS 0.5
#define BENCH_SLICE_SECONDS 0.5 /* turns of the paths measured against each other */
#define BENCH_MIN_OPS 3		/* even a tiny --seconds gives percentiles of something */
#define BENCH_PIN_MAX 256	/* as the agent's cap on PINs */
#define BENCH_URL_MAX 1024
#define BENCH_TIMEOUT_MS 30000 /* a stuck agent or server fails the bench, not hangs it */
#define BENCH_STR_(x) #x
#define BENCH_STR(x) BENCH_STR_(x)
#define BENCH_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define BENCH_SERVER_NAME "localhost"

typedef struct Options {
	const char *address; /* bus of the agent; NULL: session bus */
	const char *module;  /* PKCS#11 module for the in-process baseline */
	const char *token;   /* token label */
	const char *pin_file;
	const char *ec_label;  /* CKA_LABEL of the P-256 key (and its certificate) */
	const char *rsa_label; /* CKA_LABEL of the RSA key */
	const char *ec_chain;  /* PEM: leaf + intermediates of the P-256 token key */
	const char *rsa_chain; /* optional: RSA handshake rows */
	const char *pem_key;   /* software P-256 key (baseline) */
	const char *pem_chain;
	const char *ca; /* root CA: the server trusts it for clients, clients for it */
	const char *server_cert;
	const char *server_key;
	const char *compare_address; /* a second agent with isolation = none (optional) */
	double seconds;
	bool json;
} Options;

/* ---- small owners with cleanup ---- */

static void bench_privkey_freep(gnutls_privkey_t *k)
{
	if (*k)
		gnutls_privkey_deinit(*k);
}
static void bench_pubkey_freep(gnutls_pubkey_t *k)
{
	if (*k)
		gnutls_pubkey_deinit(*k);
}
static void bench_cred_freep(gnutls_certificate_credentials_t *c)
{
	if (*c)
		gnutls_certificate_free_credentials(*c);
}

/* ---- the PIN, for the in-process baseline only ---- */

typedef struct BenchPin {
	char value[BENCH_PIN_MAX + 2];
} BenchPin;

static void bench_pin_wipe(BenchPin *p)
{
	explicit_bzero(p->value, sizeof(p->value));
}

static int bench_pin_read(const char *path, BenchPin *ret, CaError *err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return ca_error_set(err, CA_E_INVALID_ARGS, "cannot open PIN file %s: %s", path,
				    strerror(errno));
	bool ok = fgets(ret->value, sizeof(ret->value), f) != NULL;
	fclose(f);
	size_t n = ok ? strcspn(ret->value, "\r\n") : 0;
	if (n == 0 || n > BENCH_PIN_MAX) {
		bench_pin_wipe(ret);
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "PIN file %s: expected the PIN (1-%d bytes) on its first line",
				    path, BENCH_PIN_MAX);
	}
	ret->value[n] = '\0';
	return 0;
}

/* Never retried: a wrong PIN fails the bench at once instead of locking the token. */
static int bench_pin_cb(void *userdata, int attempt, const char *token_url, const char *token_label,
			unsigned flags, char *pin, size_t pin_max)
{
	const BenchPin *p = userdata;
	size_t n = strlen(p->value);

	if (attempt > 0 || (flags & GNUTLS_PIN_WRONG) || n >= pin_max)
		return -1;
	memcpy(pin, p->value, n + 1);
	return 0;
}

/* ---- the keys ---- */

/* RFC 7512 pchar percent-encoding of an attribute value. */
static int bench_url_append(char *buf, size_t size, const char *value)
{
	static const char keep[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "0123456789-._~:[]@!$'()*+,=&";
	size_t len = strlen(buf);

	for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
		int n = strchr(keep, *c) ? snprintf(buf + len, size - len, "%c", *c)
					 : snprintf(buf + len, size - len, "%%%02X", *c);
		if (n < 0 || (size_t)n >= size - len)
			return -ENAMETOOLONG;
		len += (size_t)n;
	}
	return 0;
}

/* The in-process URL of a private key: pkcs11:token=T;object=L;type=private */
static int bench_key_url(const char *token, const char *label, char *buf, size_t size)
{
	snprintf(buf, size, "pkcs11:token=");
	if (bench_url_append(buf, size, token) < 0)
		return -ENAMETOOLONG;
	if (strlen(buf) + strlen(";object=") >= size)
		return -ENAMETOOLONG;
	strcat(buf, ";object=");
	if (bench_url_append(buf, size, label) < 0)
		return -ENAMETOOLONG;
	if (strlen(buf) + strlen(";type=private") >= size)
		return -ENAMETOOLONG;
	strcat(buf, ";type=private");
	return 0;
}

static const certagent_identity *bench_find_identity(const certagent_identity_list *l,
						     const char *token, const char *label,
						     CaError *err)
{
	size_t n = certagent_identity_list_count(l);
	char seen[400] = "";

	for (size_t i = 0; i < n; i++) {
		const certagent_identity *id = certagent_identity_list_get(l, i);
		const char *tl = certagent_identity_token_label(id);
		const char *kl = certagent_identity_label(id);
		if (tl && kl && strcmp(tl, token) == 0 && strcmp(kl, label) == 0)
			return id;
		size_t used = strlen(seen);
		snprintf(seen + used, sizeof(seen) - used, "%s\"%s\" on \"%s\"", used ? ", " : "",
			 kl ? kl : "?", tl ? tl : "?");
	}
	ca_error_set(err, CA_E_KEY_NOT_FOUND,
		     "the agent has no identity \"%s\" on token \"%s\" (it has: %s); is the "
		     "token unlocked (certagent unlock) and the certificate on the token?",
		     label, token, n ? seen : "none");
	return NULL;
}

/* The public key of an identity's leaf certificate: what every signature is checked with. */
static int bench_identity_pubkey(const certagent_identity *id, gnutls_pubkey_t *ret, CaError *err)
{
	_cleanup_(bench_pubkey_freep) gnutls_pubkey_t pub = NULL;

	if (certagent_identity_cert_count(id) == 0)
		return ca_error_set(err, CA_E_KEY_NOT_FOUND, "identity %s has no certificate",
				    certagent_identity_uri(id));
	int rc = gnutls_pubkey_init(&pub);
	if (rc >= 0)
		rc = gnutls_pubkey_import_x509_raw(pub, certagent_identity_cert(id, 0),
						   GNUTLS_X509_FMT_DER, 0);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "certificate of %s: %s",
				    certagent_identity_uri(id), gnutls_strerror(rc));
	*ret = TAKE_PTR(pub);
	return 0;
}

static int bench_import_url(const char *url, gnutls_privkey_t *ret, CaError *err)
{
	_cleanup_(bench_privkey_freep) gnutls_privkey_t key = NULL;

	int rc = gnutls_privkey_init(&key);
	if (rc >= 0)
		rc = gnutls_privkey_import_url(key, url, 0);
	if (rc < 0)
		return ca_error_set(err, CA_E_KEY_NOT_FOUND, "in-process import of %s: %s", url,
				    gnutls_strerror(rc));
	*ret = TAKE_PTR(key);
	return 0;
}

/* ---- the measured operations ---- */

typedef int (*BenchOp)(void *ctx, CaError *err);

/* One way of doing the operation (baseline or agent), measured into stats. */
typedef struct BenchPath {
	BenchOp op;
	void *ctx;
	Stats *stats;
} BenchPath;

static int bench_warm_up(const BenchPath *p, double seconds, CaError *err)
{
	double start = stats_now();
	for (unsigned i = 0; i < 2 || stats_now() - start < seconds; i++) {
		int rc = p->op(p->ctx, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int bench_slice(const BenchPath *p, double seconds, CaError *err)
{
	double start = stats_now(), now = start;

	while (now - start < seconds || p->stats->ops < BENCH_MIN_OPS) {
		double t0 = now;
		int rc = p->op(p->ctx, err);
		if (rc != 0)
			return rc;
		now = stats_now();
		if (stats_add(p->stats, now - t0) < 0)
			return -ENOMEM;
	}
	p->stats->elapsed += now - start;
	return 0;
}

/*
 * Measures the paths against each other: each is warmed up untimed (first login, first D-Bus
 * round trip, caches), then all take turns in slices of at most BENCH_SLICE_SECONDS, in
 * alternating order, until each has run `seconds` (and at least BENCH_MIN_OPS times). Taking
 * turns gives every path the same share of whatever else the machine is doing.
 */
static int bench_measure(const BenchPath *paths, size_t n, double seconds, CaError *err)
{
	unsigned rounds = (unsigned)ceil(seconds / BENCH_SLICE_SECONDS);
	double slice = seconds / rounds;

	for (size_t i = 0; i < n; i++) {
		int rc = bench_warm_up(&paths[i], fmin(0.25, seconds / 10), err);
		if (rc != 0)
			return rc;
	}
	for (unsigned r = 0; r < rounds; r++)
		for (size_t i = 0; i < n; i++) {
			int rc = bench_slice(&paths[r % 2 ? n - 1 - i : i], slice, err);
			if (rc != 0)
				return rc;
		}
	for (size_t i = 0; i < n; i++)
		stats_finish(paths[i].stats);
	return 0;
}

typedef struct SignCtx {
	gnutls_sign_algorithm_t algo;
	const char *scheme;	 /* TLS name, for the agent */
	gnutls_datum_t hash;	 /* 32 random bytes standing for a SHA-256 */
	gnutls_pubkey_t pub;	 /* checks the first signature of each path */
	gnutls_privkey_t key;	 /* in-process */
	certagent_client *agent; /* through the agent */
	const char *uri;
	bool checked;
} SignCtx;

static int bench_check_sig(SignCtx *s, const gnutls_datum_t *sig, const char *path, CaError *err)
{
	if (s->checked)
		return 0;
	int rc = gnutls_pubkey_verify_hash2(s->pub, s->algo, 0, &s->hash, sig);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED,
				    "%s signature (%s) does not verify with the identity's "
				    "certificate: %s",
				    path, s->scheme, gnutls_strerror(rc));
	s->checked = true;
	return 0;
}

static int bench_op_sign_inproc(void *ctx, CaError *err)
{
	SignCtx *s = ctx;
	gnutls_datum_t sig = {NULL, 0};

	int rc = gnutls_privkey_sign_hash2(s->key, s->algo, 0, &s->hash, &sig);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "in-process %s signature: %s", s->scheme,
				    gnutls_strerror(rc));
	rc = bench_check_sig(s, &sig, "in-process", err);
	gnutls_free(sig.data);
	return rc;
}

static int bench_op_sign_agent(void *ctx, CaError *err)
{
	SignCtx *s = ctx;
	gnutls_datum_t sig = {NULL, 0};
	certagent_error aerr = CERTAGENT_ERROR_INIT;

	int rc = certagent_sign(s->agent, s->uri, s->scheme, s->hash.data, s->hash.size, NULL, &sig,
				&aerr);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "agent %s signature: %s", s->scheme,
				    aerr.message[0] ? aerr.message : certagent_strerror(-rc));
	rc = bench_check_sig(s, &sig, "agent", err);
	gnutls_free(sig.data);
	return rc;
}

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
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	_cleanup_close_ int fd = sv[0];
	int rc = bench_server_serve(h->server, sv[1]);
	if (rc < 0) {
		close(sv[1]);
		return rc;
	}
	h->handshakes++;

	gnutls_session_t session = NULL;
	rc = gnutls_init(&session, GNUTLS_CLIENT | GNUTLS_NO_TICKETS);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "gnutls_init: %s", gnutls_strerror(rc));
	gnutls_priority_set(session, h->prio);
	gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, h->cred);
	gnutls_server_name_set(session, GNUTLS_NAME_DNS, BENCH_SERVER_NAME,
			       strlen(BENCH_SERVER_NAME));
	gnutls_session_set_verify_cert(session, BENCH_SERVER_NAME, 0);
	gnutls_handshake_set_timeout(session, BENCH_TIMEOUT_MS);
	gnutls_record_set_timeout(session, BENCH_TIMEOUT_MS);
	gnutls_transport_set_int(session, fd);

	do {
		rc = gnutls_handshake(session);
	} while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0) {
		rc = bench_handshake_fail(h, "client", rc, err);
		goto out;
	}
	/* TLS 1.3: only the server's byte says it accepted our certificate. */
	char accepted = 0;
	do {
		rc = gnutls_record_recv(session, &accepted, 1);
	} while (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED);
	if (rc != 1 || accepted != BENCH_SERVER_ACCEPTED) {
		rc = bench_handshake_fail(h, "server did not accept the client",
					  rc < 0 ? rc : GNUTLS_E_PREMATURE_TERMINATION, err);
		goto out;
	}
	rc = 0;
out:
	gnutls_deinit(session);
	return rc;
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

/* ---- the table ---- */

typedef struct Row {
	const char *name;
	const char *baseline;
	const Stats *base;
	const Stats *agent;
} Row;

static double ms(double s)
{
	return s * 1e3;
}

static void bench_print_table(const Options *o, const Row *rows, size_t n)
{
	double load[1] = {-1};

	getloadavg(load, 1);
	printf("certagent-bench: %.2g s per measurement, one client, sequential, token \"%s\"\n"
	       "machine: %ld CPUs, load %.2f (a busy machine widens p99 and blurs the ratios)\n\n",
	       o->seconds, o->token, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
	printf("%-28s %-18s %10s %10s %7s %17s %17s %9s\n", "case", "baseline", "base/s", "agent/s",
	       "ratio", "base p50/p99 ms", "agent p50/p99 ms", "added ms");
	for (size_t i = 0; i < n; i++) {
		const Row *r = &rows[i];
		double br = stats_rate(r->base), ar = stats_rate(r->agent);
		char bp[32], ap[32];
		snprintf(bp, sizeof(bp), "%.3f/%.3f", ms(stats_percentile(r->base, 50)),
			 ms(stats_percentile(r->base, 99)));
		snprintf(ap, sizeof(ap), "%.3f/%.3f", ms(stats_percentile(r->agent, 50)),
			 ms(stats_percentile(r->agent, 99)));
		printf("%-28s %-18s %10.1f %10.1f %6.2fx %17s %17s %+9.3f\n", r->name, r->baseline,
		       br, ar, br > 0 ? ar / br : 0, bp, ap,
		       ms(stats_percentile(r->agent, 50) - stats_percentile(r->base, 50)));
	}
	printf("\nratio = agent rate / baseline rate; added = agent p50 - baseline p50 "
	       "(the agent's cost per operation)\n");
}

static void bench_print_stats_json(const char *key, const Stats *s)
{
	printf("\"%s\": {\"ops\": %zu, \"seconds\": %.6f, \"rate\": %.3f, \"p50_ms\": %.6f, "
	       "\"p99_ms\": %.6f}",
	       key, s->ops, s->elapsed, stats_rate(s), ms(stats_percentile(s, 50)),
	       ms(stats_percentile(s, 99)));
}

/* Names are our own constants: nothing to escape. */
static void bench_print_json(const Options *o, const Row *rows, size_t n)
{
	double load[1] = {-1};

	getloadavg(load, 1);
	printf("{\"seconds\": %.3f, \"cpus\": %ld, \"load\": %.2f, \"rows\": [", o->seconds,
	       sysconf(_SC_NPROCESSORS_ONLN), load[0]);
	for (size_t i = 0; i < n; i++) {
		const Row *r = &rows[i];
		double br = stats_rate(r->base), ar = stats_rate(r->agent);
		printf("%s\n  {\"case\": \"%s\", \"baseline\": \"%s\", ", i ? "," : "", r->name,
		       r->baseline);
		bench_print_stats_json("base", r->base);
		printf(", ");
		bench_print_stats_json("agent", r->agent);
		printf(", \"ratio\": %.4f, \"added_p50_ms\": %.6f}", br > 0 ? ar / br : 0,
		       ms(stats_percentile(r->agent, 50) - stats_percentile(r->base, 50)));
	}
	printf("\n]}\n");
}

/* ---- main ---- */

/*
 * The options, once: getopt_long's table and --help are both made from this. String options
 * land in an Options field at `offset`; the others are handled by their `id`.
 */
enum {
	OPT_STRING = 256,
	OPT_SECONDS,
	OPT_QUICK,
	OPT_JSON,
	OPT_HELP,
};

static const struct BenchOption {
	const char *name;
	const char *arg; /* NULL: a flag */
	int id;
	size_t offset; /* OPT_STRING: where the value goes */
	const char *help;
} bench_options[] = {
	{"token", "LABEL", OPT_STRING, offsetof(Options, token), "token label (required)"},
	{"pin-file", "FILE", OPT_STRING, offsetof(Options, pin_file),
	 "user PIN for the in-process baseline (required)"},
	{"ec-label", "LABEL", OPT_STRING, offsetof(Options, ec_label),
	 "label of the P-256 key and certificate on the token (default: ec)"},
	{"rsa-label", "LABEL", OPT_STRING, offsetof(Options, rsa_label),
	 "label of the RSA-2048 key and certificate (default: rsa)"},
	{"ec-chain", "FILE", OPT_STRING, offsetof(Options, ec_chain),
	 "PEM chain (leaf first) of the P-256 token key (required)"},
	{"rsa-chain", "FILE", OPT_STRING, offsetof(Options, rsa_chain),
	 "PEM chain of the RSA token key (adds an RSA handshake row)"},
	{"pem-key", "FILE", OPT_STRING, offsetof(Options, pem_key),
	 "software P-256 key of the file baseline (required)"},
	{"pem-chain", "FILE", OPT_STRING, offsetof(Options, pem_chain), "its PEM chain (required)"},
	{"ca", "FILE", OPT_STRING, offsetof(Options, ca), "root CA of every chain (required)"},
	{"server-cert", "FILE", OPT_STRING, offsetof(Options, server_cert),
	 "server chain for " BENCH_SERVER_NAME " (required)"},
	{"server-key", "FILE", OPT_STRING, offsetof(Options, server_key), "server key (required)"},
	{"module", "PATH", OPT_STRING, offsetof(Options, module),
	 "PKCS#11 module of the baseline (default: " BENCH_DEFAULT_MODULE ")"},
	{"address", "ADDRESS", OPT_STRING, offsetof(Options, address),
	 "D-Bus address of the agent (default: the session bus)"},
	{"compare-address", "ADDRESS", OPT_STRING, offsetof(Options, compare_address),
	 "a second agent whose modules run in-process (isolation = none): adds a row with "
	 "the isolated agent against it"},
	{"seconds", "N", OPT_SECONDS, 0,
	 "timed seconds per measurement (default: " BENCH_STR(BENCH_DEFAULT_SECONDS) ")"},
	{"quick", NULL, OPT_QUICK, 0,
	 BENCH_STR(BENCH_QUICK_SECONDS) " s per measurement (CI smoke)"},
	{"json", NULL, OPT_JSON, 0, "print JSON instead of the table"},
	{"help", NULL, OPT_HELP, 0, "this text"},
};

/* The string options a run cannot do without. */
static const char *const bench_required[] = {
	"token", "pin-file", "ec-chain", "pem-key", "pem-chain", "ca", "server-cert", "server-key",
};

static void bench_usage(FILE *f)
{
	fprintf(f,
		"Usage: certagent-bench [OPTION]...\n"
		"Measures signatures and TLS 1.3 mTLS handshakes through certagentd against the\n"
		"same token used in-process by GnuTLS (and a PEM key file), and prints ratios.\n"
		"Normally run by scripts/bench, which sets up a throwaway token, CA, bus and "
		"agent.\n\n");
	for (size_t i = 0; i < ELEMENTSOF(bench_options); i++) {
		const struct BenchOption *b = &bench_options[i];
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", b->name, b->arg ? " " : "",
			 b->arg ? b->arg : "");
		fprintf(f, "  %-22s %s\n", left, b->help);
	}
}

static const char **bench_option_field(Options *o, const struct BenchOption *b)
{
	return (const char **)((char *)o + b->offset);
}

static int bench_parse(int argc, char **argv, Options *o)
{
	struct option longopts[ELEMENTSOF(bench_options) + 1] = {0};
	bool quick = false, seconds_set = false;
	int c, index;

	for (size_t i = 0; i < ELEMENTSOF(bench_options); i++)
		longopts[i] =
			(struct option){bench_options[i].name,
					bench_options[i].arg ? required_argument : no_argument,
					NULL, bench_options[i].id};
	*o = (Options){.module = BENCH_DEFAULT_MODULE,
		       .ec_label = "ec",
		       .rsa_label = "rsa",
		       .seconds = BENCH_DEFAULT_SECONDS};
	while ((c = getopt_long(argc, argv, "", longopts, &index)) >= 0) {
		char *end;
		switch (c) {
		case OPT_STRING:
			*bench_option_field(o, &bench_options[index]) = optarg;
			break;
		case OPT_SECONDS:
			errno = 0;
			o->seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o->seconds > 0) ||
			    o->seconds > 3600) {
				fprintf(stderr,
					"certagent-bench: --seconds wants a number of seconds in "
					"(0, 3600], not \"%s\"\n",
					optarg);
				return 2;
			}
			seconds_set = true;
			break;
		case OPT_QUICK:
			quick = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_HELP:
			bench_usage(stdout);
			exit(EXIT_SUCCESS);
		default:
			bench_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certagent-bench: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (quick && !seconds_set)
		o->seconds = BENCH_QUICK_SECONDS;

	for (size_t i = 0; i < ELEMENTSOF(bench_required); i++)
		for (size_t j = 0; j < ELEMENTSOF(bench_options); j++)
			if (strcmp(bench_options[j].name, bench_required[i]) == 0 &&
			    !*bench_option_field(o, &bench_options[j])) {
				fprintf(stderr,
					"certagent-bench: --%s is required (see --help; "
					"scripts/bench sets everything up)\n",
					bench_required[i]);
				return 2;
			}
	return 0;
}

/* Everything main() owns, released by one cleanup. */
typedef struct Bench {
	Options opt;
	BenchPin pin;
	certagent_client *agent;
	certagent_identity_list *ids;
	certagent_client *inproc_agent; /* --compare-address */
	certagent_identity_list *inproc_ids;
	BenchServer *server;
	gnutls_priority_t prio;
	bool pkcs11_loaded;
	Stats stats[16];
	size_t n_stats;
	Row rows[8];
	size_t n_rows;
} Bench;

static void bench_deinit(Bench *b)
{
	for (size_t i = 0; i < b->n_stats; i++)
		stats_deinit(&b->stats[i]);
	b->server = bench_server_free(b->server);
	if (b->prio)
		gnutls_priority_deinit(b->prio);
	certagent_identity_list_free(b->ids);
	certagent_client_free(b->agent);
	certagent_identity_list_free(b->inproc_ids);
	certagent_client_free(b->inproc_agent);
	if (b->pkcs11_loaded)
		gnutls_pkcs11_deinit();
	bench_pin_wipe(&b->pin);
}

static Stats *bench_stats(Bench *b)
{
	/* 2 per sign row (3 rows with --compare-address), 2 or 3 per handshake case: 11 */
	assert(b->n_stats < ELEMENTSOF(b->stats));
	return &b->stats[b->n_stats++];
}

static void bench_row(Bench *b, const char *name, const char *baseline, const Stats *base,
		      const Stats *agent)
{
	assert(b->n_rows < ELEMENTSOF(b->rows));
	b->rows[b->n_rows++] = (Row){name, baseline, base, agent};
}

static void bench_progress(const Bench *b, const char *what)
{
	if (!b->opt.json)
		fprintf(stderr, "certagent-bench: measuring %s\n", what);
}

/* One sign row: the token key in-process, then the same key through the agent. */
static int bench_sign_case(Bench *b, const certagent_identity *id, const char *label,
			   const char *scheme, gnutls_sign_algorithm_t algo, const char *name,
			   CaError *err)
{
	_cleanup_(bench_pubkey_freep) gnutls_pubkey_t pub = NULL;
	_cleanup_(bench_privkey_freep) gnutls_privkey_t key = NULL;
	char url[BENCH_URL_MAX];
	uint8_t hash[32];

	if (bench_key_url(b->opt.token, label, url, sizeof(url)) < 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "token or key label too long");
	int rc = bench_identity_pubkey(id, &pub, err);
	if (rc == 0)
		rc = bench_import_url(url, &key, err);
	if (rc != 0)
		return rc;
	if (gnutls_rnd(GNUTLS_RND_NONCE, hash, sizeof(hash)) < 0)
		return ca_error_set(err, CA_E_FAILED, "no random bytes");

	SignCtx ctx = {
		.algo = algo,
		.scheme = scheme,
		.hash = {hash, sizeof(hash)},
		.pub = pub,
		.key = key,
		.agent = b->agent,
		.uri = certagent_identity_uri(id),
	};
	SignCtx inproc = ctx; /* each path checks its own first signature */
	Stats *base = bench_stats(b), *agent = bench_stats(b);
	const BenchPath paths[] = {
		{bench_op_sign_inproc, &inproc, base},
		{bench_op_sign_agent, &ctx, agent},
	};

	bench_progress(b, name);
	rc = bench_measure(paths, ELEMENTSOF(paths), b->opt.seconds, err);
	if (rc != 0)
		return rc;
	bench_row(b, name, "pkcs11 in-process", base, agent);
	return 0;
}

/*
 * The helper hop: the same P-256 signature through an agent whose module runs in-process
 * (baseline, --compare-address) and through this one (module in certagent-pkcs11-helper).
 */
static int bench_isolation_case(Bench *b, const certagent_identity *id, CaError *err)
{
	_cleanup_(bench_pubkey_freep) gnutls_pubkey_t pub = NULL;
	certagent_error aerr = CERTAGENT_ERROR_INIT;
	const certagent_identity *other;
	uint8_t hash[32];

	if (certagent_client_new(b->opt.compare_address, &b->inproc_agent, &aerr) < 0)
		return ca_error_set(err, CA_E_FAILED, "second agent: %s", aerr.message);
	certagent_client_set_timeout(b->inproc_agent, BENCH_TIMEOUT_MS);
	if (certagent_list_identities(b->inproc_agent, &b->inproc_ids, &aerr) < 0)
		return ca_error_set(err, CA_E_FAILED, "second agent: listing identities: %s",
				    aerr.message);
	other = bench_find_identity(b->inproc_ids, b->opt.token, b->opt.ec_label, err);
	if (!other)
		return CA_E_KEY_NOT_FOUND;
	int rc = bench_identity_pubkey(id, &pub, err);
	if (rc != 0)
		return rc;
	if (gnutls_rnd(GNUTLS_RND_NONCE, hash, sizeof(hash)) < 0)
		return ca_error_set(err, CA_E_FAILED, "no random bytes");

	SignCtx isolated = {
		.algo = GNUTLS_SIGN_ECDSA_SECP256R1_SHA256,
		.scheme = "ecdsa_secp256r1_sha256",
		.hash = {hash, sizeof(hash)},
		.pub = pub,
		.agent = b->agent,
		.uri = certagent_identity_uri(id),
	};
	SignCtx inproc = isolated;
	inproc.agent = b->inproc_agent;
	inproc.uri = certagent_identity_uri(other);
	Stats *base = bench_stats(b), *agent = bench_stats(b);
	const BenchPath paths[] = {
		{bench_op_sign_agent, &inproc, base},
		{bench_op_sign_agent, &isolated, agent},
	};

	bench_progress(b, "sign P-256 with the module isolated vs in the agent");
	rc = bench_measure(paths, ELEMENTSOF(paths), b->opt.seconds, err);
	if (rc != 0)
		return rc;
	bench_row(b, "sign P-256 isolated module", "in-agent module", base, agent);
	return 0;
}

/* Handshake rows for one token key: in-process, through the agent, and (P-256) a PEM file. */
static int bench_handshake_case(Bench *b, const certagent_identity *id, const char *label,
				const char *chain, const char *name, bool with_pem, CaError *err)
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
		{b->server, b->prio, inproc, NULL, "handshake with the token key in-process"},
		{b->server, b->prio, via_agent, b->agent,
		 "handshake with the token key via the agent"},
		{b->server, b->prio, pem, NULL, "handshake with the PEM key file"},
	};
	Stats *base = bench_stats(b), *agent = bench_stats(b),
	      *file = with_pem ? bench_stats(b) : NULL;
	const BenchPath paths[] = {
		{bench_op_handshake, &ctx[0], base},
		{bench_op_handshake, &ctx[1], agent},
		{bench_op_handshake, &ctx[2], file},
	};
	unsigned long ok0, ok1, handshakes = 0;

	bench_progress(b, name);
	bench_server_counts(b->server, &ok0, NULL, NULL, 0);
	ok1 = ok0;
	rc = bench_measure(paths, with_pem ? 3 : 2, b->opt.seconds, err);
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

	bench_row(b, name, "pkcs11 in-process", base, agent);
	if (file)
		bench_row(b, name, "PEM key file", file, agent);
	return 0;
}

static int bench_run(Bench *b, CaError *err)
{
	const Options *o = &b->opt;
	certagent_error aerr = CERTAGENT_ERROR_INIT;

	int rc = bench_pin_read(o->pin_file, &b->pin, err);
	if (rc != 0)
		return rc;

	/* The baseline: GnuTLS talks to the token itself, like an application without the agent. */
	rc = gnutls_pkcs11_init(GNUTLS_PKCS11_FLAG_MANUAL, NULL);
	b->pkcs11_loaded = rc >= 0;
	if (rc >= 0)
		rc = gnutls_pkcs11_add_provider(o->module, NULL);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "loading PKCS#11 module %s: %s", o->module,
				    gnutls_strerror(rc));
	gnutls_pkcs11_set_pin_function(bench_pin_cb, &b->pin);

	if (certagent_client_new(o->address, &b->agent, &aerr) < 0)
		return ca_error_set(err, CA_E_FAILED, "%s", aerr.message);
	certagent_client_set_timeout(b->agent, BENCH_TIMEOUT_MS);
	if (certagent_list_identities(b->agent, &b->ids, &aerr) < 0)
		return ca_error_set(err, CA_E_FAILED, "listing identities: %s", aerr.message);
	const certagent_identity *ec = bench_find_identity(b->ids, o->token, o->ec_label, err);
	if (!ec)
		return CA_E_KEY_NOT_FOUND;
	const certagent_identity *rsa = bench_find_identity(b->ids, o->token, o->rsa_label, err);
	if (!rsa)
		return CA_E_KEY_NOT_FOUND;

	rc = bench_sign_case(b, ec, o->ec_label, "ecdsa_secp256r1_sha256",
			     GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, "sign ecdsa_secp256r1_sha256",
			     err);
	if (rc == 0)
		rc = bench_sign_case(b, rsa, o->rsa_label, "rsa_pss_rsae_sha256",
				     GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, "sign rsa_pss_rsae_sha256",
				     err);
	if (rc == 0 && o->compare_address)
		rc = bench_isolation_case(b, ec, err);
	if (rc != 0)
		return rc;

	rc = gnutls_priority_init2(&b->prio, BENCH_PRIORITY, NULL, 0);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "priority: %s", gnutls_strerror(rc));
	rc = bench_server_new(o->server_cert, o->server_key, o->ca, &b->server, err);
	if (rc != 0)
		return rc;
	rc = bench_handshake_case(b, ec, o->ec_label, o->ec_chain, "mTLS 1.3 handshake P-256", true,
				  err);
	if (rc == 0 && o->rsa_chain)
		rc = bench_handshake_case(b, rsa, o->rsa_label, o->rsa_chain,
					  "mTLS 1.3 handshake RSA-2048", false, err);
	return rc;
}

int main(int argc, char **argv)
{
	_cleanup_(bench_deinit) Bench b = {0};
	CaError err = {0};

	int rc = bench_parse(argc, argv, &b.opt);
	if (rc != 0)
		return rc;
	signal(SIGPIPE, SIG_IGN); /* a peer closing early is an error to report, not a kill */

	rc = bench_run(&b, &err);
	if (rc != 0) {
		fprintf(stderr, "certagent-bench: %s\n",
			err.code ? err.message : strerror(rc < 0 ? -rc : EIO));
		return EXIT_FAILURE;
	}
	if (b.opt.json)
		bench_print_json(&b.opt, b.rows, b.n_rows);
	else
		bench_print_table(&b.opt, b.rows, b.n_rows);
	return EXIT_SUCCESS;
}
