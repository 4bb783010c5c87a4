/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench: what the files of certagent-bench share (included only from bench/).
 * certagent-bench.c parses the options, owns the Bench, runs the cases and prints the rows;
 * bench-measure.c holds the key look-ups, the timing loop and the sign operations every case
 * uses, and turns measured Stats into Rows; the cases are in bench-sign.c (sign rows, P1, P2),
 * bench-tls.c (mTLS handshakes) and bench-agent.c (P4, P5).
 *
 * The Bench belongs to main() and is released by bench_deinit(); a case borrows it and adds
 * its Stats (bench_stats()) and Rows (bench_row(), bench_value_row()) to it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#include <certagent.h>

#include "bench-p11kit.h"
#include "bench-server.h"
#include "bench-stats.h"
#include "util.h"

#define BENCH_PIN_MAX 256 /* as the agent's cap on PINs */
#define BENCH_URL_MAX 1024
#define BENCH_SLICE_SECONDS 0.5 /* turns of the paths measured against each other */
/* Handshake rows run this many times --seconds: at ~150 handshakes/s a turn holds only ~75,
 * and P3's target is within 3 % of the baseline (docs/performance.md, "How it is measured"). */
#define BENCH_HANDSHAKE_SECONDS_FACTOR 3
#define BENCH_TIMEOUT_MS 30000 /* a stuck agent or server fails the bench, not hangs it */
#define BENCH_SERVER_NAME "localhost"

/* --only: the groups of cases a run may be limited to. */
enum {
	BENCH_ONLY_SIGN = 1u << 0, /* the sign rows and the isolation row */
	BENCH_ONLY_P1 = 1u << 1,
	BENCH_ONLY_P2 = 1u << 2,
	BENCH_ONLY_P4 = 1u << 3,
	BENCH_ONLY_HANDSHAKES = 1u << 4, /* P3 */
	BENCH_ONLY_P5 = 1u << 5,
};

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
	unsigned only;	  /* BENCH_ONLY_* bits; 0: every case */
	double seconds;
	bool json;
} Options;

/* ---- small owners with cleanup ---- */

static inline void bench_privkey_freep(gnutls_privkey_t *k)
{
	if (*k)
		gnutls_privkey_deinit(*k);
}
static inline void bench_pubkey_freep(gnutls_pubkey_t *k)
{
	if (*k)
		gnutls_pubkey_deinit(*k);
}

/* The PIN, for the in-process baseline only: certagent-bench.c reads it and wipes it. */
typedef struct BenchPin {
	char value[BENCH_PIN_MAX + 2];
} BenchPin;

/*
 * One line of the table: two ways of doing the same thing (base, agent) with their rates or
 * values, the ratio the target is about, the target itself, and latencies.
 */
typedef struct Row {
	char name[48];
	char baseline[32];
	double base, agent;	   /* operations/s, or values in `unit` */
	const char *unit;	   /* "/s", "ms", "MiB" */
	double ratio;		   /* NAN: none */
	double ratio_lo, ratio_hi; /* its 95 % interval from paired turns; NAN: none */
	const char *target;	   /* "" or e.g. ">=1.3" */
	double base_p50, base_p99, agent_p50, agent_p99; /* ms; NAN: not measured */
	char note[96];
} Row;

static inline double ms(double s)
{
	return s * 1e3;
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
	double stalls_per_s; /* bench_probe_stalls() before P2; NAN: not probed */
	double stall_max_ms;
	Row rows[40];
	size_t n_rows;
} Bench;

/* ---- bench-measure.c: the keys ---- */

int bench_key_url(const char *token, const char *label, char *buf, size_t size);
const certagent_identity *bench_find_identity(const certagent_identity_list *l, const char *token,
					      const char *label, CaError *err);
int bench_identity_pubkey(const certagent_identity *id, gnutls_pubkey_t *ret, CaError *err);
int bench_import_url(const char *url, gnutls_privkey_t *ret, CaError *err);

/* ---- bench-measure.c: the measured operations ---- */

typedef int (*BenchOp)(void *ctx, CaError *err);

/* One way of doing the operation (baseline or agent), measured into stats. */
typedef struct BenchPath {
	BenchOp op;
	void *ctx;
	Stats *stats;
} BenchPath;

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

int bench_measure(const BenchPath *paths, size_t n, double seconds, CaError *err);

/* A number for Stats measured in the same turns (Stats.group), which bench_row() pairs. */
unsigned bench_group_new(void);
void bench_probe_stalls(double seconds, double *ret_per_s, double *ret_max_ms);
int bench_op_sign_inproc(void *ctx, CaError *err);
int bench_op_sign_agent(void *ctx, CaError *err);

/* ---- bench-measure.c: the Bench's stats and rows ---- */

Stats *bench_stats(Bench *b);
Row *bench_row(Bench *b, const char *name, const char *baseline, const Stats *base,
	       const Stats *agent);
Row *bench_value_row(Bench *b, const char *name, const char *baseline, double base, double agent,
		     const char *unit, double ratio, const char *target);
void bench_progress(const Bench *b, const char *what);

/* ---- the cases, each adding its rows to the Bench ---- */

/* bench-sign.c */
int bench_sign_case(Bench *b, const certagent_identity *id, const char *label, const char *scheme,
		    gnutls_sign_algorithm_t algo, const char *name, CaError *err);
int bench_isolation_case(Bench *b, const certagent_identity *id, CaError *err);
int bench_echo_start(Bench *b);
int bench_p1_case(Bench *b, const certagent_identity *id, const certagent_identity *other,
		  CaError *err);
int bench_p2_case(Bench *b, const certagent_identity *id, const certagent_identity *other,
		  const char *label, const char *scheme, gnutls_sign_algorithm_t algo,
		  const char *what, CaError *err);

/* bench-tls.c */
int bench_handshake_case(Bench *b, gnutls_priority_t prio, const certagent_identity *id,
			 const char *label, const char *chain, const char *name, bool with_pem,
			 CaError *err);

/* bench-agent.c */
int bench_p4_case(Bench *b, CaError *err);
void bench_p5_rss(Bench *b, const char *name);
int bench_p5_activation(Bench *b, CaError *err);
