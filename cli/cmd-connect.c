/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent connect HOST:PORT: a TLS client (like gnutls-cli) whose client certificate comes
 * from the agent. It is the quickest way to check that a server accepts an identity, and with
 * --verbose it says step by step what happened. After the handshake it copies stdin to the
 * server and the server to stdout until the server closes.
 *
 * With --explain it does not relay: it runs the handshake, waits to learn whether the server
 * accepted the client, and tells the whole handshake as explain.c lays it out (--json too).
 *
 * Telling failures apart is the point: the server rejecting us (TLS 1.2: an alert during the
 * handshake; TLS 1.3: an alert on the first read after it), the server's certificate not
 * being trusted, and the agent failing (certagent_client_last_error) get different messages
 * and exit codes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <p11-kit/uri.h>

#include "cli.h"
#include "explain.h"
#include "scheme.h"
#include "util.h"

enum {
	OPT_IDENTITY = 1,
	OPT_CAFILE,
	OPT_SERVERNAME,
	OPT_TLS12,
	OPT_TLS13,
	OPT_VERBOSE,
	OPT_ADDRESS,
	OPT_EXPLAIN,
	OPT_JSON,
	OPT_CRL,
};

/* How long --explain waits after a TLS 1.3 handshake for the server to reject the client. */
#define VERDICT_WAIT_MS 3000

static const CliOption options[] = {
	{OPT_IDENTITY, "identity", 'i', "URI",
	 "Present this identity (a pkcs11: URI that selects one of `certagent list`) instead "
	 "of choosing one per server"},
	{OPT_CAFILE, "cafile", 0, "FILE",
	 "Trust the CA certificates in FILE (PEM) instead of the system's"},
	{OPT_SERVERNAME, "servername", 0, "NAME",
	 "Server name to send (SNI) and to check the certificate against (default: HOST)"},
	{OPT_TLS12, "tls1.2", 0, NULL, "Use TLS 1.2 only"},
	{OPT_TLS13, "tls1.3", 0, NULL, "Use TLS 1.3 only"},
	{OPT_VERBOSE, "verbose", 'v', NULL, "Say on stderr what happens, step by step"},
	{OPT_EXPLAIN, "explain", 0, NULL,
	 "Run the handshake only and explain it: offer, server chain and checks, certificate "
	 "request, identity, signature, result"},
	{OPT_JSON, "json", 0, NULL, "With --explain: print the explanation as JSON (docs/cli.md)"},
	{OPT_CRL, "crl", 0, "FILE",
	 "Check the server's chain against the CRLs in FILE (PEM or DER)"},
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "D-Bus address of the bus the agent is on (default: the session bus)"},
};

typedef struct Connect {
	const char *host;
	const char *port;
	const char *identity;
	char *identity_resolved; /* the full URI --identity selects, when it is not one */
	const char *cafile;
	const char *servername;
	const char *version; /* NULL, "1.2" or "1.3" */
	const char *address;
	const char *crl;
	bool verbose;
	bool explain;
	bool json;

	certagent_client *client;
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
	gnutls_session_t session;
	int fd;
	Explain *ex; /* --explain */
} Connect;

static void say(const Connect *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const Connect *x, const char *fmt, ...)
{
	va_list ap;

	if (!x->verbose)
		return;
	fputs("- ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* "host:port", "[v6]:port". */
static int split_host_port(char *s, const char **ret_host, const char **ret_port)
{
	char *colon;

	if (s[0] == '[') {
		char *end = strchr(s, ']');

		if (!end || end[1] != ':' || !end[2])
			return -EINVAL;
		*end = '\0';
		*ret_host = s + 1;
		*ret_port = end + 2;
		return 0;
	}
	colon = strrchr(s, ':');
	if (!colon || colon == s || !colon[1] || strchr(s, ':') != colon)
		return -EINVAL;
	*colon = '\0';
	*ret_host = s;
	*ret_port = colon + 1;
	return 0;
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int tcp_connect(Connect *x)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
	struct addrinfo *res, *ai;
	int r, fd = -1, e = 0;

	r = getaddrinfo(x->host, x->port, &hints, &res);
	if (r != 0) {
		fprintf(stderr, "certagent: cannot resolve %s port %s: %s\n", x->host, x->port,
			gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		char name[INET6_ADDRSTRLEN + 8] = "?";

		getnameinfo(ai->ai_addr, ai->ai_addrlen, name, sizeof(name), NULL, 0,
			    NI_NUMERICHOST);
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			say(x, "connected to %s port %s (%s)", x->host, x->port, name);
			if (x->ex)
				explain_set_address(x->ex, name);
			break;
		}
		e = errno;
		say(x, "connecting to %s port %s failed: %s", name, x->port, strerror(e));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "certagent: cannot connect to %s port %s: %s\n", x->host, x->port,
			strerror(e));
	x->fd = fd;
	return fd < 0 ? -1 : 0;
}

/* Whether u, the user's URI, selects the identity uri (as the agent lists it): every field and
 * attribute u names is the identity's too. */
static bool identity_selected(P11KitUri *u, const char *uri)
{
	P11KitUri *id = p11_kit_uri_new();
	CK_ATTRIBUTE_PTR want;
	CK_ULONG n_want = 0;
	bool yes;

	if (!id)
		return false;
	yes = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, id) == P11_KIT_URI_OK &&
	      p11_kit_uri_match_token_info(u, p11_kit_uri_get_token_info(id)) == 1 &&
	      p11_kit_uri_match_module_info(u, p11_kit_uri_get_module_info(id)) == 1;
	want = yes ? p11_kit_uri_get_attributes(u, &n_want) : NULL;
	for (CK_ULONG i = 0; yes && i < n_want; i++) {
		CK_ATTRIBUTE_PTR have = p11_kit_uri_get_attribute(id, want[i].type);

		yes = have && have->ulValueLen == want[i].ulValueLen &&
		      memcmp(have->pValue, want[i].pValue, have->ulValueLen) == 0;
	}
	p11_kit_uri_free(id);
	return yes;
}

/*
 * --identity as any RFC 7512 URI that selects one of the agent's identities (the library takes
 * the full URI it lists): pkcs11:token=demo;object=alice works as `certagent delete` and the
 * other commands take it. One the agent lists as it is is passed on unchanged; one that
 * selects none is "nothing matches" (7) before any connection; one that selects several is a
 * usage error naming them.
 */
static int resolve_identity(Connect *x)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_identity_list *l = NULL;
	P11KitUri *u = NULL;
	const char *found = NULL;
	size_t n_found = 0;
	int rc = 0;

	if (certagent_list_identities(x->client, &l, &err) < 0)
		return cli_agent_error(&err);
	for (size_t i = 0; i < certagent_identity_list_count(l); i++)
		if (strcmp(certagent_identity_uri(certagent_identity_list_get(l, i)),
			   x->identity) == 0)
			goto out; /* exactly as listed */
	u = p11_kit_uri_new();
	if (!u || p11_kit_uri_parse(x->identity, P11_KIT_URI_FOR_ANY, u) != P11_KIT_URI_OK) {
		fprintf(stderr,
			"certagent: --identity \"%s\" is not a pkcs11: URI (RFC 7512): "
			"`certagent list` shows the agent's identities\n",
			x->identity);
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(u)) {
		fprintf(stderr,
			"certagent: --identity \"%s\" has an attribute this tool does not "
			"know (misspelled?): use token=, object=, id=, serial=, model=, "
			"manufacturer=, type=\n",
			x->identity);
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	for (size_t i = 0; i < certagent_identity_list_count(l); i++) {
		const char *uri = certagent_identity_uri(certagent_identity_list_get(l, i));

		if (identity_selected(u, uri) && n_found++ == 0)
			found = uri;
	}
	if (n_found > 1) {
		fprintf(stderr,
			"certagent: --identity \"%s\" selects %zu of the agent's identities: add "
			"object= or id= to name one of\n",
			x->identity, n_found);
		for (size_t i = 0; i < certagent_identity_list_count(l); i++) {
			const char *uri = certagent_identity_uri(certagent_identity_list_get(l, i));

			if (identity_selected(u, uri))
				fprintf(stderr, "  %s\n", uri);
		}
		rc = CLI_EXIT_USAGE;
	} else if (n_found == 0) {
		fprintf(stderr,
			"certagent: the agent has no identity that --identity \"%s\" selects: is "
			"its token inserted? `certagent list` shows the identities\n",
			x->identity);
		rc = CLI_EXIT_NOT_FOUND;
	} else {
		char *full = strdup(found);

		if (!full) {
			rc = CLI_EXIT_FAILED;
			goto out;
		}
		free(x->identity_resolved);
		x->identity = x->identity_resolved = full;
	}
out:
	if (u)
		p11_kit_uri_free(u);
	certagent_identity_list_free(l);
	return rc;
}

static int setup_tls(Connect *x)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	const char *name = x->servername ? x->servername : x->host;
	const char *errpos = NULL;
	int r;

	if (certagent_client_new(x->address, &x->client, &err) < 0)
		return cli_agent_error(&err);
	say(x, "certagentd answers on the bus");
	if (x->ex)
		explain_observe(x->ex, x->client);

	r = gnutls_certificate_allocate_credentials(&x->cred);
	if (r < 0)
		goto tls_error;
	if (x->cafile) {
		r = gnutls_certificate_set_x509_trust_file(x->cred, x->cafile, GNUTLS_X509_FMT_PEM);
		if (r <= 0) {
			fprintf(stderr, "certagent: no CA certificate could be read from %s%s%s\n",
				x->cafile, r < 0 ? ": " : "", r < 0 ? gnutls_strerror(r) : "");
			return CLI_EXIT_IO;
		}
		say(x, "trusting %d CA certificate%s from %s", r, r == 1 ? "" : "s", x->cafile);
		if (x->ex)
			explain_set_trust(x->ex, x->cafile, r);
	} else {
		r = gnutls_certificate_set_x509_system_trust(x->cred);
		if (r < 0)
			goto tls_error;
		say(x, "trusting the system's %d CA certificates", r);
		if (x->ex)
			explain_set_trust(x->ex, "the system trust store", r);
	}
	if (x->crl) {
		/* In the credentials' trust list, so the handshake's own verification uses it. */
		r = gnutls_certificate_set_x509_crl_file(x->cred, x->crl, GNUTLS_X509_FMT_PEM);
		if (r <= 0)
			r = gnutls_certificate_set_x509_crl_file(x->cred, x->crl,
								 GNUTLS_X509_FMT_DER);
		if (r <= 0) {
			fprintf(stderr, "certagent: no CRL could be read from %s%s%s\n", x->crl,
				r < 0 ? ": " : "", r < 0 ? gnutls_strerror(r) : "");
			return CLI_EXIT_IO;
		}
		say(x, "checking revocation against %d CRL%s from %s", r, r == 1 ? "" : "s",
		    x->crl);
		if (x->ex && explain_load_crl(x->ex, x->crl) < 0)
			return CLI_EXIT_IO;
	}
	if (x->identity) {
		r = resolve_identity(x);
		if (r != 0)
			return r;
	}
	if (certagent_credentials_set(x->client, x->cred, x->identity, &err) < 0)
		return cli_agent_error(&err);

	r = gnutls_init(&x->session, GNUTLS_CLIENT);
	if (r < 0)
		goto tls_error;
	/* The system's priorities (plus a version limit), kept so --explain can list them. */
	if (x->version)
		r = gnutls_priority_init2(&x->prio,
					  strcmp(x->version, "1.2") == 0 ? "-VERS-ALL:+VERS-TLS1.2"
									 : "-VERS-ALL:+VERS-TLS1.3",
					  &errpos, GNUTLS_PRIORITY_INIT_DEF_APPEND);
	else
		r = gnutls_priority_init(&x->prio, NULL, &errpos);
	if (r < 0)
		goto tls_error;
	r = gnutls_priority_set(x->session, x->prio);
	if (r < 0)
		goto tls_error;
	if (x->ex)
		explain_offered(x->ex, x->prio);
	r = gnutls_credentials_set(x->session, GNUTLS_CRD_CERTIFICATE, x->cred);
	if (r < 0)
		goto tls_error;
	/* SNI carries DNS names only; an IP literal is still checked against the certificate.
	 * The library sets the SNI and passes the name to the agent (policy, prompts). */
	if (!is_ip_literal(name)) {
		certagent_error sn_err = CERTAGENT_ERROR_INIT;

		if (certagent_session_set_server_name(x->client, x->session, name, &sn_err) < 0) {
			fprintf(stderr, "certagent: %s\n", sn_err.message);
			return CLI_EXIT_USAGE;
		}
	}
	gnutls_session_set_verify_cert(x->session, name, 0);
	gnutls_handshake_set_timeout(x->session, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
	gnutls_transport_set_int(x->session, x->fd);
	return 0;

tls_error:
	fprintf(stderr, "certagent: cannot set up TLS: %s\n", gnutls_strerror(r));
	return CLI_EXIT_TLS;
}

static void describe_server_cert(const Connect *x)
{
	const gnutls_datum_t *peers;
	unsigned n = 0;

	peers = gnutls_certificate_get_peers(x->session, &n);
	if (peers && n > 0) {
		_cleanup_free_ char *subject = cli_cert_dn(&peers[0], false);
		_cleanup_free_ char *issuer = cli_cert_dn(&peers[0], true);

		say(x, "server certificate: %s (issuer %s)", subject ? subject : "?",
		    issuer ? issuer : "?");
	}
}

static void print_verify_status(const Connect *x, FILE *f)
{
	gnutls_datum_t out = {NULL, 0};
	unsigned status = gnutls_session_get_verify_cert_status(x->session);

	if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
		while (out.size > 0 && out.data[out.size - 1] == ' ')
			out.size--;
		fprintf(f, "%.*s", (int)out.size, out.data);
	}
	gnutls_free(out.data);
}

/* What we presented, for --verbose and for rejection messages. */
static void describe_client_side(const Connect *x)
{
	const char *uri = certagent_client_last_identity(x->client);
	const gnutls_datum_t *ours = gnutls_certificate_get_ours(x->session);

	if (!uri) {
		say(x, "no client certificate was sent");
		return;
	}
	if (ours) {
		_cleanup_free_ char *subject = cli_cert_dn(ours, false);

		say(x, "identity offered: %s (%s)", uri, subject ? subject : "?");
	} else {
		say(x, "identity offered: %s", uri);
	}
}

static bool alert_is_about_client(gnutls_alert_description_t a)
{
	switch (a) {
	case GNUTLS_A_CERTIFICATE_REQUIRED:
	case GNUTLS_A_BAD_CERTIFICATE:
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
	case GNUTLS_A_CERTIFICATE_REVOKED:
	case GNUTLS_A_CERTIFICATE_EXPIRED:
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
	case GNUTLS_A_UNKNOWN_CA:
	case GNUTLS_A_ACCESS_DENIED:
	case GNUTLS_A_DECRYPT_ERROR:
	case GNUTLS_A_HANDSHAKE_FAILURE:
		return true;
	default:
		return false;
	}
}

/* The server sent a fatal alert: say it rejected us, and what we know about why. */
static int report_rejection(const Connect *x, const char *when)
{
	gnutls_alert_description_t a = gnutls_alert_get(x->session);
	const char *name = gnutls_alert_get_name(a);
	const certagent_error *e = certagent_client_last_error(x->client);
	const char *uri = certagent_client_last_identity(x->client);

	/* Some servers answer a missing certificate with an odd alert (gnutls-serv over TLS 1.2:
	 * decode_error): asked for a certificate and sent none is a rejection all the same. */
	if (alert_is_about_client(a) ||
	    (gnutls_certificate_client_get_request_status(x->session) && !uri))
		fprintf(stderr, "certagent: the server rejected the client %s (alert: %s)\n", when,
			name ? name : "unknown");
	else
		fprintf(stderr, "certagent: the server ended the connection %s (alert: %s)\n", when,
			name ? name : "unknown");
	if (uri)
		fprintf(stderr, "certagent: the client certificate sent was %s\n", uri);
	else
		fputs("certagent: no client certificate was sent\n", stderr);
	if (e)
		fprintf(stderr, "certagent: %s\n", e->message);
	return CLI_EXIT_TLS;
}

/* The verdict on a failed handshake, for --explain. */
static void explain_failure(const Connect *x, int r)
{
	const certagent_error *e = certagent_client_last_error(x->client);
	const char *uri = certagent_client_last_identity(x->client);

	if (!x->ex)
		return;
	explain_server_chain(x->ex, x->session, x->cred);
	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		gnutls_alert_description_t a = gnutls_alert_get(x->session);
		const char *name = gnutls_alert_get_name(a);

		if (alert_is_about_client(a) ||
		    (gnutls_certificate_client_get_request_status(x->session) && !uri))
			explain_set_result(
				x->ex, "rejected",
				"the server rejected the client during the handshake "
				"(TLS 1.2: it checks the client's certificate before its "
				"Finished message) with the alert %s; %s",
				name ? name : "?",
				uri ? "a certificate was sent" : "no certificate was sent");
		else
			explain_set_result(x->ex, "failed",
					   "the server ended the handshake with the alert %s",
					   name ? name : "?");
	} else if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		explain_set_result(x->ex, "server-not-trusted",
				   "the client stopped the handshake because the server's "
				   "certificate failed the checks above, before sending its own "
				   "certificate or signature");
	} else if (e && (r == GNUTLS_E_PK_SIGN_FAILED || e->code != CERTAGENT_E_NO_IDENTITY)) {
		explain_set_result(x->ex, "agent-failed", "the agent could not sign: %s",
				   e->message);
	} else {
		explain_set_result(x->ex, "failed", "the handshake failed: %s%s%s",
				   gnutls_strerror(r), e ? "; " : "", e ? e->message : "");
	}
}

static int report_handshake_error(const Connect *x, int r)
{
	const certagent_error *e = certagent_client_last_error(x->client);

	switch (r) {
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		return report_rejection(x, "during the handshake");
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
		describe_server_cert(x);
		fprintf(stderr, "certagent: the server's certificate is not trusted: ");
		print_verify_status(x, stderr);
		fputs("\ncertagent: pass the CA that issued it with --cafile, or check the name "
		      "with --servername\n",
		      stderr);
		return CLI_EXIT_TLS;
	default:
		break;
	}
	if (e && (r == GNUTLS_E_PK_SIGN_FAILED || r == GNUTLS_E_INSUFFICIENT_CREDENTIALS ||
		  e->code != CERTAGENT_E_NO_IDENTITY)) {
		fprintf(stderr,
			"certagent: the handshake failed because the agent could not sign: "
			"%s\n",
			e->message);
		return cli_exit_code_for(e->code);
	}
	fprintf(stderr, "certagent: the TLS handshake with %s failed: %s\n", x->host,
		gnutls_strerror(r));
	if (e)
		fprintf(stderr, "certagent: %s\n", e->message);
	return CLI_EXIT_TLS;
}

static int handshake(Connect *x)
{
	int r;

	do {
		r = gnutls_handshake(x->session);
	} while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		describe_client_side(x);
		explain_failure(x, r);
		return report_handshake_error(x, r);
	}
	if (x->ex) {
		explain_server_chain(x->ex, x->session, x->cred);
		explain_negotiated(x->ex, x->session);
	}

	describe_client_side(x);
	if (certagent_client_last_identity(x->client)) {
		gnutls_sign_algorithm_t s = gnutls_sign_algorithm_get_client(x->session);

		const CaScheme *scheme = ca_scheme_by_gnutls(s);

		if (s != GNUTLS_SIGN_UNKNOWN)
			say(x, "the agent signed the handshake (%s, GnuTLS %s)",
			    scheme ? scheme->name : "?", gnutls_sign_get_name(s));
	}
	{
		char *desc = gnutls_session_get_desc(x->session);

		say(x, "negotiated %s", desc ? desc : "?");
		gnutls_free(desc);
	}
	describe_server_cert(x);
	say(x, "server certificate verified for %s", x->servername ? x->servername : x->host);
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= n;
	}
	return 0;
}

/* gnutls_record_send on a non-blocking socket: wait for room and resend the same data. */
static ssize_t tls_send_all(Connect *x, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = gnutls_record_send(x->session, buf, len);

		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			struct pollfd p = {.fd = x->fd, .events = POLLOUT};

			poll(&p, 1, -1);
			continue;
		}
		if (n < 0)
			return n;
		buf += n;
		len -= n;
	}
	return 0;
}

static void tls_bye(Connect *x)
{
	int r;

	do {
		r = gnutls_bye(x->session, GNUTLS_SHUT_WR);
		if (r == GNUTLS_E_AGAIN) {
			struct pollfd p = {.fd = x->fd, .events = POLLOUT};

			poll(&p, 1, 1000);
		}
	} while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
}

/* stdin → server, server → stdout, until the server closes. */
static int relay(Connect *x)
{
	char buf[16384];
	bool stdin_open = true, got_data = false;
	int flags = fcntl(x->fd, F_GETFL);

	/* Non-blocking, so a read that only finds TLS 1.3 tickets returns instead of waiting. */
	if (flags < 0 || fcntl(x->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		fprintf(stderr, "certagent: fcntl: %s\n", strerror(errno));
		return CLI_EXIT_TLS;
	}
	for (;;) {
		struct pollfd p[2] = {{.fd = x->fd, .events = POLLIN},
				      {.fd = STDIN_FILENO, .events = POLLIN}};
		bool tls_ready = gnutls_record_check_pending(x->session) > 0;

		if (!tls_ready) {
			if (poll(p, stdin_open ? 2 : 1, -1) < 0) {
				if (errno == EINTR)
					continue;
				fprintf(stderr, "certagent: poll: %s\n", strerror(errno));
				return CLI_EXIT_TLS;
			}
			tls_ready = p[0].revents != 0;
		}
		if (tls_ready) {
			ssize_t n = gnutls_record_recv(x->session, buf, sizeof(buf));

			if (n > 0) {
				got_data = true;
				if (write_all(STDOUT_FILENO, buf, n) < 0) {
					fprintf(stderr, "certagent: writing to stdout: %s\n",
						strerror(errno));
					return CLI_EXIT_IO;
				}
			} else if (n == 0) {
				say(x, "the server closed the connection");
				return CLI_EXIT_OK;
			} else if (n == GNUTLS_E_FATAL_ALERT_RECEIVED) {
				return report_rejection(x, got_data ? "during the session"
								    : "after the handshake");
			} else if (n == GNUTLS_E_PREMATURE_TERMINATION) {
				if (!got_data) {
					fprintf(stderr,
						"certagent: the server closed the connection "
						"right after the handshake without a word (it "
						"may have rejected the client certificate)\n");
					return CLI_EXIT_TLS;
				}
				say(x, "the server closed the connection (without close_notify)");
				return CLI_EXIT_OK;
			} else if (n == GNUTLS_E_WARNING_ALERT_RECEIVED) {
				say(x, "warning alert from the server: %s",
				    gnutls_alert_get_name(gnutls_alert_get(x->session)));
			} else if (gnutls_error_is_fatal(n)) {
				fprintf(stderr, "certagent: receiving from the server: %s\n",
					gnutls_strerror(n));
				return CLI_EXIT_TLS;
			}
		}
		if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n > 0) {
				ssize_t r = tls_send_all(x, buf, n);

				if (r < 0) {
					if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
						return report_rejection(x, "after the handshake");
					fprintf(stderr, "certagent: sending to the server: %s\n",
						gnutls_strerror(r));
					return CLI_EXIT_TLS;
				}
			} else {
				stdin_open = false;
				say(x, "end of input: closing our side, waiting for the server");
				tls_bye(x);
			}
		}
	}
}

/*
 * --explain, after a successful handshake: did the server accept the client? TLS 1.2: yes,
 * its Finished came after it checked us. TLS 1.3: the server checks the client's certificate
 * after its own Finished, so a rejection arrives as an alert on the first read; a session
 * ticket (sent only once the client's Finished is verified) or data means yes, and so does
 * silence for VERDICT_WAIT_MS.
 */
static int explain_verdict(Connect *x)
{
	bool requested = gnutls_certificate_client_get_request_status(x->session);
	const char *uri = certagent_client_last_identity(x->client);
	const char *what = !requested ? "the server did not ask for a client certificate"
			   : uri      ? "the client's certificate and signature were accepted"
				      : "the server accepted the client without a certificate";
	int flags = fcntl(x->fd, F_GETFL), left = VERDICT_WAIT_MS;
	char buf[4096];

	if (gnutls_protocol_get_version(x->session) != GNUTLS_TLS1_3) {
		explain_set_result(x->ex, "accepted",
				   "%s: in TLS 1.2 the server checks them before sending its "
				   "Finished message, and the handshake completed",
				   what);
		return CLI_EXIT_OK;
	}
	if (flags < 0 || fcntl(x->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		fprintf(stderr, "certagent: fcntl: %s\n", strerror(errno));
		return CLI_EXIT_TLS;
	}
	while (left > 0) {
		struct pollfd p = {.fd = x->fd, .events = POLLIN};
		ssize_t n;

		if (gnutls_record_check_pending(x->session) == 0) {
			if (poll(&p, 1, left > 100 ? 100 : left) < 0 && errno != EINTR)
				break;
			left -= 100;
			if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
		}
		n = gnutls_record_recv(x->session, buf, sizeof(buf));
		if (n > 0) {
			explain_set_result(x->ex, "accepted",
					   "%s: the server sent data after the handshake", what);
			return CLI_EXIT_OK;
		}
		if (n == GNUTLS_E_FATAL_ALERT_RECEIVED) {
			const char *name = gnutls_alert_get_name(gnutls_alert_get(x->session));

			explain_set_result(x->ex, "rejected",
					   "in TLS 1.3 the server checks the client's certificate "
					   "after the handshake completes on the client's side; it "
					   "answered with the alert %s; %s",
					   name ? name : "?",
					   uri ? "a certificate was sent"
					       : "no certificate was sent");
			return report_rejection(x, "after the handshake");
		}
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
			explain_set_result(x->ex, "rejected",
					   "the server closed the connection right after the "
					   "handshake without a word (it may have rejected the "
					   "client certificate)");
			fprintf(stderr, "certagent: the server closed the connection right after "
					"the handshake\n");
			return CLI_EXIT_TLS;
		}
		if (n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED &&
		    n != GNUTLS_E_WARNING_ALERT_RECEIVED && gnutls_error_is_fatal(n)) {
			explain_set_result(x->ex, "failed", "reading after the handshake: %s",
					   gnutls_strerror(n));
			fprintf(stderr, "certagent: receiving from the server: %s\n",
				gnutls_strerror(n));
			return CLI_EXIT_TLS;
		}
		if (gnutls_session_get_flags(x->session) & GNUTLS_SFLAGS_SESSION_TICKET) {
			explain_set_result(
				x->ex, "accepted",
				"%s: after the handshake the server sent a TLS 1.3 "
				"session ticket, which it does only once it has verified "
				"the client's Finished (and certificate)",
				what);
			return CLI_EXIT_OK;
		}
	}
	explain_set_result(x->ex, "accepted",
			   "%s: no alert came within %d ms after the handshake (in TLS 1.3 a "
			   "rejection arrives as an alert on the first read)",
			   what, VERDICT_WAIT_MS);
	return CLI_EXIT_OK;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	Connect x = {.fd = -1};
	const char *arg;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		switch (o) {
		case OPT_IDENTITY:
			x.identity = arg;
			break;
		case OPT_CAFILE:
			x.cafile = arg;
			break;
		case OPT_SERVERNAME:
			x.servername = arg;
			break;
		case OPT_TLS12:
			x.version = "1.2";
			break;
		case OPT_TLS13:
			x.version = "1.3";
			break;
		case OPT_VERBOSE:
			x.verbose = true;
			break;
		case OPT_ADDRESS:
			x.address = arg;
			break;
		case OPT_EXPLAIN:
			x.explain = true;
			break;
		case OPT_JSON:
			x.json = x.explain = true;
			break;
		case OPT_CRL:
			x.crl = arg;
			break;
		}
	}
	if (o == 0 && p.n_positional != 1)
		o = cli_usage_error(cmd, "connect needs exactly one HOST:PORT");
	else if (o == 0 && split_host_port(p.positional[0], &x.host, &x.port) < 0)
		o = cli_usage_error(cmd, "\"%s\" is not HOST:PORT (IPv6: [ADDR]:PORT)",
				    p.positional[0]);
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	if (x.explain &&
	    !(x.ex = explain_new(x.host, x.port, x.servername ? x.servername : x.host))) {
		fputs("certagent: out of memory\n", stderr);
		return CLI_EXIT_FAILED;
	}
	rc = tcp_connect(&x) < 0 ? CLI_EXIT_TLS : 0;
	if (rc == 0)
		rc = setup_tls(&x);
	if (rc == 0) {
		int hs = handshake(&x);

		if (x.ex) {
			if (hs == 0) {
				rc = explain_verdict(&x);
				tls_bye(&x);
			} else {
				rc = hs;
			}
			if (x.json)
				explain_print_json(x.ex, stdout);
			else
				explain_print_text(x.ex, stdout);
			if (fflush(stdout) != 0 && rc == 0)
				rc = CLI_EXIT_IO;
		} else {
			rc = hs == 0 ? relay(&x) : hs;
		}
	}

	if (x.session)
		gnutls_deinit(x.session);
	if (x.prio)
		gnutls_priority_deinit(x.prio);
	explain_free(x.ex);
	if (x.cred)
		gnutls_certificate_free_credentials(x.cred);
	certagent_client_free(x.client);
	free(x.identity_resolved);
	if (x.fd >= 0)
		close(x.fd);
	return rc;
}

const CliCommand cli_cmd_connect = {
	.name = "connect",
	.synopsis = "HOST:PORT",
	.summary = "Open a TLS connection with an agent identity (like gnutls-cli)",
	.description = "Connects to HOST:PORT over TLS, presenting a client certificate from the "
		       "agent when the server asks for one (the identity named by --identity, else "
		       "the first one whose issuer and key the server accepts). The server's "
		       "certificate is verified against the system's CAs (or --cafile) and the "
		       "server name. Then copies standard input to the server and the server's "
		       "answers to standard output until the server closes the connection. With "
		       "--explain it runs the handshake only and explains it step by step, as a "
		       "textbook explains mutual TLS.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
