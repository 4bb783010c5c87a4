/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * admin: writing to tokens, for the certagent CLI's enrolment commands (tokens, token init,
 * set-pin, unblock-pin, key generate, csr, cert import, enroll, delete, export-cert).
 *
 * An AdminSession is one read-write session on one slot, chosen by a pkcs11: URI or a token
 * label among every slot with a token present (also uninitialised ones, which the Store's
 * token list leaves out). It is for single-threaded tools: do not mix it with concurrent
 * store_sign() calls on the same Store. Every C_* call goes through call.c; every CK_RV is
 * mapped by call_error(). PINs are never kept past the call that uses them (the user PIN given
 * to admin_login goes through login.c, which wipes it with the token).
 *
 * Safety rules enforced here, not left to callers:
 * - generated private keys are CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only (no decrypt,
 *   unwrap or derive), CKA_TOKEN, CKA_PRIVATE; this is checked again after generation and the
 *   pair destroyed if the token did not honour it;
 * - a new key or certificate never reuses an existing label or CKA_ID (CA_E_POLICY_DENIED);
 * - a certificate is never stored twice (CA_E_POLICY_DENIED); nothing is overwritten;
 * - objects whose label starts with ADMIN_TMP_PREFIX belong to an enrolment that did not finish
 *   (see docs/cli-admin.md "Crash safety"); admin_cleanup_orphans() removes them.
 *
 * Return values: 0, a negative errno, or a positive CA_E_* code with a sentence in err.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "store.h"

/* Label prefix of the objects of an unfinished enrolment: "certagent-enroll-tmp-<id hex>". */
#define ADMIN_TMP_PREFIX "certagent-enroll-tmp-"
#define ADMIN_ID_MAX 64     /* longest CKA_ID we accept */
#define ADMIN_LABEL_MAX 128 /* longest CKA_LABEL we write */

/* Object classes, as CKO_* (kept numeric so callers need not include pkcs11.h). */
enum {
	ADMIN_OBJ_CERT = 1,    /* CKO_CERTIFICATE */
	ADMIN_OBJ_PUBLIC = 2,  /* CKO_PUBLIC_KEY */
	ADMIN_OBJ_PRIVATE = 3, /* CKO_PRIVATE_KEY */
	ADMIN_OBJ_SECRET = 4,  /* CKO_SECRET_KEY */
	ADMIN_OBJ_DATA = 0,    /* CKO_DATA */
	ADMIN_OBJ_OTHER = 99,
};

typedef struct AdminSlot {
	char *module;
	char *module_path;
	unsigned long slot_id;
	char *slot_description;
	bool initialized; /* CKF_TOKEN_INITIALIZED */
	char *uri;        /* token URI (for initialised tokens: pkcs11:model=..;token=..) */
	char *label, *serial, *manufacturer, *model;
	unsigned long flags; /* CK_TOKEN_INFO.flags, fresh */
	unsigned long free_public, total_public, free_private, total_private; /* or ~0UL */
	unsigned long min_pin, max_pin;
	size_t n_objects; /* objects visible without login */
	size_t n_orphans; /* of those, left by an unfinished enrolment */
} AdminSlot;

typedef struct AdminSlotList {
	AdminSlot *items;
	size_t n;
} AdminSlotList;

/* Every slot with a token present, in every module of the store. Codes: -ENOMEM. */
int admin_list_slots(Store *s, AdminSlotList **ret, CaError *err);
AdminSlotList *admin_slot_list_free(AdminSlotList *l);

typedef struct AdminSession AdminSession;

/*
 * Opens a read-write session on the one slot `token` names: a pkcs11: URI (token, module and
 * slot attributes are matched; object attributes ignored) or a token label. Uninitialised
 * tokens match only when allow_uninitialized (for token init).
 * Codes: CA_E_TOKEN_ABSENT (none matches), CA_E_INVALID_ARGS (bad URI, several match),
 * CA_E_FAILED.
 */
int admin_session_open(Store *s, const char *token, bool allow_uninitialized, AdminSession **ret,
		       CaError *err);
AdminSession *admin_session_free(AdminSession *a);

const char *admin_session_label(const AdminSession *a);   /* "" when uninitialised */
const char *admin_session_uri(const AdminSession *a);     /* short: pkcs11:token=<label> */
unsigned long admin_session_flags(const AdminSession *a); /* CK_TOKEN_INFO.flags, fresh */
bool admin_session_pinpad(const AdminSession *a);

typedef enum AdminUser {
	ADMIN_USER,
	ADMIN_SO,
} AdminUser;

/*
 * Logs in as the user (through login.c: one try, never when the token says locked or final
 * try) or as the security officer (the same rules with the SO flags). pin is NULL on a pinpad.
 * Codes: CA_E_PIN_INCORRECT, CA_E_PIN_LOCKED, CA_E_TOKEN_ABSENT, CA_E_FAILED.
 */
int admin_login(AdminSession *a, AdminUser who, const char *pin, size_t pin_len, CaError *err);

/*
 * C_InitToken with the SO PIN and label (at most 32 bytes), then, logged in as SO, C_InitPIN
 * with the user PIN. Closes the store's sessions on that slot first (C_InitToken needs none).
 * Codes: CA_E_PIN_INCORRECT (wrong SO PIN on a token already initialised), CA_E_PIN_LOCKED,
 * CA_E_INVALID_ARGS (label too long, PIN length refused), CA_E_FAILED.
 */
int admin_init_token(Store *s, AdminSession *a, const char *so_pin, size_t so_len,
		     const char *label, const char *user_pin, size_t user_len, CaError *err);

/* C_InitPIN; the SO must be logged in. Codes: CA_E_INVALID_ARGS (length), CA_E_FAILED. */
int admin_init_pin(AdminSession *a, const char *pin, size_t pin_len, CaError *err);

/* C_SetPIN for the user, refusing when the token says locked/final try.
 * Codes: CA_E_PIN_INCORRECT, CA_E_PIN_LOCKED, CA_E_INVALID_ARGS, CA_E_FAILED. */
int admin_set_pin(AdminSession *a, const char *old_pin, size_t old_len, const char *new_pin,
		  size_t new_len, CaError *err);

typedef struct AdminObject {
	unsigned long handle;
	int cls; /* ADMIN_OBJ_* */
	char *label;
	uint8_t *id;
	size_t id_len;
	char *uri;          /* pkcs11: URI naming this object (token + id + object + type) */
	CaKeyType key_type; /* keys and certificates */
	unsigned bits;
	bool sensitive, extractable, can_sign, can_decrypt; /* private keys */
	bool is_ca;                   /* certificates: CA category or basicConstraints CA */
	gnutls_datum_t der;           /* certificates: DER (malloc'd) */
	gnutls_datum_t spki;          /* public keys, RSA private keys, certificates: DER SPKI */
} AdminObject;

typedef struct AdminObjectList {
	AdminObject *items;
	size_t n;
} AdminObjectList;

/* Every object visible in the session (log in first to see private keys). Codes: call_error. */
int admin_list_objects(AdminSession *a, AdminObjectList **ret, CaError *err);
AdminObjectList *admin_object_list_free(AdminObjectList *l);

/* Whether a pkcs11: URI's object attributes (class, id, label) select o. */
int admin_uri_matches(const char *uri, const AdminObject *o, bool *ret, CaError *err);

/* "rsa2048" ... "ed25519" -> accepted? */
bool admin_key_type_valid(const char *type);

/*
 * Generates a key pair ON the token (user logged in), private key sign-only and never
 * extractable; label and id (1..ADMIN_ID_MAX bytes) must not exist on the token yet.
 * Returns the private key's URI (malloc'd). Codes: CA_E_POLICY_DENIED (label/id taken, or the
 * token did not honour sensitive/non-extractable), CA_E_INVALID_ARGS (type), CA_E_UNSUPPORTED_SCHEME
 * (token cannot make this key type), CA_E_PIN_REQUIRED, CA_E_FAILED.
 */
/*
 * Refuses (CA_E_POLICY_DENIED, naming the object and the option to change) a label or id (id
 * may be NULL) that an object on the token already has; the caller is logged in.
 */
int admin_check_unused(AdminSession *a, const char *label, const uint8_t *id, size_t id_len,
		       CaError *err);

int admin_generate_key(AdminSession *a, const char *type, const char *label, const uint8_t *id,
		       size_t id_len, char **ret_uri, CaError *err);

/* CKA_CERTIFICATE_CATEGORY of a certificate stored by admin_store_cert(). */
typedef enum AdminCertCategory {
	ADMIN_CERT_USER = 1,	  /* the token user's own: its key is on the token */
	ADMIN_CERT_AUTHORITY = 2, /* a CA of a chain */
	ADMIN_CERT_OTHER = 3,	  /* someone else's (import --no-key): never an identity */
} AdminCertCategory;

/*
 * Stores a certificate (DER) with this label and id (id may be NULL) and category. Refuses a
 * certificate already on the token (CA_E_POLICY_DENIED). Returns its handle. Codes:
 * CA_E_INVALID_ARGS (not a certificate), CA_E_POLICY_DENIED, CA_E_PIN_REQUIRED, CA_E_FAILED.
 */
int admin_store_cert(AdminSession *a, const gnutls_datum_t *der, const char *label,
		     const uint8_t *id, size_t id_len, AdminCertCategory category,
		     unsigned long *ret_handle, CaError *err);

/* Codes: CA_E_KEY_NOT_FOUND (gone), CA_E_PIN_REQUIRED, CA_E_FAILED. */
int admin_destroy(AdminSession *a, unsigned long handle, CaError *err);
int admin_set_label(AdminSession *a, unsigned long handle, const char *label, CaError *err);

/*
 * The enrolment signing path (CSRs): signs with the private key whose CKA_ID is id, in this
 * session. data per common/scheme.h: RSA PKCS#1 a DigestInfo, ECDSA a hash (the result is DER),
 * EdDSA the message. Codes: CA_E_KEY_NOT_FOUND, CA_E_UNSUPPORTED_SCHEME, CA_E_PIN_REQUIRED,
 * CA_E_FAILED.
 */
int admin_sign(AdminSession *a, const uint8_t *id, size_t id_len, CaSigKind kind,
	       const uint8_t *data, size_t len, uint8_t **ret_sig, size_t *ret_len, CaError *err);

/*
 * Removes what unfinished enrolments left (user logged in): every object labelled
 * ADMIN_TMP_PREFIX<hex>, and every object with CKA_ID <hex> whose private key is missing or
 * still carries the temporary label. *ret_n: objects destroyed. Codes: call_error().
 */
int admin_cleanup_orphans(AdminSession *a, size_t *ret_n, CaError *err);
