/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * internal: the data structures shared by the files of pkcs11/ (never by other layers).
 *
 * Ownership: a Store owns its Modules and Tokens; a Token owns its Identities, its session
 * pool and its login state (a PIN from store_unlock, wiped on every path). Tokens and
 * Identities are rebuilt only under the store's rwlock held exclusively; signers hold it
 * shared, so a Token never goes away under a signature. Mutable state inside a Token (pool,
 * login) has its own mutex.
 */
#pragma once

#include <pthread.h>
#include <stdarg.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "key-copy.h"
#include "store.h"

typedef struct Remote Remote;

typedef struct Module {
	char *name;	      /* p11-kit name or configured name */
	char *path;	      /* file name of the module */
	CK_FUNCTION_LIST *fl; /* NULL when isolated */
	CK_INFO info;
	/* Isolated (remote.c): every call goes to a helper process; fl stays NULL. */
	bool isolated;
	unsigned timeout_ms;
	unsigned busy_poll_usec; /* passed to the helper (--busy-poll) */
	bool sign_ahead;	 /* passed to the helper (--sign-ahead) */
	Remote *remote;
	/* hotplug.c: a slot-event thread may still be inside the module (stuck in its
	 * C_WaitForSlotEvent): it is never finalised nor unloaded (module_unload_all). */
	bool pinned;
} Module;

/* The signing mechanisms we care about, one bit each in Token.mech. */
typedef enum MechKind {
	MECH_RSA_PKCS,
	MECH_RSA_PSS,
	MECH_ECDSA,
	MECH_EDDSA,
	_MECH_MAX,
} MechKind;

typedef struct Identity {
	char *uri;
	char *label;
	uint8_t *id;
	size_t id_len;
	CaKeyType key_type;
	unsigned bits;
	const CaScheme **schemes;
	size_t n_schemes;
	gnutls_datum_t *certs; /* gnutls_malloc'd data */
	size_t n_certs;
	/* CK_INVALID_HANDLE when the private key was not visible (token not logged in): the
	 * identity was inferred from a public key or certificate and the key is found by
	 * CKA_ID at signing time. */
	CK_OBJECT_HANDLE key;
	bool always_authenticate;
} Identity;

typedef struct Token {
	Module *module;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO info;
	char *label, *serial, *manufacturer, *model;
	char *uri;	 /* full token URI */
	char *short_uri; /* pkcs11:token=<label>, for messages a person types */
	bool mech[_MECH_MAX];

	Identity *ids;
	size_t n_ids;

	/* Session pool, under pool_lock. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	CK_SESSION_HANDLE *idle;
	size_t n_idle;
	unsigned n_open, cap;

	/* Login state, under login_lock. */
	pthread_mutex_t login_lock;
	char *pin; /* from store_unlock, NUL-terminated, wiped when forgotten */
	size_t pin_len;
	bool pin_source_failed; /* a pin-source PIN failed: not tried again until reload */
	bool rescan_needed;	/* logged in since the last scan: private keys became visible */
	uint64_t last_used;	/* CLOCK_MONOTONIC usec of the last login or signature; 0 when
				 * not logged in by us (for login_idle_usec) */
	bool logged_in; /* we logged in (or saw the token logged in) and nothing said otherwise
			 * since: signatures skip C_GetSessionInfo (login_cached()) */
	bool suspect;	/* a device error or a lost session left the token's state unknown: no
			 * automatic login before hotplug_verify() says it is the same token */

	/* Copies of its keys to sign with (sign.c, key-copy.h), for an in-process module with
	 * sign-ahead. */
	KeyCopies copies;

	/* Hotplug (hotplug.c). gone: a call met CKR_DEVICE_REMOVED/CKR_TOKEN_NOT_PRESENT; the
	 * token is refused (TokenAbsent) until the next poll drops or rescans it. Atomic. */
	bool gone;
	uint8_t fp[32]; /* digest of the public keys and certificates seen at scan time */
	bool has_fp;
	/* remote_generation() of the module when the token was scanned: a token of an older
	 * helper process is stale (see token_stale()). */
	unsigned module_gen;
} Token;

typedef struct Hotplug Hotplug;

struct Store {
	pthread_rwlock_t lock;
	/* Deep copy of the options, for reloads. */
	bool load_registered;
	char **registered_allow;
	StoreModuleConfig *modules_cfg;
	size_t n_modules_cfg;
	StorePinSource *pin_sources;
	size_t n_pin_sources;
	unsigned sessions_per_token;
	bool prompting;		  /* StoreOptions.prompting */
	uint64_t login_idle_usec; /* StoreOptions.login_idle_usec */
	StoreIsolation isolation; /* StoreOptions.isolation, never DEFAULT */
	unsigned module_timeout_ms;
	unsigned busy_poll_usec; /* StoreOptions.busy_poll_usec */
	bool sign_ahead;	 /* StoreOptions.sign_ahead */

	Module **modules;
	size_t n_modules;
	Token **tokens;
	size_t n_tokens;

	Hotplug *hotplug; /* watch threads and the memory of removed tokens; under lock */
};

/* call.c: the one wrapper layer over C_* functions, logging and the CK_RV mapping. */
void call_log(int prio, const char *fmt, ...) _printf_(2, 3);

/*
 * Keeps p (a Module or a hotplug waiter that a thread stuck in a module still uses) for the
 * rest of the process: never freed, but still referenced, so leak checkers do not report a
 * leak that is deliberate. At most CALL_ABANDONED_MAX are kept; more are simply not freed.
 */
#define CALL_ABANDONED_MAX 64
void call_abandon(void *p);

/* helper-spawn.c: certagent-pkcs11-helper ($CERTAGENT_PKCS11_HELPER, else installed) and how
 * it is started: argv, with fd as its target_fd (stdin and, unless target_fd is 1, stdout on
 * /dev/null). 0 with *ret_pid, or -errno; fd stays the caller's. */
const char *helper_path(void);
int helper_spawn(char *const argv[], int fd, int target_fd, pid_t *ret_pid);
const char *call_rv_name(CK_RV rv, char buf[static 32]);
int call_error(CK_RV rv, const Token *t, const char *what, CaError *err);
CK_RV call_module_initialize(Module *m);
CK_RV call_module_finalize(Module *m);
CK_RV call_get_info(Module *m, CK_INFO *ret);
CK_RV call_get_slot_list(Module *m, CK_SLOT_ID **ret, size_t *ret_n);
CK_RV call_get_token_info(Module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *ret);
CK_RV call_get_mechanism_list(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **ret, size_t *ret_n);
CK_RV call_get_mechanism_info(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
			      CK_MECHANISM_INFO *ret);
CK_RV call_open_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret);
CK_RV call_close_session(Module *m, CK_SESSION_HANDLE h);
CK_RV call_get_session_info(Module *m, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret);
CK_RV call_login(Module *m, CK_SESSION_HANDLE h, CK_USER_TYPE user, const char *pin,
		 size_t pin_len);
CK_RV call_logout(Module *m, CK_SESSION_HANDLE h);
CK_RV call_find_objects(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			CK_OBJECT_HANDLE **ret, size_t *ret_n);
CK_RV call_get_attribute(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
			 uint8_t **ret, size_t *ret_len);
CK_RV call_get_ulong(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
		     CK_ULONG *ret);
CK_RV call_sign_init(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key);
CK_RV call_sign(Module *m, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, uint8_t *sig,
		CK_ULONG *sig_len);
CK_RV call_sign_once(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		     const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		     bool *ret_signing);
/*
 * Tells an isolated module's helper that a signature with key is coming (it begins one ahead
 * when it can: helper-prime.h). *ret_begun: whether it will. CKR_FUNCTION_NOT_SUPPORTED for a
 * module in the agent or one that does not sign ahead.
 */
CK_RV call_prepare_sign(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, bool *ret_begun);
CK_RV call_wait_for_slot_event(Module *m, CK_FLAGS flags, CK_SLOT_ID *ret);
/* For admin.c and admin-object.c only: writing to tokens. */
CK_RV call_get_slot_info(Module *m, CK_SLOT_ID slot, CK_SLOT_INFO *ret);
CK_RV call_open_rw_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret);
CK_RV call_init_token(Module *m, CK_SLOT_ID slot, const char *so_pin, size_t so_pin_len,
		      const uint8_t label[static 32]);
CK_RV call_init_pin(Module *m, CK_SESSION_HANDLE h, const char *pin, size_t pin_len);
CK_RV call_set_pin(Module *m, CK_SESSION_HANDLE h, const char *old_pin, size_t old_len,
		   const char *new_pin, size_t new_len);
CK_RV call_generate_key_pair(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_ATTRIBUTE *pub,
			     size_t n_pub, CK_ATTRIBUTE *priv, size_t n_priv,
			     CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv);
CK_RV call_create_object(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			 CK_OBJECT_HANDLE *ret);
CK_RV call_destroy_object(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o);
/*
 * For helper-prime.c and sign.c, on a module in this process (the helper's, or isolation =
 * none): a session copy of key in h (C_CopyObject with CKA_TOKEN false; every other attribute
 * the key's), destroyed when h closes.
 */
CK_RV call_copy_key(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE *ret);
CK_RV call_set_attributes(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *tmpl,
			  size_t n);

/*
 * remote.c: isolated modules. The agent side of certagent-pkcs11-helper: spawning, the
 * request/reply exchange with a per-call timeout, and restarts. Session handles carry the
 * helper's generation in their high 32 bits, so a handle of a helper that died never reaches
 * its successor. The call_* wrappers dispatch here for Module.isolated.
 */
CK_RV remote_start(Module *m);
void remote_stop(Module *m);
Remote *remote_free(Remote *r);
unsigned remote_generation(const Module *m); /* 0 for modules loaded in-process */
/* Exact reads and writes on the socketpairs, for both ends (helper-main.c too). */
int remote_read_full(int fd, uint8_t *p, size_t n, const struct timespec *deadline);
int remote_read_frame(int fd, const struct timespec *deadline, uint8_t **ret, size_t *ret_len);
int remote_write_full(int fd, const uint8_t *p, size_t n);
CK_RV remote_get_info(Module *m, CK_INFO *ret);
CK_RV remote_get_slot_list(Module *m, CK_SLOT_ID **ret, size_t *ret_n);
CK_RV remote_get_slot_info(Module *m, CK_SLOT_ID slot, CK_SLOT_INFO *ret);
CK_RV remote_get_token_info(Module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *ret);
CK_RV remote_get_mechanism_list(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **ret, size_t *ret_n);
CK_RV remote_get_mechanism_info(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
				CK_MECHANISM_INFO *ret);
CK_RV remote_open_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret);
CK_RV remote_close_session(Module *m, CK_SESSION_HANDLE h);
CK_RV remote_get_session_info(Module *m, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret);
CK_RV remote_login(Module *m, CK_SESSION_HANDLE h, CK_USER_TYPE user, const char *pin,
		   size_t pin_len);
CK_RV remote_logout(Module *m, CK_SESSION_HANDLE h);
CK_RV remote_find_objects(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			  CK_OBJECT_HANDLE **ret, size_t *ret_n);
CK_RV remote_get_attribute(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
			   CK_ATTRIBUTE_TYPE type, uint8_t **ret, size_t *ret_len);
CK_RV remote_get_ulong(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
		       CK_ULONG *ret);
CK_RV remote_sign_init(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key);
CK_RV remote_sign(Module *m, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, uint8_t *sig,
		  CK_ULONG *sig_len);
CK_RV remote_sign_once(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		       const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		       bool *ret_signing);
CK_RV remote_prepare_sign(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, bool *ret_begun);
CK_RV remote_wait_for_slot_event(Module *m, CK_FLAGS flags, CK_SLOT_ID *ret);

/* A token scanned in an earlier life of its module's helper: its sessions, handles and login
 * died with that process. Refused like a removed token; the next poll drops and rescans it. */
static inline bool token_stale(const Token *t)
{
	return t->module->isolated && remote_generation(t->module) != t->module_gen;
}

/* Caps on what a module may hand us (call.c, and remote.c for what a helper sends). */
#define CALL_SLOTS_MAX 1024
#define CALL_MECHS_MAX 4096
#define CALL_FIND_MAX 4096	  /* objects per search: a token with more is broken or hostile */
#define CALL_ATTR_MAX (64 * 1024) /* a certificate bigger than this is not one we can use */
#define CALL_SIG_MAX (16 * 1024)

/* module.c */
int module_load_all(Store *s, CaError *err);
void module_unload_all(Store *s);

/* token.c */
int token_scan_all(Store *s, CaError *err);
void token_free_all(Store *s);
bool token_session_logged_in(Token *t, CK_SESSION_HANDLE h, CK_RV *ret_rv);
int token_add(Store *s, Module *m, CK_SLOT_ID slot, Token **ret);
int token_fill_names(Token *t);
void token_clear_names(Token *t);
void token_remove(Store *s, Token *t);

/* hotplug.c (with the store lock held exclusively unless said otherwise) */
void hotplug_fingerprint(Token *t);
void hotplug_remember(Store *s, Token *t);
bool hotplug_token_seen(Store *s, Token *t);
int hotplug_match_gone(Store *s, P11KitUri *u, CaError *err);	  /* lock held shared is enough */
void hotplug_token_lost(Store *s, Token *t);			  /* lock held shared is enough */
int hotplug_check_error(Token *t, CK_RV rv, int r, CaError *err); /* shared is enough */
int hotplug_verify(Token *t, CK_SESSION_HANDLE h, CaError *err);  /* with t->login_lock */
void hotplug_modules_down(Store *s);
void hotplug_modules_up(Store *s);
void hotplug_free(Store *s);

/* session.c */
int session_acquire(Token *t, CK_SESSION_HANDLE *ret, CaError *err);
/* The same without waiting: -EAGAIN when every session the token may have is in use. */
int session_try_acquire(Token *t, CK_SESSION_HANDLE *ret, CaError *err);
void session_release(Token *t, CK_SESSION_HANDLE h);
void session_discard(Token *t, CK_SESSION_HANDLE h);
void session_pool_close(Token *t);

/* login.c */
int login_ensure(Store *s, Token *t, CK_SESSION_HANDLE h, const char *pin, size_t pin_len,
		 CK_RV *ret_rv, CaError *err);
bool login_cached(Store *s, Token *t);
void login_distrust(Token *t);
int login_context_specific(Store *s, Token *t, CK_SESSION_HANDLE h, const char *pin, size_t pin_len,
			   CK_RV *ret_rv, CaError *err);
int login_check(Token *t, CK_TOKEN_INFO *ret_info, CaError *err);
void login_touch(Token *t);
bool login_expire(Store *s, Token *t);
int login_with_pin(Token *t, CK_SESSION_HANDLE h, const char *pin, size_t pin_len, CaError *err);
int login_verify(Token *t, CK_SESSION_HANDLE h, CaError *err);
void login_forget(Token *t);
int login_logout(Token *t);

/* object.c */
int object_scan_token(Token *t, CaError *err);
void identity_deinit(Identity *id);
int object_find_private_key(Token *t, CK_SESSION_HANDLE h, const Identity *id,
			    CK_OBJECT_HANDLE *ret_key, bool *ret_always_auth, CK_RV *ret_rv,
			    CaError *err);
/* Key material, for admin-object.c too. CKA_EC_PARAMS of the curves we know: the DER OIDs, and the
 * PrintableString older modules name Ed25519 with. */
extern const uint8_t object_oid_p256[10], object_oid_p384[7], object_oid_p521[7],
	object_oid_ed25519[5], object_str_ed25519[14];
gnutls_ecc_curve_t object_curve_from_params(const uint8_t *p, size_t n);
void object_curve_to_type(gnutls_ecc_curve_t c, CaKeyType *type, unsigned *bits);
unsigned object_bits_of(const uint8_t *p, size_t n);
bool object_pubkey_import_ec(gnutls_pubkey_t pub, gnutls_ecc_curve_t curve, const uint8_t *point,
			     size_t n);

/* sign.c */
/* r||s (n bytes, each half n/2) to a DER ECDSA-Sig-Value in *ret (malloc); -EINVAL when n is
 * odd, 0 or over 248. */
int sign_ecdsa_to_der(const uint8_t *raw, size_t n, uint8_t **ret, size_t *ret_len);
int sign_run(Store *s, Token *t, const Identity *id, const CaScheme *scheme, const uint8_t *data,
	     size_t len, const char *pin, size_t pin_len, uint8_t **ret_sig, size_t *ret_sig_len,
	     StoreSignInfo *ret_info, CaError *err);
/* Whether t's signatures may use copies of keys (an in-process module with sign-ahead). */
bool sign_copies(const Token *t);
