/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rpc: encoder and decoder of the agent <-> PKCS#11 helper frames (format in rpc.h). The
 * decoder trusts nothing: the helper runs a module we isolate precisely because it may be
 * broken or hostile, so every count and length is checked against what is left of the frame
 * and against its cap before it is used. No I/O here and no allocation in the decoder.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "util.h"

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void set_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void set_u64(uint8_t *p, uint64_t v)
{
	set_u32(p, (uint32_t)v);
	set_u32(p + 4, (uint32_t)(v >> 32));
}

size_t rpc_frame_size(const uint8_t header[static 4])
{
	uint32_t n = get_u32(header);

	if (n < RPC_HEADER_LEN - 4 || n > RPC_FRAME_MAX - 4)
		return 0;
	return (size_t)n + 4;
}

/* One field at p (rest bytes left); its size in *ret_used. */
static int decode_field(const uint8_t *p, size_t rest, RpcField *f, size_t *ret_used)
{
	size_t used = 1;

	if (rest < 1)
		return -EBADMSG;
	*f = (RpcField){.type = p[0]};
	p++;
	rest--;
	switch (f->type) {
	case RPC_T_U64:
		if (rest < 8)
			return -EBADMSG;
		f->u64 = get_u64(p);
		used += 8;
		break;
	case RPC_T_BYTES:
		if (rest < 4 || get_u32(p) > rest - 4)
			return -EBADMSG;
		f->n = f->size = get_u32(p);
		f->data = p + 4;
		used += 4 + f->size;
		break;
	case RPC_T_ULONGS:
		if (rest < 4 || get_u32(p) > RPC_ULONGS_MAX || (size_t)get_u32(p) * 8 > rest - 4)
			return -EBADMSG;
		f->n = get_u32(p);
		f->size = f->n * 8;
		f->data = p + 4;
		used += 4 + f->size;
		break;
	case RPC_T_ATTRS: {
		size_t off = 4;

		if (rest < 4 || get_u32(p) > RPC_ATTRS_MAX)
			return -EBADMSG;
		f->n = get_u32(p);
		for (uint32_t i = 0; i < f->n; i++) {
			uint32_t vlen;

			if (rest - off < 12)
				return -EBADMSG;
			vlen = get_u32(p + off + 8);
			off += 12;
			if (vlen == RPC_ATTR_NO_VALUE)
				continue;
			if (vlen > rest - off)
				return -EBADMSG;
			off += vlen;
		}
		f->data = p + 4;
		f->size = (uint32_t)(off - 4);
		used += off;
		break;
	}
	default:
		return -EBADMSG;
	}
	*ret_used = used;
	return 0;
}

int rpc_decode_frame(const uint8_t *buf, size_t len, RpcMessage *ret)
{
	RpcMessage m = {0};
	size_t off = RPC_HEADER_LEN;

	if (!buf || len < RPC_HEADER_LEN || len > RPC_FRAME_MAX || rpc_frame_size(buf) != len)
		return -EBADMSG;
	m.id = get_u32(buf + 4);
	m.op = (uint16_t)(buf[8] | buf[9] << 8);
	if (m.op < RPC_OP_HELLO || m.op >= _RPC_OP_MAX)
		return -EBADMSG;
	while (off < len) {
		size_t used = 0;

		if (m.n_fields >= RPC_FIELDS_MAX)
			return -EBADMSG;
		if (decode_field(buf + off, len - off, &m.fields[m.n_fields], &used) < 0)
			return -EBADMSG;
		m.n_fields++;
		off += used;
	}
	*ret = m;
	return 0;
}

static const RpcField *field(const RpcMessage *m, size_t i, RpcType type)
{
	if (!m || i >= m->n_fields || m->fields[i].type != type)
		return NULL;
	return &m->fields[i];
}

int rpc_get_u64(const RpcMessage *m, size_t i, uint64_t *ret)
{
	const RpcField *f = field(m, i, RPC_T_U64);

	if (!f)
		return -EBADMSG;
	*ret = f->u64;
	return 0;
}

int rpc_get_ulong(const RpcMessage *m, size_t i, CK_ULONG *ret)
{
	uint64_t v;

	if (rpc_get_u64(m, i, &v) < 0 || v > (CK_ULONG)-1)
		return -EBADMSG;
	*ret = (CK_ULONG)v;
	return 0;
}

int rpc_get_bytes(const RpcMessage *m, size_t i, const uint8_t **ret, size_t *ret_len)
{
	const RpcField *f = field(m, i, RPC_T_BYTES);

	if (!f)
		return -EBADMSG;
	*ret = f->data;
	*ret_len = f->n;
	return 0;
}

int rpc_get_ulongs(const RpcMessage *m, size_t i, CK_ULONG **ret, size_t *ret_n)
{
	const RpcField *f = field(m, i, RPC_T_ULONGS);
	CK_ULONG *v;

	if (!f)
		return -EBADMSG;
	v = calloc(f->n ? f->n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t k = 0; k < f->n; k++) {
		uint64_t x = get_u64(f->data + 8 * k);

		if (x > (CK_ULONG)-1) {
			free(v);
			return -EBADMSG;
		}
		v[k] = (CK_ULONG)x;
	}
	*ret = v;
	*ret_n = f->n;
	return 0;
}

int rpc_get_attrs(const RpcMessage *m, size_t i, CK_ATTRIBUTE **ret, size_t *ret_n)
{
	const RpcField *f = field(m, i, RPC_T_ATTRS);
	CK_ATTRIBUTE *a;
	size_t off = 0;

	if (!f)
		return -EBADMSG;
	a = calloc(f->n ? f->n : 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	/* Bounds were checked by the decoder. */
	for (uint32_t k = 0; k < f->n; k++) {
		uint32_t vlen = get_u32(f->data + off + 8);

		a[k].type = (CK_ATTRIBUTE_TYPE)get_u64(f->data + off);
		off += 12;
		if (vlen == RPC_ATTR_NO_VALUE) {
			a[k].pValue = NULL;
			a[k].ulValueLen = 0;
			continue;
		}
		a[k].pValue = (void *)(f->data + off);
		a[k].ulValueLen = vlen;
		off += vlen;
	}
	*ret = a;
	*ret_n = f->n;
	return 0;
}

/*
 * The fixed structures, each described once for both directions: on the wire, in this order,
 * char arrays as they are, CK_ULONG as u64 and CK_VERSION as two bytes.
 */
typedef enum FixedKind {
	FIXED_RAW,
	FIXED_ULONG,
	FIXED_VERSION,
} FixedKind;

typedef struct FixedMember {
	FixedKind kind;
	size_t offset; /* in the structure */
	size_t len;    /* on the wire */
} FixedMember;

typedef struct FixedLayout {
	const FixedMember *members;
	size_t n_members;
} FixedLayout;

/* clang-format off */
#define FX_RAW(type, member) {FIXED_RAW, offsetof(type, member), sizeof(((type *)0)->member)}
#define FX_ULONG(type, member) {FIXED_ULONG, offsetof(type, member), 8}
#define FX_VERSION(type, member) {FIXED_VERSION, offsetof(type, member), 2}
#define LAYOUT(members) {members, sizeof(members) / sizeof(members[0])}
/* clang-format on */

static const FixedMember info_members[] = {
	FX_VERSION(CK_INFO, cryptokiVersion),
	FX_RAW(CK_INFO, manufacturerID),
	FX_ULONG(CK_INFO, flags),
	FX_RAW(CK_INFO, libraryDescription),
	FX_VERSION(CK_INFO, libraryVersion),
};
static const FixedMember slot_info_members[] = {
	FX_RAW(CK_SLOT_INFO, slotDescription),
	FX_RAW(CK_SLOT_INFO, manufacturerID),
	FX_ULONG(CK_SLOT_INFO, flags),
	FX_VERSION(CK_SLOT_INFO, hardwareVersion),
	FX_VERSION(CK_SLOT_INFO, firmwareVersion),
};
static const FixedMember token_info_members[] = {
	FX_RAW(CK_TOKEN_INFO, label),
	FX_RAW(CK_TOKEN_INFO, manufacturerID),
	FX_RAW(CK_TOKEN_INFO, model),
	FX_RAW(CK_TOKEN_INFO, serialNumber),
	FX_ULONG(CK_TOKEN_INFO, flags),
	FX_ULONG(CK_TOKEN_INFO, ulMaxSessionCount),
	FX_ULONG(CK_TOKEN_INFO, ulSessionCount),
	FX_ULONG(CK_TOKEN_INFO, ulMaxRwSessionCount),
	FX_ULONG(CK_TOKEN_INFO, ulRwSessionCount),
	FX_ULONG(CK_TOKEN_INFO, ulMaxPinLen),
	FX_ULONG(CK_TOKEN_INFO, ulMinPinLen),
	FX_ULONG(CK_TOKEN_INFO, ulTotalPublicMemory),
	FX_ULONG(CK_TOKEN_INFO, ulFreePublicMemory),
	FX_ULONG(CK_TOKEN_INFO, ulTotalPrivateMemory),
	FX_ULONG(CK_TOKEN_INFO, ulFreePrivateMemory),
	FX_VERSION(CK_TOKEN_INFO, hardwareVersion),
	FX_VERSION(CK_TOKEN_INFO, firmwareVersion),
	FX_RAW(CK_TOKEN_INFO, utcTime),
};
static const FixedMember session_info_members[] = {
	FX_ULONG(CK_SESSION_INFO, slotID),
	FX_ULONG(CK_SESSION_INFO, state),
	FX_ULONG(CK_SESSION_INFO, flags),
	FX_ULONG(CK_SESSION_INFO, ulDeviceError),
};
static const FixedMember mechanism_info_members[] = {
	FX_ULONG(CK_MECHANISM_INFO, ulMinKeySize),
	FX_ULONG(CK_MECHANISM_INFO, ulMaxKeySize),
	FX_ULONG(CK_MECHANISM_INFO, flags),
};

static const FixedLayout info_layout = LAYOUT(info_members);
static const FixedLayout slot_info_layout = LAYOUT(slot_info_members);
static const FixedLayout token_info_layout = LAYOUT(token_info_members);
static const FixedLayout session_info_layout = LAYOUT(session_info_members);
static const FixedLayout mechanism_info_layout = LAYOUT(mechanism_info_members);

static size_t fixed_len(const FixedLayout *l)
{
	size_t len = 0;

	for (size_t k = 0; k < l->n_members; k++)
		len += l->members[k].len;
	return len;
}

/* Field i, a BYTES field of exactly the layout's wire length, into the structure at ret. */
static int fixed_get(const RpcMessage *m, size_t i, const FixedLayout *l, void *ret)
{
	const RpcField *f = field(m, i, RPC_T_BYTES);
	const uint8_t *p;

	if (!f || f->n != fixed_len(l))
		return -EBADMSG;
	p = f->data;
	for (size_t k = 0; k < l->n_members; k++) {
		const FixedMember *mb = &l->members[k];
		uint8_t *dst = (uint8_t *)ret + mb->offset;

		switch (mb->kind) {
		case FIXED_RAW:
			memcpy(dst, p, mb->len);
			break;
		case FIXED_ULONG: {
			CK_ULONG v = (CK_ULONG)get_u64(p);

			memcpy(dst, &v, sizeof(v));
			break;
		}
		case FIXED_VERSION: {
			CK_VERSION v = {p[0], p[1]};

			memcpy(dst, &v, sizeof(v));
			break;
		}
		}
		p += mb->len;
	}
	return 0;
}

int rpc_get_info(const RpcMessage *m, size_t i, CK_INFO *ret)
{
	return fixed_get(m, i, &info_layout, ret);
}

int rpc_get_slot_info(const RpcMessage *m, size_t i, CK_SLOT_INFO *ret)
{
	return fixed_get(m, i, &slot_info_layout, ret);
}

int rpc_get_token_info(const RpcMessage *m, size_t i, CK_TOKEN_INFO *ret)
{
	return fixed_get(m, i, &token_info_layout, ret);
}

int rpc_get_session_info(const RpcMessage *m, size_t i, CK_SESSION_INFO *ret)
{
	return fixed_get(m, i, &session_info_layout, ret);
}

int rpc_get_mechanism_info(const RpcMessage *m, size_t i, CK_MECHANISM_INFO *ret)
{
	return fixed_get(m, i, &mechanism_info_layout, ret);
}

/* ---- encoding ---- */

/* Room for n more bytes, or the sticky error. */
static uint8_t *buf_grow(RpcBuf *b, size_t n)
{
	uint8_t *p;
	size_t want;

	if (b->error)
		return NULL;
	if (n > RPC_FRAME_MAX || b->len + n > RPC_FRAME_MAX) {
		b->error = -E2BIG;
		return NULL;
	}
	want = b->len + n;
	if (want > b->alloc) {
		size_t alloc = b->alloc ? b->alloc : 256;

		while (alloc < want)
			alloc *= 2;
		if (alloc > RPC_FRAME_MAX)
			alloc = RPC_FRAME_MAX;
		/* Not realloc: the old buffer may hold a PIN and must be wiped. */
		p = malloc(alloc);
		if (!p) {
			b->error = -ENOMEM;
			return NULL;
		}
		if (b->data)
			memcpy(p, b->data, b->len);
		erase_and_free(b->data, b->alloc);
		b->data = p;
		b->alloc = alloc;
	}
	p = b->data + b->len;
	b->len += n;
	return p;
}

static uint8_t *field_begin(RpcBuf *b, RpcType type, size_t n)
{
	uint8_t *p;

	if (!b->error && b->n_fields >= RPC_FIELDS_MAX)
		b->error = -E2BIG;
	p = buf_grow(b, 1 + n);
	if (!p)
		return NULL;
	b->n_fields++;
	p[0] = (uint8_t)type;
	return p + 1;
}

void rpc_buf_begin(RpcBuf *b, uint32_t id, RpcOp op)
{
	uint8_t *p;

	*b = (RpcBuf){0};
	p = buf_grow(b, RPC_HEADER_LEN);
	if (!p)
		return;
	set_u32(p, 0);
	set_u32(p + 4, id);
	p[8] = (uint8_t)op;
	p[9] = (uint8_t)(op >> 8);
}

void rpc_put_u64(RpcBuf *b, uint64_t v)
{
	uint8_t *p = field_begin(b, RPC_T_U64, 8);

	if (p)
		set_u64(p, v);
}

void rpc_put_bytes(RpcBuf *b, const void *data, size_t len)
{
	uint8_t *p;

	if (len > RPC_FRAME_MAX) {
		b->error = b->error ? b->error : -E2BIG;
		return;
	}
	p = field_begin(b, RPC_T_BYTES, 4 + len);
	if (!p)
		return;
	set_u32(p, (uint32_t)len);
	if (len)
		memcpy(p + 4, data, len);
}

void rpc_put_ulongs(RpcBuf *b, const CK_ULONG *v, size_t n)
{
	uint8_t *p;

	if (n > RPC_ULONGS_MAX) {
		b->error = b->error ? b->error : -E2BIG;
		return;
	}
	p = field_begin(b, RPC_T_ULONGS, 4 + 8 * n);
	if (!p)
		return;
	set_u32(p, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		set_u64(p + 4 + 8 * i, v[i]);
}

void rpc_put_attrs(RpcBuf *b, const CK_ATTRIBUTE *a, size_t n)
{
	size_t size = 4;
	uint8_t *p;

	if (n > RPC_ATTRS_MAX) {
		b->error = b->error ? b->error : -E2BIG;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (a[i].pValue && a[i].ulValueLen >= RPC_ATTR_NO_VALUE) {
			b->error = b->error ? b->error : -E2BIG;
			return;
		}
		size += 12 + (a[i].pValue ? a[i].ulValueLen : 0);
		if (size > RPC_FRAME_MAX) {
			b->error = b->error ? b->error : -E2BIG;
			return;
		}
	}
	p = field_begin(b, RPC_T_ATTRS, size);
	if (!p)
		return;
	set_u32(p, (uint32_t)n);
	p += 4;
	for (size_t i = 0; i < n; i++) {
		set_u64(p, a[i].type);
		if (!a[i].pValue) {
			set_u32(p + 8, RPC_ATTR_NO_VALUE);
			p += 12;
			continue;
		}
		set_u32(p + 8, (uint32_t)a[i].ulValueLen);
		memcpy(p + 12, a[i].pValue, a[i].ulValueLen);
		p += 12 + a[i].ulValueLen;
	}
}

/* The structure at v as a BYTES field of its layout's wire length. */
static void fixed_put(RpcBuf *b, const FixedLayout *l, const void *v)
{
	size_t len = fixed_len(l);
	uint8_t *p = field_begin(b, RPC_T_BYTES, 4 + len);

	if (!p)
		return;
	set_u32(p, (uint32_t)len);
	p += 4;
	for (size_t k = 0; k < l->n_members; k++) {
		const FixedMember *mb = &l->members[k];
		const uint8_t *src = (const uint8_t *)v + mb->offset;

		switch (mb->kind) {
		case FIXED_RAW:
			memcpy(p, src, mb->len);
			break;
		case FIXED_ULONG: {
			CK_ULONG x;

			memcpy(&x, src, sizeof(x));
			set_u64(p, x);
			break;
		}
		case FIXED_VERSION: {
			CK_VERSION x;

			memcpy(&x, src, sizeof(x));
			p[0] = x.major;
			p[1] = x.minor;
			break;
		}
		}
		p += mb->len;
	}
}

void rpc_put_info(RpcBuf *b, const CK_INFO *v)
{
	fixed_put(b, &info_layout, v);
}

void rpc_put_slot_info(RpcBuf *b, const CK_SLOT_INFO *v)
{
	fixed_put(b, &slot_info_layout, v);
}

void rpc_put_token_info(RpcBuf *b, const CK_TOKEN_INFO *v)
{
	fixed_put(b, &token_info_layout, v);
}

void rpc_put_session_info(RpcBuf *b, const CK_SESSION_INFO *v)
{
	fixed_put(b, &session_info_layout, v);
}

void rpc_put_mechanism_info(RpcBuf *b, const CK_MECHANISM_INFO *v)
{
	fixed_put(b, &mechanism_info_layout, v);
}

int rpc_buf_finish(RpcBuf *b)
{
	if (b->error)
		return b->error;
	if (!b->data)
		return -ENOMEM;
	set_u32(b->data, (uint32_t)(b->len - 4));
	return 0;
}

void rpc_buf_set_id(RpcBuf *b, uint32_t id)
{
	if (b->data && b->len >= RPC_HEADER_LEN)
		set_u32(b->data + 4, id);
}

void rpc_buf_wipe(RpcBuf *b)
{
	erase_and_free(b->data, b->alloc);
	*b = (RpcBuf){0};
}
