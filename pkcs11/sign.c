/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sign: one signature on one pooled session. Chooses the mechanism for the scheme
 * (CKM_RSA_PKCS over the DigestInfo, CKM_RSA_PKCS_PSS with salt = hash length over the bare
 * hash, CKM_ECDSA over the bare hash with r||s turned into DER, CKM_EDDSA over the message),
 * logs in when the token needs it, signs with one call_sign_once() (one request to an
 * isolated module's helper), and reopens the session once when the module says it is
 * gone (CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED). A failure is classified by
 * hotplug_check_error() (a pulled card often shows as CKR_GENERAL_ERROR). Never CKM_RSA_X_509.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <gnutls/crypto.h>

#include "internal.h"
#include "util.h"

#define SIG_INITIAL 1024 /* RSA-8192; C_Sign says how much more when a key is bigger */
#define SIG_MAX (16 * 1024)

static bool pss_params(gnutls_digest_algorithm_t dig, CK_RSA_PKCS_PSS_PARAMS *p)
{
	switch (dig) {
	case GNUTLS_DIG_SHA256:
		*p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 32};
		return true;
	case GNUTLS_DIG_SHA384:
		*p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA384, CKG_MGF1_SHA384, 48};
		return true;
	case GNUTLS_DIG_SHA512:
		*p = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA512, CKG_MGF1_SHA512, 64};
		return true;
	default:
		return false;
	}
}

/* Where the DER INTEGER for the big-endian unsigned v[0..n) starts (leading zeros skipped,
 * one kept) and how long its content is (a 0x00 in front when the high bit is set). */
static size_t der_int(const uint8_t *v, size_t n, size_t *ret_skip)
{
	size_t skip = 0;

	while (skip + 1 < n && v[skip] == 0)
		skip++;
	*ret_skip = skip;
	return n - skip + (v[skip] & 0x80 ? 1 : 0);
}

static uint8_t *der_put_int(uint8_t *p, const uint8_t *v, size_t n)
{
	size_t skip, len = der_int(v, n, &skip);

	*p++ = 0x02;
	*p++ = (uint8_t)len;
	if (len > n - skip)
		*p++ = 0x00;
	memcpy(p, v + skip, n - skip);
	return p + (n - skip);
}

/*
 * r||s (each half the length) to DER ECDSA-Sig-Value, SEQUENCE { INTEGER r, INTEGER s }, as
 * gnutls_encode_rs_value() writes it (tests/pkcs11/test-der.c compares the two): by hand,
 * because libtasn1's encoder cost the agent a fifth of its instructions per signature.
 */
int sign_ecdsa_to_der(const uint8_t *raw, size_t n, uint8_t **ret, size_t *ret_len)
{
	size_t half = n / 2, skip, body, head;
	uint8_t *out, *p;

	/* Up to 124 bytes a half (P-521 has 66): each INTEGER's content is at most 125 bytes, the
	 * SEQUENCE's at most 254, so every length fits in one byte. */
	if (n == 0 || n % 2 != 0 || half > 124)
		return -EINVAL;
	body = 2 + der_int(raw, half, &skip) + 2 + der_int(raw + half, half, &skip);
	head = body < 0x80 ? 2 : 3;
	out = malloc(head + body);
	if (!out)
		return -ENOMEM;
	p = out;
	*p++ = 0x30;
	if (head == 3)
		*p++ = 0x81;
	*p++ = (uint8_t)body;
	p = der_put_int(p, raw, half);
	p = der_put_int(p, raw + half, half);
	*ret = out;
	*ret_len = (size_t)(p - out);
	return 0;
}

/*
 * Copies of keys (key-copy.h), for a module in the agent's own process (isolation = none)
 * with sign-ahead, as a helper signs on them: a signature runs C_SignInit on a session copy of
 * the key, which SoftHSM sets up without reading the token's files. One made right after a
 * signature on the key itself, in a session of the token's own (never a pooled one); a
 * signature on a copy that does not begin is made on the key at once.
 */
bool sign_copies(const Token *t)
{
	return !t->module->isolated && t->module->sign_ahead;
}

typedef struct SignOp {
	Store *s;
	Token *t;
	const Identity *id;
	const CaScheme *scheme;
	const uint8_t *data;
	size_t len;
	const char *pin; /* store_sign_pin(): for this signature only; NULL otherwise */
	size_t pin_len;
	StoreSignInfo info;
	CK_RV rv;      /* last failing CK_RV, for the reopen-once decision */
	bool poisoned; /* an operation may still be active on the session: close it */
} SignOp;

static bool rv_key_gone(CK_RV rv)
{
	return rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
}

/* The key of op->id by its ID (after a login its handle may have changed: SoftHSM's do). */
static int sign_find_key(SignOp *op, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *key, bool *always,
			 CaError *err)
{
	int r = object_find_private_key(op->t, h, op->id, key, always, &op->rv, err);

	if (r != 0)
		return r;
	__atomic_store_n((bool *)&op->id->always_authenticate, *always, __ATOMIC_RELAXED);
	__atomic_store_n((CK_OBJECT_HANDLE *)&op->id->key, *key, __ATOMIC_RELAXED);
	return 0;
}

/*
 * One signature on session h. The login state is taken from login_cached() when it can be
 * (no C_GetSessionInfo per signature): a C_SignInit that then says the user is not logged in,
 * or does not know the key, sends us through login_ensure() and tries once more. C_SignInit
 * and C_Sign go as one call_sign_once() (one request to an isolated module), except for a
 * CKA_ALWAYS_AUTHENTICATE key, which needs its context-specific login between the two.
 */
static int sign_once(SignOp *op, CK_SESSION_HANDLE h, uint8_t **ret_sig, size_t *ret_len,
		     CaError *err)
{
	Token *t = op->t;
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_MECHANISM mech = {0, NULL, 0};
	/* The identity is shared by concurrent signers: its key handle is a cache, atomic. */
	CK_OBJECT_HANDLE cached = __atomic_load_n(&op->id->key, __ATOMIC_RELAXED);
	CK_OBJECT_HANDLE key = cached, copy = 0;
	bool always = __atomic_load_n(&op->id->always_authenticate, __ATOMIC_RELAXED);
	bool trusted, refound = false, signing = false, copies = sign_copies(t);
	uint8_t *sig = NULL;
	CK_ULONG sig_len = SIG_INITIAL;
	size_t sig_alloc = SIG_INITIAL;
	uint64_t t0;
	int r = 0;

	op->rv = CKR_OK;
	op->poisoned = false;
	trusted = login_cached(op->s, t);
	if (!trusted) {
		r = login_ensure(op->s, t, h, op->pin, op->pin_len, &op->rv, err);
		if (r != 0)
			return r;
	}
	if (key == CK_INVALID_HANDLE) {
		r = sign_find_key(op, h, &key, &always, err);
		if (r != 0)
			return r;
	}
	switch (op->scheme->kind) {
	case CA_SIG_RSA_PKCS1:
		mech.mechanism = CKM_RSA_PKCS;
		snprintf(op->info.mechanism, sizeof(op->info.mechanism), "CKM_RSA_PKCS");
		break;
	case CA_SIG_RSA_PSS:
		if (!pss_params(op->scheme->digest, &pss))
			return ca_error_set(err, CA_E_UNSUPPORTED_SCHEME,
					    "no PSS parameters for %s", op->scheme->name);
		mech = (CK_MECHANISM){CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
		snprintf(op->info.mechanism, sizeof(op->info.mechanism), "CKM_RSA_PKCS_PSS");
		break;
	case CA_SIG_ECDSA:
		mech.mechanism = CKM_ECDSA;
		snprintf(op->info.mechanism, sizeof(op->info.mechanism), "CKM_ECDSA");
		break;
	case CA_SIG_EDDSA:
		mech.mechanism = CKM_EDDSA; /* NULL parameters: pure Ed25519 */
		snprintf(op->info.mechanism, sizeof(op->info.mechanism), "CKM_EDDSA");
		break;
	}

	if (always && !op->pin) {
		/* The context-specific login below may send the remembered PIN: a suspect
		 * token is checked now, while the session has no operation active. */
		r = login_verify(t, h, err);
		if (r != 0)
			return r;
	}
	sig = malloc(sig_alloc);
	if (!sig)
		return -ENOMEM;
	for (;;) {
		t0 = ca_now_usec();
		sig_len = sig_alloc;
		copy = copies && !always ? key_copy_take(&t->copies, key) : 0;
		if (always) {
			op->rv = call_sign_init(t->module, h, &mech, key);
			signing = op->rv == CKR_OK;
		} else
			op->rv = call_sign_once(t->module, h, &mech, copy ? copy : key, op->data,
						op->len, sig, &sig_len, &signing);
		if (copy) {
			key_copy_put(&t->copies, key, copy, signing);
			if (!signing)
				continue; /* the copy is gone or refused: the key itself */
		}
		if (signing)
			break;
		if (trusted && (op->rv == CKR_USER_NOT_LOGGED_IN || rv_key_gone(op->rv))) {
			/* The login we remembered is gone (or hid the key): ask the token. */
			trusted = false;
			login_distrust(t);
			r = login_ensure(op->s, t, h, op->pin, op->pin_len, &op->rv, err);
			if (r != 0)
				break;
			continue;
		}
		if (rv_key_gone(op->rv) && key == cached && !refound) {
			/* Handles of private objects may change across logout/login (SoftHSM
			 * does): find the key again by its ID. */
			refound = true;
			r = sign_find_key(op, h, &key, &always, err);
			if (r != 0)
				break;
			pthread_mutex_lock(&t->login_lock);
			t->rescan_needed = true;
			pthread_mutex_unlock(&t->login_lock);
			continue;
		}
		r = call_error(op->rv, t, "C_SignInit", err);
		break;
	}
	if (!signing) {
		erase_and_free(sig, sig_alloc);
		return r;
	}
	op->poisoned = true;
	if (always) {
		r = login_context_specific(op->s, t, h, op->pin, op->pin_len, &op->rv, err);
		if (r != 0) {
			erase_and_free(sig, sig_alloc);
			return r;
		}
		op->rv = call_sign(t->module, h, op->data, op->len, sig, &sig_len);
	}
	if (op->rv == CKR_BUFFER_TOO_SMALL && sig_len > SIG_INITIAL && sig_len <= SIG_MAX) {
		uint8_t *bigger = malloc(sig_len);

		if (!bigger) {
			erase_and_free(sig, sig_alloc);
			return -ENOMEM;
		}
		erase_and_free(sig, sig_alloc);
		sig = bigger;
		sig_alloc = sig_len;
		op->rv = call_sign(t->module, h, op->data, op->len, sig, &sig_len);
	}
	op->info.token_usec = ca_now_usec() - t0;
	if (op->rv == CKR_OK && copies && !always && !copy && key_copy_seen(&t->copies, key))
		key_copy_make(&t->copies, key);
	if (op->rv != CKR_OK) {
		erase_and_free(sig, sig_alloc);
		if (op->rv == CKR_USER_NOT_LOGGED_IN)
			login_distrust(t);
		return call_error(op->rv, t, "C_Sign", err);
	}
	op->poisoned = false;

	if (op->scheme->kind == CA_SIG_ECDSA) {
		r = sign_ecdsa_to_der(sig, sig_len, ret_sig, ret_len);
		erase_and_free(sig, sig_alloc);
		if (r < 0)
			return ca_error_set(
				err, CA_E_FAILED,
				"token \"%s\" returned a malformed ECDSA signature (%lu "
				"bytes)",
				t->label, (unsigned long)sig_len);
		return 0;
	}
	*ret_sig = sig;
	*ret_len = sig_len;
	return 0;
}

static bool rv_session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

/*
 * Signs with identity id on token t; the caller holds the store lock shared and has checked
 * the scheme and the input. Codes: see store_sign().
 */
int sign_run(Store *s, Token *t, const Identity *id, const CaScheme *scheme, const uint8_t *data,
	     size_t len, const char *pin, size_t pin_len, uint8_t **ret_sig, size_t *ret_sig_len,
	     StoreSignInfo *ret_info, CaError *err)
{
	SignOp op = {.s = s,
		     .t = t,
		     .id = id,
		     .scheme = scheme,
		     .data = data,
		     .len = len,
		     .pin = pin,
		     .pin_len = pin_len};
	int r = 0;

	snprintf(op.info.token_label, sizeof(op.info.token_label), "%s", t->label);
	for (int attempt = 0; attempt < 2; attempt++) {
		CK_SESSION_HANDLE h;
		uint8_t *sig = NULL;
		size_t sig_len = 0;

		r = session_acquire(t, &h, err);
		if (r != 0)
			return r;
		r = sign_once(&op, h, &sig, &sig_len, err);
		if (r == 0) {
			session_release(t, h);
			login_touch(t);
			*ret_sig = sig;
			*ret_sig_len = sig_len;
			if (ret_info)
				*ret_info = op.info;
			call_log(LOG_DEBUG, "token \"%s\": %s with %s in %llu us", t->label,
				 scheme->name, op.info.mechanism,
				 (unsigned long long)op.info.token_usec);
			return 0;
		}
		if (op.poisoned || rv_session_lost(op.rv))
			session_discard(t, h);
		else
			session_release(t, h);
		if (!rv_session_lost(op.rv))
			break;
		/* The idle sessions died with this one (module reset, token re-inserted): the
		 * remembered PIN goes to it again only once it shows the same serial and keys. */
		session_pool_close(t);
		pthread_mutex_lock(&t->login_lock);
		t->suspect = true;
		pthread_mutex_unlock(&t->login_lock);
		call_log(LOG_INFO, "token \"%s\": session lost (%s), reopening once", t->label,
			 op.rv == CKR_SESSION_CLOSED ? "CKR_SESSION_CLOSED"
						     : "CKR_SESSION_HANDLE_INVALID");
	}
	/* Removed, or a device error on a card that is gone: TokenAbsent (store.c forgets it). */
	return hotplug_check_error(t, op.rv, r, err);
}
