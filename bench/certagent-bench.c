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
 *              in-process rate with 2 threads; p99/p50 and the fewest/most per client; with
 *              --compare-address also P-256 through the isolation = none agent in the same
 *              turns (what the helper hop costs under load; no target);
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
 *
 * This file parses the options, owns the Bench, runs the cases and prints the table; the cases
 * are in bench-sign.c, bench-tls.c and bench-agent.c, what they share in bench-measure.c and
 * bench.h.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>

#include <certagent.h>

#include "bench.h"

#define BENCH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define BENCH_DEFAULT_SECONDS 3
#define BENCH_QUICK_SECONDS 0.5
#define BENCH_STR_(x) #x
#define BENCH_STR(x) BENCH_STR_(x)
#define BENCH_SECONDS_HELP                                                                         \
	"timed seconds per measurement, for handshakes " BENCH_STR(                                \
		BENCH_HANDSHAKE_SECONDS_FACTOR) " times that (default: " BENCH_STR(BENCH_DEFAULT_SECONDS) ")"
#define BENCH_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define BENCH_PRIORITY12 "NORMAL:-VERS-ALL:+VERS-TLS1.2"
#define BENCH_CLIENTS_DEFAULT 8
#define BENCH_CLIENTS_MAX 64

/* ---- the PIN, for the in-process baseline only ---- */

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

/* ---- the table ---- */

static void bench_fmt(char *buf, size_t size, double a, double b)
{
	if (isnan(a))
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%.3f/%.3f", a, b);
}

static void bench_print_table(const Bench *b)
{
	const Options *o = &b->opt;
	const Row *rows = b->rows;
	size_t n = b->n_rows;
	double load[1] = {-1};

	getloadavg(load, 1);
	printf("certagent-bench: %.2g s per measurement, token \"%s\"\n"
	       "machine: %ld CPUs, load %.2f (a busy machine widens p99 and blurs the ratios)",
	       o->seconds, o->token, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
	if (!isnan(b->stalls_per_s))
		printf(";\n         a CPU stopped running us for over 1 ms %.1f times/s before P2 "
		       "(longest %.1f ms)",
		       b->stalls_per_s, b->stall_max_ms);
	printf("\n\n");
	printf("%-40s %-24s %10s %10s %4s %7s %11s %6s %15s %15s  %s\n", "case", "baseline", "base",
	       "agent", "unit", "ratio", "95% CI", "target", "base p50/p99", "agent p50/p99",
	       "note");
	for (size_t i = 0; i < n; i++) {
		const Row *r = &rows[i];
		char bp[32], ap[32], ratio[16], interval[32], base[16], agent[16];
		int digits = strcmp(r->unit, "/s") == 0 ? 1 : 3;

		bench_fmt(bp, sizeof(bp), r->base_p50, r->base_p99);
		bench_fmt(ap, sizeof(ap), r->agent_p50, r->agent_p99);
		if (isnan(r->ratio))
			snprintf(ratio, sizeof(ratio), "-");
		else
			snprintf(ratio, sizeof(ratio), "%.2fx", r->ratio);
		if (isnan(r->ratio_lo))
			snprintf(interval, sizeof(interval), "-");
		else
			snprintf(interval, sizeof(interval), "%.2f-%.2f", r->ratio_lo, r->ratio_hi);
		if (isnan(r->base))
			snprintf(base, sizeof(base), "-");
		else
			snprintf(base, sizeof(base), "%.*f", digits, r->base);
		if (isnan(r->agent))
			snprintf(agent, sizeof(agent), "-");
		else
			snprintf(agent, sizeof(agent), "%.*f", digits, r->agent);
		printf("%-40s %-24s %10s %10s %4s %7s %11s %6s %15s %15s  %s\n", r->name,
		       r->baseline, base, agent, r->unit, ratio, interval,
		       r->target[0] ? r->target : "-", bp, ap, r->note);
	}
	printf("\nratio: agent/base for rates (/s); for P1 added, (agent p50 - in-process p50) / "
	       "echo p50;\nfor P2 p99/p50, agent p99 / agent p50; for P4 and P5, the value itself. "
	       "Latencies in ms.\n95%% CI: where a rate ratio lies with 95 %% confidence, from "
	       "the two paths' turns in the same rounds\n(the geometric mean of their ratios, "
	       "Student's t); a ratio whose interval holds the target\ncannot tell whether the "
	       "target is met on this machine at this time.\n");
}

static void bench_json_num(const char *key, double v)
{
	if (isnan(v))
		printf("\"%s\": null", key);
	else
		printf("\"%s\": %.6f", key, v);
}

/* Names are our own constants: nothing to escape. */
static void bench_print_json(const Bench *b)
{
	const Options *o = &b->opt;
	const Row *rows = b->rows;
	size_t n = b->n_rows;
	double load[1] = {-1};

	getloadavg(load, 1);
	printf("{\"seconds\": %.3f, \"cpus\": %ld, \"load\": %.2f, ", o->seconds,
	       sysconf(_SC_NPROCESSORS_ONLN), load[0]);
	bench_json_num("cpu_stalls_per_s", b->stalls_per_s);
	printf(", ");
	bench_json_num("cpu_stall_max_ms", b->stall_max_ms);
	printf(", \"rows\": [");
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
		bench_json_num("ratio_lo", r->ratio_lo);
		printf(", ");
		bench_json_num("ratio_hi", r->ratio_hi);
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
	OPT_ONLY,
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
	{"only", "CASES", OPT_ONLY, 0,
	 "run only these cases, comma-separated: sign, p1, p2, p4, handshakes (P3), p5"},
	{"seconds", "N", OPT_SECONDS, 0, BENCH_SECONDS_HELP},
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

static int bench_parse_only(const char *arg, unsigned *ret)
{
	static const struct {
		const char *name;
		unsigned bit;
	} groups[] = {
		{"sign", BENCH_ONLY_SIGN},
		{"p1", BENCH_ONLY_P1},
		{"p2", BENCH_ONLY_P2},
		{"p4", BENCH_ONLY_P4},
		{"handshakes", BENCH_ONLY_HANDSHAKES},
		{"p3", BENCH_ONLY_HANDSHAKES},
		{"p5", BENCH_ONLY_P5},
	};
	const char *p = arg;

	*ret = 0;
	for (;;) {
		size_t n = strcspn(p, ","), i;
		for (i = 0; i < ELEMENTSOF(groups); i++)
			if (strlen(groups[i].name) == n && strncmp(p, groups[i].name, n) == 0)
				break;
		if (i == ELEMENTSOF(groups)) {
			fprintf(stderr,
				"certagent-bench: --only: unknown case \"%.*s\" in \"%s\"; "
				"the cases are sign, p1, p2, p4, handshakes (or p3) and p5\n",
				(int)n, p, arg);
			return -1;
		}
		*ret |= groups[i].bit;
		if (!p[n])
			return 0;
		p += n + 1;
	}
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
		case OPT_ONLY:
			if (bench_parse_only(optarg, &o->only) < 0)
				return 2;
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

static bool bench_wants(const Options *o, unsigned group)
{
	return !o->only || (o->only & group);
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
	if (bench_wants(o, BENCH_ONLY_P5))
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

	bool sign = bench_wants(o, BENCH_ONLY_SIGN);
	rc = 0;
	if (sign)
		rc = bench_sign_case(b, ec, o->ec_label, "ecdsa_secp256r1_sha256",
				     GNUTLS_SIGN_ECDSA_SECP256R1_SHA256,
				     "sign ecdsa_secp256r1_sha256", err);
	if (rc == 0 && sign)
		rc = bench_sign_case(b, rsa, o->rsa_label, "rsa_pss_rsae_sha256",
				     GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, "sign rsa_pss_rsae_sha256",
				     err);
	if (rc == 0 && sign && o->compare_address)
		rc = bench_isolation_case(b, ec, err);
	if (rc == 0 && bench_wants(o, BENCH_ONLY_P1))
		rc = bench_p1_case(b, ec, other, err);
	/* P2's tail meets the host's stalls first (bench_probe_stalls()): how often they come
	 * now, measured right before it, goes into its note and the machine line. */
	if (rc == 0 && bench_wants(o, BENCH_ONLY_P2)) {
		bench_progress(b, "how often the CPUs stall (before P2)");
		bench_probe_stalls(fmin(1.0, o->seconds / 3), &b->stalls_per_s, &b->stall_max_ms);
	}
	if (rc == 0 && bench_wants(o, BENCH_ONLY_P2))
		rc = bench_p2_case(b, ec, other, o->ec_label, "ecdsa_secp256r1_sha256",
				   GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, "P-256", err);
	if (rc == 0 && bench_wants(o, BENCH_ONLY_P2))
		rc = bench_p2_case(b, rsa, NULL, o->rsa_label, "rsa_pss_rsae_sha256",
				   GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, "RSA-2048", err);
	if (rc == 0 && o->slow_address && o->slow_token && bench_wants(o, BENCH_ONLY_P4))
		rc = bench_p4_case(b, err);
	if (rc != 0 || !bench_wants(o, BENCH_ONLY_HANDSHAKES))
		goto p5;

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
p5:
	if (rc == 0 && bench_wants(o, BENCH_ONLY_P5))
		bench_p5_rss(b, "P5 agent RSS, after the run");
	if (rc == 0 && o->activation_address && bench_wants(o, BENCH_ONLY_P5))
		rc = bench_p5_activation(b, err);
	return rc;
}

int main(int argc, char **argv)
{
	_cleanup_(bench_deinit) Bench b = {.echo_fd = -1, .stalls_per_s = NAN, .stall_max_ms = NAN};
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
		bench_print_json(&b);
	else
		bench_print_table(&b);
	return EXIT_SUCCESS;
}
