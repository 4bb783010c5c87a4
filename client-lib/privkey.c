/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * privkey: a gnutls_privkey_t (gnutls_privkey_import_ext4) whose signatures certagentd makes.
 *
 * GnuTLS hands us what it wants signed in three shapes: TLS 1.2 RSA comes as
 * GNUTLS_SIGN_RSA_RAW with the full DER DigestInfo, RSA-PSS and ECDSA as the bare hash, and
 * Ed25519 (through sign_data) as the whole message. We name the TLS scheme, send that to the
 * agent as scheme.h describes, and hand the signature back as it goes on the wire.
 *
 * The info callback answers GnuTLS's "can you do scheme X" only for the schemes the agent
 * listed for the key: a token without PSS must make GnuTLS pick something else, not fail later.
 * The callbacks can only return GnuTLS codes; the real reason goes to
 * certagent_client_last_error(). Each Sign is timed (the D-Bus round trip) for the observer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "client-internal.h"

typedef struct AgentKey {
	certagent_client *client; /* not owned: the client outlives its keys */
	char *uri;
	char *server_name;
	gnutls_session_t session; /* the handshake this key signs for, or NULL */
	gnutls_pk_algorithm_t pk;
	unsigned bits;
	const CaScheme *schemes[CA_MAX_SCHEMES];
	size_t n_schemes;
} AgentKey;

static AgentKey *agent_key_free(AgentKey *k)
{
	if (!k)
		return NULL;
	free(k->uri);
	free(k->server_name);
	free(k);
	return NULL;
}

static bool agent_key_has(const AgentKey *k, const CaScheme *s)
{
	for (size_t i = 0; s && i < k->n_schemes; i++)
		if (k->schemes[i] == s)
			return true;
	return false;
}

/* Records why a callback failed and returns the GnuTLS code for it. */
static int key_fail(AgentKey *k, certagent_code code, const char *fmt, ...) _printf_(3, 4);
static int key_fail(AgentKey *k, certagent_code code, const char *fmt, ...)
{
	certagent_error e = CERTAGENT_ERROR_INIT;
	va_list ap;

	e.code = code;
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof(e.message), fmt, ap);
	va_end(ap);
	client_record_error(k->client, &e);
	return GNUTLS_E_PK_SIGN_FAILED;
}

/* data is already what the agent expects for s (scheme.h). */
static int key_sign(AgentKey *k, const CaScheme *s, const uint8_t *data, size_t len,
		    gnutls_datum_t *sig)
{
	certagent_error e = CERTAGENT_ERROR_INIT;

	if (!agent_key_has(k, s))
		return key_fail(k, CERTAGENT_E_UNSUPPORTED_SCHEME,
				"GnuTLS asked for a %s signature, which the agent does not list "
				"for %s",
				s->name, k->uri);
	certagent_event ev = {
		.kind = CERTAGENT_EVENT_SIGN_START, .identity_uri = k->uri, .scheme = s->name};
	uint64_t t0;
	int r;

	client_notify(k->client, &ev);
	t0 = ca_now_usec();
	/*
	 * The server's chain goes along for the agent's policy (server-pin, server-issuer). It is
	 * read now, not in the retrieve function: in TLS 1.3 the server's Certificate arrives
	 * after its CertificateRequest, but always before the client signs.
	 */
	const gnutls_datum_t *peers = NULL;
	unsigned n_peers = 0;

	if (k->session)
		peers = gnutls_certificate_get_peers(k->session, &n_peers);
	r = client_sign(k->client, k->uri, s->name, data, len, k->server_name, peers,
			peers ? n_peers : 0, sig, &e);
	ev.kind = CERTAGENT_EVENT_SIGN_DONE;
	ev.elapsed_us = ca_now_usec() - t0;
	ev.code = r < 0 ? e.code : CERTAGENT_OK;
	client_notify(k->client, &ev);
	if (r < 0) {
		client_record_error(k->client, &e);
		return GNUTLS_E_PK_SIGN_FAILED;
	}
	return 0;
}

/* RSA PKCS#1 needs a DigestInfo; GnuTLS may hand us one (RSA_RAW) or the bare hash. */
static int key_sign_pkcs1(AgentKey *k, const CaScheme *s, const gnutls_datum_t *hash,
			  gnutls_datum_t *sig)
{
	uint8_t *di = NULL;
	size_t di_len = 0;
	int r;

	if (ca_digest_info_parse(hash->data, hash->size, NULL) == s->digest)
		return key_sign(k, s, hash->data, hash->size, sig);
	if (ca_digest_info_encode(s->digest, hash->data, hash->size, &di, &di_len) < 0)
		return key_fail(k, CERTAGENT_E_INVALID_ARGS,
				"GnuTLS passed %u bytes for %s, which is neither a %s hash nor "
				"its DigestInfo",
				hash->size, s->name, gnutls_digest_get_name(s->digest));
	r = key_sign(k, s, di, di_len, sig);
	erase_and_free(di, di_len);
	return r;
}

static int key_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
			 unsigned int flags, const gnutls_datum_t *hash, gnutls_datum_t *sig)
{
	AgentKey *k = userdata;
	const CaScheme *s;

	if (algo == GNUTLS_SIGN_RSA_RAW ||
	    (algo == GNUTLS_SIGN_UNKNOWN && k->pk == GNUTLS_PK_RSA)) {
		s = ca_scheme_for_digest_info(hash->data, hash->size);
		if (!s)
			return key_fail(k, CERTAGENT_E_UNSUPPORTED_SCHEME,
					"GnuTLS asked for a raw RSA signature of something that "
					"is not a SHA-256/384/512 DigestInfo (TLS 1.0/1.1 are not "
					"supported)");
		return key_sign(k, s, hash->data, hash->size, sig);
	}

	s = ca_scheme_by_gnutls(algo);
	if (!s)
		return key_fail(k, CERTAGENT_E_UNSUPPORTED_SCHEME,
				"GnuTLS asked for signature algorithm %s, which certagent does "
				"not sign",
				gnutls_sign_get_name(algo) ? gnutls_sign_get_name(algo) : "?");
	switch (s->kind) {
	case CA_SIG_RSA_PKCS1:
		return key_sign_pkcs1(k, s, hash, sig);
	case CA_SIG_RSA_PSS:
	case CA_SIG_ECDSA:
		return key_sign(k, s, hash->data, hash->size, sig);
	case CA_SIG_EDDSA:
	default:
		return key_fail(k, CERTAGENT_E_UNSUPPORTED_SCHEME,
				"GnuTLS asked to sign a hash with %s, which signs whole messages",
				s->name);
	}
}

static int key_sign_data(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
			 unsigned int flags, const gnutls_datum_t *data, gnutls_datum_t *sig)
{
	AgentKey *k = userdata;
	const CaScheme *s = ca_scheme_by_gnutls(algo);
	uint8_t hash[64];
	gnutls_datum_t h = {hash, 0};
	int r;

	if (!s)
		return key_fail(k, CERTAGENT_E_UNSUPPORTED_SCHEME,
				"GnuTLS asked for signature algorithm %s, which certagent does "
				"not sign",
				gnutls_sign_get_name(algo) ? gnutls_sign_get_name(algo) : "?");
	if (s->kind == CA_SIG_EDDSA)
		return key_sign(k, s, data->data, data->size, sig);

	/* A pre-hashed scheme handed over as a message: hash it here, then sign as usual. */
	if (s->hash_len > sizeof(hash) ||
	    gnutls_hash_fast(s->digest, data->data, data->size, hash) < 0)
		return key_fail(k, CERTAGENT_E_FAILED, "cannot hash the data for %s", s->name);
	h.size = s->hash_len;
	r = key_sign_hash(key, s->sign13, userdata, flags, &h, sig);
	explicit_bzero(hash, sizeof(hash));
	return r;
}

static int key_info(gnutls_privkey_t key, unsigned int flags, void *userdata)
{
	AgentKey *k = userdata;

	/* Asked first: the algorithm sits in the high bits together with this flag. */
	if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
		return agent_key_has(k, ca_scheme_by_gnutls(GNUTLS_FLAGS_TO_SIGN_ALGO(flags)));
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
		return k->pk;
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
		return (int)k->bits;
	return -1;
}

static void key_deinit(gnutls_privkey_t key, void *userdata)
{
	agent_key_free(userdata);
}

int privkey_new_for(certagent_client *c, const certagent_identity *id, const char *server_name,
		    gnutls_session_t session, gnutls_privkey_t *ret, certagent_error *err)
{
	AgentKey *k;
	gnutls_privkey_t pkey;
	unsigned flags = GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE;
	int r;

	k = calloc(1, sizeof(*k));
	if (!k)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	k->client = c;
	k->session = session;
	k->pk = identity_pk_algorithm(id);
	k->bits = id->bits;
	k->uri = strdup(id->uri);
	k->server_name = server_name ? strdup(server_name) : NULL;
	if (!k->uri || (server_name && !k->server_name)) {
		agent_key_free(k);
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	}
	if (k->pk == GNUTLS_PK_UNKNOWN) {
		agent_key_free(k);
		return client_error_set(err, CERTAGENT_E_UNSUPPORTED_SCHEME,
					"identity %s has key type \"%s\", which certagent cannot "
					"use for TLS",
					id->uri, id->key_type);
	}
	for (size_t i = 0; i < id->n_schemes && k->n_schemes < CA_MAX_SCHEMES; i++) {
		const CaScheme *s = ca_scheme_by_name(id->schemes[i]);

		if (s)
			k->schemes[k->n_schemes++] = s;
	}
	if (k->pk == GNUTLS_PK_RSA)
		flags |= GNUTLS_PRIVKEY_FLAG_RSA_PSS_FIXED_SALT_LENGTH; /* the agent uses sLen =
									   hLen */

	r = gnutls_privkey_init(&pkey);
	if (r < 0) {
		agent_key_free(k);
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "gnutls_privkey_init: %s",
					gnutls_strerror(r));
	}
	r = gnutls_privkey_import_ext4(pkey, k, key_sign_data, key_sign_hash, NULL, key_deinit,
				       key_info, flags);
	if (r < 0) {
		gnutls_privkey_deinit(pkey);
		agent_key_free(k);
		return client_error_set(err, CERTAGENT_E_FAILED,
					"GnuTLS refused the agent key for %s: %s", id->uri,
					gnutls_strerror(r));
	}
	*ret = pkey;
	return 0;
}

_public_ int certagent_privkey_new(certagent_client *c, const char *identity_uri,
				   gnutls_privkey_t *ret, certagent_error *err)
{
	const certagent_identity_list *l;
	const certagent_identity *id;
	int r;

	if (!c || !identity_uri || !ret)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client, identity URI and ret must be given");
	r = client_identities(c, false, &l, err);
	if (r < 0)
		return r;
	id = client_find_identity(l, identity_uri);
	if (!id) {
		r = client_identities(c, true, &l, err);
		if (r < 0)
			return r;
		id = client_find_identity(l, identity_uri);
	}
	if (!id)
		return client_error_set(err, CERTAGENT_E_KEY_NOT_FOUND,
					"the agent has no identity %s: `certagent list` shows the "
					"identities it has",
					identity_uri);
	return privkey_new_for(c, id, NULL, NULL, ret, err);
}
