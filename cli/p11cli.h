/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * p11cli: what the token commands (tokens, token, key, csr, cert, enroll, delete, export-cert)
 * share: opening the PKCS#11 store (--module PATH / $CERTAGENT_MODULE), choosing a token and
 * logging in, turning a CaError into a message and an exit code, reading certificate files,
 * a progress spinner, and the enrolment test hook. These commands work on the
 * tokens directly, through pkcs11/, without the agent.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "admin.h"
#include "options.h"
#include "store.h"

#define P11CLI_OPT_MODULE_HELP                                                                     \
	"Use the PKCS#11 module at PATH instead of the modules registered with p11-kit (also "     \
	"$CERTAGENT_MODULE)"

/* Loads the module given (or $CERTAGENT_MODULE, or the registered ones). Exit code or 0. */
int p11cli_store_open(const char *module, Store **ret);

/* Prints "certagent: MESSAGE" and returns the exit code for r (0 stays 0). */
int p11cli_fail(int r, const CaError *err);
int p11cli_exit_code(int r);

/* Opens a read-write session on TOKEN (URI or label). Exit code or 0. */
int p11cli_session(Store *s, const char *token, bool allow_uninitialized, AdminSession **ret);

/*
 * Before anyone is asked for a user PIN: when the token says the PIN is locked or on its final
 * try, prints why nothing will be tried and what to do, and returns 4. pkcs11/ (login.c,
 * admin.c) refuses those logins anyway; this only spares a person typing a PIN for nothing.
 */
int p11cli_check_pin_state(AdminSession *a);

/* The label certagent gives a certificate: its CN, else its DN (cut to ADMIN_LABEL_MAX). */
char *p11cli_crt_label(gnutls_x509_crt_t crt);

/* Both: the store, then a session on TOKEN. Exit code or 0 (then both are set). */
int p11cli_open(const char *module, const char *token, bool allow_uninitialized, Store **ret_store,
		AdminSession **ret_session);

/* Logs in as the user with a PIN from pin_file / $CERTAGENT_PIN / prompt (none on a pinpad),
 * after p11cli_check_pin_state(). Exit code or 0. */
int p11cli_login_user(AdminSession *a, const char *pin_file);

/* p11cli_login_user(), then removes what an interrupted enrolment left (saying how many), as
 * every command that makes objects does first. Exit code or 0. */
int p11cli_login_cleanup(AdminSession *a, const char *pin_file);

/* Reads every certificate of a PEM (several) or DER file. Exit code or 0. */
int p11cli_read_certs(const char *path, gnutls_x509_crt_t **ret, size_t *ret_n);
void p11cli_free_certs(gnutls_x509_crt_t *v, size_t n);

/* Parses "0a1b..." (also with ':' separators) into bytes; false if not hex or too long. */
bool p11cli_parse_hex(const char *s, uint8_t *out, size_t max, size_t *ret_n);
void p11cli_hex(const uint8_t *p, size_t n, char *out); /* out: 2n+1 bytes */

/* A spinner on stderr while a slow token works (only when stderr is a terminal). */
void p11cli_progress_start(const char *what);
void p11cli_progress_stop(void);

/*
 * Test hook for crash safety: when $CERTAGENT_TEST_STOP_AT names this step, the process stops
 * itself (SIGSTOP) so a test can kill it exactly between two steps of an enrolment.
 */
void p11cli_test_stop(const char *step);

/* SIGINT/SIGTERM/SIGHUP set a flag instead of killing us, so an enrolment can roll back. */
void p11cli_trap_signals(void);
bool p11cli_interrupted(void);

/* --- enrolment building blocks (cmd-csr.c, cmd-cert.c) ------------------------------------- */

/* Checks a DN (RFC 4514, e.g. "CN=alice,O=Example") and SANs ("dns:…", "email:…", "uri:…",
 * "ip:…") without touching a token. Exit code (2 with a message) or 0. */
int p11cli_check_subject(const char *subject, char *const *sans, size_t n_sans);

/*
 * A PKCS#10 request for the private key with CKA_ID id (user logged in), asking for the
 * clientAuth extended key usage, signed by that key on the token. Exit code or 0.
 */
int p11cli_make_csr(AdminSession *a, const AdminObjectList *objs, const uint8_t *id, size_t id_len,
		    const char *subject, char *const *sans, size_t n_sans, gnutls_x509_crq_t *ret);

/* The private key among objs whose public key is spki (via its public key or itself). */
const AdminObject *p11cli_key_for_spki(const AdminObjectList *objs, const gnutls_datum_t *spki);

/* The DER SubjectPublicKeyInfo of a certificate (gnutls_free). */
int p11cli_crt_spki(gnutls_x509_crt_t crt, gnutls_datum_t *ret);

/* Writes data to path through a temporary file and rename (no partial files). Exit code. */
int p11cli_write_file(const char *path, const void *data, size_t len, bool no_overwrite);
