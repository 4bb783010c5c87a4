// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vcard-bridge: puts a libcacard virtual CAC card into the vsmartcard `vpcd` reader of a real
 * pcscd, so OpenSC's PKCS#11 module sees a CAC token through the whole PC/SC stack.
 *
 * The card is libcacard's NSS-backed soft card: its certificates and RSA keys live in an NSS
 * database (made by the test with certutil), its PIN is that database's password. The bridge
 * plays vsmartcard's `vpicc` role: it connects to vpcd on 127.0.0.1:PORT (vpcd listens on all
 * interfaces, so the test runs pcscd and the bridge in a private network namespace) and serves
 * the card until vpcd closes the connection. Stopping the bridge is pulling the card: pcscd
 * sees it removed. Starting it again inserts a fresh card (new process, new NSS state: not
 * logged in). (vpcd 0.8's own "client mode", DEVICENAME host:port, aborts pcscd when the card
 * is not there yet, so it is not used.)
 *
 * vpcd's protocol: each message is a 2-byte big-endian length and a payload. A 1-byte payload
 * is a control code (0 power off, 1 power on, 2 reset, 4 get ATR: only ATR is answered);
 * anything else is a command APDU, answered with the response APDU.
 *
 *   vcard-bridge --db DIR --port PORT --cert NICK [--cert NICK...] [--verbose]
 *
 * Retries the connection for up to 10 s (pcscd may still be starting), prints "connected to
 * 127.0.0.1:PORT" on stdout once connected. Exit status 0 when vpcd closes the connection or on
 * SIGTERM/SIGINT, 2 if vpcd never answered, 1 on any other error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libcacard.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BRIDGE_MAX_CERTS 3    /* a CAC card has three PKI applets */
#define BRIDGE_MAX_MSG 0xffff /* vpcd's length field is 16 bits */
#define BRIDGE_READER "Virtual Reader"

enum {
	BRIDGE_CTRL_OFF = 0,
	BRIDGE_CTRL_ON = 1,
	BRIDGE_CTRL_RESET = 2,
	BRIDGE_CTRL_ATR = 4,
};

static volatile sig_atomic_t bridge_stop;
static bool bridge_verbose;

static void bridge_on_signal(int sig)
{
	(void)sig;
	bridge_stop = 1;
}

static void bridge_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static void bridge_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bridge_log(const char *fmt, ...)
{
	va_list ap;

	fputs("vcard-bridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Reads exactly n bytes. Returns 1 on success, 0 on a clean EOF before the first byte, -errno
 * on error or a short read (-EPIPE), -EINTR once a stop was requested.
 *
 * vpcd sends a message's length and its payload in two writes, so with Nagle's algorithm on
 * its side the payload waits for our ACK of the length, which the kernel delays by up to
 * 40 ms: 44 ms per APDU, 3.4 s for OpenSC to read the card. TCP_QUICKACK (which the kernel
 * clears again on its own) is set before every read so the ACK goes at once. */
static int bridge_read_all(int fd, void *buf, size_t n)
{
	static const int one = 1;
	size_t got = 0;

	while (got < n) {
		(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		ssize_t r = read(fd, (unsigned char *)buf + got, n - got);
		if (r < 0 && errno == EINTR) {
			if (bridge_stop)
				return -EINTR;
			continue;
		}
		if (r < 0)
			return -errno;
		if (r == 0)
			return got == 0 ? 0 : -EPIPE;
		got += (size_t)r;
	}
	return 1;
}

/* Sends one vpcd message: the 2-byte big-endian length, then the payload, in one buffer. */
static int bridge_write_msg(int fd, const unsigned char *payload, size_t n)
{
	static unsigned char msg[2 + BRIDGE_MAX_MSG];
	size_t sent = 0;

	if (n > BRIDGE_MAX_MSG)
		return -EMSGSIZE;
	msg[0] = (unsigned char)(n >> 8);
	msg[1] = (unsigned char)n;
	memcpy(msg + 2, payload, n);
	while (sent < n + 2) {
		ssize_t r = send(fd, msg + sent, n + 2 - sent, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		sent += (size_t)r;
	}
	return 0;
}

typedef struct {
	VReader *reader;
	unsigned char atr[64];
	int atr_len;
} Bridge;

/* The ATR is read once at start (a power-on) and answered from there afterwards: vpcd asks
 * for it on every presence poll, and a power-on each time would log the card out. */
static int bridge_power_on(Bridge *b)
{
	int len = (int)sizeof(b->atr);

	if (vreader_power_on(b->reader, b->atr, &len) != VREADER_OK)
		return -EIO;
	b->atr_len = len;
	return 0;
}

static int bridge_control(Bridge *b, int fd, unsigned char code)
{
	switch (code) {
	case BRIDGE_CTRL_OFF:
		vreader_power_off(b->reader);
		return 0;
	case BRIDGE_CTRL_ON:
	case BRIDGE_CTRL_RESET:
		return bridge_power_on(b);
	case BRIDGE_CTRL_ATR:
		return bridge_write_msg(fd, b->atr, (size_t)b->atr_len);
	default:
		bridge_log("ignoring unknown control code %u", code);
		return 0;
	}
}

/* Serves one vpcd connection until it closes. Returns 0 on EOF, negative errno on error. */
static int bridge_serve(Bridge *b, int fd)
{
	static unsigned char in[BRIDGE_MAX_MSG], out[BRIDGE_MAX_MSG + 2];
	unsigned long napdu = 0;

	for (;;) {
		unsigned char hdr[2];
		if (bridge_stop)
			return -EINTR;
		int r = bridge_read_all(fd, hdr, 2);
		if (r <= 0)
			return r;
		size_t n = (size_t)hdr[0] << 8 | hdr[1];
		if (n == 0)
			continue;
		r = bridge_read_all(fd, in, n);
		if (r <= 0)
			return r == 0 ? -EPIPE : r;
		if (n == 1) {
			r = bridge_control(b, fd, in[0]);
			if (r < 0)
				return r;
			continue;
		}
		int outlen = (int)sizeof(out);
		if (vreader_xfr_bytes(b->reader, in, (int)n, out, &outlen) != VREADER_OK ||
		    outlen < 2) {
			/* No card answer: report "no precise diagnosis" rather than hang vpcd. */
			out[0] = 0x6f;
			out[1] = 0x00;
			outlen = 2;
		}
		napdu++;
		if (bridge_verbose)
			bridge_log("apdu %lu: INS %02x, %zu bytes in, SW %02x%02x", napdu,
				   n > 1 ? in[1] : 0, n, out[outlen - 2], out[outlen - 1]);
		r = bridge_write_msg(fd, out, (size_t)outlen);
		if (r < 0)
			return r;
	}
}

/* Connects to vpcd on 127.0.0.1:port, retrying every 100 ms for up to 10 s. */
static int bridge_connect(unsigned short port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int e = -ECONNREFUSED;

	for (int i = 0; i < 100 && !bridge_stop; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		e = -errno;
		close(fd);
		if (e != -ECONNREFUSED && e != -EINTR)
			return e;
		usleep(100 * 1000);
	}
	return bridge_stop ? -EINTR : e;
}

/* "db=\"sql:DIR\" use_hw=no soft=(,Virtual Reader,CAC,,cert1,cert2,cert3)": the internal NSS
 * slot (empty slot name) as one soft CAC card in a reader named BRIDGE_READER. */
static char *bridge_options(const char *db, char **certs, int ncerts)
{
	size_t cap = strlen(db) + 128;
	for (int i = 0; i < ncerts; i++)
		cap += strlen(certs[i]) + 1;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	int off = snprintf(s, cap, "db=\"sql:%s\" use_hw=no soft=(," BRIDGE_READER ",CAC,", db);
	for (int i = 0; i < ncerts; i++)
		off += snprintf(s + off, cap - (size_t)off, ",%s", certs[i]);
	snprintf(s + off, cap - (size_t)off, ")");
	return s;
}

static bool bridge_name_ok(const char *s)
{
	/* libcacard's option parser splits on , and ) and stops at quotes. */
	return *s && strlen(s) < 256 && !strpbrk(s, ",()\" \t\n");
}

static void bridge_usage(FILE *f)
{
	fputs("usage: vcard-bridge --db DIR --port PORT --cert NICK [--cert NICK...] [--verbose]\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"db", required_argument, NULL, 'd'},	{"port", required_argument, NULL, 'p'},
		{"cert", required_argument, NULL, 'c'}, {"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},	{0},
	};
	const char *db = NULL;
	char *certs[BRIDGE_MAX_CERTS];
	int ncerts = 0, c;
	unsigned long port = 0;
	__attribute__((cleanup(bridge_closep))) int fd = -1;

	while ((c = getopt_long(argc, argv, "d:p:c:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			db = optarg;
			break;
		case 'p': {
			char *end;
			errno = 0;
			port = strtoul(optarg, &end, 10);
			if (errno || *end || port == 0 || port > 65535) {
				bridge_log("bad port: %s", optarg);
				return 1;
			}
			break;
		}
		case 'c':
			if (ncerts == BRIDGE_MAX_CERTS) {
				bridge_log("at most %d certificates (a CAC card has three)",
					   BRIDGE_MAX_CERTS);
				return 1;
			}
			if (!bridge_name_ok(optarg)) {
				bridge_log("certificate nickname not usable: \"%s\"", optarg);
				return 1;
			}
			certs[ncerts++] = optarg;
			break;
		case 'v':
			bridge_verbose = true;
			break;
		case 'h':
			bridge_usage(stdout);
			return 0;
		default:
			bridge_usage(stderr);
			return 1;
		}
	}
	if (!db || !port || !ncerts || optind != argc || strpbrk(db, "\"")) {
		bridge_usage(stderr);
		return 1;
	}

	struct sigaction sa = {.sa_handler = bridge_on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	char *opts_str = bridge_options(db, certs, ncerts);
	if (!opts_str) {
		bridge_log("out of memory");
		return 1;
	}
	VCardEmulOptions *opts = vcard_emul_options(opts_str);
	free(opts_str);
	if (!opts || vcard_emul_init(opts) != VCARD_EMUL_OK) {
		bridge_log("libcacard could not make the card from sql:%s (certificates missing?)",
			   db);
		return 1;
	}
	Bridge b = {.reader = vreader_get_reader_by_name(BRIDGE_READER)};
	if (!b.reader || vreader_card_is_present(b.reader) != VREADER_OK) {
		bridge_log("libcacard made no card in reader \"%s\"", BRIDGE_READER);
		return 1;
	}
	if (bridge_power_on(&b) < 0) {
		bridge_log("the virtual card gave no ATR");
		return 1;
	}

	fd = bridge_connect((unsigned short)port);
	if (fd == -EINTR)
		return 0;
	if (fd < 0) {
		bridge_log("cannot connect to vpcd on 127.0.0.1:%lu: %s", port, strerror(-fd));
		return fd == -ECONNREFUSED ? 2 : 1;
	}
	printf("connected to 127.0.0.1:%lu\n", port);
	fflush(stdout);

	int ret = 0, r = bridge_serve(&b, fd);
	if (r < 0 && r != -EINTR) {
		bridge_log("connection to vpcd ended: %s", strerror(-r));
		ret = 1;
	} else if (bridge_verbose) {
		bridge_log("%s", r == 0 ? "vpcd closed the connection" : "stopped");
	}
	vreader_free(b.reader);
	return ret;
}
