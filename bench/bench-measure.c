/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-measure: what every case of certagent-bench uses. The keys: a token key's pkcs11: URL,
 * an identity of the agent and the public key every signature is checked with. The timing
 * loop: the paths of a case warmed up, then taking turns. The sign operations, in-process and
 * through the agent, each checking its first signature. And the Bench's Stats and Rows, which
 * the cases fill.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <certagent.h>

#include "bench.h"

#define BENCH_MIN_OPS 3 /* even a tiny --seconds gives percentiles of something */

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
int bench_key_url(const char *token, const char *label, char *buf, size_t size)
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

const certagent_identity *bench_find_identity(const certagent_identity_list *l, const char *token,
					      const char *label, CaError *err)
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
int bench_identity_pubkey(const certagent_identity *id, gnutls_pubkey_t *ret, CaError *err)
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

int bench_import_url(const char *url, gnutls_privkey_t *ret, CaError *err)
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
	return stats_turn_end(p->stats);
}

unsigned bench_group_new(void)
{
	static unsigned last;

	return ++last;
}

/*
 * Measures the paths against each other: each is warmed up untimed (first login, first D-Bus
 * round trip, caches), then all take turns in slices of at most BENCH_SLICE_SECONDS, in
 * alternating order, until each has run `seconds` (and at least BENCH_MIN_OPS times). Taking
 * turns gives every path the same share of whatever else the machine is doing.
 */
int bench_measure(const BenchPath *paths, size_t n, double seconds, CaError *err)
{
	unsigned rounds = (unsigned)ceil(seconds / BENCH_SLICE_SECONDS);
	double slice = seconds / rounds;
	unsigned group = bench_group_new();

	for (size_t i = 0; i < n; i++)
		paths[i].stats->group = group;
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

/* ---- how often the machine stops running us ---- */

#define BENCH_STALL_SECONDS 1e-3 /* a gap this long in a loop that only reads the clock */

typedef struct StallProbe {
	pthread_t thread;
	double seconds;
	unsigned long stalls;
	double max;
} StallProbe;

static void *bench_stall_main(void *userdata)
{
	StallProbe *p = userdata;
	double start = stats_now(), last = start, now;

	do {
		now = stats_now();
		if (now - last > BENCH_STALL_SECONDS) {
			p->stalls++;
			p->max = fmax(p->max, now - last);
		}
		last = now;
	} while (now - start < p->seconds);
	return NULL;
}

/*
 * One thread per CPU reads the clock in a loop for `seconds` with nothing else to do; a gap of
 * more than a millisecond between two readings is time that CPU did not run it (on a VM, mostly
 * the host running something else). Reports such gaps per CPU-second and the longest, in ms.
 * Every request in flight on a stalled CPU waits that long: eight closed-loop clients have
 * four times as many in flight as two threads, so their p99 meets these stalls first.
 */
void bench_probe_stalls(double seconds, double *ret_per_s, double *ret_max_ms)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	StallProbe probes[64] = {0};
	unsigned long stalls = 0;
	double max = 0;
	long started = 0;

	n = n < 1 ? 1 : n > 64 ? 64 : n;
	for (long i = 0; i < n; i++) {
		probes[i].seconds = seconds;
		if (pthread_create(&probes[i].thread, NULL, bench_stall_main, &probes[i]) != 0)
			break;
		started++;
	}
	for (long i = 0; i < started; i++) {
		pthread_join(probes[i].thread, NULL);
		stalls += probes[i].stalls;
		max = fmax(max, probes[i].max);
	}
	*ret_per_s = started ? (double)stalls / ((double)started * seconds) : NAN;
	*ret_max_ms = started ? ms(max) : NAN;
}

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

int bench_op_sign_inproc(void *ctx, CaError *err)
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

int bench_op_sign_agent(void *ctx, CaError *err)
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

/* ---- the Bench's stats and rows ---- */

Stats *bench_stats(Bench *b)
{
	/* 2 per sign row (3 rows with --compare-address), 2 or 3 per handshake case: 11 */
	assert(b->n_stats < ELEMENTSOF(b->stats));
	return &b->stats[b->n_stats++];
}

/* A row of two measured paths: rates, their ratio, latencies. */
Row *bench_row(Bench *b, const char *name, const char *baseline, const Stats *base,
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
	stats_ratio_interval(base, agent, &r->ratio_lo, &r->ratio_hi);
	snprintf(r->note, sizeof(r->note), "added p50 %+.3f ms", r->agent_p50 - r->base_p50);
	return r;
}

/* A row of values (ms, MiB, ...); latencies left out. */
Row *bench_value_row(Bench *b, const char *name, const char *baseline, double base, double agent,
		     const char *unit, double ratio, const char *target)
{
	Row *r;

	assert(b->n_rows < ELEMENTSOF(b->rows));
	r = &b->rows[b->n_rows++];
	*r = (Row){.base = base,
		   .agent = agent,
		   .unit = unit,
		   .ratio = ratio,
		   .ratio_lo = NAN,
		   .ratio_hi = NAN,
		   .target = target,
		   .base_p50 = NAN,
		   .base_p99 = NAN,
		   .agent_p50 = NAN,
		   .agent_p99 = NAN};
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->baseline, sizeof(r->baseline), "%s", baseline);
	return r;
}

void bench_progress(const Bench *b, const char *what)
{
	if (!b->opt.json)
		fprintf(stderr, "certagent-bench: measuring %s\n", what);
}
