/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-channel: the framing of the signing channel, the fast path of Sign (docs/design.md,
 * "Signing channel"). A client calls OpenChannel() on the bus and gets one end of a
 * SOCK_SEQPACKET socketpair; on it, each packet is one D-Bus message in the D-Bus wire format
 * (dbus_message_marshal), so a Sign on the channel is byte for byte the Sign the bus would
 * have delivered and runs through the same checks, policy and audit in the agent. The bus
 * daemon is left out of the round trip; it stays the control plane (activation, who may
 * open a channel, signals, listing).
 *
 * One request at a time per channel: the agent reads the next packet only after it has sent
 * the reply to the previous one. The decoders below are what the agent and the client run on
 * bytes from the peer; both check the size against IPC_CHANNEL_FRAME_MAX before libdbus looks
 * at them, and tests/fuzz/fuzz-channel.c fuzzes them.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <dbus/dbus.h>

#include "error.h"

/*
 * The largest packet either side sends or accepts: a Sign with 64 KiB of data and a typical
 * server chain fits; a larger request goes over the bus instead (the client decides). Below
 * the default unix socket buffer (net.core.wmem_default, 208 KiB), so a send never fails with
 * EMSGSIZE.
 */
#define IPC_CHANNEL_FRAME_MAX (128 * 1024)

/* The member served on a channel (everything else is refused by the decoder). */
#define IPC_CHANNEL_MEMBER "Sign"
#define IPC_CHANNEL_SIGNATURE "ssaya{sv}"

/*
 * Decodes one packet received by the agent: a method call to IPC_OBJECT_PATH,
 * IPC_INTERFACE.Sign with signature ssaya{sv} and no unix fds, with a serial.
 * Returns 0 with *ret the message (the caller unrefs it), -ENOMEM, CA_E_TOO_LARGE (over
 * IPC_CHANNEL_FRAME_MAX) or CA_E_INVALID_ARGS (not a D-Bus message, or another call):
 * err says which.
 */
int ipc_channel_decode_call(const void *buf, size_t len, DBusMessage **ret, CaError *err);

/*
 * Decodes one packet received by the client: a method return or an error whose reply serial is
 * serial. Codes as ipc_channel_decode_call().
 */
int ipc_channel_decode_reply(const void *buf, size_t len, uint32_t serial, DBusMessage **ret,
			     CaError *err);

/*
 * Marshals msg into a packet (malloc'd, in *ret_buf; erase it after sending: it may hold a
 * signature). Returns 0, -ENOMEM, or CA_E_TOO_LARGE when it would pass IPC_CHANNEL_FRAME_MAX
 * (the client then uses the bus).
 */
int ipc_channel_encode(DBusMessage *msg, uint8_t **ret_buf, size_t *ret_len, CaError *err);
