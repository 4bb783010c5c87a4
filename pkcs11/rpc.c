/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rpc: encoder and decoder of the agent <-> PKCS#11 helper frames (format in rpc.h). The
 * decoder trusts nothing: the helper runs a module we isolate precisely because it may be
 * broken or hostile, so every count and length is checked against what is left of the frame
 * and against its cap before it is used. No I/O here and no allocation in the decoder.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "util.h"

/* Wire lengths of the fixed structures: char arrays as they are, CK_ULONG as u64. */
#define INFO_LEN (2 + 32 + 8 + 32 + 2)
#define SLOT_INFO_LEN (64 + 32 + 8 + 2 + 2)
#define TOKEN_INFO_LEN (32 + 32 + 16 + 16 + 11 * 8 + 2 + 2 + 16)
#define SESSION_INFO_LEN (4 * 8)
#define MECHANISM_INFO_LEN (3 * 8)

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

/* A reader over a fixed structure's bytes. */
typedef struct Cursor {
	const uint8_t *p;
} Cursor;

static void cur_raw(Cursor *c, void *out, size_t n)
{
	memcpy(out, c->p, n);
	c->p += n;
}

static CK_ULONG cur_ul(Cursor *c)
{
	uint64_t v = get_u64(c->p);

	c->p += 8;
	return (CK_ULONG)v;
}

static void cur_version(Cursor *c, CK_VERSION *v)
{
	v->major = c->p[0];
	v->minor = c->p[1];
	c->p += 2;
}

static int fixed(const RpcMessage *m, size_t i, size_t want, Cursor *ret)
{
	const RpcField *f = field(m, i, RPC_T_BYTES);

	if (!f || f->n != want)
		return -EBADMSG;
	ret->p = f->data;
	return 0;
}

int rpc_get_info(const RpcMessage *m, size_t i, CK_INFO *ret)
{
	Cursor c;
	CK_INFO v;

	if (fixed(m, i, INFO_LEN, &c) < 0)
		return -EBADMSG;
	cur_version(&c, &v.cryptokiVersion);
	cur_raw(&c, v.manufacturerID, 32);
	v.flags = cur_ul(&c);
	cur_raw(&c, v.libraryDescription, 32);
	cur_version(&c, &v.libraryVersion);
	*ret = v;
	return 0;
}

int rpc_get_slot_info(const RpcMessage *m, size_t i, CK_SLOT_INFO *ret)
{
	Cursor c;
	CK_SLOT_INFO v;

	if (fixed(m, i, SLOT_INFO_LEN, &c) < 0)
		return -EBADMSG;
	cur_raw(&c, v.slotDescription, 64);
	cur_raw(&c, v.manufacturerID, 32);
	v.flags = cur_ul(&c);
	cur_version(&c, &v.hardwareVersion);
	cur_version(&c, &v.firmwareVersion);
	*ret = v;
	return 0;
}

int rpc_get_token_info(const RpcMessage *m, size_t i, CK_TOKEN_INFO *ret)
{
	Cursor c;
	CK_TOKEN_INFO v;

	if (fixed(m, i, TOKEN_INFO_LEN, &c) < 0)
		return -EBADMSG;
	cur_raw(&c, v.label, 32);
	cur_raw(&c, v.manufacturerID, 32);
	cur_raw(&c, v.model, 16);
	cur_raw(&c, v.serialNumber, 16);
	v.flags = cur_ul(&c);
	v.ulMaxSessionCount = cur_ul(&c);
	v.ulSessionCount = cur_ul(&c);
	v.ulMaxRwSessionCount = cur_ul(&c);
	v.ulRwSessionCount = cur_ul(&c);
	v.ulMaxPinLen = cur_ul(&c);
	v.ulMinPinLen = cur_ul(&c);
	v.ulTotalPublicMemory = cur_ul(&c);
	v.ulFreePublicMemory = cur_ul(&c);
	v.ulTotalPrivateMemory = cur_ul(&c);
	v.ulFreePrivateMemory = cur_ul(&c);
	cur_version(&c, &v.hardwareVersion);
	cur_version(&c, &v.firmwareVersion);
	cur_raw(&c, v.utcTime, 16);
	*ret = v;
	return 0;
}

int rpc_get_session_info(const RpcMessage *m, size_t i, CK_SESSION_INFO *ret)
{
	Cursor c;
	CK_SESSION_INFO v;

	if (fixed(m, i, SESSION_INFO_LEN, &c) < 0)
		return -EBADMSG;
	v.slotID = cur_ul(&c);
	v.state = cur_ul(&c);
	v.flags = cur_ul(&c);
	v.ulDeviceError = cur_ul(&c);
	*ret = v;
	return 0;
}

int rpc_get_mechanism_info(const RpcMessage *m, size_t i, CK_MECHANISM_INFO *ret)
{
	Cursor c;
	CK_MECHANISM_INFO v;

	if (fixed(m, i, MECHANISM_INFO_LEN, &c) < 0)
		return -EBADMSG;
	v.ulMinKeySize = cur_ul(&c);
	v.ulMaxKeySize = cur_ul(&c);
	v.flags = cur_ul(&c);
	*ret = v;
	return 0;
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

/* A writer over a fixed structure's bytes. */
typedef struct Writer {
	uint8_t *p;
} Writer;

static void w_raw(Writer *w, const void *v, size_t n)
{
	memcpy(w->p, v, n);
	w->p += n;
}

static void w_ul(Writer *w, CK_ULONG v)
{
	set_u64(w->p, v);
	w->p += 8;
}

static void w_version(Writer *w, const CK_VERSION *v)
{
	w->p[0] = v->major;
	w->p[1] = v->minor;
	w->p += 2;
}

static bool fixed_begin(RpcBuf *b, size_t len, Writer *ret)
{
	uint8_t *p = field_begin(b, RPC_T_BYTES, 4 + len);

	if (!p)
		return false;
	set_u32(p, (uint32_t)len);
	ret->p = p + 4;
	return true;
}

void rpc_put_info(RpcBuf *b, const CK_INFO *v)
{
	Writer w;

	if (!fixed_begin(b, INFO_LEN, &w))
		return;
	w_version(&w, &v->cryptokiVersion);
	w_raw(&w, v->manufacturerID, 32);
	w_ul(&w, v->flags);
	w_raw(&w, v->libraryDescription, 32);
	w_version(&w, &v->libraryVersion);
}

void rpc_put_slot_info(RpcBuf *b, const CK_SLOT_INFO *v)
{
	Writer w;

	if (!fixed_begin(b, SLOT_INFO_LEN, &w))
		return;
	w_raw(&w, v->slotDescription, 64);
	w_raw(&w, v->manufacturerID, 32);
	w_ul(&w, v->flags);
	w_version(&w, &v->hardwareVersion);
	w_version(&w, &v->firmwareVersion);
}

void rpc_put_token_info(RpcBuf *b, const CK_TOKEN_INFO *v)
{
	Writer w;

	if (!fixed_begin(b, TOKEN_INFO_LEN, &w))
		return;
	w_raw(&w, v->label, 32);
	w_raw(&w, v->manufacturerID, 32);
	w_raw(&w, v->model, 16);
	w_raw(&w, v->serialNumber, 16);
	w_ul(&w, v->flags);
	w_ul(&w, v->ulMaxSessionCount);
	w_ul(&w, v->ulSessionCount);
	w_ul(&w, v->ulMaxRwSessionCount);
	w_ul(&w, v->ulRwSessionCount);
	w_ul(&w, v->ulMaxPinLen);
	w_ul(&w, v->ulMinPinLen);
	w_ul(&w, v->ulTotalPublicMemory);
	w_ul(&w, v->ulFreePublicMemory);
	w_ul(&w, v->ulTotalPrivateMemory);
	w_ul(&w, v->ulFreePrivateMemory);
	w_version(&w, &v->hardwareVersion);
	w_version(&w, &v->firmwareVersion);
	w_raw(&w, v->utcTime, 16);
}

void rpc_put_session_info(RpcBuf *b, const CK_SESSION_INFO *v)
{
	Writer w;

	if (!fixed_begin(b, SESSION_INFO_LEN, &w))
		return;
	w_ul(&w, v->slotID);
	w_ul(&w, v->state);
	w_ul(&w, v->flags);
	w_ul(&w, v->ulDeviceError);
}

void rpc_put_mechanism_info(RpcBuf *b, const CK_MECHANISM_INFO *v)
{
	Writer w;

	if (!fixed_begin(b, MECHANISM_INFO_LEN, &w))
		return;
	w_ul(&w, v->ulMinKeySize);
	w_ul(&w, v->ulMaxKeySize);
	w_ul(&w, v->flags);
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
