/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * credentials: a GnuTLS certificate retrieve function that presents an agent identity when a
 * server asks for a client certificate, chosen per handshake.
 *
 * The retrieve function only gets the credentials, so the CredContext hangs off the user
 * pointer of the credentials' trust list; the client owns every CredContext and frees them
 * with itself. Per handshake: the identity named by URI if one was given, else the first
 * whose chain an acceptable CA issued, whose key type the server takes and which has a scheme
 * the server accepts. None fits: GnuTLS sends an empty Certificate (the server decides) and
 * certagent_client_last_error() says why each identity did not fit.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/x509.h>

#include "client-internal.h"

#define CRED_MAGIC UINT32_C(0x43416372) /* "CAcr" */
#define MAX_REQUESTED 64

struct CredContext {
	uint32_t magic;
	certagent_client *client;
	char *uri; /* NULL: choose per handshake */
	CredContext *next;
};

/* What the server's CertificateRequest allows. */
typedef struct Request {
	const struct gnutls_cert_retr_st *info;
	const CaScheme *schemes[MAX_REQUESTED];
	size_t n_schemes;
	bool any_scheme;			      /* the server named no signature algorithms */
	gnutls_sign_algorithm_t algos[MAX_REQUESTED]; /* as the server sent them, for observers */
	size_t n_algos;
} Request;

CredContext *cred_context_free_all(CredContext *head)
{
	while (head) {
		CredContext *next = head->next;

		head->magic = 0;
		free(head->uri);
		free(head);
		head = next;
	}
	return NULL;
}

static void request_init(Request *req, gnutls_session_t session,
			 const struct gnutls_cert_retr_st *info)
{
	gnutls_sign_algorithm_t algo;
	unsigned i;

	memset(req, 0, sizeof(*req));
	req->info = info;
	for (i = 0; i < 256; i++) {
		const CaScheme *s;

		if (gnutls_sign_algorithm_get_requested(session, i, &algo) < 0)
			break;
		if (req->n_algos < MAX_REQUESTED)
			req->algos[req->n_algos++] = algo;
		s = ca_scheme_by_gnutls(algo);
		if (s && req->n_schemes < MAX_REQUESTED)
			req->schemes[req->n_schemes++] = s;
	}
	req->any_scheme = i == 0;
}

static bool request_has_scheme(const Request *req, const CaScheme *s)
{
	for (size_t i = 0; i < req->n_schemes; i++)
		if (req->schemes[i] == s)
			return true;
	return false;
}

static int dn_requested(const Request *req, const gnutls_datum_t *dn)
{
	for (unsigned i = 0; i < req->info->nreqs; i++)
		if (req->info->req_ca_rdn[i].size == dn->size &&
		    memcmp(req->info->req_ca_rdn[i].data, dn->data, dn->size) == 0)
			return (int)i;
	return -1;
}

static void cert_cache_clear(CertKeyCache *kc)
{
	gnutls_free(kc->spki.data);
	gnutls_free(kc->issuer.data);
	gnutls_free(kc->subject.data);
	*kc = (CertKeyCache){0};
}

void cert_cache_free(CertKeyCache *kc, size_t n)
{
	if (!kc)
		return;
	for (size_t i = 0; i < n; i++)
		cert_cache_clear(&kc[i]);
	free(kc);
}

/* id->cert_cache[i], read from certs[i] if it was not yet. Returns it, or NULL (unreadable). */
static const CertKeyCache *cert_cache_get(const certagent_identity *id, size_t i)
{
	CertKeyCache *kc = &id->cert_cache[i];
	gnutls_x509_crt_t crt = NULL;
	gnutls_pubkey_t pub = NULL;
	int r;

	if (kc->spki.data)
		return kc;
	r = gnutls_x509_crt_init(&crt);
	if (r == 0)
		r = gnutls_x509_crt_import(crt, &id->certs[i], GNUTLS_X509_FMT_DER);
	if (r == 0)
		r = gnutls_pubkey_init(&pub);
	if (r == 0)
		r = gnutls_pubkey_import_x509(pub, crt, 0);
	if (r == 0)
		r = gnutls_pubkey_get_key_usage(pub, &kc->usage);
	if (r == 0)
		r = gnutls_x509_crt_get_raw_issuer_dn(crt, &kc->issuer);
	if (r == 0)
		r = gnutls_x509_crt_get_raw_dn(crt, &kc->subject);
	if (r == 0)
		r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &kc->spki);
	if (pub)
		gnutls_pubkey_deinit(pub);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (r < 0) {
		cert_cache_clear(kc);
		return NULL;
	}
	return kc;
}

/*
 * Whether a CA the server named issued a certificate of the chain (or is one of them); the
 * index of that name in *ret_dn (-1 when the server named none).
 */
static bool chain_issued_by_requested(const Request *req, const certagent_identity *id, int *ret_dn)
{
	*ret_dn = -1;
	if (req->info->nreqs == 0)
		return true;
	for (size_t i = 0; i < id->n_certs; i++) {
		const CertKeyCache *kc = cert_cache_get(id, i);
		int hit = -1;

		if (kc) {
			hit = dn_requested(req, &kc->issuer);
			if (hit < 0 && i > 0)
				hit = dn_requested(req, &kc->subject);
		}
		if (hit >= 0) {
			*ret_dn = hit;
			return true;
		}
	}
	return false;
}

static bool pk_requested(const Request *req, gnutls_pk_algorithm_t pk)
{
	if (req->info->pk_algos_length == 0 || !req->info->pk_algos)
		return true;
	for (unsigned i = 0; i < req->info->pk_algos_length; i++) {
		gnutls_pk_algorithm_t a = req->info->pk_algos[i];

		if (a == pk || (pk == GNUTLS_PK_RSA && a == GNUTLS_PK_RSA_PSS))
			return true;
		/* TLS 1.2 has no certificate type for EdDSA: ecdsa_sign covers it (RFC 8422 5.5).
		 */
		if (pk == GNUTLS_PK_EDDSA_ED25519 && a == GNUTLS_PK_ECDSA)
			return true;
	}
	return false;
}

/*
 * NULL if the identity fits the request, else why not. On a fit, *ret_scheme is the first of
 * its schemes the server accepts (NULL if the server named none) and *ret_dn the index of the
 * CA name that matched (-1 if the server named none).
 */
static const char *identity_misfit(const Request *req, const certagent_identity *id,
				   const char **ret_scheme, int *ret_dn)
{
	bool scheme_ok = req->any_scheme;
	const char *scheme = NULL;

	if (id->n_certs == 0)
		return "has no certificate on the token";
	if (identity_pk_algorithm(id) == GNUTLS_PK_UNKNOWN)
		return "has a key type certagent cannot use";
	if (!pk_requested(req, identity_pk_algorithm(id)))
		return "its key type is not one the server accepts";
	for (size_t i = 0; !scheme_ok && i < id->n_schemes; i++)
		if (request_has_scheme(req, ca_scheme_by_name(id->schemes[i]))) {
			scheme_ok = true;
			scheme = id->schemes[i];
		}
	if (!scheme_ok)
		return "none of its signature schemes is among those the server accepts";
	if (!chain_issued_by_requested(req, id, ret_dn))
		return "its certificate was not issued by a CA the server accepts";
	*ret_scheme = scheme;
	return NULL;
}

static void append(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strnlen(buf, size);
	va_list ap;

	if (len + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

/* The CA name at index i of the request as an RFC 4514 string, into buf. */
static void requested_dn_string(const Request *req, int i, char *buf, size_t size)
{
	gnutls_datum_t str = {NULL, 0};

	snprintf(buf, size, "?");
	if (i >= 0 && (unsigned)i < req->info->nreqs &&
	    gnutls_x509_rdn_get2(&req->info->req_ca_rdn[i], &str, 0) == 0)
		snprintf(buf, size, "%.*s", (int)str.size, (const char *)str.data);
	gnutls_free(str.data);
}

/*
 * Picks an identity. On success, why (for observers) goes into reason, unless reason_size is 0
 * (no observer); on none, err says why each did not fit.
 */
static const certagent_identity *choose(CredContext *ctx, const certagent_identity_list *l,
					const Request *req, char *reason, size_t reason_size,
					certagent_error *err)
{
	const char *scheme = NULL;
	int dn = -1;

	reason[0] = '\0';
	if (ctx->uri) {
		const certagent_identity *id = client_find_identity(l, ctx->uri);

		if (!id)
			client_error_set(err, CERTAGENT_E_NO_IDENTITY,
					 "the agent has no identity %s (is the token inserted? "
					 "`certagent list` shows what the agent has)",
					 ctx->uri);
		else if (id->n_certs == 0)
			client_error_set(err, CERTAGENT_E_NO_IDENTITY,
					 "identity %s has no certificate on the token", ctx->uri);
		else {
			snprintf(reason, reason_size,
				 "the application named this identity (it is not checked against "
				 "what the server asked for)");
			return id;
		}
		return NULL;
	}

	if (l->n == 0) {
		client_error_set(err, CERTAGENT_E_NO_IDENTITY,
				 "the server asked for a client certificate, but the agent has no "
				 "identities: insert the token, or check `certagent list`");
		return NULL;
	}
	for (size_t i = 0; i < l->n; i++) {
		char dn_str[256];

		if (identity_misfit(req, &l->items[i], &scheme, &dn))
			continue;
		if (reason_size == 0)
			return &l->items[i]; /* nobody observes: no need to say why */
		requested_dn_string(req, dn, dn_str, sizeof(dn_str));
		snprintf(reason, reason_size,
			 "the first of the agent's %zu identities that fits: %s; its key type "
			 "(%s) is one the server accepts; it can sign with %s%s",
			 l->n,
			 dn >= 0 ? "its chain was issued by a CA the server named"
				 : "the server named no CAs, so any issuer will do",
			 l->items[i].key_type, scheme ? scheme : "any scheme",
			 scheme ? ", which the server accepts" : " (the server named none)");
		if (dn >= 0)
			append(reason, reason_size, " [CA: %s]", dn_str);
		for (size_t j = 0; j < i; j++)
			append(reason, reason_size, "; skipped %s: %s",
			       *l->items[j].label ? l->items[j].label : l->items[j].uri,
			       identity_misfit(req, &l->items[j], &scheme, &dn));
		return &l->items[i];
	}

	client_error_set(err, CERTAGENT_E_NO_IDENTITY,
			 "no identity fits what the server asked for:");
	if (!err)
		return NULL;
	/* Each identity by its label (its URI when it has none), as many as fit whole; the
	 * rest counted, never cut off in the middle. */
	for (size_t i = 0; i < l->n; i++) {
		char one[sizeof(err->message)], more[64];
		size_t len = strnlen(err->message, sizeof(err->message));

		snprintf(one, sizeof(one), "%s %s: %s", i ? ";" : "",
			 *l->items[i].label ? l->items[i].label : l->items[i].uri,
			 identity_misfit(req, &l->items[i], &scheme, &dn));
		snprintf(more, sizeof(more), "%s %zu more (`certagent list` shows them)",
			 i ? "; and" : "", l->n - i);
		if (len + strlen(one) + (i + 1 < l->n ? strlen(more) : 0) >= sizeof(err->message)) {
			append(err->message, sizeof(err->message), "%s", more);
			break;
		}
		append(err->message, sizeof(err->message), "%s", one);
	}
	return NULL;
}

/* certs[i] of id as a pcert for GnuTLS, from its cache: no certificate parsing. */
static int pcert_new(const certagent_identity *id, size_t i, gnutls_pcert_st *p)
{
	const CertKeyCache *kc = cert_cache_get(id, i);
	int r;

	*p = (gnutls_pcert_st){.type = GNUTLS_CRT_X509};
	if (!kc)
		return GNUTLS_E_ASN1_DER_ERROR;
	r = gnutls_pubkey_init(&p->pubkey);
	if (r == 0)
		r = gnutls_pubkey_import(p->pubkey, &kc->spki, GNUTLS_X509_FMT_DER);
	if (r == 0)
		r = gnutls_pubkey_set_key_usage(p->pubkey, kc->usage);
	if (r == 0 && !(p->cert.data = gnutls_malloc(id->certs[i].size)))
		r = GNUTLS_E_MEMORY_ERROR;
	if (r < 0) {
		gnutls_pcert_deinit(p); /* takes a NULL pubkey or data */
		return r;
	}
	memcpy(p->cert.data, id->certs[i].data, id->certs[i].size);
	p->cert.size = id->certs[i].size;
	return 0;
}

/*
 * The chain of id for GnuTLS, which frees it after the handshake (together with the key, which
 * is per session, so it cannot be handed ours): copies made from id->cert_cache.
 */
static int pcerts_new(const certagent_identity *id, gnutls_pcert_st **ret, certagent_error *err)
{
	gnutls_pcert_st *p = gnutls_calloc(id->n_certs, sizeof(gnutls_pcert_st));
	int r;

	if (!p)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	for (size_t i = 0; i < id->n_certs; i++) {
		r = pcert_new(id, i, &p[i]);
		if (r < 0) {
			for (size_t j = 0; j < i; j++)
				gnutls_pcert_deinit(&p[j]);
			gnutls_free(p);
			return client_error_set(err, CERTAGENT_E_FAILED,
						"certificate %zu of %s cannot be read: %s", i,
						id->uri, gnutls_strerror(r));
		}
	}
	*ret = p;
	return 0;
}

static int cred_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
			 gnutls_pcert_st **certs, unsigned int *certs_length,
			 gnutls_ocsp_data_st **ocsp, unsigned int *ocsp_length,
			 gnutls_privkey_t *privkey, unsigned int *flags)
{
	gnutls_x509_trust_list_t tl = NULL;
	certagent_error e = CERTAGENT_ERROR_INIT;
	const certagent_identity_list *l;
	const certagent_identity *id = NULL;
	gnutls_pcert_st *p = NULL;
	gnutls_privkey_t key = NULL;
	char server_name[256];
	certagent_client *c;
	CredContext *ctx;
	Request req;
	char reason[1024];
	certagent_event ev = {0};
	int r;

	*certs = NULL;
	*certs_length = 0;
	*ocsp = NULL;
	*ocsp_length = 0;
	*privkey = NULL;
	*flags = 0;

	gnutls_certificate_get_trust_list(info->cred, &tl);
	ctx = tl ? gnutls_x509_trust_list_get_ptr(tl) : NULL;
	if (!ctx || ctx->magic != CRED_MAGIC)
		return GNUTLS_E_INSUFFICIENT_CREDENTIALS;
	c = ctx->client;
	client_clear_error(c);
	c->last_identity = (free(c->last_identity), NULL);

	/* A client session cannot read its own SNI back (gnutls_server_name_get is server-side):
	 * the name comes from certagent_session_set_server_name(). */
	cred_take_server_name(c, session, server_name);
	request_init(&req, session, info);
	ev.kind = CERTAGENT_EVENT_REQUEST;
	ev.session = session;
	ev.ca_names = info->req_ca_rdn;
	ev.n_ca_names = info->nreqs;
	ev.sign_algos = req.algos;
	ev.n_sign_algos = req.n_algos;
	client_notify(c, &ev);

	/* From the cache first; if nothing fits, the token may have changed: list again. */
	for (int attempt = 0; attempt < 2 && !id; attempt++) {
		r = client_identities(c, attempt > 0, &l, &e);
		if (r < 0)
			break;
		id = choose(ctx, l, &req, reason, c->observer ? sizeof(reason) : 0, &e);
	}
	if (!id)
		goto none;
	ev = (certagent_event){.kind = CERTAGENT_EVENT_CHOSEN,
			       .session = session,
			       .identity = id,
			       .identity_uri = id->uri,
			       .reason = reason};
	client_notify(c, &ev);

	r = pcerts_new(id, &p, &e);
	if (r < 0)
		goto none;
	r = privkey_new_for(c, id, server_name[0] ? server_name : NULL, session, &key, &e);
	if (r < 0) {
		for (size_t i = 0; i < id->n_certs; i++)
			gnutls_pcert_deinit(&p[i]);
		gnutls_free(p);
		goto none;
	}
	c->last_identity = strdup(id->uri);
	*certs = p;
	*certs_length = id->n_certs;
	*privkey = key;
	*flags = GNUTLS_CERT_RETR_DEINIT_ALL;
	/* The signature comes once GnuTLS has the rest of the server's flight (0.2-0.7 ms here):
	 * the agent's token can begin it meanwhile. */
	client_channel_prepare(c, id->uri);
	return 0;

none:
	/* Send no certificate: the server decides whether that is enough, we say why. */
	client_record_error(c, &e);
	ev = (certagent_event){
		.kind = CERTAGENT_EVENT_NONE_FITS, .session = session, .reason = e.message};
	client_notify(c, &ev);
	return 0;
}

_public_ int certagent_credentials_set(certagent_client *c, gnutls_certificate_credentials_t cred,
				       const char *identity_uri, certagent_error *err)
{
	gnutls_x509_trust_list_t tl = NULL;
	CredContext *ctx, *found = NULL;
	char *uri = NULL;
	void *ptr;

	if (!c || !cred)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client and credentials must be given");
	gnutls_certificate_get_trust_list(cred, &tl);
	if (!tl)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"the credentials have no trust list");
	ptr = gnutls_x509_trust_list_get_ptr(tl);
	for (ctx = c->creds; ptr && ctx; ctx = ctx->next)
		if (ctx == ptr)
			found = ctx;
	if (ptr && !found)
		return client_error_set(
			err, CERTAGENT_E_INVALID_ARGS,
			"the trust list of these credentials already carries a user "
			"pointer (set by the application or another certagent "
			"client); use fresh credentials");
	if (identity_uri && !(uri = strdup(identity_uri)))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");

	if (found) {
		free(found->uri);
		found->uri = uri;
	} else {
		ctx = calloc(1, sizeof(*ctx));
		if (!ctx) {
			free(uri);
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
		}
		ctx->magic = CRED_MAGIC;
		ctx->client = c;
		ctx->uri = uri;
		ctx->next = c->creds;
		c->creds = ctx;
		gnutls_x509_trust_list_set_ptr(tl, ctx);
	}
	gnutls_certificate_set_retrieve_function3(cred, cred_retrieve);
	return 0;
}

void cred_take_server_name(certagent_client *c, gnutls_session_t session, char ret[256])
{
	ret[0] = '\0';
	for (size_t i = 0; i < CA_SERVER_NAMES_MAX; i++) {
		if (c->server_names[i].session != session || !c->server_names[i].session)
			continue;
		memcpy(ret, c->server_names[i].name, sizeof(c->server_names[i].name));
		/* One handshake only: a later session at the same address gets no stale name. */
		c->server_names[i].session = NULL;
		c->server_names[i].name[0] = '\0';
		return;
	}
}

_public_ int certagent_session_set_server_name(certagent_client *c, gnutls_session_t session,
					       const char *name, certagent_error *err)
{
	size_t len, slot = CA_SERVER_NAMES_MAX;
	int r;

	if (!c || !session || !name)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client, session and server name must be given");
	len = strlen(name);
	if (len == 0 || len >= sizeof(c->server_names[0].name))
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"a server name has 1 to 255 bytes, not %zu", len);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
						"\"%.64s\" is not a DNS name (use the A-label form "
						"of an internationalised name)",
						name);
	}
	r = gnutls_server_name_set(session, GNUTLS_NAME_DNS, name, len);
	if (r < 0)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"GnuTLS refused the server name \"%.64s\": %s", name,
					gnutls_strerror(r));
	/* The session's own slot if it has one, else the next one round the ring. */
	for (size_t i = 0; i < CA_SERVER_NAMES_MAX; i++)
		if (c->server_names[i].session == session)
			slot = i;
	if (slot == CA_SERVER_NAMES_MAX) {
		slot = c->next_server_name;
		c->next_server_name = (c->next_server_name + 1) % CA_SERVER_NAMES_MAX;
	}
	c->server_names[slot].session = session;
	memcpy(c->server_names[slot].name, name, len + 1);
	return 0;
}
