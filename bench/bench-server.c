/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-server: a GnuTLS server thread fed connected sockets through a pipe, one handshake at
 * a time. Counters and the last error are shared with the measuring thread under a mutex.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "bench-server.h"

/* A stuck peer must not hang the bench (or CI) forever. */
#define BENCH_SERVER_TIMEOUT_MS 30000

struct BenchServer {
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
	int queue[2]; /* fds of connections to serve; -1 ends the thread */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	unsigned long ok, failed;
	char error[256];
};

static void bench_server_fail(BenchServer *s, const char *what, int rc)
{
	pthread_mutex_lock(&s->lock);
	s->failed++;
	snprintf(s->error, sizeof(s->error), "%s: %s", what, gnutls_strerror(rc));
	pthread_mutex_unlock(&s->lock);
}

static void bench_server_handshake(BenchServer *s, int fd)
{
	gnutls_session_t session = NULL;
	int rc = gnutls_init(&session, GNUTLS_SERVER | GNUTLS_NO_TICKETS);
	if (rc < 0) {
		bench_server_fail(s, "gnutls_init", rc);
		goto out;
	}
	gnutls_priority_set(session, s->prio);
	gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, s->cred);
	gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
	gnutls_session_set_verify_cert(session, NULL, 0); /* chain only: clients have no name */
	gnutls_handshake_set_timeout(session, BENCH_SERVER_TIMEOUT_MS);
	gnutls_transport_set_int(session, fd);

	do {
		rc = gnutls_handshake(session);
	} while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0) {
		bench_server_fail(s, "server handshake", rc);
		goto out;
	}
	if (gnutls_certificate_type_get2(session, GNUTLS_CTYPE_CLIENT) != GNUTLS_CRT_X509 ||
	    !gnutls_certificate_get_peers(session, NULL)) {
		bench_server_fail(s, "server handshake: no client certificate",
				  GNUTLS_E_NO_CERTIFICATE_FOUND);
		goto out;
	}

	static const char accepted = BENCH_SERVER_ACCEPTED;
	do {
		rc = gnutls_record_send(session, &accepted, 1);
	} while (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED);
	if (rc < 0) {
		bench_server_fail(s, "server send", rc);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	s->ok++;
	pthread_mutex_unlock(&s->lock);
out:
	gnutls_deinit(session);
	close(fd);
}

static void *bench_server_main(void *userdata)
{
	BenchServer *s = userdata;

	for (;;) {
		int fd;
		ssize_t n = read(s->queue[0], &fd, sizeof(fd));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(fd) || fd < 0)
			break;
		bench_server_handshake(s, fd);
	}
	return NULL;
}

int bench_server_new(const char *cert_file, const char *key_file, const char *ca_file,
		     BenchServer **ret, CaError *err)
{
	BenchServer *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->queue[0] = s->queue[1] = -1;
	pthread_mutex_init(&s->lock, NULL);

	int rc = gnutls_certificate_allocate_credentials(&s->cred);
	if (rc < 0) {
		rc = ca_error_set(err, CA_E_FAILED, "server credentials: %s", gnutls_strerror(rc));
		goto fail;
	}
	rc = gnutls_certificate_set_x509_key_file2(s->cred, cert_file, key_file,
						   GNUTLS_X509_FMT_PEM, NULL, 0);
	if (rc < 0) {
		rc = ca_error_set(err, CA_E_FAILED, "server certificate %s / key %s: %s", cert_file,
				  key_file, gnutls_strerror(rc));
		goto fail;
	}
	rc = gnutls_certificate_set_x509_trust_file(s->cred, ca_file, GNUTLS_X509_FMT_PEM);
	if (rc <= 0) {
		rc = ca_error_set(err, CA_E_FAILED, "client CA %s: %s", ca_file,
				  rc < 0 ? gnutls_strerror(rc) : "no certificate in the file");
		goto fail;
	}
	rc = gnutls_priority_init2(&s->prio, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", NULL, 0);
	if (rc < 0) {
		rc = ca_error_set(err, CA_E_FAILED, "server priority: %s", gnutls_strerror(rc));
		goto fail;
	}
	if (pipe2(s->queue, O_CLOEXEC) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&s->thread, NULL, bench_server_main, s);
	if (rc < 0)
		goto fail;
	s->running = true;
	*ret = s;
	return 0;
fail:
	bench_server_free(s);
	return rc;
}

BenchServer *bench_server_free(BenchServer *s)
{
	if (!s)
		return NULL;
	if (s->running) {
		int end = -1;
		if (write(s->queue[1], &end, sizeof(end)) == sizeof(end))
			pthread_join(s->thread, NULL);
		else
			pthread_cancel(s->thread); /* cannot happen with a pipe this empty */
	}
	for (int i = 0; i < 2; i++)
		if (s->queue[i] >= 0)
			close(s->queue[i]);
	if (s->prio)
		gnutls_priority_deinit(s->prio);
	if (s->cred)
		gnutls_certificate_free_credentials(s->cred);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

int bench_server_serve(BenchServer *s, int fd)
{
	ssize_t n;
	do {
		n = write(s->queue[1], &fd, sizeof(fd));
	} while (n < 0 && errno == EINTR);
	if (n != sizeof(fd))
		return n < 0 ? -errno : -EIO;
	return 0;
}

void bench_server_counts(BenchServer *s, unsigned long *ret_ok, unsigned long *ret_failed,
			 char *ret_error, size_t error_size)
{
	pthread_mutex_lock(&s->lock);
	if (ret_ok)
		*ret_ok = s->ok;
	if (ret_failed)
		*ret_failed = s->failed;
	if (ret_error && error_size)
		snprintf(ret_error, error_size, "%s", s->error);
	pthread_mutex_unlock(&s->lock);
}

int bench_client_handshake(BenchServer *s, gnutls_priority_t prio,
			   gnutls_certificate_credentials_t cred, const char *server_name,
			   unsigned timeout_ms, bool *ret_served, const char **ret_step)
{
	gnutls_session_t session = NULL;
	char accepted = 0;
	int sv[2], fd, rc;

	*ret_served = false;
	*ret_step = "socketpair";
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	fd = sv[0];
	*ret_step = "server queue";
	rc = bench_server_serve(s, sv[1]);
	if (rc < 0) {
		close(sv[0]);
		close(sv[1]);
		return rc;
	}
	*ret_served = true;
	*ret_step = "gnutls_init";
	rc = gnutls_init(&session, GNUTLS_CLIENT | GNUTLS_NO_TICKETS);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	gnutls_priority_set(session, prio);
	gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_server_name_set(session, GNUTLS_NAME_DNS, server_name, strlen(server_name));
	gnutls_session_set_verify_cert(session, server_name, 0);
	gnutls_handshake_set_timeout(session, timeout_ms);
	gnutls_record_set_timeout(session, timeout_ms);
	gnutls_transport_set_int(session, fd);

	*ret_step = "handshake";
	do {
		rc = gnutls_handshake(session);
	} while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc == 0) {
		/* TLS 1.3: only the server's byte says it accepted our certificate. */
		*ret_step = "server did not accept the client";
		do {
			rc = gnutls_record_recv(session, &accepted, 1);
		} while (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED);
		if (rc == 1 && accepted == BENCH_SERVER_ACCEPTED)
			rc = 0;
		else if (rc >= 0)
			rc = GNUTLS_E_PREMATURE_TERMINATION;
	}
	gnutls_deinit(session);
	close(fd);
	return rc;
}
