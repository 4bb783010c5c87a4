/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-channel: the arguments of a Sign (IpcSignCall, the same for the bus and the signing
 * channel) and the framing of the signing channel, the fast path of Sign (docs/design.md,
 * "Signing channel"). A client calls OpenChannel() on the bus and gets one end of a
 * SOCK_SEQPACKET socketpair; on it, each packet is one compact binary frame: a Sign request
 * from the client, a signature or an error from the agent. The agent turns a request into the
 * IpcSignCall a Sign from the bus gives (agent/methods.c reads that), so both run through the
 * same checks, policy and audit. The bus daemon is left out of the round trip; it stays the
 * control plane (activation, who may open a channel, signals, listing).
 *
 * A frame (integers little-endian):
 *
 *   u8 version (IPC_CHANNEL_VERSION), u8 op (IpcChannelOp), u16 0, u32 serial (not 0)
 *   then the op's fields, each a u32 length and that many bytes; a string's bytes end with
 *   its one NUL (length 0: the optional string is absent):
 *   IPC_CHANNEL_OP_SIGN       uri, scheme, data, server-name (optional),
 *                             u32 n certificates (<= IPC_CERTS_MAX), n x certificate (DER)
 *   IPC_CHANNEL_OP_SIGNATURE  signature (1..IPC_SIGNATURE_MAX bytes)
 *   IPC_CHANNEL_OP_ERROR      D-Bus error name (org.certagent.Error.*), message
 *   IPC_CHANNEL_OP_PREPARE    uri
 *
 * and nothing after the last field. A reply carries the serial of its request. One request
 * at a time per channel: the agent reads the next frame only after it has sent the reply to
 * the previous one. PREPARE gets no reply: the client says that a Sign with that identity is
 * coming (it chose the identity for a handshake), so that the agent can have its token begin
 * one ahead (pkcs11/helper-prime.h); the Sign follows with a serial of its own. An agent that
 * does not know PREPARE closes the channel on it; the client, finding the channel closed at
 * its Sign, sends no more PREPAREs to that agent and sends the Sign again (on a new channel,
 * or on the bus). The decoders are total: every length is checked against what is left of
 * the frame before it is used, strings must be UTF-8 without NUL, nothing is allocated, and
 * the result borrows from the frame. tests/fuzz/fuzz-channel.c fuzzes them. A frame of
 * another version, an unknown op or any malformation makes the agent close the channel (a
 * client then falls back to the bus), so a future change of the format is detectable.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dbus/dbus.h>
#include <gnutls/gnutls.h>

#include "error.h"
#include "ipc.h"

/*
 * The largest frame either side sends or accepts: a Sign with 64 KiB of data and a typical
 * server chain fits; a larger request goes over the bus instead (the client decides). Below
 * the default unix socket buffer (net.core.wmem_default, 208 KiB), so a send never fails with
 * EMSGSIZE.
 */
#define IPC_CHANNEL_FRAME_MAX (128 * 1024)

/* 1 was D-Bus messages in the wire format; 2 the frames above. */
#define IPC_CHANNEL_VERSION 2
#define IPC_CHANNEL_HEADER_SIZE 8

/* A buffer this large holds any reply frame: a signature, or an error's name and message. */
#define IPC_CHANNEL_REPLY_MAX 2048

typedef enum IpcChannelOp {
	IPC_CHANNEL_OP_SIGN = 1,
	IPC_CHANNEL_OP_SIGNATURE = 2,
	IPC_CHANNEL_OP_ERROR = 3,
	IPC_CHANNEL_OP_PREPARE = 4,
} IpcChannelOp;

/*
 * The arguments of one Sign, borrowed from the message or frame they were read from (which
 * must outlive this). Sizes are as sent: the caps (IPC_URI_MAX, IPC_SCHEME_MAX,
 * IPC_SIGN_DATA_MAX, IPC_SERVER_NAME_MAX, IPC_CERT_MAX) are checked by the agent's one Sign
 * path, so that a request over one gets the same error reply on either path.
 */
typedef struct IpcSignCall {
	const char *uri;
	const char *scheme;
	const uint8_t *data;
	size_t data_len;
	const char *server_name;		    /* NULL: none */
	gnutls_datum_t server_certs[IPC_CERTS_MAX]; /* DER, leaf first */
	size_t n_server_certs;
	IpcBytesArray owned_certs; /* a bus Sign's copies (agent/methods.c), or empty */
} IpcSignCall;

/* The reply to one request, borrowed from the frame. */
typedef struct IpcChannelReply {
	const uint8_t *signature; /* NULL: an error */
	size_t signature_len;
	const char *error_name, *error_message;
} IpcChannelReply;

/*
 * Agent: decodes one frame from the client, a SIGN or a PREPARE (*ret_op), into *ret
 * (borrowing from buf; for PREPARE only uri is set) and its serial. Returns 0,
 * CA_E_TOO_LARGE (over IPC_CHANNEL_FRAME_MAX, more than IPC_CERTS_MAX certificates) or
 * CA_E_INVALID_ARGS (another version or op, a bad length, a bad string): err says which.
 */
int ipc_channel_decode_request(const void *buf, size_t len, uint32_t *ret_serial,
			       IpcChannelOp *ret_op, IpcSignCall *ret, CaError *err);

/* Client: decodes the agent's reply to serial. Codes as ipc_channel_decode_sign(). */
int ipc_channel_decode_reply(const void *buf, size_t len, uint32_t serial, IpcChannelReply *ret,
			     CaError *err);

/*
 * Client: writes the frame of call with serial into buf (size bytes; at most
 * IPC_CHANNEL_FRAME_MAX are used). Returns 0 with *ret_len, or CA_E_TOO_LARGE when it does not
 * fit (the client then uses the bus).
 */
int ipc_channel_encode_sign(const IpcSignCall *call, uint32_t serial, uint8_t *buf, size_t size,
			    size_t *ret_len, CaError *err);

/* Client: the PREPARE frame for uri, as ipc_channel_encode_sign(). */
int ipc_channel_encode_prepare(const char *uri, uint32_t serial, uint8_t *buf, size_t size,
			       size_t *ret_len, CaError *err);

/*
 * Agent: writes the reply to serial into buf (IPC_CHANNEL_REPLY_MAX bytes are always enough):
 * the signature when error_name is NULL, else the error error_name (a D-Bus error name,
 * ipc_error_to_name) with message (cut to fit; made UTF-8 safe; NULL or empty: the name).
 * Returns the frame's length; 0 when the signature is empty or over IPC_SIGNATURE_MAX.
 */
size_t ipc_channel_encode_reply(uint32_t serial, const char *error_name, const char *message,
				const uint8_t *sig, size_t sig_len, uint8_t *buf, size_t size);
