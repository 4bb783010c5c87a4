/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * explain: what `certagent connect --explain` says about a mutual-TLS handshake. cmd-connect.c
 * runs the handshake and feeds this module at each step; the library's observer
 * (certagent_client_set_observer) reports the certificate request, the identity chosen and
 * each signature. At the end the whole story is printed once, as text or as JSON (schema in
 * docs/cli.md). Nothing here talks to the network or the agent.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <gnutls/gnutls.h>

#include "certagent.h"

typedef struct Explain Explain;

Explain *explain_new(const char *host, const char *port, const char *server_name);
Explain *explain_free(Explain *e);

/* Registers e as the observer of c (e must outlive the handshake). */
void explain_observe(Explain *e, certagent_client *c);

/* The address we connected to ("127.0.0.1"). */
void explain_set_address(Explain *e, const char *addr);

/* What the ClientHello offers, from the priorities set on the session. */
void explain_offered(Explain *e, gnutls_priority_t prio);

/* Where the trust store came from ("ca/root.pem", "the system trust store"). */
void explain_set_trust(Explain *e, const char *what, int n_cas);

/*
 * Reads the CRLs in file (PEM or DER) for the per-certificate revocation check. Returns 0, or
 * -CLI_EXIT_IO after printing why the file cannot be used.
 */
int explain_load_crl(Explain *e, const char *file);

/*
 * After the handshake (also a failed one, if the server sent its certificates): the chain and
 * each check on it, against the trust list of cred and the CRLs loaded. Only explains;
 * GnuTLS's own verification during the handshake is what decides.
 */
void explain_server_chain(Explain *e, gnutls_session_t session,
			  gnutls_certificate_credentials_t cred);

/* After a successful handshake: version, cipher, key exchange, signature algorithms. */
void explain_negotiated(Explain *e, gnutls_session_t session);

/*
 * The verdict. result: "accepted", "rejected", "server-not-trusted", "agent-failed" or
 * "failed"; detail says why, in a sentence.
 */
void explain_set_result(Explain *e, const char *result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void explain_print_text(const Explain *e, FILE *f);
void explain_print_json(const Explain *e, FILE *f);
