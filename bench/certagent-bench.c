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
 *   handshake  TLS 1.3 and 1.2 mutual TLS with the client key behind the agent
 *              (certagent_credentials_set) vs the same key in-process (pkcs11: URL) vs a
 *              software P-256 key in a PEM file (P3);
 *   P1         P-256 through the agent vs p11-kit's forwarding (`p11-kit server` +
 *              p11-kit-client.so, --p11kit-module) and the agent's added p50 vs a bare
 *              SOCK_SEQPACKET echo round trip to a child process, all taking turns;
 *   P2         --clients concurrent clients (threads, one certagent_client each) vs the
 *              in-process rate with 2 threads; p99/p50 and the fewest/most per client;
 *   P4         with --slow-address: an agent whose token --slow-token signs in 500 ms (tests/
 *              fault module); while one client waits on it, Sign on the fast token and
 *              ListIdentities p99;
 *   P5         the agent's RSS (--agent-pid, helpers included) and, with
 *              --activation-address, bus activation to the first signature.
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
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <gnutls/x509.h>

#include <certagent.h>
#include <dbus/dbus.h>

#include "bench-p11kit.h"
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
#define BENCH_PRIORITY12 "NORMAL:-VERS-ALL:+VERS-TLS1.2"
#define BENCH_CLIENTS_DEFAULT 8
#define BENCH_CLIENTS_MAX 64
#define BENCH_ECHO_SIZE 344 /* bytes of a P-256 Sign packet on the channel */
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
	const char *compare_address;	/* a second agent with isolation = none (optional) */
	const char *p11kit_module;	/* p11-kit-client.so (P1), with $P11_KIT_SERVER_ADDRESS */
	const char *agent_pid;		/* P5: RSS of the agent (and its helper processes) */
	const char *activation_address; /* P5: a bus that starts certagentd on demand */
	const char *slow_address;	/* P4: an agent whose --slow-token signs slowly */
	const char *slow_token;
	unsigned clients; /* P2 */
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

/* ---- the table ---- */

/*
 * One line of the table: two ways of doing the same thing (base, agent) with their rates or
 * values, the ratio the target is about, the target itself, and latencies.
 */
typedef struct Row {
	char name[48];
	char baseline[32];
	double base, agent;				 /* operations/s, or values in `unit` */
	const char *unit;				 /* "/s", "ms", "MiB" */
	double ratio;					 /* NAN: none */
	const char *target;				 /* "" or e.g. ">=1.3" */
	double base_p50, base_p99, agent_p50, agent_p99; /* ms; NAN: not measured */
	char note[96];
} Row;

static double ms(double s)
{
	return s * 1e3;
}

static void bench_fmt(char *buf, size_t size, double a, double b)
{
	if (isnan(a))
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%.3f/%.3f", a, b);
}

static void bench_print_table(const Options *o, const Row *rows, size_t n)
{
	double load[1] = {-1};

	getloadavg(load, 1);
	printf("certagent-bench: %.2g s per measurement, token \"%s\"\n"
	       "machine: %ld CPUs, load %.2f (a busy machine widens p99 and blurs the ratios)\n\n",
	       o->seconds, o->token, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
	printf("%-40s %-24s %10s %10s %4s %7s %6s %15s %15s  %s\n", "case", "baseline", "base",
	       "agent", "unit", "ratio", "target", "base p50/p99", "agent p50/p99", "note");
	for (size_t i = 0; i < n; i++) {
		const Row *r = &rows[i];
		char bp[32], ap[32], ratio[16], base[16], agent[16];
		int digits = strcmp(r->unit, "/s") == 0 ? 1 : 3;

		bench_fmt(bp, sizeof(bp), r->base_p50, r->base_p99);
		bench_fmt(ap, sizeof(ap), r->agent_p50, r->agent_p99);
		if (isnan(r->ratio))
			snprintf(ratio, sizeof(ratio), "-");
		else
			snprintf(ratio, sizeof(ratio), "%.2fx", r->ratio);
		if (isnan(r->base))
			snprintf(base, sizeof(base), "-");
		else
			snprintf(base, sizeof(base), "%.*f", digits, r->base);
		if (isnan(r->agent))
			snprintf(agent, sizeof(agent), "-");
		else
			snprintf(agent, sizeof(agent), "%.*f", digits, r->agent);
		printf("%-40s %-24s %10s %10s %4s %7s %6s %15s %15s  %s\n", r->name, r->baseline,
		       base, agent, r->unit, ratio, r->target[0] ? r->target : "-", bp, ap,
		       r->note);
	}
	printf("\nratio: agent/base for rates (/s); for P1 added, (agent p50 - in-process p50) / "
	       "echo p50;\nfor P2 p99/p50, agent p99 / agent p50; for P4 and P5, the value itself. "
	       "Latencies in ms.\n");
}

static void bench_json_num(const char *key, double v)
{
	if (isnan(v))
		printf("\"%s\": null", key);
	else
		printf("\"%s\": %.6f", key, v);
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

		printf("%s\n  {\"case\": \"%s\", \"baseline\": \"%s\", \"unit\": \"%s\", "
		       "\"target\": \"%s\", \"note\": \"%s\", ",
		       i ? "," : "", r->name, r->baseline, r->unit, r->target, r->note);
		bench_json_num("base", r->base);
		printf(", ");
		bench_json_num("agent", r->agent);
		printf(", ");
		bench_json_num("ratio", r->ratio);
		printf(", ");
		bench_json_num("base_p50_ms", r->base_p50);
		printf(", ");
		bench_json_num("base_p99_ms", r->base_p99);
		printf(", ");
		bench_json_num("agent_p50_ms", r->agent_p50);
		printf(", ");
		bench_json_num("agent_p99_ms", r->agent_p99);
		printf("}");
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
	OPT_CLIENTS,
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
	{"p11kit-module", "PATH", OPT_STRING, offsetof(Options, p11kit_module),
	 "p11-kit-client.so: P1 against p11-kit's forwarding ($P11_KIT_SERVER_ADDRESS)"},
	{"agent-pid", "PID", OPT_STRING, offsetof(Options, agent_pid),
	 "pid of the agent at --address: P5 RSS row"},
	{"activation-address", "ADDRESS", OPT_STRING, offsetof(Options, activation_address),
	 "a bus that activates a fresh certagentd: P5 activation row"},
	{"slow-address", "ADDRESS", OPT_STRING, offsetof(Options, slow_address),
	 "an agent whose --slow-token signs slowly (fault module): P4 rows"},
	{"slow-token", "LABEL", OPT_STRING, offsetof(Options, slow_token),
	 "the slow token's label (its key has --ec-label)"},
	{"clients", "N", OPT_CLIENTS, 0, "concurrent clients of P2 (default 8)"},
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
		       .seconds = BENCH_DEFAULT_SECONDS,
		       .clients = BENCH_CLIENTS_DEFAULT};
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
		case OPT_CLIENTS:
			errno = 0;
			o->clients = (unsigned)strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || o->clients < 1 ||
			    o->clients > BENCH_CLIENTS_MAX) {
				fprintf(stderr, "certagent-bench: --clients wants 1 to %d\n",
					BENCH_CLIENTS_MAX);
				return 2;
			}
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
	gnutls_priority_t prio, prio12;
	bool pkcs11_loaded;
	int echo_fd; /* P1: a child process echoing packets back */
	pid_t echo_pid;
	BenchP11Kit *p11kit;
	Stats stats[40];
	size_t n_stats;
	Row rows[40];
	size_t n_rows;
} Bench;

static void bench_deinit(Bench *b)
{
	for (size_t i = 0; i < b->n_stats; i++)
		stats_deinit(&b->stats[i]);
	b->server = bench_server_free(b->server);
	if (b->prio)
		gnutls_priority_deinit(b->prio);
	if (b->prio12)
		gnutls_priority_deinit(b->prio12);
	certagent_identity_list_free(b->ids);
	certagent_client_free(b->agent);
	certagent_identity_list_free(b->inproc_ids);
	certagent_client_free(b->inproc_agent);
	if (b->pkcs11_loaded)
		gnutls_pkcs11_deinit();
	b->p11kit = bench_p11kit_free(b->p11kit);
	if (b->echo_fd >= 0)
		close(b->echo_fd); /* the child sees EOF and exits */
	if (b->echo_pid > 0)
		waitpid(b->echo_pid, NULL, 0);
	bench_pin_wipe(&b->pin);
}

static Stats *bench_stats(Bench *b)
{
	/* 2 per sign row (3 rows with --compare-address), 2 or 3 per handshake case: 11 */
	assert(b->n_stats < ELEMENTSOF(b->stats));
	return &b->stats[b->n_stats++];
}

/* ---- Sign over the bus, as libcertagent did before the signing channel ---- */

typedef struct BusCtx {
	DBusConnection *conn;
	SignCtx *s;
	bool checked;
} BusCtx;

static int bench_bus_open(const char *address, DBusConnection **ret, CaError *err)
{
	DBusError e = DBUS_ERROR_INIT;
	DBusConnection *c = dbus_connection_open_private(address, &e);
	int rc = 0;

	if (!c || !dbus_bus_register(c, &e)) {
		rc = ca_error_set(err, CA_E_FAILED, "bus %s: %s", address,
				  e.message ? e.message : "?");
		dbus_error_free(&e);
		if (c) {
			dbus_connection_close(c);
			dbus_connection_unref(c);
		}
		return rc;
	}
	*ret = c;
	return 0;
}

static void bench_bus_close(DBusConnection *c)
{
	if (!c)
		return;
	dbus_connection_close(c);
	dbus_connection_unref(c);
}

static int bench_op_sign_bus(void *ctx, CaError *err)
{
	BusCtx *b = ctx;
	DBusMessage *msg = dbus_message_new_method_call(
		"org.certagent.Agent1", "/org/certagent/Agent1", "org.certagent.Agent1", "Sign");
	DBusMessageIter it, arr;
	DBusError e = DBUS_ERROR_INIT;
	const uint8_t *p = b->s->hash.data, *sig;
	int n = 0, rc = 0;

	if (!msg)
		return -ENOMEM;
	dbus_message_iter_init_append(msg, &it);
	if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &b->s->uri) ||
	    !dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &b->s->scheme) ||
	    !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "y", &arr) ||
	    !dbus_message_iter_append_fixed_array(&arr, DBUS_TYPE_BYTE, &p, (int)b->s->hash.size) ||
	    !dbus_message_iter_close_container(&it, &arr) ||
	    !dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &arr) ||
	    !dbus_message_iter_close_container(&it, &arr)) {
		dbus_message_unref(msg);
		return -ENOMEM;
	}
	DBusMessage *reply =
		dbus_connection_send_with_reply_and_block(b->conn, msg, BENCH_TIMEOUT_MS, &e);
	dbus_message_unref(msg);
	if (!reply || !dbus_message_get_args(reply, &e, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &sig, &n,
					     DBUS_TYPE_INVALID))
		rc = ca_error_set(err, CA_E_FAILED, "Sign over the bus: %s",
				  e.message ? e.message : "?");
	if (rc == 0 && !b->checked) {
		gnutls_datum_t d = {(uint8_t *)sig, (unsigned)n};
		if (gnutls_pubkey_verify_hash2(b->s->pub, b->s->algo, 0, &b->s->hash, &d) < 0)
			rc = ca_error_set(err, CA_E_FAILED, "Sign over the bus: bad signature");
		b->checked = true;
	}
	dbus_error_free(&e);
	if (reply)
		dbus_message_unref(reply);
	return rc;
}

/* A row of two measured paths: rates, their ratio, latencies. */
static Row *bench_row(Bench *b, const char *name, const char *baseline, const Stats *base,
		      const Stats *agent)
{
	Row *r;

	assert(b->n_rows < ELEMENTSOF(b->rows));
	r = &b->rows[b->n_rows++];
	*r = (Row){.unit = "/s", .target = ""};
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->baseline, sizeof(r->baseline), "%s", baseline);
	r->base = stats_rate(base);
	r->agent = stats_rate(agent);
	r->ratio = r->base > 0 ? r->agent / r->base : NAN;
	r->base_p50 = ms(stats_percentile(base, 50));
	r->base_p99 = ms(stats_percentile(base, 99));
	r->agent_p50 = ms(stats_percentile(agent, 50));
	r->agent_p99 = ms(stats_percentile(agent, 99));
	snprintf(r->note, sizeof(r->note), "added p50 %+.3f ms", r->agent_p50 - r->base_p50);
	return r;
}

/* A row of values (ms, MiB, ...); latencies left out. */
static Row *bench_value_row(Bench *b, const char *name, const char *baseline, double base,
			    double agent, const char *unit, double ratio, const char *target)
{
	Row *r;

	assert(b->n_rows < ELEMENTSOF(b->rows));
	r = &b->rows[b->n_rows++];
	*r = (Row){.base = base,
		   .agent = agent,
		   .unit = unit,
		   .ratio = ratio,
		   .target = target,
		   .base_p50 = NAN,
		   .base_p99 = NAN,
		   .agent_p50 = NAN,
		   .agent_p99 = NAN};
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->baseline, sizeof(r->baseline), "%s", baseline);
	return r;
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

	(void)aerr; /* the second agent is connected by bench_run() */
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
static int bench_handshake_case(Bench *b, gnutls_priority_t prio, const certagent_identity *id,
				const char *label, const char *chain, const char *name,
				bool with_pem, CaError *err)
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

	bench_row(b, name, "pkcs11 in-process", base, agent)->target = ">=0.97";
	if (file)
		bench_row(b, name, "PEM key file", file, agent);
	return 0;
}

/* ---- P1: the agent against p11-kit's forwarding and a bare socket round trip ---- */

/* A child process that sends every packet back: the cheapest IPC round trip there is. */
static int bench_echo_start(Bench *b)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	b->echo_pid = fork();
	if (b->echo_pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -errno;
	}
	if (b->echo_pid == 0) {
		uint8_t buf[4096];
		ssize_t n;

		close(sv[0]);
		while ((n = read(sv[1], buf, sizeof(buf))) > 0)
			if (write(sv[1], buf, (size_t)n) != n)
				break;
		_exit(0);
	}
	close(sv[1]);
	b->echo_fd = sv[0];
	return 0;
}

static int bench_op_echo(void *ctx, CaError *err)
{
	int fd = *(int *)ctx;
	uint8_t buf[BENCH_ECHO_SIZE] = {1};

	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
	    read(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		return ca_error_set(err, CA_E_FAILED, "echo child: %m");
	return 0;
}

typedef struct P11KitCtx {
	BenchP11Kit *p;
	SignCtx *s;
	bool checked;
} P11KitCtx;

static int bench_op_sign_p11kit(void *ctx, CaError *err)
{
	P11KitCtx *k = ctx;
	uint8_t rs[132];
	size_t n = sizeof(rs);
	int rc = bench_p11kit_sign(k->p, k->s->hash.data, k->s->hash.size, rs, &n, err);

	if (rc != 0 || k->checked)
		return rc;
	/* PKCS#11 gives r||s; check it like the other paths' DER signatures. */
	gnutls_datum_t r = {rs, (unsigned)n / 2}, s = {rs + n / 2, (unsigned)n / 2}, der;
	if (gnutls_encode_rs_value(&der, &r, &s) < 0)
		return ca_error_set(err, CA_E_FAILED, "p11-kit forwarding: bad signature");
	rc = gnutls_pubkey_verify_hash2(k->s->pub, k->s->algo, 0, &k->s->hash, &der);
	gnutls_free(der.data);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED,
				    "p11-kit forwarding: the signature does not verify: %s",
				    gnutls_strerror(rc));
	k->checked = true;
	return 0;
}

/* P1 rows for one agent: rate vs p11-kit, added p50 vs the echo round trip. */
static void bench_p1_rows(Bench *b, const char *which, const Stats *inproc, const Stats *agent,
			  const Stats *p11kit, const Stats *echo)
{
	char name[48];
	double added = ms(stats_percentile(agent, 50) - stats_percentile(inproc, 50));
	double rtt = ms(stats_percentile(echo, 50));

	snprintf(name, sizeof(name), "P1 P-256 rate, %s", which);
	if (p11kit)
		bench_row(b, name, "p11-kit forwarding", p11kit, agent)->target = ">=1.3";
	else
		snprintf(bench_value_row(b, name, "p11-kit forwarding", NAN, stats_rate(agent),
					 "/s", NAN, ">=1.3")
				 ->note,
			 sizeof(b->rows[0].note), "no --p11kit-module");
	snprintf(name, sizeof(name), "P1 P-256 added p50, %s", which);
	Row *r = bench_value_row(b, name, "unix echo RTT p50", rtt, added, "ms",
				 rtt > 0 ? added / rtt : NAN, "<=1.5");
	snprintf(r->note, sizeof(r->note), "agent p50 %.3f - in-process p50 %.3f",
		 ms(stats_percentile(agent, 50)), ms(stats_percentile(inproc, 50)));
}

static int bench_p1_case(Bench *b, const certagent_identity *id, const certagent_identity *other,
			 CaError *err)
{
	_cleanup_(bench_pubkey_freep) gnutls_pubkey_t pub = NULL;
	_cleanup_(bench_privkey_freep) gnutls_privkey_t key = NULL;
	char url[BENCH_URL_MAX];
	uint8_t hash[32];

	if (bench_key_url(b->opt.token, b->opt.ec_label, url, sizeof(url)) < 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "token or key label too long");
	int rc = bench_identity_pubkey(id, &pub, err);
	if (rc == 0)
		rc = bench_import_url(url, &key, err);
	if (rc == 0 && b->opt.p11kit_module)
		rc = bench_p11kit_new(b->opt.p11kit_module, b->opt.token, b->opt.ec_label,
				      b->pin.value, &b->p11kit, err);
	if (rc != 0)
		return rc;
	if (gnutls_rnd(GNUTLS_RND_NONCE, hash, sizeof(hash)) < 0)
		return ca_error_set(err, CA_E_FAILED, "no random bytes");

	SignCtx base = {
		.algo = GNUTLS_SIGN_ECDSA_SECP256R1_SHA256,
		.scheme = "ecdsa_secp256r1_sha256",
		.hash = {hash, sizeof(hash)},
		.pub = pub,
		.key = key,
		.agent = b->agent,
		.uri = certagent_identity_uri(id),
	};
	SignCtx inproc = base, isolated = base, none = base;
	none.agent = b->inproc_agent;
	none.uri = other ? certagent_identity_uri(other) : NULL;
	P11KitCtx p11 = {b->p11kit, &base, false};
	SignCtx via_bus = base, via_bus_none = none;
	BusCtx bus = {NULL, &via_bus, false}, bus_none = {NULL, &via_bus_none, false};

	/* libcertagent's old road, for the before/after rows: a private connection, Sign. */
	rc = bench_bus_open(b->opt.address, &bus.conn, err);
	if (rc == 0 && other)
		rc = bench_bus_open(b->opt.compare_address, &bus_none.conn, err);
	if (rc != 0) {
		bench_bus_close(bus.conn);
		return rc;
	}
	Stats *s_inproc = bench_stats(b), *s_agent = bench_stats(b), *s_echo = bench_stats(b);
	Stats *s_bus = bench_stats(b), *s_bus_none = other ? bench_stats(b) : NULL;
	Stats *s_none = other ? bench_stats(b) : NULL, *s_p11 = b->p11kit ? bench_stats(b) : NULL;
	BenchPath paths[7] = {
		{bench_op_sign_inproc, &inproc, s_inproc},
		{bench_op_sign_agent, &isolated, s_agent},
		{bench_op_echo, &b->echo_fd, s_echo},
		{bench_op_sign_bus, &bus, s_bus},
	};
	size_t n = 4;

	if (other) {
		paths[n++] = (BenchPath){bench_op_sign_agent, &none, s_none};
		paths[n++] = (BenchPath){bench_op_sign_bus, &bus_none, s_bus_none};
	}
	if (b->p11kit)
		paths[n++] = (BenchPath){bench_op_sign_p11kit, &p11, s_p11};
	bench_progress(b, "P1: agent vs p11-kit forwarding vs a socket echo");
	rc = bench_measure(paths, n, b->opt.seconds, err);
	bench_bus_close(bus.conn);
	bench_bus_close(bus_none.conn);
	if (rc != 0)
		return rc;
	bench_row(b, "P-256 signing channel, isolation=process", "Sign over the bus", s_bus,
		  s_agent);
	if (other)
		bench_row(b, "P-256 signing channel, isolation=none", "Sign over the bus",
			  s_bus_none, s_none);
	bench_p1_rows(b, "isolation=process", s_inproc, s_agent, s_p11, s_echo);
	if (other)
		bench_p1_rows(b, "isolation=none", s_inproc, s_none, s_p11, s_echo);
	else
		snprintf(bench_value_row(b, "P1 isolation=none", "-", NAN, NAN, "", NAN, "")->note,
			 sizeof(b->rows[0].note), "TODO: no --compare-address agent");
	return 0;
}

/* ---- P2: many clients at once ---- */

typedef struct Client {
	pthread_t thread;
	Bench *b;
	pthread_barrier_t *start;
	const char *address; /* agent clients */
	const char *uri;
	const char *url; /* in-process clients */
	gnutls_sign_algorithm_t algo;
	const char *scheme;
	const uint8_t *hash;
	double seconds;
	Stats stats;
	double t0, t1;
	int rc;
	CaError err;
} Client;

static void *bench_client_main(void *userdata)
{
	Client *c = userdata;
	certagent_client *agent = NULL;
	gnutls_privkey_t key = NULL;
	certagent_error aerr = CERTAGENT_ERROR_INIT;
	gnutls_datum_t hash = {(uint8_t *)c->hash, 32};

	if (c->address) {
		if (certagent_client_new(c->address, &agent, &aerr) < 0)
			c->rc = ca_error_set(&c->err, CA_E_FAILED, "client: %s", aerr.message);
		else
			certagent_client_set_timeout(agent, BENCH_TIMEOUT_MS);
	} else {
		c->rc = bench_import_url(c->url, &key, &c->err);
	}
	pthread_barrier_wait(c->start);
	c->t0 = stats_now();
	for (double now = c->t0; c->rc == 0 && now - c->t0 < c->seconds;) {
		gnutls_datum_t sig = {NULL, 0};
		double t = now;
		int r;

		if (agent)
			r = certagent_sign(agent, c->uri, c->scheme, hash.data, hash.size, NULL,
					   &sig, &aerr);
		else
			r = gnutls_privkey_sign_hash2(key, c->algo, 0, &hash, &sig);
		if (r < 0) {
			c->rc = ca_error_set(&c->err, CA_E_FAILED, "%s signature: %s",
					     agent ? "agent" : "in-process",
					     agent ? aerr.message : gnutls_strerror(r));
			break;
		}
		gnutls_free(sig.data);
		now = stats_now();
		if (stats_add(&c->stats, now - t) < 0)
			c->rc = -ENOMEM;
	}
	c->t1 = stats_now();
	certagent_client_free(agent);
	if (key)
		gnutls_privkey_deinit(key);
	return NULL;
}

/* Runs n clients for seconds; merges their latencies into all. */
static int bench_clients(Bench *b, Client *proto, unsigned n, Stats *all, size_t *ret_min,
			 size_t *ret_max, CaError *err)
{
	Client *c = calloc(n, sizeof(*c));
	pthread_barrier_t start;
	double t0 = INFINITY, t1 = 0;
	int rc = 0;

	if (!c)
		return -ENOMEM;
	pthread_barrier_init(&start, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		c[i] = *proto;
		c[i].start = &start;
		if (pthread_create(&c[i].thread, NULL, bench_client_main, &c[i]) != 0)
			abort(); /* the barrier would wait for ever: nothing sensible to do */
	}
	*ret_min = SIZE_MAX;
	*ret_max = 0;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(c[i].thread, NULL);
		if (c[i].rc && !rc) {
			rc = c[i].rc;
			*err = c[i].err;
		}
		t0 = fmin(t0, c[i].t0);
		t1 = fmax(t1, c[i].t1);
		*ret_min = c[i].stats.ops < *ret_min ? c[i].stats.ops : *ret_min;
		*ret_max = c[i].stats.ops > *ret_max ? c[i].stats.ops : *ret_max;
		for (size_t j = 0; j < c[i].stats.n && rc == 0; j++)
			if (stats_add(all, c[i].stats.lat[j]) < 0)
				rc = -ENOMEM;
		stats_deinit(&c[i].stats);
	}
	pthread_barrier_destroy(&start);
	free(c);
	all->elapsed = t1 - t0;
	stats_finish(all);
	return rc;
}

static int bench_p2_case(Bench *b, const certagent_identity *id, const char *label,
			 const char *scheme, gnutls_sign_algorithm_t algo, const char *what,
			 CaError *err)
{
	char url[BENCH_URL_MAX], name[48];
	uint8_t hash[32];
	size_t min, max, min0, max0;
	Stats *base = bench_stats(b), *agent = bench_stats(b);
	int rc;

	if (bench_key_url(b->opt.token, label, url, sizeof(url)) < 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "token or key label too long");
	if (gnutls_rnd(GNUTLS_RND_NONCE, hash, sizeof(hash)) < 0)
		return ca_error_set(err, CA_E_FAILED, "no random bytes");
	Client proto = {
		.b = b,
		.url = url,
		.algo = algo,
		.scheme = scheme,
		.hash = hash,
		.seconds = b->opt.seconds,
	};
	snprintf(name, sizeof(name), "P2 %s, %u clients vs 2 threads", what, b->opt.clients);
	bench_progress(b, name);
	rc = bench_clients(b, &proto, 2, base, &min0, &max0, err);
	if (rc != 0)
		return rc;
	proto.address = b->opt.address;
	proto.uri = certagent_identity_uri(id);
	rc = bench_clients(b, &proto, b->opt.clients, agent, &min, &max, err);
	if (rc != 0)
		return rc;
	Row *r = bench_row(b, name, "in-process, 2 threads", base, agent);
	r->target = ">=0.6";
	snprintf(r->note, sizeof(r->note), "signatures per client: fewest %zu, most %zu", min, max);
	snprintf(name, sizeof(name), "P2 %s, %u clients p99/p50", what, b->opt.clients);
	r = bench_value_row(b, name, "p50 (ms) vs p99 (ms)", ms(stats_percentile(agent, 50)),
			    ms(stats_percentile(agent, 99)), "ms",
			    stats_percentile(agent, 50) > 0
				    ? stats_percentile(agent, 99) / stats_percentile(agent, 50)
				    : NAN,
			    "<=5");
	snprintf(r->note, sizeof(r->note), "no client starved: fewest %zu > 0", min);
	return 0;
}

/* ---- P4: a slow token must not hold up anyone else ---- */

typedef struct ListCtx {
	certagent_client *agent;
} ListCtx;

static int bench_op_list(void *ctx, CaError *err)
{
	ListCtx *l = ctx;
	certagent_identity_list *ids = NULL;
	certagent_error aerr = CERTAGENT_ERROR_INIT;

	if (certagent_list_identities(l->agent, &ids, &aerr) < 0)
		return ca_error_set(err, CA_E_FAILED, "ListIdentities: %s", aerr.message);
	certagent_identity_list_free(ids);
	return 0;
}

typedef struct SlowLoad {
	pthread_t thread;
	certagent_client *agent;
	const char *uri;
	volatile bool stop;
	unsigned long done;
	int rc;
	certagent_error err;
} SlowLoad;

static void *bench_slow_main(void *userdata)
{
	SlowLoad *l = userdata;
	uint8_t hash[32] = {7};

	while (!l->stop && l->rc == 0) {
		gnutls_datum_t sig = {NULL, 0};

		l->rc = certagent_sign(l->agent, l->uri, "ecdsa_secp256r1_sha256", hash,
				       sizeof(hash), NULL, &sig, &l->err);
		gnutls_free(sig.data);
		l->done++;
	}
	return NULL;
}

static int bench_p4_case(Bench *b, CaError *err)
{
	certagent_client *agent = NULL;
	certagent_identity_list *ids = NULL;
	certagent_error aerr = CERTAGENT_ERROR_INIT;
	SlowLoad load = {0};
	uint8_t hash[32];
	int rc;

	if (certagent_client_new(b->opt.slow_address, &agent, &aerr) < 0 ||
	    certagent_client_new(b->opt.slow_address, &load.agent, &aerr) < 0) {
		certagent_client_free(agent);
		return ca_error_set(err, CA_E_FAILED, "slow agent: %s", aerr.message);
	}
	certagent_client_set_timeout(agent, BENCH_TIMEOUT_MS);
	certagent_client_set_timeout(load.agent, BENCH_TIMEOUT_MS);
	rc = certagent_list_identities(agent, &ids, &aerr) < 0
		     ? ca_error_set(err, CA_E_FAILED, "slow agent: %s", aerr.message)
		     : 0;
	const certagent_identity *fast =
		rc ? NULL : bench_find_identity(ids, b->opt.token, b->opt.ec_label, err);
	const certagent_identity *slow =
		fast ? bench_find_identity(ids, b->opt.slow_token, b->opt.ec_label, err) : NULL;
	if (!slow) {
		rc = rc ? rc : CA_E_KEY_NOT_FOUND;
		goto out;
	}
	_cleanup_(bench_pubkey_freep) gnutls_pubkey_t pub = NULL;
	rc = bench_identity_pubkey(fast, &pub, err);
	if (rc == 0 && gnutls_rnd(GNUTLS_RND_NONCE, hash, sizeof(hash)) < 0)
		rc = ca_error_set(err, CA_E_FAILED, "no random bytes");
	if (rc)
		goto out;

	SignCtx sign = {
		.algo = GNUTLS_SIGN_ECDSA_SECP256R1_SHA256,
		.scheme = "ecdsa_secp256r1_sha256",
		.hash = {hash, sizeof(hash)},
		.pub = pub,
		.agent = agent,
		.uri = certagent_identity_uri(fast),
	};
	ListCtx list = {agent};
	Stats *sign0 = bench_stats(b), *list0 = bench_stats(b), *sign1 = bench_stats(b),
	      *list1 = bench_stats(b);
	/* At least two slow signatures (500 ms each) overlap the measurement. */
	double seconds = fmax(b->opt.seconds, 1.2);
	BenchPath quiet[] = {{bench_op_sign_agent, &sign, sign0}, {bench_op_list, &list, list0}};
	BenchPath busy[] = {{bench_op_sign_agent, &sign, sign1}, {bench_op_list, &list, list1}};

	bench_progress(b, "P4: Sign and ListIdentities while another token signs slowly");
	rc = bench_measure(quiet, ELEMENTSOF(quiet), seconds / 2, err);
	if (rc)
		goto out;
	load.uri = certagent_identity_uri(slow);
	if (pthread_create(&load.thread, NULL, bench_slow_main, &load) != 0) {
		rc = -EAGAIN;
		goto out;
	}
	usleep(50 * 1000); /* the slow signature is under way */
	rc = bench_measure(busy, ELEMENTSOF(busy), seconds / 2, err);
	load.stop = true;
	pthread_join(load.thread, NULL);
	if (rc == 0 && load.rc)
		rc = ca_error_set(err, CA_E_FAILED, "slow token: %s", load.err.message);
	if (rc)
		goto out;
	Row *r = bench_row(b, "P4 Sign other token, slow token busy", "same, slow token idle",
			   sign0, sign1);
	r->target = "p99<=5";
	snprintf(r->note, sizeof(r->note), "%lu slow signatures meanwhile", load.done);
	r = bench_row(b, "P4 ListIdentities, slow token busy", "same, slow token idle", list0,
		      list1);
	r->target = "p99<=5";
	snprintf(r->note, sizeof(r->note), "%lu slow signatures meanwhile", load.done);
out:
	certagent_identity_list_free(ids);
	certagent_client_free(agent);
	certagent_client_free(load.agent);
	return rc;
}

/* ---- P5: memory and start-up ---- */

/* VmRSS of pid in KiB, plus that of its children (the module helpers); 0 if unknown. */
static unsigned long bench_rss_kib(pid_t pid, bool children)
{
	char path[64], line[256];
	unsigned long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	if (!children)
		return kib;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	f = fopen(path, "re");
	int child;
	while (f && fscanf(f, "%d", &child) == 1)
		kib += bench_rss_kib(child, false);
	if (f)
		fclose(f);
	return kib;
}

static void bench_p5_rss(Bench *b, const char *name)
{
	pid_t pid = b->opt.agent_pid ? (pid_t)atoi(b->opt.agent_pid) : 0;
	unsigned long alone = pid > 0 ? bench_rss_kib(pid, false) : 0;
	unsigned long all = pid > 0 ? bench_rss_kib(pid, true) : 0;

	Row *r = bench_value_row(b, name, "agent alone (MiB)", alone / 1024.0, all / 1024.0, "MiB",
				 NAN, "<=8");
	snprintf(r->note, sizeof(r->note), "%s",
		 pid > 0 ? "agent column: with its module helpers" : "TODO: no --agent-pid");
}

static int bench_p5_activation(Bench *b, CaError *err)
{
	certagent_client *agent = NULL;
	certagent_identity_list *ids = NULL;
	certagent_error aerr = CERTAGENT_ERROR_INIT;
	gnutls_datum_t sig = {NULL, 0};
	uint8_t hash[32] = {5};
	double t0 = stats_now(), t1;
	int rc = 0;

	bench_progress(b, "P5: bus activation to the first signature");
	if (certagent_client_new(b->opt.activation_address, &agent, &aerr) < 0 ||
	    certagent_list_identities(agent, &ids, &aerr) < 0)
		rc = ca_error_set(err, CA_E_FAILED, "activation: %s", aerr.message);
	const certagent_identity *id =
		rc ? NULL : bench_find_identity(ids, b->opt.token, b->opt.ec_label, err);
	if (!rc && !id)
		rc = CA_E_KEY_NOT_FOUND;
	if (!rc && certagent_sign(agent, certagent_identity_uri(id), "ecdsa_secp256r1_sha256", hash,
				  sizeof(hash), NULL, &sig, &aerr) < 0)
		rc = ca_error_set(err, CA_E_FAILED, "activation: first signature: %s",
				  aerr.message);
	t1 = stats_now();
	gnutls_free(sig.data);
	certagent_identity_list_free(ids);
	certagent_client_free(agent);
	if (rc)
		return rc;
	Row *r = bench_value_row(b, "P5 activation to first signature", "-", NAN, ms(t1 - t0), "ms",
				 NAN, "<=150");
	snprintf(r->note, sizeof(r->note), "connect, activate, list, log in (PIN file), sign");
	return 0;
}

static int bench_run(Bench *b, CaError *err)
{
	const Options *o = &b->opt;
	certagent_error aerr = CERTAGENT_ERROR_INIT;

	int rc = bench_pin_read(o->pin_file, &b->pin, err);
	if (rc != 0)
		return rc;
	/* Before any thread exists: the echo child of P1 is a plain fork. */
	rc = bench_echo_start(b);
	if (rc != 0)
		return rc;
	bench_p5_rss(b, "P5 agent RSS, idle after start");

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
	const certagent_identity *other = NULL;
	if (o->compare_address) {
		if (certagent_client_new(o->compare_address, &b->inproc_agent, &aerr) < 0)
			return ca_error_set(err, CA_E_FAILED, "second agent: %s", aerr.message);
		certagent_client_set_timeout(b->inproc_agent, BENCH_TIMEOUT_MS);
		if (certagent_list_identities(b->inproc_agent, &b->inproc_ids, &aerr) < 0)
			return ca_error_set(err, CA_E_FAILED,
					    "second agent: listing identities: %s", aerr.message);
		other = bench_find_identity(b->inproc_ids, o->token, o->ec_label, err);
		if (!other)
			return CA_E_KEY_NOT_FOUND;
	}

	rc = bench_sign_case(b, ec, o->ec_label, "ecdsa_secp256r1_sha256",
			     GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, "sign ecdsa_secp256r1_sha256",
			     err);
	if (rc == 0)
		rc = bench_sign_case(b, rsa, o->rsa_label, "rsa_pss_rsae_sha256",
				     GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, "sign rsa_pss_rsae_sha256",
				     err);
	if (rc == 0 && o->compare_address)
		rc = bench_isolation_case(b, ec, err);
	if (rc == 0)
		rc = bench_p1_case(b, ec, other, err);
	if (rc == 0)
		rc = bench_p2_case(b, ec, o->ec_label, "ecdsa_secp256r1_sha256",
				   GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, "P-256", err);
	if (rc == 0)
		rc = bench_p2_case(b, rsa, o->rsa_label, "rsa_pss_rsae_sha256",
				   GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, "RSA-2048", err);
	if (rc == 0 && o->slow_address && o->slow_token)
		rc = bench_p4_case(b, err);
	if (rc != 0)
		return rc;

	rc = gnutls_priority_init2(&b->prio, BENCH_PRIORITY, NULL, 0);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "priority: %s", gnutls_strerror(rc));
	rc = bench_server_new(o->server_cert, o->server_key, o->ca, &b->server, err);
	if (rc != 0)
		return rc;
	rc = gnutls_priority_init2(&b->prio12, BENCH_PRIORITY12, NULL, 0);
	if (rc < 0)
		return ca_error_set(err, CA_E_FAILED, "priority: %s", gnutls_strerror(rc));
	rc = bench_handshake_case(b, b->prio, ec, o->ec_label, o->ec_chain,
				  "mTLS 1.3 handshake P-256", true, err);
	if (rc == 0 && o->rsa_chain)
		rc = bench_handshake_case(b, b->prio, rsa, o->rsa_label, o->rsa_chain,
					  "mTLS 1.3 handshake RSA-2048", false, err);
	if (rc == 0)
		rc = bench_handshake_case(b, b->prio12, ec, o->ec_label, o->ec_chain,
					  "mTLS 1.2 handshake P-256", false, err);
	if (rc == 0 && o->rsa_chain)
		rc = bench_handshake_case(b, b->prio12, rsa, o->rsa_label, o->rsa_chain,
					  "mTLS 1.2 handshake RSA-2048", false, err);
	if (rc == 0)
		bench_p5_rss(b, "P5 agent RSS, after the run");
	if (rc == 0 && o->activation_address)
		rc = bench_p5_activation(b, err);
	return rc;
}

int main(int argc, char **argv)
{
	_cleanup_(bench_deinit) Bench b = {.echo_fd = -1};
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
