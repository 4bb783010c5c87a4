/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * channel: libcertagent's side of the signing channel (dbus/ipc-channel.h). The first Sign of
 * a client asks the agent for a channel (OpenChannel over the bus) and then sends each Sign
 * on it, as the same D-Bus message it would have sent to the bus, and reads the reply: one
 * socket round trip, no bus daemon in between. The bus stays in charge of everything else,
 * and is the fallback whenever the channel cannot be used: an agent without OpenChannel, a
 * bus that cannot pass fds, a request too large for a packet, or a channel the agent closed
 * (it restarted, or exited when idle) before it got the request.
 *
 * State lives in the certagent_client (fd, serial, receive buffer); no threads, no globals.
 * A client used after fork() opens its own channel: parent and child never share one.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client-internal.h"
#include "ipc-channel.h"

void client_channel_close(certagent_client *c)
{
	if (c->channel_fd >= 0)
		close(c->channel_fd);
	c->channel_fd = -1;
}

void client_channel_reset(certagent_client *c)
{
	client_channel_close(c);
	c->channel_unsupported = false;
}

void client_channel_free(certagent_client *c)
{
	client_channel_close(c);
	free(c->channel_buf);
	c->channel_buf = NULL;
}

/* Asks the agent for a channel. 0: open; 1: not available, use the bus. */
static int channel_open(certagent_client *c)
{
	DBusMessage *msg, *reply = NULL;
	certagent_error e = CERTAGENT_ERROR_INIT;
	int fd = -1, type = 0;
	socklen_t type_len = sizeof(type);
	int r;

	if (!c->channel_buf && !(c->channel_buf = malloc(IPC_CHANNEL_FRAME_MAX + 1)))
		return 1;
	/* Without fd passing on our connection the bus could not even deliver the reply. */
	if (!dbus_connection_can_send_type(c->conn, DBUS_TYPE_UNIX_FD)) {
		c->channel_unsupported = true;
		return 1;
	}
	msg = dbus_message_new_method_call(CA_BUS_NAME, CA_OBJECT_PATH, CA_INTERFACE,
					   "OpenChannel");
	if (!msg)
		return 1;
	r = client_call(c, msg, &reply, &e);
	dbus_message_unref(msg);
	if (r == 0 &&
	    !dbus_message_get_args(reply, NULL, DBUS_TYPE_UNIX_FD, &fd, DBUS_TYPE_INVALID))
		fd = -1;
	if (reply)
		dbus_message_unref(reply);
	/* An older agent (UnknownMethod), channels off, too many open: the bus it is, until the
	 * agent restarts (NameOwnerChanged resets this). */
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0 ||
	    type != SOCK_SEQPACKET) {
		if (fd >= 0)
			close(fd);
		c->channel_unsupported = true;
		return 1;
	}
	/* libdbus dups received fds close-on-exec; make sure, it is cheap and once. */
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	c->channel_fd = fd;
	c->channel_pid = getpid();
	return 0;
}

/* Sends one packet, reopening the channel once if the agent closed it. 0, or 1: use the bus. */
static int channel_send(certagent_client *c, const uint8_t *buf, size_t len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		ssize_t n;

		if (c->channel_fd < 0 && channel_open(c) != 0)
			return 1;
		do {
			n = send(c->channel_fd, buf, len, MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		if (n == (ssize_t)len)
			return 0;
		/* The agent went away (restart, idle exit) before it read anything. */
		client_channel_close(c);
	}
	return 1;
}

int client_channel_call(certagent_client *c, DBusMessage *msg, DBusMessage **ret_reply,
			certagent_error *err)
{
	DBusMessage *copy, *reply = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint32_t serial;
	CaError e = {0};
	ssize_t n;
	int r;

	if (c->channel_unsupported)
		return 1;
	if (c->channel_fd >= 0 && c->channel_pid != getpid())
		client_channel_close(c); /* inherited over fork(): the parent's, not ours */

	/* A copy gets the channel's serial: msg itself may still go to the bus. */
	copy = dbus_message_copy(msg);
	if (!copy)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	serial = ++c->channel_serial ? c->channel_serial : ++c->channel_serial;
	dbus_message_set_serial(copy, serial);
	r = ipc_channel_encode(copy, &buf, &len, &e);
	dbus_message_unref(copy);
	if (r < 0)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	if (r > 0)
		return 1; /* too large for a packet: the bus takes it */
	r = channel_send(c, buf, len);
	erase_and_free(buf, len);
	if (r)
		return 1;

	struct pollfd p = {.fd = c->channel_fd, .events = POLLIN};
	do {
		r = poll(&p, 1, c->timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r <= 0) {
		/* A late reply must not answer the next request: start afresh next time. */
		client_channel_close(c);
		return client_error_set(
			err, CERTAGENT_E_TIMEOUT,
			"certagentd did not answer in time (%d ms): it may be "
			"waiting for a token or a PIN prompt; try again, or raise the "
			"timeout",
			c->timeout_ms);
	}
	do {
		n = recv(c->channel_fd, c->channel_buf, IPC_CHANNEL_FRAME_MAX + 1, MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		/* The agent closed the channel with our request in it: ask over the bus instead,
		 * which also starts the agent again if it is gone. */
		client_channel_close(c);
		return 1;
	}
	r = ipc_channel_decode_reply(c->channel_buf, (size_t)n, serial, &reply, &e);
	explicit_bzero(c->channel_buf, (size_t)n < IPC_CHANNEL_FRAME_MAX + 1
					       ? (size_t)n
					       : IPC_CHANNEL_FRAME_MAX + 1);
	if (r) {
		client_channel_close(c);
		return r < 0 ? client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory")
			     : client_error_set(err, CERTAGENT_E_FAILED,
						"certagentd sent a malformed reply on the signing "
						"channel: %s",
						e.message);
	}
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR) {
		r = client_error_from_reply(reply, err);
		dbus_message_unref(reply);
		return r;
	}
	*ret_reply = reply;
	return 0;
}
