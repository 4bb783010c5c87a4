/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-server: the TLS 1.3 server of the handshake benchmark, run on a thread of the bench
 * itself so that every case pays the same server cost and the numbers differ only in the
 * client's key path. It requires a client certificate and verifies its chain against a CA
 * file; after a handshake it sends one byte, so a client that reads it knows the server
 * accepted its certificate (in TLS 1.3 the client finishes before the server has checked).
 *
 * The server owns every fd handed to bench_server_serve() and closes it.
 */
#pragma once

#include <stdbool.h>

#include <gnutls/gnutls.h>

#include "error.h"

typedef struct BenchServer BenchServer;

/* The byte the server sends once it has verified the client's certificate. */
#define BENCH_SERVER_ACCEPTED 'K'

/*
 * Loads the server's chain and key (PEM) and the CA that must have issued client certificates,
 * and starts the thread. Returns 0, a negative errno, or CA_E_FAILED (err says why).
 */
int bench_server_new(const char *cert_file, const char *key_file, const char *ca_file,
		     BenchServer **ret, CaError *err);

/* Stops the thread (after the handshakes queued so far) and frees everything. */
BenchServer *bench_server_free(BenchServer *s);

/* Queues one handshake on fd (one end of a connected stream socket). 0 or -errno. */
int bench_server_serve(BenchServer *s, int fd);

/*
 * Handshakes completed with a verified client certificate, and failed ones; ret_error gets
 * the last failure's description (or "") when not NULL.
 */
void bench_server_counts(BenchServer *s, unsigned long *ret_ok, unsigned long *ret_failed,
			 char *ret_error, size_t error_size);

/*
 * The client side of one handshake against s: a socketpair whose other end s serves, a GnuTLS
 * client session with prio and cred that checks the server's certificate for server_name,
 * then the server's BENCH_SERVER_ACCEPTED byte. Every step times out after timeout_ms.
 * Returns 0, a negative errno, or a GnuTLS error code; *ret_step names the step that failed
 * ("socketpair", "server queue", "gnutls_init", "handshake", "server did not accept the
 * client"). *ret_served is set once the server has the connection (it counts it).
 */
int bench_client_handshake(BenchServer *s, gnutls_priority_t prio,
			   gnutls_certificate_credentials_t cred, const char *server_name,
			   unsigned timeout_ms, bool *ret_served, const char **ret_step);
