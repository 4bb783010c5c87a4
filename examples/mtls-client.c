/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mtls-client: the smallest useful libcertagent program. It connects to HOST PORT over TLS,
 * presents the client certificate certagentd holds (the private key never leaves the token),
 * sends one line and prints the answer. Copy it as a starting point.
 *
 *   cc mtls-client.c $(pkg-config --cflags --libs certagent) -o mtls-client
 *   ./mtls-client example.com 443 "GET / HTTP/1.0"  [CA-FILE]
 *
 * What libcertagent adds to an ordinary GnuTLS client is four calls: certagent_client_new()
 * (talk to the agent), certagent_credentials_set() (let it answer the server's certificate
 * request), certagent_session_set_server_name() (SNI, and the server the agent signs for) and
 * certagent_client_last_error() (why, if it could not).
 */
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include <certagent.h>

static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

int main(int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *agent = NULL;
	gnutls_certificate_credentials_t cred = NULL;
	gnutls_session_t session = NULL;
	char buf[4096];
	int fd = -1, r, status = 1;
	ssize_t n;

	/* A server that closes first must not kill us with SIGPIPE (e.g. inside gnutls_bye). */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 4) {
		fprintf(stderr, "usage: %s HOST PORT LINE [CA-FILE]\n", argv[0]);
		return 2;
	}

	/* 1. Talk to the agent on the session bus (NULL = the default address). */
	if (certagent_client_new(NULL, &agent, &err) < 0) {
		fprintf(stderr, "%s\n", err.message); /* says how to start the agent */
		return 3;
	}

	/* 2. Ordinary GnuTLS credentials: whom we trust... */
	gnutls_certificate_allocate_credentials(&cred);
	if (argc > 4)
		gnutls_certificate_set_x509_trust_file(cred, argv[4], GNUTLS_X509_FMT_PEM);
	else
		gnutls_certificate_set_x509_system_trust(cred);
	/* ...and who we are: the agent picks an identity the server accepts, per handshake. */
	if (certagent_credentials_set(agent, cred, NULL, &err) < 0) {
		fprintf(stderr, "%s\n", err.message);
		goto out;
	}

	/* 3. An ordinary GnuTLS session, with server name indication and verification. */
	fd = tcp_connect(argv[1], argv[2]);
	if (fd < 0) {
		fprintf(stderr, "cannot connect to %s port %s\n", argv[1], argv[2]);
		goto out;
	}
	gnutls_init(&session, GNUTLS_CLIENT);
	gnutls_set_default_priority(session);
	gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred);
	/* Sets the SNI and tells the agent which server it signs for (policy, PIN prompts). */
	certagent_session_set_server_name(agent, session, argv[1], &err);
	gnutls_session_set_verify_cert(session, argv[1], 0);
	gnutls_transport_set_int(session, fd);
	gnutls_handshake_set_timeout(session, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);

	do {
		r = gnutls_handshake(session);
	} while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		/* The GnuTLS error says what failed; the agent's error says why, if it was ours. */
		const certagent_error *e = certagent_client_last_error(agent);

		fprintf(stderr, "handshake failed: %s\n", gnutls_strerror(r));
		if (e)
			fprintf(stderr, "certagent: %s\n", e->message);
		goto out;
	}
	if (certagent_client_last_identity(agent))
		fprintf(stderr, "presented %s\n", certagent_client_last_identity(agent));

	/* 4. Send a line, print what comes back. With TLS 1.3 a server that rejects our
	 * certificate says so here, on the first read, as an alert. */
	snprintf(buf, sizeof(buf), "%s\n", argv[3]);
	if (gnutls_record_send(session, buf, strlen(buf)) < 0)
		goto out;
	do {
		n = gnutls_record_recv(session, buf, sizeof(buf));
	} while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	if (n < 0) {
		fprintf(stderr, "receive failed: %s%s%s\n", gnutls_strerror(n),
			n == GNUTLS_E_FATAL_ALERT_RECEIVED ? ": " : "",
			n == GNUTLS_E_FATAL_ALERT_RECEIVED
				? gnutls_alert_get_name(gnutls_alert_get(session))
				: "");
		goto out;
	}
	fwrite(buf, 1, n, stdout);
	gnutls_bye(session, GNUTLS_SHUT_WR);
	status = 0;

out:
	/* The credentials and session go before the agent client they were made from. */
	if (session)
		gnutls_deinit(session);
	if (cred)
		gnutls_certificate_free_credentials(cred);
	certagent_client_free(agent);
	if (fd >= 0)
		close(fd);
	return status;
}
