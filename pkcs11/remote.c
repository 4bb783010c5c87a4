/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * remote: PKCS#11 operations on an isolated module (the call_* wrappers of call.c come here
 * when the module runs in certagent-pkcs11-helper). Each operation builds one request (rpc.h),
 * sends it with remote_call() (remote-link.c: lives, lanes, timeouts) and checks every field
 * of the reply before it is believed: a reply that does not fit is the end of that helper's
 * life. Session handles handed to the store are ours (generation << 32 | a counter), mapped
 * to the helper's here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "internal.h"
#include "remote-internal.h"
#include "rpc.h"

/* A reply field that is missing or out of bounds: the helper is not to be trusted further. */
static CK_RV remote_bad_reply(Module *m)
{
	Remote *r = m->remote;

	remote_fail(r, __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE), "sent a malformed reply");
	return CKR_DEVICE_REMOVED;
}

/*
 * Our handle -> the helper's: CKR_DEVICE_REMOVED for a handle of an earlier life,
 * CKR_SESSION_HANDLE_INVALID for one we do not know (closed). drop: forget it (close).
 */
static CK_RV remote_handle_ex(Module *m, CK_SESSION_HANDLE h, bool drop, uint64_t *ret)
{
	Remote *r = m->remote;
	uint32_t ours = (uint32_t)((uint64_t)h & ((1ull << REMOTE_HANDLE_BITS) - 1));
	CK_RV rv = CKR_SESSION_HANDLE_INVALID;

	if (!r)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&r->lock);
	if ((uint64_t)h >> REMOTE_HANDLE_BITS != r->gen)
		rv = CKR_DEVICE_REMOVED;
	else
		for (size_t i = 0; i < r->n_sessions; i++)
			if (r->sessions[i].ours == ours) {
				*ret = r->sessions[i].real;
				if (drop)
					r->sessions[i] = r->sessions[--r->n_sessions];
				rv = CKR_OK;
				break;
			}
	pthread_mutex_unlock(&r->lock);
	return rv;
}

/*
 * Begins the request op on session h: the helper's handle is its first field. Returns what
 * remote_handle_ex() does; b is built only on CKR_OK.
 */
static CK_RV remote_begin_session(Module *m, CK_SESSION_HANDLE h, bool drop, RpcOp op, RpcBuf *b)
{
	uint64_t rh;
	CK_RV rv = remote_handle_ex(m, h, drop, &rh);

	if (rv != CKR_OK)
		return rv;
	rpc_buf_begin(b, 0, op);
	rpc_put_u64(b, rh);
	return CKR_OK;
}

static unsigned timeout_of(Module *m)
{
	return m->timeout_ms ? m->timeout_ms : STORE_MODULE_TIMEOUT_DEFAULT_MS;
}

/* ---- the operations ---- */

CK_RV remote_get_info(Module *m, CK_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_INFO);
	rv = remote_call(m, &b, RPC_OP_GET_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

/*
 * Slot and mechanism lists, and found objects: sends req and takes a ULONGS reply of at most
 * max elements.
 */
static CK_RV remote_call_list(Module *m, RpcBuf *req, RpcOp op, size_t max, CK_ULONG **ret,
			      size_t *ret_n)
{
	_cleanup_reply_ Reply rep = {0};
	CK_ULONG *v = NULL;
	size_t n = 0;
	CK_RV rv;
	int k;

	rv = remote_call(m, req, op, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	k = rpc_get_ulongs(&rep.msg, 1, &v, &n);
	if (k == -ENOMEM)
		return CKR_HOST_MEMORY;
	if (k < 0 || n > max) {
		free(v);
		return remote_bad_reply(m);
	}
	*ret = v;
	*ret_n = n;
	return CKR_OK;
}

CK_RV remote_get_slot_list(Module *m, CK_SLOT_ID **ret, size_t *ret_n)
{
	RpcBuf b;

	rpc_buf_begin(&b, 0, RPC_OP_GET_SLOT_LIST);
	return remote_call_list(m, &b, RPC_OP_GET_SLOT_LIST, CALL_SLOTS_MAX, ret, ret_n);
}

CK_RV remote_get_mechanism_list(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **ret, size_t *ret_n)
{
	RpcBuf b;

	rpc_buf_begin(&b, 0, RPC_OP_GET_MECHANISM_LIST);
	rpc_put_u64(&b, slot);
	return remote_call_list(m, &b, RPC_OP_GET_MECHANISM_LIST, CALL_MECHS_MAX, ret, ret_n);
}

CK_RV remote_get_slot_info(Module *m, CK_SLOT_ID slot, CK_SLOT_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_SLOT_INFO);
	rpc_put_u64(&b, slot);
	rv = remote_call(m, &b, RPC_OP_GET_SLOT_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_slot_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_get_token_info(Module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_TOKEN_INFO);
	rpc_put_u64(&b, slot);
	rv = remote_call(m, &b, RPC_OP_GET_TOKEN_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_token_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_get_mechanism_info(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
				CK_MECHANISM_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_MECHANISM_INFO);
	rpc_put_u64(&b, slot);
	rpc_put_u64(&b, type);
	rv = remote_call(m, &b, RPC_OP_GET_MECHANISM_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_mechanism_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_open_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret)
{
	_cleanup_reply_ Reply rep = {0};
	unsigned gen = remote_generation(m);
	uint64_t h;
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_OPEN_SESSION);
	rpc_put_u64(&b, slot);
	rv = remote_call(m, &b, RPC_OP_OPEN_SESSION, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	if (rpc_get_u64(&rep.msg, 1, &h) < 0 || h == 0 || h > (CK_SESSION_HANDLE)-1)
		return remote_bad_reply(m);
	pthread_mutex_lock(&m->remote->lock);
	/* The reply came from life gen only if it is still current. */
	if (m->remote->gen != gen)
		rv = CKR_DEVICE_REMOVED;
	else if (m->remote->n_sessions >= REMOTE_SESSIONS_MAX)
		rv = CKR_SESSION_COUNT;
	else if (m->remote->n_sessions == m->remote->alloc_sessions) {
		size_t alloc = m->remote->alloc_sessions ? 2 * m->remote->alloc_sessions : 16;
		void *grown =
			reallocarray(m->remote->sessions, alloc, sizeof(*m->remote->sessions));

		if (grown) {
			m->remote->sessions = grown;
			m->remote->alloc_sessions = alloc;
		} else
			rv = CKR_HOST_MEMORY;
	}
	if (rv == CKR_OK) {
		Remote *r = m->remote;
		uint32_t ours = ++r->next_session ? r->next_session : ++r->next_session;

		r->sessions[r->n_sessions].ours = ours;
		r->sessions[r->n_sessions++].real = h;
		*ret = (CK_SESSION_HANDLE)((uint64_t)gen << REMOTE_HANDLE_BITS | ours);
	}
	pthread_mutex_unlock(&m->remote->lock);
	if (rv != CKR_OK && rv != CKR_DEVICE_REMOVED) {
		/* Not handed out: close it in the helper. */
		RpcBuf c;
		Reply crep = {0};

		rpc_buf_begin(&c, 0, RPC_OP_CLOSE_SESSION);
		rpc_put_u64(&c, h);
		remote_call(m, &c, RPC_OP_CLOSE_SESSION, timeout_of(m), &crep);
		reply_clear(&crep);
	}
	return rv;
}

/* Operations on a session whose reply is the rv alone. */
static CK_RV remote_session_op(Module *m, RpcOp op, CK_SESSION_HANDLE h)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, op == RPC_OP_CLOSE_SESSION, op, &b);

	if (rv != CKR_OK)
		return rv;
	return remote_call(m, &b, op, timeout_of(m), &rep);
}

CK_RV remote_close_session(Module *m, CK_SESSION_HANDLE h)
{
	return remote_session_op(m, RPC_OP_CLOSE_SESSION, h);
}

CK_RV remote_logout(Module *m, CK_SESSION_HANDLE h)
{
	return remote_session_op(m, RPC_OP_LOGOUT, h);
}

CK_RV remote_get_session_info(Module *m, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_GET_SESSION_INFO, &b);

	if (rv != CKR_OK)
		return rv;
	rv = remote_call(m, &b, RPC_OP_GET_SESSION_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_session_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_login(Module *m, CK_SESSION_HANDLE h, CK_USER_TYPE user, const char *pin,
		   size_t pin_len)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_LOGIN, &b);

	if (rv != CKR_OK)
		return rv;
	/* The frame holds the PIN: remote_call wipes it once sent. */
	rpc_put_u64(&b, user);
	rpc_put_u64(&b, pin != NULL);
	rpc_put_bytes(&b, pin ? pin : "", pin ? pin_len : 0);
	return remote_call(m, &b, RPC_OP_LOGIN, timeout_of(m) * STORE_LOGIN_TIMEOUT_FACTOR, &rep);
}

CK_RV remote_find_objects(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			  CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_FIND_OBJECTS, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_attrs(&b, tmpl, n);
	return remote_call_list(m, &b, RPC_OP_FIND_OBJECTS, CALL_FIND_MAX, ret, ret_n);
}

CK_RV remote_get_attribute(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
			   CK_ATTRIBUTE_TYPE type, uint8_t **ret, size_t *ret_len)
{
	_cleanup_reply_ Reply rep = {0};
	const uint8_t *v;
	uint8_t *copy;
	size_t len;
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_GET_ATTRIBUTE, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_u64(&b, o);
	rpc_put_u64(&b, type);
	rv = remote_call(m, &b, RPC_OP_GET_ATTRIBUTE, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	if (rpc_get_bytes(&rep.msg, 1, &v, &len) < 0 || len > CALL_ATTR_MAX)
		return remote_bad_reply(m);
	copy = malloc(len + 1); /* +1: labels are used as strings, as call_get_attribute */
	if (!copy)
		return CKR_HOST_MEMORY;
	memcpy(copy, v, len);
	copy[len] = 0;
	*ret = copy;
	*ret_len = len;
	return CKR_OK;
}

CK_RV remote_get_ulong(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
		       CK_ULONG *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_GET_ULONG, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_u64(&b, o);
	rpc_put_u64(&b, type);
	rv = remote_call(m, &b, RPC_OP_GET_ULONG, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_ulong(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

/*
 * Mechanisms travel as type + ULONGS parameters: none, or CK_RSA_PKCS_PSS_PARAMS' three
 * fields. Those are all certagent signs with (sign.c); anything else is refused here.
 */
static CK_RV remote_put_mechanism(RpcBuf *b, const CK_MECHANISM *mech)
{
	CK_ULONG params[3];
	size_t n_params = 0;

	if (mech->mechanism == CKM_RSA_PKCS_PSS) {
		const CK_RSA_PKCS_PSS_PARAMS *pss = mech->pParameter;

		if (!pss || mech->ulParameterLen != sizeof(*pss))
			return CKR_MECHANISM_PARAM_INVALID;
		params[0] = pss->hashAlg;
		params[1] = pss->mgf;
		params[2] = pss->sLen;
		n_params = 3;
	} else if (mech->pParameter || mech->ulParameterLen)
		return CKR_MECHANISM_PARAM_INVALID;
	rpc_put_u64(b, mech->mechanism);
	rpc_put_ulongs(b, params, n_params);
	return CKR_OK;
}

/* The start of a SignInit or SignOnce request: session, mechanism, key. */
static CK_RV remote_begin_sign(Module *m, CK_SESSION_HANDLE h, RpcOp op, CK_MECHANISM *mech,
			       CK_OBJECT_HANDLE key, RpcBuf *b)
{
	CK_RV rv = remote_begin_session(m, h, false, op, b);

	if (rv != CKR_OK)
		return rv;
	rv = remote_put_mechanism(b, mech);
	if (rv != CKR_OK) {
		rpc_buf_wipe(b);
		return rv;
	}
	rpc_put_u64(b, key);
	return CKR_OK;
}

CK_RV remote_sign_init(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_sign(m, h, RPC_OP_SIGN_INIT, mech, key, &b);

	if (rv != CKR_OK)
		return rv;
	return remote_call(m, &b, RPC_OP_SIGN_INIT, timeout_of(m), &rep);
}

/*
 * Reads the signature part of a Sign or SignOnce reply, fields from i: u64 length (the one
 * needed on CKR_BUFFER_TOO_SMALL), then the bytes on CKR_OK. rv is the reply's.
 */
static CK_RV remote_take_signature(Module *m, const Reply *rep, size_t i, CK_RV rv, uint8_t *sig,
				   CK_ULONG *sig_len)
{
	const uint8_t *v;
	uint64_t want;
	size_t n;

	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
		return rv;
	if (rpc_get_u64(&rep->msg, i, &want) < 0 || want > CALL_SIG_MAX)
		return remote_bad_reply(m);
	if (rv == CKR_BUFFER_TOO_SMALL || !sig) {
		*sig_len = (CK_ULONG)want;
		return rv;
	}
	if (rpc_get_bytes(&rep->msg, i + 1, &v, &n) < 0 || n != want || n > *sig_len)
		return remote_bad_reply(m);
	memcpy(sig, v, n);
	*sig_len = (CK_ULONG)n;
	return CKR_OK;
}

/*
 * C_SignInit and C_Sign in one request (call_sign_once()): the helper runs both; the reply
 * says whether C_SignInit succeeded (*ret_signing), so the operation may still be active
 * after a failed C_Sign (CKR_BUFFER_TOO_SMALL: remote_sign() with a bigger buffer).
 */
CK_RV remote_sign_once(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		       const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		       bool *ret_signing)
{
	_cleanup_reply_ Reply rep = {0};
	uint64_t stage;
	RpcBuf b;
	CK_RV rv = remote_begin_sign(m, h, RPC_OP_SIGN_ONCE, mech, key, &b);

	*ret_signing = false;
	if (rv != CKR_OK)
		return rv;
	/* The data may be a digest of what the client sends: wiped with the frame. */
	rpc_put_bytes(&b, data, len);
	rpc_put_u64(&b, sig ? *sig_len : 0); /* 0: only ask for the length */
	rv = remote_call(m, &b, RPC_OP_SIGN_ONCE, timeout_of(m), &rep);
	if (!rep.buf)
		return rv; /* no reply: the helper is gone */
	if (rep.msg.n_fields == 1 && rv != CKR_OK)
		return rv; /* refused before C_SignInit */
	if (rpc_get_u64(&rep.msg, 1, &stage) < 0 || stage > 1 || (stage == 0 && rv == CKR_OK))
		return remote_bad_reply(m);
	*ret_signing = stage == 1;
	if (!*ret_signing)
		return rv;
	return remote_take_signature(m, &rep, 2, rv, sig, sig_len);
}

CK_RV remote_prepare_sign(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, bool *ret_begun)
{
	_cleanup_reply_ Reply rep = {0};
	uint64_t begun;
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_PREPARE_SIGN, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_u64(&b, key);
	rv = remote_call(m, &b, RPC_OP_PREPARE_SIGN, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	if (rpc_get_u64(&rep.msg, 1, &begun) < 0 || begun > 1)
		return remote_bad_reply(m);
	*ret_begun = begun == 1;
	return CKR_OK;
}

CK_RV remote_sign(Module *m, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, uint8_t *sig,
		  CK_ULONG *sig_len)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_SIGN, &b);

	if (rv != CKR_OK)
		return rv;
	/* The data may be a digest of what the client sends: wiped with the frame. */
	rpc_put_bytes(&b, data, len);
	rpc_put_u64(&b, sig ? *sig_len : 0); /* 0: only ask for the length */
	rv = remote_call(m, &b, RPC_OP_SIGN, timeout_of(m), &rep);
	if (!rep.buf)
		return rv;
	return remote_take_signature(m, &rep, 1, rv, sig, sig_len);
}

/*
 * Blocking (flags 0) only on hotplug.c's slot-event thread: no timeout, it ends when the
 * module is finalised (remote_stop) or the helper dies (then the module is polled).
 */
CK_RV remote_wait_for_slot_event(Module *m, CK_FLAGS flags, CK_SLOT_ID *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_WAIT_FOR_SLOT_EVENT);
	rpc_put_u64(&b, flags);
	rv = remote_call(m, &b, RPC_OP_WAIT_FOR_SLOT_EVENT,
			 (flags & CKF_DONT_BLOCK) ? timeout_of(m) : 0, &rep);
	if (rv == CKR_OK && rpc_get_ulong(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}
