/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-channel: the signing channel's frames, encoded and decoded with a bounds-checked cursor
 * (nothing is read before its length was checked against what is left), and the Sign
 * arguments of a bus message. Nothing here allocates on the channel's path.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ipc-channel.h"

_Static_assert(IPC_CHANNEL_REPLY_MAX >= IPC_CHANNEL_HEADER_SIZE + 4 + IPC_SIGNATURE_MAX &&
		       IPC_CHANNEL_REPLY_MAX >=
			       IPC_CHANNEL_HEADER_SIZE + 2 * 4 + 128 + CA_ERROR_MESSAGE_MAX,
	       "IPC_CHANNEL_REPLY_MAX holds every reply");

/* ---- frames --------------------------------------------------------------------------- */

typedef struct Cursor {
	const uint8_t *p;
	size_t left;
} Cursor;

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static bool cursor_u32(Cursor *c, uint32_t *ret)
{
	if (c->left < 4)
		return false;
	*ret = get_le32(c->p);
	c->p += 4;
	c->left -= 4;
	return true;
}

/* A length and that many bytes; ret_len 0 with *ret NULL for an empty field. */
static bool cursor_bytes(Cursor *c, const uint8_t **ret, size_t *ret_len)
{
	uint32_t n;

	if (!cursor_u32(c, &n) || n > c->left)
		return false;
	*ret = n ? c->p : NULL;
	*ret_len = n;
	c->p += n;
	c->left -= n;
	return true;
}

/* A string field: UTF-8, exactly one NUL, at its end. optional: length 0 gives NULL. */
static bool cursor_string(Cursor *c, bool optional, const char **ret)
{
	const uint8_t *s;
	size_t n;

	if (!cursor_bytes(c, &s, &n))
		return false;
	if (n == 0) {
		*ret = NULL;
		return optional;
	}
	if (s[n - 1] != 0 || memchr(s, 0, n - 1) || !dbus_validate_utf8((const char *)s, NULL))
		return false;
	*ret = (const char *)s;
	return true;
}

/* The fixed header: version, op, zero, serial (not 0). */
static int frame_header(Cursor *c, IpcChannelOp *ret_op, uint32_t *ret_serial, CaError *err)
{
	if (c->left > IPC_CHANNEL_FRAME_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "channel frame of %zu bytes; at most %d are accepted", c->left,
				    IPC_CHANNEL_FRAME_MAX);
	if (c->left < IPC_CHANNEL_HEADER_SIZE)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "channel frame of %zu bytes is too short", c->left);
	if (c->p[0] != IPC_CHANNEL_VERSION)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "channel frame of version %u; this side speaks version %d",
				    (unsigned)c->p[0], IPC_CHANNEL_VERSION);
	if (c->p[2] != 0 || c->p[3] != 0 || get_le32(c->p + 4) == 0)
		return ca_error_set(err, CA_E_INVALID_ARGS, "channel frame with a bad header");
	*ret_op = c->p[1];
	*ret_serial = get_le32(c->p + 4);
	c->p += IPC_CHANNEL_HEADER_SIZE;
	c->left -= IPC_CHANNEL_HEADER_SIZE;
	return 0;
}

static int frame_bad(CaError *err, const char *what)
{
	return ca_error_set(err, CA_E_INVALID_ARGS, "malformed channel frame: %s", what);
}

int ipc_channel_decode_request(const void *buf, size_t len, uint32_t *ret_serial,
			       IpcChannelOp *ret_op, IpcSignCall *ret, CaError *err)
{
	Cursor c = {buf, len};
	IpcSignCall call = {0};
	IpcChannelOp op;
	uint32_t serial, n;
	int r;

	r = frame_header(&c, &op, &serial, err);
	if (r)
		return r;
	if (op != IPC_CHANNEL_OP_SIGN && op != IPC_CHANNEL_OP_PREPARE)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "a channel carries only Sign and Prepare requests, not op %u",
				    (unsigned)op);
	if (!cursor_string(&c, false, &call.uri))
		return frame_bad(err, "identity URI");
	if (op == IPC_CHANNEL_OP_PREPARE) {
		if (c.left)
			return frame_bad(err, "bytes after the last field");
		*ret_serial = serial;
		*ret_op = op;
		*ret = call;
		return 0;
	}
	if (!cursor_string(&c, false, &call.scheme))
		return frame_bad(err, "scheme");
	if (!cursor_bytes(&c, &call.data, &call.data_len))
		return frame_bad(err, "data");
	if (!cursor_string(&c, true, &call.server_name))
		return frame_bad(err, "server-name");
	if (!cursor_u32(&c, &n))
		return frame_bad(err, "certificate count");
	if (n > IPC_CERTS_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "%u server certificates; at most %d are accepted", n,
				    IPC_CERTS_MAX);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *der;
		size_t der_len;

		if (!cursor_bytes(&c, &der, &der_len))
			return frame_bad(err, "server certificate");
		call.server_certs[i] = (gnutls_datum_t){(unsigned char *)der, (unsigned)der_len};
	}
	call.n_server_certs = n;
	if (c.left)
		return frame_bad(err, "bytes after the last field");
	if (!call.data)
		call.data = (const uint8_t *)""; /* empty data: refused by the Sign checks */
	*ret_serial = serial;
	*ret_op = op;
	*ret = call;
	return 0;
}

int ipc_channel_decode_reply(const void *buf, size_t len, uint32_t serial, IpcChannelReply *ret,
			     CaError *err)
{
	Cursor c = {buf, len};
	IpcChannelReply reply = {0};
	IpcChannelOp op;
	uint32_t got;
	int r;

	r = frame_header(&c, &op, &got, err);
	if (r)
		return r;
	if (got != serial)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "the agent answered request %u instead of %u", got, serial);
	switch (op) {
	case IPC_CHANNEL_OP_SIGNATURE:
		if (!cursor_bytes(&c, &reply.signature, &reply.signature_len) ||
		    reply.signature_len == 0 || reply.signature_len > IPC_SIGNATURE_MAX)
			return frame_bad(err, "signature");
		break;
	case IPC_CHANNEL_OP_ERROR:
		if (!cursor_string(&c, false, &reply.error_name) ||
		    !cursor_string(&c, false, &reply.error_message))
			return frame_bad(err, "error");
		break;
	default:
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "the agent answered with op %u, not a signature or an error",
				    (unsigned)op);
	}
	if (c.left)
		return frame_bad(err, "bytes after the last field");
	*ret = reply;
	return 0;
}

typedef struct Writer {
	uint8_t *p;
	size_t left;
	bool full;
} Writer;

static void writer_raw(Writer *w, const void *data, size_t n)
{
	if (w->full || n > w->left) {
		w->full = true;
		return;
	}
	if (n)
		memcpy(w->p, data, n);
	w->p += n;
	w->left -= n;
}

static void writer_u32(Writer *w, uint32_t v)
{
	uint8_t b[4];

	put_le32(b, v);
	writer_raw(w, b, 4);
}

static void writer_bytes(Writer *w, const void *data, size_t n)
{
	if (n > UINT32_MAX) {
		w->full = true;
		return;
	}
	writer_u32(w, (uint32_t)n);
	writer_raw(w, data, n);
}

/* A string with its NUL; NULL: the empty field of an absent optional string. */
static void writer_string(Writer *w, const char *s)
{
	writer_bytes(w, s, s ? strlen(s) + 1 : 0);
}

static void writer_header(Writer *w, IpcChannelOp op, uint32_t serial)
{
	uint8_t h[IPC_CHANNEL_HEADER_SIZE] = {IPC_CHANNEL_VERSION, (uint8_t)op, 0, 0};

	put_le32(h + 4, serial);
	writer_raw(w, h, sizeof(h));
}

int ipc_channel_encode_sign(const IpcSignCall *call, uint32_t serial, uint8_t *buf, size_t size,
			    size_t *ret_len, CaError *err)
{
	Writer w = {buf, size < IPC_CHANNEL_FRAME_MAX ? size : IPC_CHANNEL_FRAME_MAX, false};

	writer_header(&w, IPC_CHANNEL_OP_SIGN, serial);
	writer_string(&w, call->uri);
	writer_string(&w, call->scheme);
	writer_bytes(&w, call->data, call->data_len);
	writer_string(&w, call->server_name);
	writer_u32(&w, (uint32_t)call->n_server_certs);
	for (size_t i = 0; i < call->n_server_certs; i++)
		writer_bytes(&w, call->server_certs[i].data, call->server_certs[i].size);
	if (w.full || call->n_server_certs > IPC_CERTS_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "the request does not fit in a channel frame of %d bytes",
				    IPC_CHANNEL_FRAME_MAX);
	*ret_len = (size_t)(w.p - buf);
	return 0;
}

int ipc_channel_encode_prepare(const char *uri, uint32_t serial, uint8_t *buf, size_t size,
			       size_t *ret_len, CaError *err)
{
	Writer w = {buf, size < IPC_CHANNEL_FRAME_MAX ? size : IPC_CHANNEL_FRAME_MAX, false};

	writer_header(&w, IPC_CHANNEL_OP_PREPARE, serial);
	writer_string(&w, uri);
	if (w.full)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "the request does not fit in a channel frame of %d bytes",
				    IPC_CHANNEL_FRAME_MAX);
	*ret_len = (size_t)(w.p - buf);
	return 0;
}

size_t ipc_channel_encode_reply(uint32_t serial, const char *error_name, const char *message,
				const uint8_t *sig, size_t sig_len, uint8_t *buf, size_t size)
{
	Writer w = {buf, size, false};

	if (!error_name) {
		if (sig_len == 0 || sig_len > IPC_SIGNATURE_MAX)
			return 0;
		writer_header(&w, IPC_CHANNEL_OP_SIGNATURE, serial);
		writer_bytes(&w, sig, sig_len);
	} else {
		char text[CA_ERROR_MESSAGE_MAX];

		/* Cut to fit; a message cut inside a character (or never UTF-8) loses its
		 * non-ASCII bytes, as on the bus (ipc_utf8_safe). */
		snprintf(text, sizeof(text), "%s", message && *message ? message : error_name);
		if (!dbus_validate_utf8(text, NULL))
			for (char *p = text; *p; p++)
				if ((unsigned char)*p >= 0x80)
					*p = '?';
		writer_header(&w, IPC_CHANNEL_OP_ERROR, serial);
		writer_string(&w, error_name);
		writer_string(&w, text);
	}
	return w.full ? 0 : (size_t)(w.p - buf);
}
