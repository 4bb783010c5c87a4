/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcertagent: TLS client certificates whose private keys stay in a PKCS#11 token, held by
 * certagentd. The application runs an ordinary GnuTLS session; the library gives GnuTLS a
 * private key whose signing calls go to the agent over D-Bus.
 *
 *   certagent_client *c;
 *   certagent_error err = CERTAGENT_ERROR_INIT;
 *   if (certagent_client_new(NULL, &c, &err) < 0) { puts(err.message); ... }
 *   gnutls_certificate_allocate_credentials(&cred);
 *   certagent_credentials_set(c, cred, NULL, &err);   // identity chosen per server
 *   ... gnutls_handshake() ...
 *   gnutls_certificate_free_credentials(cred);
 *   certagent_client_free(c);
 *
 * Rules: no global state, no threads, no printing. A certagent_client is used by one thread at
 * a time. It must outlive every gnutls credential or private key made from it.
 */
#ifndef CERTAGENT_H
#define CERTAGENT_H

#include <stddef.h>
#include <stdint.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CERTAGENT_API_VERSION 1

/* Error codes: the negative of these is returned by every function. */
typedef int32_t certagent_code;
enum {
	CERTAGENT_OK = 0,
	CERTAGENT_E_AGENT_NOT_RUNNING = 1, /* no bus, or nobody owns org.certagent.Agent1 */
	CERTAGENT_E_NO_IDENTITY = 2,	   /* no identity fits (URI, server's CAs or algorithms) */
	CERTAGENT_E_KEY_NOT_FOUND = 3,	   /* the key is gone from the token */
	CERTAGENT_E_PIN_REQUIRED = 4,	   /* unlock the token: `certagent unlock TOKEN-URI` */
	CERTAGENT_E_PIN_INCORRECT = 5,
	CERTAGENT_E_PIN_LOCKED = 6,
	CERTAGENT_E_TOKEN_ABSENT = 7,
	CERTAGENT_E_UNSUPPORTED_SCHEME = 8,
	CERTAGENT_E_INVALID_ARGS = 9,
	CERTAGENT_E_TOO_LARGE = 10,
	CERTAGENT_E_TIMEOUT = 11, /* the agent did not answer in time */
	CERTAGENT_E_CANCELLED = 12,
	CERTAGENT_E_POLICY_DENIED = 13,
	CERTAGENT_E_NO_MEMORY = 14,
	CERTAGENT_E_FAILED = 15,
};

/* Filled by every function that fails; owned by the caller (on the stack is fine). */
typedef struct certagent_error {
	uint32_t version;    /* CERTAGENT_API_VERSION */
	certagent_code code; /* CERTAGENT_E_* */
	char dbus_name[128]; /* "org.certagent.Error.PinRequired", or "" */
	char message[512];   /* says what was wrong and what to do next */
} certagent_error;

#define CERTAGENT_ERROR_INIT                                                                       \
	{                                                                                          \
		CERTAGENT_API_VERSION, 0, "", ""                                                   \
	}

/* A short English name for a code ("pin-required"). Never NULL. */
const char *certagent_strerror(certagent_code code);

typedef struct certagent_client certagent_client;

/*
 * Opens a private connection to the session bus (address NULL) or to the bus at address,
 * and checks that the agent answers. Default timeout for calls: 120 s (a PIN prompt waits up
 * to 90 s for a person); change it with certagent_client_set_timeout().
 */
int certagent_client_new(const char *address, certagent_client **ret, certagent_error *err);
void certagent_client_free(certagent_client *c);
void certagent_client_set_timeout(certagent_client *c, int timeout_ms);

/* Identities, as the agent lists them. */
typedef struct certagent_identity certagent_identity;
typedef struct certagent_identity_list certagent_identity_list;

int certagent_list_identities(certagent_client *c, certagent_identity_list **ret,
			      certagent_error *err);
size_t certagent_identity_list_count(const certagent_identity_list *l);
const certagent_identity *certagent_identity_list_get(const certagent_identity_list *l, size_t i);
void certagent_identity_list_free(certagent_identity_list *l);

const char *certagent_identity_uri(const certagent_identity *id);
const char *certagent_identity_label(const certagent_identity *id);
const char *certagent_identity_token(const certagent_identity *id); /* token URI */
const char *certagent_identity_token_label(const certagent_identity *id);
const char *certagent_identity_key_type(const certagent_identity *id); /* rsa|ec|ed25519 */
unsigned certagent_identity_bits(const certagent_identity *id);
int certagent_identity_logged_in(const certagent_identity *id);
size_t certagent_identity_scheme_count(const certagent_identity *id);
const char *certagent_identity_scheme(const certagent_identity *id, size_t i);
size_t certagent_identity_cert_count(const certagent_identity *id); /* leaf first */
const gnutls_datum_t *certagent_identity_cert(const certagent_identity *id, size_t i); /* DER */

/*
 * Asks the agent to sign. scheme: a TLS SignatureScheme name; data: as the agent expects it
 * (DigestInfo for rsa_pkcs1_*, bare hash for PSS/ECDSA, message for ed25519). server_name may
 * be NULL. *ret_sig is malloc'd; free it with gnutls_free().
 */
int certagent_sign(certagent_client *c, const char *identity_uri, const char *scheme,
		   const void *data, size_t len, const char *server_name, gnutls_datum_t *ret_sig,
		   certagent_error *err);

int certagent_unlock(certagent_client *c, const char *token_uri, const char *pin,
		     certagent_error *err);

/*
 * A gnutls_privkey_t whose signatures are made by the agent with the identity named by uri.
 * It answers GnuTLS only for the schemes the agent lists for that key.
 */
int certagent_privkey_new(certagent_client *c, const char *identity_uri, gnutls_privkey_t *ret,
			  certagent_error *err);

/*
 * Installs a retrieve function on cred so GnuTLS presents an agent identity when a server asks
 * for a client certificate. identity_uri NULL: choose per handshake, from the identities whose
 * chain an acceptable CA named by the server issued and whose schemes the server accepts
 * (the first such, else none). The full chain (leaf + intermediates) is sent.
 * Uses the user pointer of cred's trust list (gnutls_x509_trust_list_set_ptr); set trust
 * before or after, but do not replace cred's trust list with gnutls_certificate_set_trust_list
 * afterwards. Sets the server name from the session for each Sign (policy, prompts).
 * Fails with -CERTAGENT_E_INVALID_ARGS if that user pointer is already taken (by the
 * application or another client). Calling it again on the same cred changes identity_uri.
 * When no identity fits, no certificate is sent (the server decides) and
 * certagent_client_last_error() says, per identity, why it did not fit.
 */
int certagent_credentials_set(certagent_client *c, gnutls_certificate_credentials_t cred,
			      const char *identity_uri, certagent_error *err);

/*
 * The URI of the identity the retrieve function last presented to a server (NULL if none yet,
 * or if the last server asked for a certificate no identity fits). Valid until the next
 * handshake or until the client is freed.
 */
const char *certagent_client_last_identity(const certagent_client *c);

/* The last error the GnuTLS callbacks met (they can only return a GnuTLS code), or NULL. */
const certagent_error *certagent_client_last_error(const certagent_client *c);

/* --- Since 0.2 (version node CERTAGENT_0.2) ------------------------------------------------ */

/*
 * Observing a handshake. Tools that explain what happened (`certagent connect --explain`)
 * register an observer; the library calls it from inside its GnuTLS callbacks, on the thread
 * running the handshake, and never otherwise. Everything an event points to is valid only
 * during the call: copy what you keep. An observer must not call back into the client.
 */
typedef int32_t certagent_event_kind;
enum {
	/* The server asked for a client certificate. ca_names: the DER distinguished names of
	 * the CAs it accepts (may be none); sign_algos: the signature algorithms it accepts. */
	CERTAGENT_EVENT_REQUEST = 1,
	/* An identity was chosen. identity: the one sent; reason: why this one. */
	CERTAGENT_EVENT_CHOSEN = 2,
	/* No identity fits: no certificate is sent. reason: why each identity did not fit. */
	CERTAGENT_EVENT_NONE_FITS = 3,
	/* A signature is about to be asked of the agent. identity_uri, scheme. */
	CERTAGENT_EVENT_SIGN_START = 4,
	/* The agent answered. identity_uri, scheme, elapsed_us (the D-Bus round trip, token
	 * time included), code (CERTAGENT_OK or the error). */
	CERTAGENT_EVENT_SIGN_DONE = 5,
};

typedef struct certagent_event {
	/* CERTAGENT_API_VERSION of the library; fields are only ever added at the end. */
	uint32_t version;
	certagent_event_kind kind;
	gnutls_session_t session;	    /* the handshake's session (NULL for keys
					       from certagent_privkey_new) */
	const certagent_identity *identity; /* CHOSEN, else NULL */
	const char *identity_uri;	    /* CHOSEN, SIGN_*, else NULL */
	const char *reason;		    /* CHOSEN, NONE_FITS, else NULL */
	const char *scheme;		    /* SIGN_*: TLS SignatureScheme name */
	uint64_t elapsed_us;		    /* SIGN_DONE */
	certagent_code code;		    /* SIGN_DONE */
	const gnutls_datum_t *ca_names;	    /* REQUEST: DER names */
	size_t n_ca_names;
	const gnutls_sign_algorithm_t *sign_algos; /* REQUEST */
	size_t n_sign_algos;
} certagent_event;

typedef void (*certagent_observer_fn)(const certagent_event *ev, void *userdata);

/* Sets (fn NULL: removes) the observer of c. One per client; a new one replaces the old. */
void certagent_client_set_observer(certagent_client *c, certagent_observer_fn fn, void *userdata);

/* The agent's version (its Version property), malloc'd: free() it. */
int certagent_agent_version(certagent_client *c, char **ret_version, certagent_error *err);

/* Tokens, as the agent sees them (ListTokens). */
typedef struct certagent_token certagent_token;
typedef struct certagent_token_list certagent_token_list;

int certagent_list_tokens(certagent_client *c, certagent_token_list **ret, certagent_error *err);
size_t certagent_token_list_count(const certagent_token_list *l);
const certagent_token *certagent_token_list_get(const certagent_token_list *l, size_t i);
void certagent_token_list_free(certagent_token_list *l);

const char *certagent_token_uri(const certagent_token *t);
const char *certagent_token_label(const certagent_token *t);
const char *certagent_token_serial(const certagent_token *t);
const char *certagent_token_manufacturer(const certagent_token *t);
const char *certagent_token_model(const certagent_token *t);
const char *certagent_token_module(const certagent_token *t);
uint64_t certagent_token_flags(const certagent_token *t); /* CK_TOKEN_INFO.flags */
int certagent_token_logged_in(const certagent_token *t);

/*
 * Names the TLS server a session connects to: sets its SNI (gnutls_server_name_set) and has the
 * library pass the name to the agent with the signature of this session's next handshake, where
 * per-identity policy (`servers = ...`) and PIN prompts use it. GnuTLS does not let a client read
 * its own SNI back, so without this call the agent is told no server name, and an identity whose
 * policy names servers is refused. Call it before gnutls_handshake(); the name is used by one
 * handshake (it is forgotten once the retrieve function has taken it).
 * name: a DNS name (no IP address: RFC 6066), at most 255 bytes.
 */
int certagent_session_set_server_name(certagent_client *c, gnutls_session_t session,
				      const char *name, certagent_error *err);

/* Logs the agent out of every token (Lock). */
int certagent_lock(certagent_client *c, certagent_error *err);

/*
 * Has the agent read its configuration's [policy] sections and audit keys again,
 * re-initialise its modules and scan every token again (Reload): every login is forgotten.
 */
int certagent_reload(certagent_client *c, certagent_error *err);

/*
 * Has the agent read its configuration's [policy] sections and audit keys again, and nothing
 * else (ReloadPolicy): tokens and logins stay. A file that does not load changes nothing and
 * fails with CERTAGENT_E_INVALID_ARGS naming file:line.
 */
int certagent_reload_policy(certagent_client *c, certagent_error *err);

#ifdef __cplusplus
}
#endif

#endif
