/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-sign: the signing cases of certagent-bench. One signature at a time, the token key
 * in-process vs through the agent (P-256, RSA), and with --compare-address the helper hop; P1,
 * the agent vs p11-kit's forwarding, vs a bare SOCK_SEQPACKET echo and vs Sign over the bus;
 * P2, many clients at once. Each case adds its rows to the Bench.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <certagent.h>
#include <dbus/dbus.h>

#include "bench.h"

#define BENCH_ECHO_SIZE 344 /* bytes of a P-256 Sign packet on the channel */

/* ---- sign: the token key in-process vs through the agent ---- */

/* One sign row: the token key in-process, then the same key through the agent. */
int bench_sign_case(Bench *b, const certagent_identity *id, const char *label, const char *scheme,
		    gnutls_sign_algorithm_t algo, const char *name, CaError *err)
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
int bench_isolation_case(Bench *b, const certagent_identity *id, CaError *err)
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

/* ---- P1: the agent against p11-kit's forwarding and a bare socket round trip ---- */

/* A child process that sends every packet back: the cheapest IPC round trip there is. */
int bench_echo_start(Bench *b)
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

int bench_p1_case(Bench *b, const certagent_identity *id, const certagent_identity *other,
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
	/* One untimed signature: the agent client opens its signing channel, the in-process key
	 * its session. */
	if (c->rc == 0) {
		gnutls_datum_t sig = {NULL, 0};
		int r = agent ? certagent_sign(agent, c->uri, c->scheme, hash.data, hash.size, NULL,
					       &sig, &aerr)
			      : gnutls_privkey_sign_hash2(key, c->algo, 0, &hash, &sig);

		if (r < 0)
			c->rc = ca_error_set(&c->err, CA_E_FAILED, "%s signature: %s",
					     agent ? "agent" : "in-process",
					     agent ? aerr.message : gnutls_strerror(r));
		gnutls_free(sig.data);
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

/* Runs n clients for proto->seconds, one turn of all; merges their latencies into all (its
 * elapsed time adds up) and adds each client's count of signatures to per_client[i]. */
static int bench_clients(Client *proto, unsigned n, Stats *all, size_t *per_client, CaError *err)
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
	for (unsigned i = 0; i < n; i++) {
		pthread_join(c[i].thread, NULL);
		if (c[i].rc && !rc) {
			rc = c[i].rc;
			*err = c[i].err;
		}
		t0 = fmin(t0, c[i].t0);
		t1 = fmax(t1, c[i].t1);
		per_client[i] += c[i].stats.ops;
		for (size_t j = 0; j < c[i].stats.n && rc == 0; j++)
			if (stats_add(all, c[i].stats.lat[j]) < 0)
				rc = -ENOMEM;
		stats_deinit(&c[i].stats);
	}
	pthread_barrier_destroy(&start);
	free(c);
	all->elapsed += t1 - t0;
	if (rc == 0 && stats_turn_end(all) < 0)
		rc = -ENOMEM;
	return rc;
}

static void count_range(const size_t *per_client, unsigned n, size_t *ret_min, size_t *ret_max)
{
	*ret_min = SIZE_MAX;
	*ret_max = 0;
	for (unsigned i = 0; i < n; i++) {
		*ret_min = per_client[i] < *ret_min ? per_client[i] : *ret_min;
		*ret_max = per_client[i] > *ret_max ? per_client[i] : *ret_max;
	}
}

int bench_p2_case(Bench *b, const certagent_identity *id, const certagent_identity *other,
		  const char *label, const char *scheme, gnutls_sign_algorithm_t algo,
		  const char *what, CaError *err)
{
	char url[BENCH_URL_MAX], name[48];
	uint8_t hash[32];
	size_t min, max, none_min, none_max, base_count[2] = {0, 0};
	unsigned rounds = (unsigned)ceil(b->opt.seconds / BENCH_SLICE_SECONDS);
	Stats *base = bench_stats(b), *agent = bench_stats(b), *none = NULL;
	int rc = 0;

	base->group = agent->group = bench_group_new(); /* their turns are paired */

	if (bench_key_url(b->opt.token, label, url, sizeof(url)) < 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "token or key label too long");
	if (gnutls_rnd(GNUTLS_RND_NONCE, hash, sizeof(hash)) < 0)
		return ca_error_set(err, CA_E_FAILED, "no random bytes");
	size_t *agent_count = calloc(b->opt.clients, sizeof(size_t));
	size_t *none_count = calloc(b->opt.clients, sizeof(size_t));

	if (!agent_count || !none_count) {
		free(agent_count);
		free(none_count);
		return -ENOMEM;
	}
	/* The paths take turns in slices, alternating which goes first, as bench_measure() does. */
	Client in_process = {
		.url = url,
		.algo = algo,
		.scheme = scheme,
		.hash = hash,
		.seconds = b->opt.seconds / rounds,
	};
	Client through_agent = in_process;
	through_agent.address = b->opt.address;
	through_agent.uri = certagent_identity_uri(id);
	/* With --compare-address, the same clients through the agent whose module runs inside
	 * it, in the same turns: what the helper hop costs under load. */
	Client in_agent = through_agent;
	if (other) {
		in_agent.address = b->opt.compare_address;
		in_agent.uri = certagent_identity_uri(other);
		none = bench_stats(b);
		none->group = base->group;
	}
	snprintf(name, sizeof(name), "P2 %s, %u clients vs 2 threads", what, b->opt.clients);
	bench_progress(b, name);
	for (unsigned i = 0; i < rounds && rc == 0; i++) {
		if (i % 2 == 0)
			rc = bench_clients(&in_process, 2, base, base_count, err);
		if (rc == 0 && other && i % 2 == 1)
			rc = bench_clients(&in_agent, b->opt.clients, none, none_count, err);
		if (rc == 0)
			rc = bench_clients(&through_agent, b->opt.clients, agent, agent_count, err);
		if (rc == 0 && other && i % 2 == 0)
			rc = bench_clients(&in_agent, b->opt.clients, none, none_count, err);
		if (rc == 0 && i % 2 == 1)
			rc = bench_clients(&in_process, 2, base, base_count, err);
	}
	count_range(agent_count, b->opt.clients, &min, &max);
	count_range(none_count, b->opt.clients, &none_min, &none_max);
	free(agent_count);
	free(none_count);
	if (rc != 0)
		return rc;
	stats_finish(base);
	stats_finish(agent);
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
	if (isnan(b->stalls_per_s))
		snprintf(r->note, sizeof(r->note), "no client starved: fewest %zu > 0", min);
	else
		snprintf(r->note, sizeof(r->note),
			 "no client starved: fewest %zu > 0; CPU stalls >1 ms: %.1f/s, max %.1f ms",
			 min, b->stalls_per_s, b->stall_max_ms);
	if (none) {
		stats_finish(none);
		snprintf(name, sizeof(name), "P2 %s, isolation=none agent", what);
		r = bench_row(b, name, "in-process, 2 threads", base, none);
		snprintf(r->note, sizeof(r->note),
			 "module in the agent (not a target); per client fewest %zu, most %zu",
			 none_min, none_max);
	}
	return 0;
}
