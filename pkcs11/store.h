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

typedef struct StoreModuleConfig {
	char *name; /* a name for logs and URIs ("softhsm") */
	char *path; /* absolute path of the module .so */
} StoreModuleConfig;

typedef struct StoreOptions {
	/* Load the modules registered with p11-kit (p11_kit_modules_load_and_initialize). */
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
} StoreOptions;

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
 * Logs in to every token matching token_uri with this PIN (pin_len bytes, not NUL-terminated
 * necessarily). Never retries: a wrong PIN is CA_E_PIN_INCORRECT and the token's counter moved
 * by one. Refuses (CA_E_PIN_LOCKED) when the token says final try or locked.
 * Codes: CA_E_TOKEN_ABSENT (no token matches), CA_E_INVALID_ARGS (bad URI), CA_E_PIN_INCORRECT,
 * CA_E_PIN_LOCKED, CA_E_FAILED.
 */
int store_unlock(Store *s, const char *token_uri, const char *pin, size_t pin_len, CaError *err);

/* Logs out of every token and forgets remembered PINs. */
int store_lock(Store *s);

/* Largest `data` store_sign() accepts (Ed25519 in TLS 1.2 signs the handshake messages). */
#define STORE_SIGN_DATA_MAX (256 * 1024)

/*
 * Log hook for the pkcs11/ layer (process-wide; NULL to silence, the default). prio is a
 * syslog priority (LOG_DEBUG for every failing C_* call, LOG_INFO/LOG_WARNING for events).
 * PINs are never part of a message.
 */
typedef void (*StoreLogFunc)(int prio, const char *msg, void *userdata);
void store_set_log(StoreLogFunc fn, void *userdata);
