/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-agent: the cases of certagent-bench about the agent itself rather than one signature.
 * P4, Sign on one token and ListIdentities while another token (the fault module of --slow-
 * token) signs slowly; P5, the agent's RSS with its module helpers and bus activation to the
 * first signature. Each case adds its rows to the Bench.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <certagent.h>

#include "bench.h"

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

int bench_p4_case(Bench *b, CaError *err)
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

void bench_p5_rss(Bench *b, const char *name)
{
	pid_t pid = b->opt.agent_pid ? (pid_t)atoi(b->opt.agent_pid) : 0;
	unsigned long alone = pid > 0 ? bench_rss_kib(pid, false) : 0;
	unsigned long all = pid > 0 ? bench_rss_kib(pid, true) : 0;

	Row *r = bench_value_row(b, name, "agent alone (MiB)", alone / 1024.0, all / 1024.0, "MiB",
				 NAN, "<=8");
	snprintf(r->note, sizeof(r->note), "%s",
		 pid > 0 ? "agent column: with its module helpers" : "TODO: no --agent-pid");
}

int bench_p5_activation(Bench *b, CaError *err)
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
