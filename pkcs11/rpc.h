/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rpc: the framed protocol between certagentd and certagent-pkcs11-helper (one helper process
 * per isolated PKCS#11 module). Encoder and a strict, bounded decoder with no I/O, so the
 * decoder can be fuzzed on its own (tests/fuzz/fuzz-rpc.c).
 *
 * Transport (remote.c, helper-main.c): stream socketpairs. The helper's fd 3 is the control
 * socket: the greeting (HELLO) and ADD_LANE, whose frame carries one more socketpair end as
 * SCM_RIGHTS. Every other request travels on a lane: one request at a time, answered on the
 * same lane by the helper thread that owns it, so a lane never holds more than one frame in
 * each direction.
 *
 * A frame, every integer little-endian:
 *   u32 length    bytes that follow (id + op + fields); at most RPC_FRAME_MAX - 4, checked
 *                 before anything is allocated
 *   u32 id        chosen by the agent per request; the reply carries the same id
 *   u16 op        RpcOp; a reply has the op of its request
 *   fields        up to RPC_FIELDS_MAX, each a u8 type then:
 *                   U64     u64
 *                   BYTES   u32 n, n bytes
 *                   ULONGS  u32 n (<= RPC_ULONGS_MAX), n x u64
 *                   ATTRS   u32 n (<= RPC_ATTRS_MAX), n x {u64 type, u32 len, len bytes};
 *                           len RPC_ATTR_NO_VALUE means no value (pValue NULL)
 * Every reply starts with a U64 field: the CK_RV. The fixed PKCS#11 structures (CK_INFO,
 * CK_TOKEN_INFO, ...) travel as BYTES of an exact length with every CK_ULONG as u64.
 *
 * Decoded fields point into the caller's buffer: nothing is copied, nothing allocated.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

/* Whole frame, length prefix included: data to sign (STORE_SIGN_DATA_MAX, 256 KiB) plus room
 * for the other fields; any bigger frame is a broken or hostile peer. */
#define RPC_FRAME_MAX (260u * 1024u)
#define RPC_HEADER_LEN 10u /* u32 length, u32 id, u16 op */
#define RPC_FIELDS_MAX 8u
#define RPC_ULONGS_MAX 4096u /* slots, mechanisms, object handles per reply */
#define RPC_ATTRS_MAX 32u    /* attributes in a search template */
#define RPC_ATTR_NO_VALUE 0xffffffffu
/* Lanes (request sockets) between the agent and one helper, each with a helper thread: as
 * many calls run at once; more wait for a lane. */
#define RPC_LANES_MAX 64u

typedef enum RpcOp {
	RPC_OP_HELLO = 1, /* helper -> agent once, id 0: rv of C_Initialize, CK_INFO */
	RPC_OP_GET_INFO,
	RPC_OP_GET_SLOT_LIST, /* slots with a token present */
	RPC_OP_GET_SLOT_INFO,
	RPC_OP_GET_TOKEN_INFO,
	RPC_OP_GET_MECHANISM_LIST,
	RPC_OP_GET_MECHANISM_INFO,
	RPC_OP_OPEN_SESSION, /* read-only serial session */
	RPC_OP_CLOSE_SESSION,
	RPC_OP_GET_SESSION_INFO,
	RPC_OP_LOGIN,
	RPC_OP_LOGOUT,
	RPC_OP_FIND_OBJECTS, /* the whole search: Init, FindObjects until done, Final */
	RPC_OP_GET_ATTRIBUTE,
	RPC_OP_GET_ULONG,
	RPC_OP_SIGN_INIT,
	RPC_OP_SIGN,
	RPC_OP_WAIT_FOR_SLOT_EVENT,
	RPC_OP_ADD_LANE,  /* agent -> helper on fd 3, no reply: a new lane's end as SCM_RIGHTS */
	RPC_OP_SIGN_ONCE, /* C_SignInit + C_Sign in one request; reply: rv, u64 stage, len, sig */
	RPC_OP_PREPARE_SIGN, /* session, key: a signature with it is coming (helper-prime.h);
			      * reply: rv, u64 1 when one will be begun ahead, else 0 */
	_RPC_OP_MAX,
} RpcOp;

typedef enum RpcType {
	RPC_T_U64 = 1,
	RPC_T_BYTES = 2,
	RPC_T_ULONGS = 3,
	RPC_T_ATTRS = 4,
} RpcType;

typedef struct RpcField {
	RpcType type;
	uint64_t u64;	     /* U64 */
	const uint8_t *data; /* BYTES: the bytes; ULONGS, ATTRS: the encoded elements */
	uint32_t n;	     /* BYTES: bytes; ULONGS, ATTRS: elements */
	uint32_t size;	     /* bytes at data */
} RpcField;

typedef struct RpcMessage {
	uint32_t id;
	uint16_t op;
	size_t n_fields;
	RpcField fields[RPC_FIELDS_MAX];
} RpcMessage;

/* The length a frame announces in its first 4 bytes, whole frame: 0 if out of bounds. */
size_t rpc_frame_size(const uint8_t header[static 4]);

/*
 * Decodes one whole frame (length prefix included) of len bytes. Strict: the length must be
 * exact, the op known, every field complete and within its caps, nothing left over.
 * Returns 0 or -EBADMSG.
 */
int rpc_decode_frame(const uint8_t *buf, size_t len, RpcMessage *ret);

/* Typed access to field i of a decoded message. Return 0 or -EBADMSG (missing, wrong type). */
int rpc_get_u64(const RpcMessage *m, size_t i, uint64_t *ret);
int rpc_get_ulong(const RpcMessage *m, size_t i, CK_ULONG *ret);
int rpc_get_bytes(const RpcMessage *m, size_t i, const uint8_t **ret, size_t *ret_len);
/* Copies into a new array (at least one element allocated); *ret_n elements. -ENOMEM too. */
int rpc_get_ulongs(const RpcMessage *m, size_t i, CK_ULONG **ret, size_t *ret_n);
/* A template: a new array whose pValue point into the frame (valid while it is). -ENOMEM too. */
int rpc_get_attrs(const RpcMessage *m, size_t i, CK_ATTRIBUTE **ret, size_t *ret_n);
/* The fixed structures, from a BYTES field of their exact wire length. */
int rpc_get_info(const RpcMessage *m, size_t i, CK_INFO *ret);
int rpc_get_slot_info(const RpcMessage *m, size_t i, CK_SLOT_INFO *ret);
int rpc_get_token_info(const RpcMessage *m, size_t i, CK_TOKEN_INFO *ret);
int rpc_get_session_info(const RpcMessage *m, size_t i, CK_SESSION_INFO *ret);
int rpc_get_mechanism_info(const RpcMessage *m, size_t i, CK_MECHANISM_INFO *ret);

/*
 * A frame being built. Errors stick (checked once by rpc_buf_finish). The buffer is wiped
 * when freed: it may carry a PIN or data to sign.
 */
typedef struct RpcBuf {
	uint8_t *data;
	size_t len, alloc;
	size_t n_fields;
	int error; /* 0, -ENOMEM, -E2BIG (frame over RPC_FRAME_MAX or too many fields) */
} RpcBuf;

void rpc_buf_begin(RpcBuf *b, uint32_t id, RpcOp op);
void rpc_put_u64(RpcBuf *b, uint64_t v);
void rpc_put_bytes(RpcBuf *b, const void *data, size_t len);
void rpc_put_ulongs(RpcBuf *b, const CK_ULONG *v, size_t n);
void rpc_put_attrs(RpcBuf *b, const CK_ATTRIBUTE *a, size_t n);
void rpc_put_info(RpcBuf *b, const CK_INFO *v);
void rpc_put_slot_info(RpcBuf *b, const CK_SLOT_INFO *v);
void rpc_put_token_info(RpcBuf *b, const CK_TOKEN_INFO *v);
void rpc_put_session_info(RpcBuf *b, const CK_SESSION_INFO *v);
void rpc_put_mechanism_info(RpcBuf *b, const CK_MECHANISM_INFO *v);
/* Writes the length prefix. Returns 0 or the sticky error. */
int rpc_buf_finish(RpcBuf *b);
/* Replaces the id of a built frame (the agent numbers requests when it sends them). */
void rpc_buf_set_id(RpcBuf *b, uint32_t id);
void rpc_buf_wipe(RpcBuf *b);
