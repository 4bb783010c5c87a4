/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-channel: the decoders of the signing channel (dbus/ipc-channel.c), which read packets a
 * peer controls. Input: one byte choosing the side (even: the agent decoding a request; odd:
 * the client decoding a reply to serial 7), then the packet. Besides "no crash", it checks
 * what the agent relies on: an accepted request is a Sign call with signature ssaya{sv} on
 * the agent's path and interface, an accepted reply answers serial 7; and whatever is
 * accepted survives encoding and decoding again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ipc-channel.h"
#include "ipc.h"
#include "util.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	DBusMessage *msg = NULL, *again = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	CaError err = {0};
	bool call;
	int r;

	if (size < 1)
		return 0;
	call = data[0] % 2 == 0;
	data++;
	size--;
	r = call ? ipc_channel_decode_call(data, size, &msg, &err)
		 : ipc_channel_decode_reply(data, size, 7, &msg, &err);
	check(r == 0 || r == -ENOMEM || r == CA_E_INVALID_ARGS || r == CA_E_TOO_LARGE);
	if (r != 0)
		return 0;
	if (call) {
		check(dbus_message_is_method_call(msg, IPC_INTERFACE, IPC_CHANNEL_MEMBER));
		check(strcmp(dbus_message_get_path(msg), IPC_OBJECT_PATH) == 0);
		check(dbus_message_has_signature(msg, IPC_CHANNEL_SIGNATURE));
	} else {
		check(dbus_message_get_reply_serial(msg) == 7);
	}
	r = ipc_channel_encode(msg, &buf, &len, &err);
	check(r == 0 || r == -ENOMEM);
	if (r == 0) {
		r = call ? ipc_channel_decode_call(buf, len, &again, &err)
			 : ipc_channel_decode_reply(buf, len, 7, &again, &err);
		check(r == 0 || r == -ENOMEM);
		if (again)
			dbus_message_unref(again);
		free(buf);
	}
	dbus_message_unref(msg);
	return 0;
}
