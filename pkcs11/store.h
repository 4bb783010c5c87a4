/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store: everything certagent knows about PKCS#11 — modules, tokens, identities, sessions,
 * logins and signing. The only code in the project that calls C_* functions lives under
 * pkcs11/; this header is its whole interface to the layers above (agent/, cli/, tests).
 *
 * Thread safety: every function may be called from any thread. store_sign() calls run in
 * parallel (one session from a per-token pool each); store_reload() waits for signatures in
 * flight and blocks new ones while it re-initialises the modules.
 *
 * Return values (see common/error.h): 0, a negative errno, or a positive CA_E_* code with a
 * sentence in err (which may be NULL).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "error.h"
#include "scheme.h"

typedef struct Store Store;

typedef struct StorePinSource {
	char *token_uri; /* pkcs11: URI matching the token(s) this PIN is for */
	char *path;      /* file whose first line is the PIN */
} StorePinSource;

/* Where a module's code runs (pkcs11/remote.c). */
typedef enum StoreIsolation {
	STORE_ISOLATION_DEFAULT = 0, /* a module: StoreOptions.isolation; StoreOptions: NONE */
	STORE_ISOLATION_NONE,	     /* loaded into this process */
	STORE_ISOLATION_PROCESS,     /* in its own certagent-pkcs11-helper process */
} StoreIsolation;

typedef struct StoreModuleConfig {
	char *name; /* a name for logs and URIs ("softhsm") */
	char *path; /* absolute path of the module .so */
	StoreIsolation isolation; /* DEFAULT: StoreOptions.isolation */
} StoreModuleConfig;

typedef struct StoreOptions {
	/* Serve the modules registered with p11-kit: with isolation PROCESS each in its own
	 * helper, after a short-lived helper listed them (pkcs11/helper-list.c), so none is ever
	 * mapped here; with NONE loaded here by p11-kit. */
	bool load_registered;
	/* When not NULL: keep only registered modules whose p11-kit name is listed. NULL-ended. */
	char **registered_allow;
	/* Extra modules named in the configuration, by absolute path. */
	StoreModuleConfig *modules;
	size_t n_modules;
	/* PIN sources: files read when a token needs a login and no Unlock PIN is known. */
	StorePinSource *pin_sources;
	size_t n_pin_sources;
	/* Sessions kept open per token for concurrent signatures (0: a default of 4). */
	unsigned sessions_per_token;
	/*
	 * A layer above asks the user for PINs (the agent's pinentry). When a login needs a PIN
	 * that is neither remembered (store_unlock) nor in a pin source, or a pinpad (so the user
	 * can be told to use the keypad), store_sign() returns CA_E_PIN_REQUIRED at once; the
	 * caller asks store_pin_request() what to prompt for, then calls store_unlock() or
	 * store_sign_pin(). Keys with CKA_ALWAYS_AUTHENTICATE then never reuse a remembered PIN:
	 * each signature needs store_sign_pin().
	 */
	bool prompting;
	/* Log out of a token after this long without a signature (0: never); see
	 * store_expire_logins(). */
	uint64_t login_idle_usec;
	/* Isolation of registered modules and of configured ones that do not set their own
	 * (DEFAULT here means NONE, in-process; certagentd's own default is PROCESS, see
	 * agent/settings.c). A helper that crashes or exceeds the timeout is killed:
	 * its tokens are TokenAbsent until it is restarted (with backoff) and scanned again, and
	 * need a new login. */
	StoreIsolation isolation;
	/* Per-call timeout for isolated modules in ms (0: STORE_MODULE_TIMEOUT_DEFAULT_MS);
	 * C_Login gets STORE_LOGIN_TIMEOUT_FACTOR times as long (PIN pads wait for a person). */
	unsigned module_timeout_ms;
	/* Isolated modules: microseconds a helper's lane thread polls for the next request after
	 * answering a quick caller, while no other lane is busy (0: never; helper-main.c). */
	unsigned busy_poll_usec;
	/* Isolated modules: the helper begins the next signature of a key that signs often
	 * (C_SignInit ahead of the request; pkcs11/helper-prime.h). */
	bool sign_ahead;
} StoreOptions;

#define STORE_MODULE_TIMEOUT_DEFAULT_MS 30000u
#define STORE_LOGIN_TIMEOUT_FACTOR 4u

/* Loads and initialises modules (CKF_OS_LOCKING_OK) and scans tokens. */
int store_new(const StoreOptions *opts, Store **ret, CaError *err);
Store *store_free(Store *s);

/*
 * Finalises and re-initialises every module and scans again, so tokens created since (SoftHSM)
 * appear. Logins are forgotten. Returns whether the identity list changed in *ret_changed.
 */
int store_reload(Store *s, bool *ret_changed, CaError *err);

typedef struct StoreToken {
	char *uri;          /* pkcs11:model=...;manufacturer=...;serial=...;token=... */
	char *label;
	char *serial;
	char *manufacturer;
	char *model;
	char *module;       /* module name (p11-kit name or configured name) */
	char *module_path;
	unsigned long slot_id;
	unsigned long flags; /* CK_TOKEN_INFO.flags */
	bool logged_in;
	unsigned long free_public_memory;  /* CK_UNAVAILABLE_INFORMATION if unknown */
	unsigned long free_private_memory;
} StoreToken;

typedef struct StoreTokenList {
	StoreToken *items;
	size_t n;
} StoreTokenList;

int store_list_tokens(Store *s, StoreTokenList **ret, CaError *err);
StoreTokenList *store_token_list_free(StoreTokenList *l);

typedef struct StoreIdentity {
	char *uri;         /* pkcs11: URI of the private key: token attributes + id + object + type=private */
	char *label;       /* CKA_LABEL of the key */
	char *token_uri;
	char *token_label;
	char *module;
	CaKeyType key_type;
	unsigned bits;     /* RSA modulus bits; EC curve bits (256/384/521); 255 for Ed25519 */
	const CaScheme **schemes; /* schemes this token can really do for this key */
	size_t n_schemes;
	gnutls_datum_t *certs;    /* DER, leaf first, then intermediates found on the token */
	size_t n_certs;           /* 0 when the key has no certificate (still listed) */
	bool logged_in;
	bool always_authenticate;
} StoreIdentity;

typedef struct StoreIdentityList {
	StoreIdentity *items;
	size_t n;
} StoreIdentityList;

/* A deep copy, safe to use after the store changes. */
int store_list_identities(Store *s, StoreIdentityList **ret, CaError *err);
StoreIdentityList *store_identity_list_free(StoreIdentityList *l);

/* What happened in a signature, for logs and explanations. */
typedef struct StoreSignInfo {
	char token_label[64];
	char mechanism[32]; /* "CKM_ECDSA" */
	uint64_t token_usec; /* time spent in C_SignInit..C_Sign */
} StoreSignInfo;

/*
 * Signs data (see common/scheme.h for what data is per scheme) with the identity named by a
 * pkcs11: URI (as listed; any URI that matches exactly one private key is accepted).
 * Logs in first with a PIN from Unlock or a pin source if the token needs it.
 * Returns the wire signature (ECDSA as DER) in a malloc'd buffer.
 * Codes: CA_E_KEY_NOT_FOUND, CA_E_INVALID_ARGS, CA_E_UNSUPPORTED_SCHEME, CA_E_PIN_REQUIRED,
 * CA_E_PIN_INCORRECT (from a pin source), CA_E_PIN_LOCKED, CA_E_TOKEN_ABSENT, CA_E_FAILED.
 */
int store_sign(Store *s, const char *identity_uri, const CaScheme *scheme, const uint8_t *data,
	       size_t len, uint8_t **ret_sig, size_t *ret_sig_len, StoreSignInfo *ret_info,
	       CaError *err);

/*
 * A signature with the identity named by identity_uri is coming (a client chose it for a
 * handshake): its module's helper begins one ahead when it can (docs/design.md, "Signing
 * ahead"), so that the signature costs one C_Sign. Only for a token logged in, in an isolated
 * module with sign-ahead, and a key that signed before and needs no login per signature;
 * otherwise, and on any error, nothing happens. Signs nothing, asks for no PIN. Returns true
 * when the helper will begin one.
 */
bool store_prepare_sign(Store *s, const char *identity_uri);

/*
 * Logs in to every token matching token_uri with this PIN (pin_len bytes, not NUL-terminated
 * necessarily). Never retries: a wrong PIN is CA_E_PIN_INCORRECT and the token's counter moved
 * by one. Refuses (CA_E_PIN_LOCKED) when the token says final try or locked.
 * Codes: CA_E_TOKEN_ABSENT (no token matches), CA_E_INVALID_ARGS (bad URI), CA_E_PIN_INCORRECT,
 * CA_E_PIN_LOCKED, CA_E_FAILED.
 */
int store_unlock(Store *s, const char *token_uri, const char *pin, size_t pin_len, CaError *err);

/* Logs out of every token and forgets remembered PINs. */
int store_lock(Store *s);

/* ---- Hotplug (pkcs11/hotplug.c) ---- */

typedef enum StoreEventKind {
	STORE_EVENT_TOKEN_ADDED,
	STORE_EVENT_TOKEN_REMOVED,
} StoreEventKind;

typedef struct StoreEvent {
	StoreEventKind kind;
	char *token_uri;
	char *label;
	char *serial;
	/* ADDED only: a token was removed earlier with this label (or serial) but this one is a
	 * different token (other serial, or other public keys): nothing of the old one applies. */
	bool replaced;
} StoreEvent;

typedef struct StoreEventList {
	StoreEvent *items;
	size_t n;
} StoreEventList;

StoreEventList *store_event_list_free(StoreEventList *l);

/*
 * Looks at every slot once (C_GetSlotList(CK_TRUE) + C_GetTokenInfo) and applies what changed:
 * a token that left is forgotten with everything cached about it (sessions, login, PIN, key
 * handles, identities, failed pin sources); a token that arrived is scanned, and checked
 * against the tokens that left (serial, fingerprint of its public keys and certificates).
 * Tokens created after C_Initialize in modules that only list them after re-initialising
 * (SoftHSM) are not seen: store_reload() finds those. *ret is NULL when nothing changed.
 * Codes: -ENOMEM.
 */
int store_poll(Store *s, StoreEventList **ret, CaError *err);

/*
 * Called on the store's watch thread with the changes of one store_poll(); takes ownership
 * of events (free with store_event_list_free).
 */
typedef void (*StoreEventFunc)(StoreEventList *events, void *userdata);

/*
 * Starts watching: a thread runs store_poll() every poll_interval_ms (when a module cannot
 * report slot events) or when woken, and calls fn for each change. Modules whose
 * C_WaitForSlotEvent works (probed with CKF_DONT_BLOCK) get a thread blocked in it that wakes
 * the watch thread. A signature that meets CKR_DEVICE_REMOVED or CKR_TOKEN_NOT_PRESENT marks
 * its token absent and wakes the watch thread too.
 * Codes: -ENOMEM, -EAGAIN (no thread), -EALREADY.
 */
int store_watch(Store *s, unsigned poll_interval_ms, StoreEventFunc fn, void *userdata);

/*
 * Stops watching and joins the threads, waiting up to timeout_ms for a poll that is stuck in
 * a token. Returns false if it is still stuck (then the store must not be freed). Idempotent;
 * store_free() calls it too.
 */
bool store_unwatch(Store *s, unsigned timeout_ms);

/* ---- Prompting (StoreOptions.prompting) ---- */

/* What a PIN prompt for a token needs to know, fresh from the token. */
typedef struct StorePinRequest {
	char *token_uri;	   /* full token URI: what store_unlock() gets, and a key to share
				    * one prompt between the signatures waiting for it */
	char *token_label;
	char *token_serial;
	unsigned long token_flags; /* CK_TOKEN_INFO.flags now (PIN counters) */
	bool logged_in;		   /* no login prompt needed (per_signature may still be) */
	bool pinpad;		   /* CKF_PROTECTED_AUTHENTICATION_PATH: nothing to type here */
	bool per_signature;	   /* the identity has CKA_ALWAYS_AUTHENTICATE */
	bool few_tries;		   /* CKF_USER_PIN_COUNT_LOW: a wrong PIN came before */
} StorePinRequest;

/*
 * What to prompt for before store_unlock(uri) (is_identity false: a token URI that must
 * match exactly one token) or before signing with the identity uri (is_identity true).
 * Refuses when a try would be unwise: the login policy of pkcs11/login.c decides.
 * Codes: CA_E_KEY_NOT_FOUND, CA_E_TOKEN_ABSENT, CA_E_INVALID_ARGS (bad URI, or it matches
 * several tokens), CA_E_PIN_LOCKED (PIN locked, on its final try, or must be changed).
 */
int store_pin_request(Store *s, const char *uri, bool is_identity, StorePinRequest *ret,
		      CaError *err);
void store_pin_request_clear(StorePinRequest *r);

/*
 * store_sign() with a PIN the user just gave for this one signature: used for the
 * context-specific login of a CKA_ALWAYS_AUTHENTICATE key, and for the user login when the
 * token is not logged in (the PIN is not remembered). On a pinpad token pin is ignored (pass
 * ""): it says the user was told to use the keypad. Codes: see store_sign().
 */
int store_sign_pin(Store *s, const char *identity_uri, const CaScheme *scheme,
		   const uint8_t *data, size_t len, const char *pin, size_t pin_len,
		   uint8_t **ret_sig, size_t *ret_sig_len, StoreSignInfo *ret_info, CaError *err);

/*
 * Logs out of every token that is logged in and has not signed for
 * StoreOptions.login_idle_usec, and forgets its PIN. *ret_n (may be NULL) gets how many.
 * Returns 0 (failures to log out are logged; the PIN is forgotten anyway).
 */
int store_expire_logins(Store *s, size_t *ret_n);

/* Largest `data` store_sign() accepts (Ed25519 in TLS 1.2 signs the handshake messages). */
#define STORE_SIGN_DATA_MAX (256 * 1024)

/*
 * Log hook for the pkcs11/ layer (process-wide; NULL to silence, the default). prio is a
 * syslog priority (LOG_DEBUG for every failing C_* call, LOG_INFO/LOG_WARNING for events).
 * PINs are never part of a message.
 */
typedef void (*StoreLogFunc)(int prio, const char *msg, void *userdata);
void store_set_log(StoreLogFunc fn, void *userdata);
/* Messages of a priority above max_prio (a syslog priority; LOG_DEBUG, all, by default) are
 * dropped before they are formatted. */
void store_set_log_priority(int max_prio);
