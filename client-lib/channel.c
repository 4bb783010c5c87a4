/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * channel: libcertagent's side of the signing channel (dbus/ipc-channel.h). The first Sign of
 * a client asks the agent for a channel (OpenChannel over the bus) and then sends each Sign
 * on it as one binary frame and reads the reply frame with one blocking recv (the socket's
 * receive timeout is the client's timeout): one socket round trip, no bus daemon and no D-Bus
 * marshalling. The bus stays in charge of everything else, and is the fallback whenever the
 * channel cannot be used: an agent without OpenChannel, a bus that cannot pass fds, a request
 * too large for a frame, or a channel the agent closed (it restarted, or exited when idle)
 * before it got the request. An agent that closes a fresh channel on its first request does
 * not speak our frame version: the bus it is, until the agent restarts.
 *
 * State lives in the certagent_client (fd, serial, receive buffer); no threads, no globals.
 * A client used after fork() opens its own channel: parent and child never share one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "client-internal.h"
#include "ipc-channel.h"
#include "util.h"

/* No PREPARE when this client sent a Sign on the channel less than this long ago (signing in
 * a row): the agent's helper has begun the next signature by itself a moment ago and uses it
 * as it is (pkcs11/helper-prime.h: PRIME_DELAY_MS after a signature, used unchecked while
 * younger than PRIME_FRESH_USEC), and a PREPARE would only cost time. */
#define CHANNEL_PREPARE_AFTER_USEC 5000

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
	c->prepare_known = false;
	c->prepare_unsupported = false;
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
	c->channel_timeout_ms = -1; /* set before the first recv */
	c->channel_answered = false;
	c->channel_prepared = false;
	c->channel_opened++;
	return 0;
}

/* Sends one frame, reopening the channel once if the agent closed it. 0, or 1: use the bus. */
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

/* The receive timeout of the socket is the client's timeout (set when it changed). */
static void channel_set_timeout(certagent_client *c)
{
	struct timeval tv = {.tv_sec = c->timeout_ms / 1000,
			     .tv_usec = (c->timeout_ms % 1000) * 1000};

	if (c->channel_timeout_ms == c->timeout_ms)
		return;
	if (setsockopt(c->channel_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0)
		c->channel_timeout_ms = c->timeout_ms;
}

void client_channel_prepare(certagent_client *c, const char *uri)
{
	uint8_t frame[IPC_CHANNEL_HEADER_SIZE + 4 + IPC_URI_MAX + 1];
	uint32_t serial;
	CaError e = {0};
	size_t len = 0;
	ssize_t n;

	if (c->channel_unsupported || c->prepare_unsupported)
		return;
	/* Signing in a row (reply_wait_sent() noted when the last Sign went out): the token's
	 * helper is at it already. */
	if (ca_now_usec() - c->reply_wait.start_us < CHANNEL_PREPARE_AFTER_USEC)
		return;
	if (c->channel_fd >= 0 && c->channel_pid != getpid())
		client_channel_close(c); /* inherited over fork(): the parent's, not ours */
	if (c->channel_fd < 0 && channel_open(c) != 0)
		return;
	serial = ++c->channel_serial ? c->channel_serial : ++c->channel_serial;
	if (ipc_channel_encode_prepare(uri, serial, frame, sizeof(frame), &len, &e))
		return;
	do {
		n = send(c->channel_fd, frame, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)len)
		c->channel_prepared = true;
	else if (n < 0 && errno != EAGAIN)
		client_channel_close(c); /* gone: the Sign opens a new one */
}

int client_channel_sign(certagent_client *c, const IpcSignCall *call, gnutls_datum_t *ret_sig,
			certagent_error *err)
{
	IpcChannelReply reply;
	uint8_t *buf;
	size_t len = 0;
	uint32_t serial;
	CaError e = {0};
	bool prepared;
	unsigned opened;
	ssize_t n;
	int r;

	if (c->channel_unsupported)
		return 1;
	if (c->channel_fd >= 0 && c->channel_pid != getpid())
		client_channel_close(c); /* inherited over fork(): the parent's, not ours */
	/* An agent that does not know PREPARE closes the channel on it: then this Sign finds
	 * the channel closed (and opens a new one) or gets no reply. */
	prepared = c->channel_prepared && c->channel_fd >= 0;
	opened = c->channel_opened;
	if (!c->channel_buf && !(c->channel_buf = malloc(IPC_CHANNEL_FRAME_MAX + 1)))
		return 1;
	buf = c->channel_buf;

	serial = ++c->channel_serial ? c->channel_serial : ++c->channel_serial;
	if (ipc_channel_encode_sign(call, serial, buf, IPC_CHANNEL_FRAME_MAX, &len, &e))
		return 1; /* too large for a frame: the bus takes it */
	c->channel_prepared = false;
	r = channel_send(c, buf, len);
	/* The frame holds the data to sign. */
	explicit_bzero(buf, len);
	if (prepared && !c->prepare_known && c->channel_opened != opened)
		c->prepare_unsupported = true;
	if (r)
		return 1;
	reply_wait_sent(&c->reply_wait);
	n = reply_wait_spin(&c->reply_wait, c->channel_fd, buf, IPC_CHANNEL_FRAME_MAX + 1,
			    MSG_TRUNC);
	if (n < 0 && errno == EAGAIN) {
		channel_set_timeout(c);
		do {
			n = recv(c->channel_fd, buf, IPC_CHANNEL_FRAME_MAX + 1, MSG_TRUNC);
		} while (n < 0 && errno == EINTR);
	}
	reply_wait_done(&c->reply_wait);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		/* A late reply must not answer the next request: start afresh next time. */
		client_channel_close(c);
		return client_error_set(
			err, CERTAGENT_E_TIMEOUT,
			"certagentd did not answer in time (%d ms): it may be "
			"waiting for a token or a PIN prompt; try again, or raise the "
			"timeout",
			c->timeout_ms);
	}
	if (n <= 0) {
		/* The agent closed the channel with our request in it: ask over the bus instead,
		 * which also starts the agent again if it is gone. On a fresh channel it refused
		 * our frame: an agent of another version. */
		if (prepared && !c->prepare_known)
			c->prepare_unsupported = true; /* it closed on the PREPARE, not the Sign */
		else if (!c->channel_answered)
			c->channel_unsupported = true;
		client_channel_close(c);
		return 1;
	}
	r = ipc_channel_decode_reply(buf, (size_t)n, serial, &reply, &e);
	if (r) {
		explicit_bzero(buf, (size_t)n < IPC_CHANNEL_FRAME_MAX ? (size_t)n
								      : IPC_CHANNEL_FRAME_MAX);
		client_channel_close(c);
		return client_error_set(err, CERTAGENT_E_FAILED,
					"certagentd sent a malformed reply on the signing channel: "
					"%s",
					e.message);
	}
	c->channel_answered = true;
	if (prepared)
		c->prepare_known = true;
	if (!reply.signature)
		r = client_error_from_name(err, reply.error_name, reply.error_message);
	else if (!(ret_sig->data = gnutls_malloc(reply.signature_len)))
		r = client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	else {
		memcpy(ret_sig->data, reply.signature, reply.signature_len);
		ret_sig->size = (unsigned)reply.signature_len;
	}
	explicit_bzero(buf, (size_t)n);
	return r;
}
