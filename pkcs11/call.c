/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * call: the one thin layer every C_* call of certagent goes through. It checks the function
 * pointer (a missing one is CKR_FUNCTION_NOT_SUPPORTED), logs failures at debug level (never
 * arguments that could hold a PIN), and hosts the one function that maps a CK_RV to a CA_E_*
 * code with a sentence a person can act on. The log hook set with store_set_log() lives here.
 * Calls on an isolated module (Module.isolated) go to its helper process through remote.c;
 * the callers above cannot tell the difference.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <syslog.h>

#include "internal.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static StoreLogFunc log_fn;
static void *log_ud;
static atomic_int log_max_prio = LOG_DEBUG;

void store_set_log(StoreLogFunc fn, void *userdata)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_ud = userdata;
	pthread_mutex_unlock(&log_lock);
}

static void *call_abandoned[CALL_ABANDONED_MAX];
static size_t call_n_abandoned;
static pthread_mutex_t call_abandoned_lock = PTHREAD_MUTEX_INITIALIZER;

void call_abandon(void *p)
{
	pthread_mutex_lock(&call_abandoned_lock);
	if (call_n_abandoned < CALL_ABANDONED_MAX)
		call_abandoned[call_n_abandoned++] = p;
	pthread_mutex_unlock(&call_abandoned_lock);
}

void store_set_log_priority(int max_prio)
{
	atomic_store(&log_max_prio, max_prio);
}

void call_log(int prio, const char *fmt, ...)
{
	StoreLogFunc fn;
	void *ud;
	char msg[512];
	va_list ap;

	/* Not formatted at all when it would be dropped (a debug line per signature). */
	if (prio > atomic_load(&log_max_prio))
		return;
	pthread_mutex_lock(&log_lock);
	fn = log_fn;
	ud = log_ud;
	pthread_mutex_unlock(&log_lock);
	if (!fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn(prio, msg, ud);
}

#define RV(x)                                                                                      \
	{                                                                                          \
		x, #x                                                                              \
	}
static const struct {
	CK_RV rv;
	const char *name;
} rv_names[] = {
	RV(CKR_OK),
	RV(CKR_CANCEL),
	RV(CKR_HOST_MEMORY),
	RV(CKR_SLOT_ID_INVALID),
	RV(CKR_GENERAL_ERROR),
	RV(CKR_FUNCTION_FAILED),
	RV(CKR_ARGUMENTS_BAD),
	RV(CKR_ATTRIBUTE_SENSITIVE),
	RV(CKR_ATTRIBUTE_TYPE_INVALID),
	RV(CKR_DATA_INVALID),
	RV(CKR_DATA_LEN_RANGE),
	RV(CKR_DEVICE_ERROR),
	RV(CKR_DEVICE_MEMORY),
	RV(CKR_DEVICE_REMOVED),
	RV(CKR_FUNCTION_CANCELED),
	RV(CKR_FUNCTION_NOT_SUPPORTED),
	RV(CKR_KEY_HANDLE_INVALID),
	RV(CKR_KEY_SIZE_RANGE),
	RV(CKR_KEY_TYPE_INCONSISTENT),
	RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
	RV(CKR_MECHANISM_INVALID),
	RV(CKR_MECHANISM_PARAM_INVALID),
	RV(CKR_NO_EVENT),
	RV(CKR_OBJECT_HANDLE_INVALID),
	RV(CKR_OPERATION_ACTIVE),
	RV(CKR_OPERATION_NOT_INITIALIZED),
	RV(CKR_PIN_INCORRECT),
	RV(CKR_PIN_INVALID),
	RV(CKR_PIN_LEN_RANGE),
	RV(CKR_PIN_EXPIRED),
	RV(CKR_PIN_LOCKED),
	RV(CKR_SESSION_CLOSED),
	RV(CKR_SESSION_COUNT),
	RV(CKR_SESSION_HANDLE_INVALID),
	RV(CKR_TOKEN_NOT_PRESENT),
	RV(CKR_TOKEN_NOT_RECOGNIZED),
	RV(CKR_USER_ALREADY_LOGGED_IN),
	RV(CKR_USER_NOT_LOGGED_IN),
	RV(CKR_USER_PIN_NOT_INITIALIZED),
	RV(CKR_USER_TYPE_INVALID),
	RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	RV(CKR_BUFFER_TOO_SMALL),
	RV(CKR_CRYPTOKI_NOT_INITIALIZED),
	RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
};
#undef RV

const char *call_rv_name(CK_RV rv, char buf[static 32])
{
	for (size_t i = 0; i < ELEMENTSOF(rv_names); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	snprintf(buf, 32, "CKR_0x%08lx", (unsigned long)rv);
	return buf;
}

/*
 * The one mapping from CK_RV to our codes. `what` names the operation ("C_Sign").
 * Returns -ENOMEM, CA_E_PIN_INCORRECT, CA_E_PIN_LOCKED, CA_E_PIN_REQUIRED, CA_E_TOKEN_ABSENT,
 * CA_E_UNSUPPORTED_SCHEME, CA_E_INVALID_ARGS, CA_E_KEY_NOT_FOUND or CA_E_FAILED.
 */
int call_error(CK_RV rv, const Token *t, const char *what, CaError *err)
{
	const char *label = t && t->label ? t->label : "?";
	const char *uri = t && t->short_uri ? t->short_uri : "pkcs11:";
	char buf[32];

	switch (rv) {
	case CKR_OK:
		return 0;
	case CKR_HOST_MEMORY:
		return ca_error_set(err, -ENOMEM, "out of memory in %s", what);
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		return ca_error_set(err, CA_E_PIN_INCORRECT,
				    "wrong PIN for token \"%s\" (%s; certagent does not retry it): "
				    "check the PIN and run `certagent unlock '%s'`",
				    label, call_rv_name(rv, buf), uri);
	case CKR_PIN_LOCKED:
		return ca_error_set(
			err, CA_E_PIN_LOCKED,
			"token \"%s\" is locked (PIN blocked after too many tries): "
			"reset the user PIN with the SO PIN: `certagent token unblock-pin "
			"'%s'`",
			label, uri);
	case CKR_PIN_EXPIRED:
		return ca_error_set(
			err, CA_E_PIN_LOCKED,
			"the PIN of token \"%s\" has expired: change it with the token's "
			"tools (e.g. `pkcs11-tool --change-pin`)",
			label);
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_USER_PIN_NOT_INITIALIZED:
		return ca_error_set(err, CA_E_PIN_REQUIRED,
				    "token \"%s\" needs a PIN: run `certagent unlock '%s'`", label,
				    uri);
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SLOT_ID_INVALID:
		return ca_error_set(err, CA_E_TOKEN_ABSENT,
				    "token \"%s\" is not present (%s in %s): insert it again; its "
				    "keys come back by themselves and the PIN is asked again",
				    label, call_rv_name(rv, buf), what);
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_KEY_SIZE_RANGE:
		return ca_error_set(
			err, CA_E_UNSUPPORTED_SCHEME,
			"token \"%s\" cannot do this signature with this key (%s in %s): "
			"use one of the schemes `certagent list` shows for it",
			label, call_rv_name(rv, buf), what);
	case CKR_DATA_INVALID:
	case CKR_DATA_LEN_RANGE:
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "token \"%s\" rejected the data to sign (%s in %s)", label,
				    call_rv_name(rv, buf), what);
	case CKR_DEVICE_MEMORY:
		return ca_error_set(err, CA_E_FAILED,
				    "token \"%s\" is full (%s in %s): delete objects it no longer "
				    "needs (`certagent delete`) or use another token",
				    label, call_rv_name(rv, buf), what);
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
		return ca_error_set(err, CA_E_KEY_NOT_FOUND,
				    "the key is no longer on token \"%s\" (%s in %s): run "
				    "`certagent reload` and `certagent list`",
				    label, call_rv_name(rv, buf), what);
	default:
		return ca_error_set(err, CA_E_FAILED, "token \"%s\": %s failed: %s (%s)", label,
				    what, call_rv_name(rv, buf), p11_kit_strerror(rv));
	}
}

static CK_RV done(const Module *m, const char *fn, CK_RV rv)
{
	char buf[32];

	if (rv != CKR_OK)
		call_log(LOG_DEBUG, "%s: %s -> %s", m ? m->name : "?", fn, call_rv_name(rv, buf));
	return rv;
}

/* Calls fl->fn(args) when the module has it; CKR_FUNCTION_NOT_SUPPORTED otherwise. */
#define CALL(m, fn, ...)                                                                           \
	done((m), #fn,                                                                             \
	     ((m) && (m)->fl && (m)->fl->fn) ? (m)->fl->fn(__VA_ARGS__)                            \
					     : CKR_FUNCTION_NOT_SUPPORTED)

CK_RV call_module_initialize(Module *m)
{
	if (m->isolated) {
		call_log(LOG_DEBUG, "%s: starting a helper process for %s", m->name, m->path);
		return done(m, "C_Initialize", remote_start(m));
	}
	/* p11-kit initialises the module with CKF_OS_LOCKING_OK and its own mutex callbacks, which
	 * is what SoftHSM needs to be thread safe. */
	call_log(LOG_DEBUG, "%s: initialising %s", m->name, m->path);
	return done(m, "C_Initialize", p11_kit_module_initialize(m->fl));
}

CK_RV call_module_finalize(Module *m)
{
	call_log(LOG_DEBUG, "%s: finalising", m->name);
	if (m->isolated) {
		remote_stop(m);
		return CKR_OK;
	}
	return done(m, "C_Finalize", p11_kit_module_finalize(m->fl));
}

CK_RV call_get_info(Module *m, CK_INFO *ret)
{
	if (m->isolated)
		return done(m, "C_GetInfo", remote_get_info(m, ret));
	return CALL(m, C_GetInfo, ret);
}

CK_RV call_get_slot_list(Module *m, CK_SLOT_ID **ret, size_t *ret_n)
{
	if (m->isolated)
		return done(m, "C_GetSlotList", remote_get_slot_list(m, ret, ret_n));
	for (int attempt = 0; attempt < 4; attempt++) {
		_cleanup_free_ CK_SLOT_ID *slots = NULL;
		CK_ULONG n = 0;
		CK_RV rv = CALL(m, C_GetSlotList, CK_TRUE, NULL, &n);

		if (rv != CKR_OK)
			return rv;
		if (n > CALL_SLOTS_MAX)
			return CKR_GENERAL_ERROR;
		slots = calloc(n ? n : 1, sizeof(*slots));
		if (!slots)
			return CKR_HOST_MEMORY;
		rv = CALL(m, C_GetSlotList, CK_TRUE, slots, &n);
		if (rv == CKR_BUFFER_TOO_SMALL)
			continue;
		if (rv != CKR_OK)
			return rv;
		*ret = TAKE_PTR(slots);
		*ret_n = n;
		return CKR_OK;
	}
	return CKR_BUFFER_TOO_SMALL;
}

CK_RV call_get_token_info(Module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *ret)
{
	if (m->isolated)
		return done(m, "C_GetTokenInfo", remote_get_token_info(m, slot, ret));
	return CALL(m, C_GetTokenInfo, slot, ret);
}

CK_RV call_get_mechanism_list(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **ret, size_t *ret_n)
{
	_cleanup_free_ CK_MECHANISM_TYPE *list = NULL;
	CK_ULONG n = 0;
	CK_RV rv;

	if (m->isolated)
		return done(m, "C_GetMechanismList",
			    remote_get_mechanism_list(m, slot, ret, ret_n));
	rv = CALL(m, C_GetMechanismList, slot, NULL, &n);
	if (rv != CKR_OK)
		return rv;
	if (n > CALL_MECHS_MAX)
		return CKR_GENERAL_ERROR;
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list)
		return CKR_HOST_MEMORY;
	rv = CALL(m, C_GetMechanismList, slot, list, &n);
	if (rv != CKR_OK)
		return rv;
	*ret = TAKE_PTR(list);
	*ret_n = n;
	return CKR_OK;
}

CK_RV call_get_mechanism_info(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
			      CK_MECHANISM_INFO *ret)
{
	if (m->isolated)
		return done(m, "C_GetMechanismInfo", remote_get_mechanism_info(m, slot, type, ret));
	return CALL(m, C_GetMechanismInfo, slot, type, ret);
}

CK_RV call_open_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret)
{
	if (m->isolated)
		return done(m, "C_OpenSession", remote_open_session(m, slot, ret));
	return CALL(m, C_OpenSession, slot, CKF_SERIAL_SESSION, NULL, NULL, ret);
}

CK_RV call_close_session(Module *m, CK_SESSION_HANDLE h)
{
	if (m->isolated)
		return done(m, "C_CloseSession", remote_close_session(m, h));
	return CALL(m, C_CloseSession, h);
}

CK_RV call_get_session_info(Module *m, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret)
{
	if (m->isolated)
		return done(m, "C_GetSessionInfo", remote_get_session_info(m, h, ret));
	return CALL(m, C_GetSessionInfo, h, ret);
}

CK_RV call_login(Module *m, CK_SESSION_HANDLE h, CK_USER_TYPE user, const char *pin, size_t pin_len)
{
	/* The PIN never reaches a log line. */
	call_log(LOG_DEBUG, "%s: C_Login (user type %lu)", m->name, (unsigned long)user);
	if (m->isolated)
		return done(m, "C_Login", remote_login(m, h, user, pin, pin_len));
	return CALL(m, C_Login, h, user, (CK_UTF8CHAR *)pin, pin_len);
}

CK_RV call_logout(Module *m, CK_SESSION_HANDLE h)
{
	if (m->isolated)
		return done(m, "C_Logout", remote_logout(m, h));
	return CALL(m, C_Logout, h);
}

CK_RV call_find_objects(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
	_cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
	size_t n_objs = 0, alloc = 0;
	CK_RV rv, rv2;

	if (m->isolated)
		return done(m, "C_FindObjects", remote_find_objects(m, h, tmpl, n, ret, ret_n));
	rv = CALL(m, C_FindObjectsInit, h, tmpl, n);
	if (rv != CKR_OK)
		return rv;
	for (;;) {
		CK_ULONG got = 0;

		if (n_objs + 64 > alloc) {
			CK_OBJECT_HANDLE *p;

			alloc = alloc ? alloc * 2 : 64;
			p = reallocarray(objs, alloc, sizeof(*objs));
			if (!p) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			objs = p;
		}
		rv = CALL(m, C_FindObjects, h, objs + n_objs, 64, &got);
		if (rv != CKR_OK || got == 0)
			break;
		n_objs += got;
		if (n_objs >= CALL_FIND_MAX)
			break;
	}
	rv2 = CALL(m, C_FindObjectsFinal, h);
	if (rv == CKR_OK)
		rv = rv2;
	if (rv != CKR_OK)
		return rv;
	*ret = TAKE_PTR(objs);
	*ret_n = n_objs;
	return CKR_OK;
}

CK_RV call_get_attribute(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
			 uint8_t **ret, size_t *ret_len)
{
	CK_ATTRIBUTE a = {type, NULL, 0};
	_cleanup_free_ uint8_t *buf = NULL;
	CK_RV rv;

	if (m->isolated)
		return done(m, "C_GetAttributeValue",
			    remote_get_attribute(m, h, o, type, ret, ret_len));
	rv = CALL(m, C_GetAttributeValue, h, o, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	if (a.ulValueLen > CALL_ATTR_MAX)
		return CKR_GENERAL_ERROR;
	buf = malloc(a.ulValueLen + 1); /* +1: labels are used as strings */
	if (!buf)
		return CKR_HOST_MEMORY;
	a.pValue = buf;
	rv = CALL(m, C_GetAttributeValue, h, o, &a, 1);
	if (rv != CKR_OK)
		return rv;
	buf[a.ulValueLen] = 0;
	*ret = TAKE_PTR(buf);
	*ret_len = a.ulValueLen;
	return CKR_OK;
}

CK_RV call_get_ulong(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
		     CK_ULONG *ret)
{
	CK_ULONG v = 0;
	CK_ATTRIBUTE a = {type, &v, sizeof(v)};
	CK_RV rv;

	if (m->isolated)
		return done(m, "C_GetAttributeValue", remote_get_ulong(m, h, o, type, ret));
	rv = CALL(m, C_GetAttributeValue, h, o, &a, 1);
	if (rv == CKR_OK)
		*ret = v;
	return rv;
}

CK_RV call_sign_init(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key)
{
	if (m->isolated)
		return done(m, "C_SignInit", remote_sign_init(m, h, mech, key));
	return CALL(m, C_SignInit, h, mech, key);
}

CK_RV call_sign(Module *m, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, uint8_t *sig,
		CK_ULONG *sig_len)
{
	if (m->isolated)
		return done(m, "C_Sign", remote_sign(m, h, data, len, sig, sig_len));
	return CALL(m, C_Sign, h, (CK_BYTE *)data, len, sig, sig_len);
}

/*
 * C_SignInit then C_Sign into sig (*sig_len: its size in, the signature's length out): one
 * request for an isolated module, two plain calls otherwise. *ret_signing tells whether
 * C_SignInit succeeded: then the operation may still be active after a failed C_Sign
 * (CKR_BUFFER_TOO_SMALL: call_sign() again with a buffer of the length put in *sig_len).
 * Not for CKA_ALWAYS_AUTHENTICATE keys, which need a login between the two.
 */
CK_RV call_sign_once(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		     const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		     bool *ret_signing)
{
	CK_RV rv;

	*ret_signing = false;
	if (m->isolated) {
		rv = remote_sign_once(m, h, mech, key, data, len, sig, sig_len, ret_signing);
		return done(m, *ret_signing ? "C_Sign" : "C_SignInit", rv);
	}
	rv = CALL(m, C_SignInit, h, mech, key);
	if (rv != CKR_OK)
		return rv;
	*ret_signing = true;
	return CALL(m, C_Sign, h, (CK_BYTE *)data, len, sig, sig_len);
}

CK_RV call_prepare_sign(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, bool *ret_begun)
{
	*ret_begun = false;
	if (!m->isolated || !m->sign_ahead)
		return CKR_FUNCTION_NOT_SUPPORTED;
	return done(m, "PREPARE_SIGN", remote_prepare_sign(m, h, key, ret_begun));
}

/* Blocking unless flags has CKF_DONT_BLOCK; only hotplug.c's slot-event threads block here. */
CK_RV call_wait_for_slot_event(Module *m, CK_FLAGS flags, CK_SLOT_ID *ret)
{
	CK_RV rv = (m && m->isolated) ? remote_wait_for_slot_event(m, flags, ret)
		   : (m && m->fl && m->fl->C_WaitForSlotEvent)
			   ? m->fl->C_WaitForSlotEvent(flags, ret, NULL)
			   : CKR_FUNCTION_NOT_SUPPORTED;

	/* CKR_NO_EVENT is the normal answer to a CKF_DONT_BLOCK probe: not worth a line. */
	return rv == CKR_NO_EVENT ? rv : done(m, "C_WaitForSlotEvent", rv);
}

/* In-process only (an isolated module has no function list: CKR_FUNCTION_NOT_SUPPORTED). */
CK_RV call_copy_key(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE *ret)
{
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};

	return CALL(m, C_CopyObject, h, key, tmpl, ELEMENTSOF(tmpl), ret);
}

/*
 * --- Administration (pkcs11/admin.c, admin-object.c) ---
 * Read-write sessions, token and PIN set-up, objects. Only the CLI administers tokens, and it loads
 * modules in-process (a short-lived process the user runs on purpose): on an isolated module these
 * are CKR_FUNCTION_NOT_SUPPORTED, as the CALL macro answers for a module without function list.
 */

CK_RV call_get_slot_info(Module *m, CK_SLOT_ID slot, CK_SLOT_INFO *ret)
{
	if (m->isolated)
		return done(m, "C_GetSlotInfo", remote_get_slot_info(m, slot, ret));
	return CALL(m, C_GetSlotInfo, slot, ret);
}

CK_RV call_open_rw_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret)
{
	return CALL(m, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, ret);
}

CK_RV call_init_token(Module *m, CK_SLOT_ID slot, const char *so_pin, size_t so_pin_len,
		      const uint8_t label[static 32])
{
	call_log(LOG_DEBUG, "%s: C_InitToken (slot %lu)", m->name, (unsigned long)slot);
	return CALL(m, C_InitToken, slot, (CK_UTF8CHAR *)so_pin, so_pin_len, (CK_UTF8CHAR *)label);
}

CK_RV call_init_pin(Module *m, CK_SESSION_HANDLE h, const char *pin, size_t pin_len)
{
	return CALL(m, C_InitPIN, h, (CK_UTF8CHAR *)pin, pin_len);
}

CK_RV call_set_pin(Module *m, CK_SESSION_HANDLE h, const char *old_pin, size_t old_len,
		   const char *new_pin, size_t new_len)
{
	return CALL(m, C_SetPIN, h, (CK_UTF8CHAR *)old_pin, old_len, (CK_UTF8CHAR *)new_pin,
		    new_len);
}

CK_RV call_generate_key_pair(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_ATTRIBUTE *pub,
			     size_t n_pub, CK_ATTRIBUTE *priv, size_t n_priv,
			     CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv)
{
	return CALL(m, C_GenerateKeyPair, h, mech, pub, n_pub, priv, n_priv, ret_pub, ret_priv);
}

CK_RV call_create_object(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			 CK_OBJECT_HANDLE *ret)
{
	return CALL(m, C_CreateObject, h, tmpl, n, ret);
}

CK_RV call_destroy_object(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	return CALL(m, C_DestroyObject, h, o);
}

CK_RV call_set_attributes(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *tmpl,
			  size_t n)
{
	return CALL(m, C_SetAttributeValue, h, o, tmpl, n);
}
