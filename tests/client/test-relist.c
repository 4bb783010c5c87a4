/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-relist PORT CA-FILE: one certagent_client and one set of credentials for the whole
 * run, as a long-lived application has them. For each line read from stdin it makes a new
 * mutual-TLS connection to 127.0.0.1:PORT (gnutls-serv --echo), sends the line and checks the
 * echo, then prints "handshake N: presented URI" (or "handshake N: failed: WHY") and flushes,
 * so a test can change the agent's identities between handshakes and see what the next one
 * presents. Exits 0 after stdin ends, if every handshake succeeded.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include <certagent.h>

static int tcp_connect(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* One connection: handshake, the line there and back. NULL, or what failed. */
static const char *connect_once(certagent_client *agent, gnutls_certificate_credentials_t cred,
				unsigned port, const char *line, char *why, size_t why_size)
{
	gnutls_session_t session = NULL;
	const certagent_error *e;
	char buf[1024];
	ssize_t n = -1;
	int fd, r;

	fd = tcp_connect(port);
	if (fd < 0)
		return "cannot connect";
	gnutls_init(&session, GNUTLS_CLIENT);
	gnutls_set_default_priority(session);
	gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_server_name_set(session, GNUTLS_NAME_DNS, "localhost", strlen("localhost"));
	gnutls_session_set_verify_cert(session, "localhost", 0);
	gnutls_transport_set_int(session, fd);
	gnutls_handshake_set_timeout(session, 20000);
	do {
		r = gnutls_handshake(session);
	} while (r < 0 && !gnutls_error_is_fatal(r));
	if (r == 0 && gnutls_record_send(session, line, strlen(line)) > 0)
		do {
			n = gnutls_record_recv(session, buf, sizeof(buf) - 1);
		} while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	if (r < 0 || n < 0) {
		e = certagent_client_last_error(agent);
		snprintf(why, why_size, "%s%s%s", gnutls_strerror(r < 0 ? r : (int)n),
			 e ? "; certagent: " : "", e ? e->message : "");
	} else if ((size_t)n != strlen(line) || memcmp(buf, line, (size_t)n) != 0) {
		snprintf(why, why_size, "the server did not echo the line");
	} else {
		gnutls_bye(session, GNUTLS_SHUT_WR);
		why = NULL;
	}
	gnutls_deinit(session);
	close(fd);
	return why;
}

int main(int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *agent = NULL;
	gnutls_certificate_credentials_t cred = NULL;
	char line[256], why[1024];
	unsigned port, n = 0, failed = 0;

	signal(SIGPIPE, SIG_IGN);
	if (argc != 3) {
		fprintf(stderr, "usage: test-relist PORT CA-FILE\n");
		return 2;
	}
	port = (unsigned)strtoul(argv[1], NULL, 10);
	if (certagent_client_new(NULL, &agent, &err) < 0) {
		fprintf(stderr, "test-relist: %s\n", err.message);
		return 1;
	}
	gnutls_certificate_allocate_credentials(&cred);
	if (gnutls_certificate_set_x509_trust_file(cred, argv[2], GNUTLS_X509_FMT_PEM) <= 0 ||
	    certagent_credentials_set(agent, cred, NULL, &err) < 0) {
		fprintf(stderr, "test-relist: cannot set up the credentials: %s\n", err.message);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		const char *bad = connect_once(agent, cred, port, line, why, sizeof(why));

		n++;
		if (bad) {
			failed++;
			printf("handshake %u: failed: %s\n", n, bad);
		} else {
			printf("handshake %u: presented %s\n", n,
			       certagent_client_last_identity(agent)
				       ? certagent_client_last_identity(agent)
				       : "(nothing)");
		}
		fflush(stdout);
	}
	gnutls_certificate_free_credentials(cred);
	certagent_client_free(agent);
	return failed ? 1 : 0;
}
