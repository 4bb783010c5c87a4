/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-channel: the frame decoders of the signing channel (dbus/ipc-channel.c), which read
 * frames a peer controls. Input: one byte choosing the side (even: the agent decoding a Sign
 * or Prepare request; odd: the client decoding a reply to serial 7), then the frame. Besides
 * "no crash" (ASan checks every read stays inside the frame), it checks what the agent relies
 * on: an accepted request has NUL-terminated strings inside the frame and at most
 * IPC_CERTS_MAX certificates, and the format is canonical: encoding what was decoded gives the
 * same bytes back (so nothing in a frame is skipped unread).
 *
 * The seeds in tests/fuzz/corpus/channel/ were written by tests/fuzz/channel-seeds.py.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ipc-channel.h"
#include "util.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* s is a NUL-terminated string inside [data, data + size). */
static void check_inside(const char *s, const uint8_t *data, size_t size)
{
	const uint8_t *p = (const uint8_t *)s;

	check(p >= data && p < data + size);
	check(memchr(p, 0, (size_t)(data + size - p)) != NULL);
}

static void fuzz_sign(const uint8_t *data, size_t size)
{
	static uint8_t again[IPC_CHANNEL_FRAME_MAX];
	IpcSignCall call;
	IpcChannelOp op = 0;
	CaError err = {0};
	uint32_t serial = 0;
	size_t len = 0;
	int r = ipc_channel_decode_request(data, size, &serial, &op, &call, &err);

	check(r == 0 || r == CA_E_INVALID_ARGS || r == CA_E_TOO_LARGE);
	check(r == 0 || err.message[0]);
	if (r)
		return;
	check(serial != 0 && size <= IPC_CHANNEL_FRAME_MAX);
	check(op == IPC_CHANNEL_OP_SIGN || op == IPC_CHANNEL_OP_PREPARE);
	check_inside(call.uri, data, size);
	if (op == IPC_CHANNEL_OP_PREPARE) {
		r = ipc_channel_encode_prepare(call.uri, serial, again, sizeof(again), &len, &err);
		check(r == 0 && len == size && memcmp(again, data, size) == 0);
		return;
	}
	check_inside(call.scheme, data, size);
	if (call.server_name)
		check_inside(call.server_name, data, size);
	check(call.data_len <= size && call.n_server_certs <= IPC_CERTS_MAX);
	r = ipc_channel_encode_sign(&call, serial, again, sizeof(again), &len, &err);
	check(r == 0 && len == size && memcmp(again, data, size) == 0);
}

static void fuzz_reply(const uint8_t *data, size_t size)
{
	uint8_t again[IPC_CHANNEL_REPLY_MAX];
	IpcChannelReply reply;
	CaError err = {0};
	size_t len;
	int r = ipc_channel_decode_reply(data, size, 7, &reply, &err);

	check(r == 0 || r == CA_E_INVALID_ARGS || r == CA_E_TOO_LARGE);
	if (r)
		return;
	if (reply.signature) {
		check(reply.signature_len > 0 && reply.signature_len <= IPC_SIGNATURE_MAX);
		len = ipc_channel_encode_reply(7, NULL, NULL, reply.signature, reply.signature_len,
					       again, sizeof(again));
		check(len == size && memcmp(again, data, size) == 0);
		return;
	}
	check_inside(reply.error_name, data, size);
	check_inside(reply.error_message, data, size);
	/* Long names and messages are cut when encoding; short ones come back unchanged. */
	if (strlen(reply.error_name) < 128 && reply.error_message[0] &&
	    strlen(reply.error_message) < CA_ERROR_MESSAGE_MAX) {
		len = ipc_channel_encode_reply(7, reply.error_name, reply.error_message, NULL, 0,
					       again, sizeof(again));
		check(len == size && memcmp(again, data, size) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] % 2 == 0)
		fuzz_sign(data + 1, size - 1);
	else
		fuzz_reply(data + 1, size - 1);
	return 0;
}
