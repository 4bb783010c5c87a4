/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * load-client CLIENTS HANDSHAKES CA SERVER-CERT SERVER-KEY [1.2|1.3]: CLIENTS processes start
 * together (a pipe is the starting gun) and each runs HANDSHAKES mutual-TLS handshakes (1.3
 * unless told) in a row
 * through libcertagent (identity chosen per handshake by certagent_credentials_set), against a
 * server thread of its own (bench/bench-server.c, over a socketpair) that verifies the client's
 * chain against CA. A handshake counts only when the server has accepted the client. The agent
 * is found on the session bus ($DBUS_SESSION_BUS_ADDRESS).
 *
 * Prints "load: C clients x N handshakes: OK ok, F failed in S s" and the first failures;
 * exits 0 only when every handshake of every client succeeded. $CERTAGENT_LOAD_GAP_MS: a
 * pause before each handshake after the first (handshakes that come alone).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include <certagent.h>

#include "bench-server.h"
#include "util.h"

#define LOAD_CLIENTS_MAX 256
#define LOAD_TIMEOUT_MS 60000
#define LOAD_PRIORITY_13 "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define LOAD_PRIORITY_12 "NORMAL:-VERS-ALL:+VERS-TLS1.2"
#define LOAD_SERVER_NAME "localhost"

typedef struct Load {
	const char *ca, *server_cert, *server_key, *priority;
	BenchServer *server;
	certagent_client *agent;
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
} Load;

static void load_fail(const Load *l, unsigned i, const char *step, int rc)
{
	const certagent_error *aerr = l->agent ? certagent_client_last_error(l->agent) : NULL;

	fprintf(stderr, "load-client %d: handshake %u: %s: %s%s%s\n", (int)getpid(), i, step,
		rc ? gnutls_strerror(rc) : "", aerr && aerr->message[0] ? "; agent: " : "",
		aerr ? aerr->message : "");
}

/* One handshake; true when the server accepted our certificate. */
static bool load_handshake(Load *l, unsigned i)
{
	const char *step;
	bool served;
	int rc = bench_client_handshake(l->server, l->prio, l->cred, LOAD_SERVER_NAME,
					LOAD_TIMEOUT_MS, &served, &step);

	if (rc < 0 && !served)
		load_fail(l, i, strerror(-rc), 0);
	else if (rc < 0)
		load_fail(l, i, step, rc);
	return rc == 0;
}

/*
 * A child: sets up, says so on ready, waits for the gun, runs n handshakes. Returns the number
 * that failed (its exit status, at most 250).
 */
static unsigned load_client(Load *l, unsigned n, int ready, int gun)
{
	certagent_error aerr = CERTAGENT_ERROR_INIT;
	CaError err = {0};
	const char *gap = getenv("CERTAGENT_LOAD_GAP_MS");
	unsigned long gap_ms = gap ? strtoul(gap, NULL, 10) : 0;
	unsigned failed = 0;
	char c;

	if (bench_server_new(l->server_cert, l->server_key, l->ca, &l->server, &err) != 0) {
		fprintf(stderr, "load-client: server: %s\n", err.message);
		return n;
	}
	if (certagent_client_new(NULL, &l->agent, &aerr) < 0) {
		fprintf(stderr, "load-client: agent: %s\n", aerr.message);
		return n;
	}
	if (gnutls_certificate_allocate_credentials(&l->cred) < 0 ||
	    gnutls_certificate_set_x509_trust_file(l->cred, l->ca, GNUTLS_X509_FMT_PEM) <= 0 ||
	    gnutls_priority_init(&l->prio, l->priority, NULL) < 0) {
		fprintf(stderr, "load-client: cannot set up GnuTLS with CA %s\n", l->ca);
		return n;
	}
	if (certagent_credentials_set(l->agent, l->cred, NULL, &aerr) < 0) {
		fprintf(stderr, "load-client: certagent_credentials_set: %s\n", aerr.message);
		return n;
	}
	c = 1;
	if (write(ready, &c, 1) != 1)
		return n;
	while (read(gun, &c, 1) < 0 && errno == EINTR)
		;
	for (unsigned i = 0; i < n; i++) {
		if (i && gap_ms) {
			struct timespec ts = {gap_ms / 1000, (long)(gap_ms % 1000) * 1000000L};

			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		if (!load_handshake(l, i) && ++failed >= 5) {
			fprintf(stderr, "load-client %d: giving up after 5 failures\n",
				(int)getpid());
			failed += n - i - 1;
			break;
		}
	}
	bench_server_free(l->server);
	gnutls_priority_deinit(l->prio);
	gnutls_certificate_free_credentials(l->cred);
	certagent_client_free(l->agent);
	return failed;
}

int main(int argc, char **argv)
{
	Load l = {0};
	unsigned long clients, n, failed_clients = 0, failed = 0;
	pid_t pids[LOAD_CLIENTS_MAX];
	struct timespec t0, t1;
	int gun[2], ready[2];
	char c;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: load-client CLIENTS HANDSHAKES CA SERVER-CERT SERVER-KEY "
				"[1.2|1.3]\n");
		return 2;
	}
	l.priority = LOAD_PRIORITY_13;
	if (argc == 7 && strcmp(argv[6], "1.2") == 0)
		l.priority = LOAD_PRIORITY_12;
	else if (argc == 7 && strcmp(argv[6], "1.3") != 0) {
		fprintf(stderr, "load-client: TLS version 1.2 or 1.3, not %s\n", argv[6]);
		return 2;
	}
	clients = strtoul(argv[1], NULL, 10);
	n = strtoul(argv[2], NULL, 10);
	if (clients < 1 || clients > LOAD_CLIENTS_MAX || n < 1 || n > 1000000) {
		fprintf(stderr, "load-client: 1..%d clients and at least one handshake\n",
			LOAD_CLIENTS_MAX);
		return 2;
	}
	l.ca = argv[3];
	l.server_cert = argv[4];
	l.server_key = argv[5];
	if (pipe2(gun, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0)
		return 1;
	fflush(NULL);
	for (unsigned long i = 0; i < clients; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[i] == 0) {
			unsigned f;

			close(gun[1]);
			close(ready[0]);
			f = load_client(&l, (unsigned)n, ready[1], gun[0]);
			_exit(f > 250 ? 250 : (int)f);
		}
	}
	close(gun[0]);
	close(ready[1]);
	/* Everyone connected to the agent and ready: then all start at once. */
	for (unsigned long i = 0; i < clients; i++)
		if (read(ready[0], &c, 1) != 1)
			break;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	close(gun[1]); /* every child's read() returns now */
	for (unsigned long i = 0; i < clients; i++) {
		int st = 0;

		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			failed_clients++;
			failed += WIFEXITED(st) ? (unsigned long)WEXITSTATUS(st) : n;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("load: %lu clients x %lu handshakes: %lu ok, %lu failed (%lu clients with "
	       "failures) in %.1f s\n",
	       clients, n, clients * n - failed, failed, failed_clients,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return failed_clients ? 1 : 0;
}
