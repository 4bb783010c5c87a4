/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-sign MODULE PIN: for every identity the agent lists (token unlocked by the caller) and
 * every scheme it lists for it:
 *   - certagent_sign() makes a signature that the certificate's public key verifies;
 *   - for the deterministic schemes (RSA PKCS#1 v1.5, Ed25519) it is byte for byte the
 *     signature GnuTLS makes in this process with the same key through the same module
 *     (gnutls_privkey_import_url), so the agent signs exactly the right input;
 *   - the gnutls_privkey_t from certagent_privkey_new() signs through the GnuTLS API
 *     (sign_data2: the callbacks' hash/DigestInfo/message handling) and verifies too, and
 *     refuses a scheme the agent does not list.
 * Also: errors come back with the right code and D-Bus name. Run by test-sign.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/pkcs11.h>
#include <gnutls/x509.h>

#include "certagent.h"
#include "check.h"
#include "scheme.h"

static const char *pin;

static int pin_cb(void *userdata, int attempt, const char *token_url, const char *token_label,
		  unsigned int flags, char *out, size_t out_max)
{
	if (attempt > 0 || strlen(pin) >= out_max)
		return -1;
	strcpy(out, pin);
	return 0;
}

/* The agent's URI may carry attributes GnuTLS does not match on; keep the object's path ones. */
static char *gnutls_url(const char *uri)
{
	static const char *keep[] = {
		"token=", "manufacturer=", "serial=", "model=", "object=", "id="};
	char *copy = strdup(uri + strlen("pkcs11:")), *save = NULL, *out;
	size_t len = strlen(uri) + 32;

	out = calloc(1, len);
	strcpy(out, "pkcs11:");
	for (char *tok = strtok_r(copy, ";?", &save); tok; tok = strtok_r(NULL, ";?", &save))
		for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
			if (strncmp(tok, keep[i], strlen(keep[i])) == 0) {
				strcat(out, tok);
				strcat(out, ";");
			}
	strcat(out, "type=private");
	free(copy);
	return out;
}

static void check_identity(certagent_client *c, const certagent_identity *id)
{
	const char *uri = certagent_identity_uri(id);
	gnutls_pubkey_t pub = NULL;
	gnutls_privkey_t local = NULL, agent = NULL;
	certagent_error err = CERTAGENT_ERROR_INIT;
	char *url;
	int r;

	if (certagent_identity_cert_count(id) == 0) {
		printf("skip %s: no certificate\n", uri);
		return;
	}
	r = gnutls_pubkey_init(&pub);
	r = r < 0 ? r
		  : gnutls_pubkey_import_x509_raw(pub, certagent_identity_cert(id, 0),
						  GNUTLS_X509_FMT_DER, 0);
	CHECK(r == 0, "public key of %s: %s", uri, gnutls_strerror(r));

	url = gnutls_url(uri);
	gnutls_privkey_init(&local);
	r = gnutls_privkey_import_url(local, url, 0);
	CHECK(r == 0, "GnuTLS cannot open %s (from %s): %s", url, uri, gnutls_strerror(r));
	free(url);

	r = certagent_privkey_new(c, uri, &agent, &err);
	CHECK(r == 0, "certagent_privkey_new %s: %s", uri, err.message);

	for (size_t i = 0; i < certagent_identity_scheme_count(id); i++) {
		const char *name = certagent_identity_scheme(id, i);
		const CaScheme *s = ca_scheme_by_name(name);
		char msg[160];
		gnutls_datum_t m, h, in, sig_a = {NULL, 0}, sig_l = {NULL, 0}, sig_k = {NULL, 0};
		uint8_t hash[64], *di = NULL;
		size_t di_len = 0;

		CHECK(s != NULL, "%s lists unknown scheme %s", uri, name);
		if (!s)
			continue;
		snprintf(msg, sizeof(msg), "certagent test message for %s", name);
		m = (gnutls_datum_t){(unsigned char *)msg, strlen(msg)};
		if (s->kind == CA_SIG_EDDSA) {
			/* The agent signs only TLS framing: a TLS 1.3 client CertificateVerify. */
			static const char ctx[] = "TLS 1.3, client CertificateVerify";

			memset(msg, ' ', 64);
			memcpy(msg + 64, ctx, sizeof(ctx));
			gnutls_hash_fast(GNUTLS_DIG_SHA256, name, strlen(name),
					 msg + 64 + sizeof(ctx));
			m.size = 64 + sizeof(ctx) + 32;
		}
		h = (gnutls_datum_t){hash, s->hash_len};
		if (s->kind != CA_SIG_EDDSA)
			gnutls_hash_fast(s->digest, m.data, m.size, hash);
		switch (s->kind) {
		case CA_SIG_RSA_PKCS1:
			ca_digest_info_encode(s->digest, hash, s->hash_len, &di, &di_len);
			in = (gnutls_datum_t){di, di_len};
			break;
		case CA_SIG_EDDSA:
			in = m;
			break;
		default:
			in = h;
		}

		/* 1. The agent's signature verifies with the certificate's key. */
		r = certagent_sign(c, uri, name, in.data, in.size, "test.example", &sig_a, &err);
		CHECK(r == 0, "Sign %s %s: %s", uri, name, err.message);
		if (r == 0) {
			r = s->kind == CA_SIG_EDDSA
				    ? gnutls_pubkey_verify_data2(pub, s->sign13, 0, &m, &sig_a)
				    : gnutls_pubkey_verify_hash2(pub, s->sign13, 0, &h, &sig_a);
			CHECK(r >= 0, "agent signature %s %s does not verify: %s", uri, name,
			      gnutls_strerror(r));
		}

		/* 2. Deterministic schemes: the same bytes GnuTLS makes in-process. */
		if (local && sig_a.data &&
		    (s->kind == CA_SIG_RSA_PKCS1 || s->kind == CA_SIG_EDDSA)) {
			r = s->kind == CA_SIG_EDDSA
				    ? gnutls_privkey_sign_data2(local, s->sign13, 0, &m, &sig_l)
				    : gnutls_privkey_sign_hash2(local, s->sign13, 0, &h, &sig_l);
			CHECK(r == 0, "in-process %s %s: %s", uri, name, gnutls_strerror(r));
			CHECK(r != 0 || (sig_l.size == sig_a.size &&
					 memcmp(sig_l.data, sig_a.data, sig_a.size) == 0),
			      "%s %s: agent and in-process signatures differ", uri, name);
			if (r == 0)
				printf("ok %s %s: agent signature == GnuTLS in-process (%u "
				       "bytes)\n",
				       uri, name, sig_a.size);
		}

		/* 3. Through the gnutls_privkey_t the library makes for the agent. */
		if (agent) {
			r = gnutls_privkey_sign_data2(agent, s->sign13, 0, &m, &sig_k);
			CHECK(r == 0, "privkey sign_data2 %s %s: %s (%s)", uri, name,
			      gnutls_strerror(r),
			      certagent_client_last_error(c)
				      ? certagent_client_last_error(c)->message
				      : "");
			if (r == 0) {
				r = gnutls_pubkey_verify_data2(pub, s->sign13, 0, &m, &sig_k);
				CHECK(r >= 0, "privkey signature %s %s does not verify: %s", uri,
				      name, gnutls_strerror(r));
				printf("ok %s %s: verifies (agent Sign and privkey)\n", uri, name);
			}
		}
		free(di);
		gnutls_free(sig_a.data);
		gnutls_free(sig_l.data);
		gnutls_free(sig_k.data);
	}

	/* The key refuses a scheme the agent does not list for it. */
	if (agent) {
		gnutls_sign_algorithm_t other = strcmp(certagent_identity_key_type(id), "ec") == 0
							? GNUTLS_SIGN_RSA_SHA256
							: GNUTLS_SIGN_ECDSA_SECP256R1_SHA256;
		gnutls_datum_t m = {(unsigned char *)"x", 1}, sig = {NULL, 0};

		r = gnutls_privkey_sign_data2(agent, other, 0, &m, &sig);
		CHECK(r < 0, "%s signed with %s, which it does not list", uri,
		      gnutls_sign_get_name(other));
		gnutls_free(sig.data);
	}
	gnutls_privkey_deinit(agent);
	gnutls_privkey_deinit(local);
	gnutls_pubkey_deinit(pub);
}

int main(int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	certagent_identity_list *l = NULL;
	gnutls_datum_t sig = {NULL, 0};
	uint8_t hash[32] = {0};
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: test-sign MODULE PIN\n");
		return 2;
	}
	pin = argv[2];
	r = gnutls_pkcs11_init(GNUTLS_PKCS11_FLAG_MANUAL, NULL);
	r = r < 0 ? r : gnutls_pkcs11_add_provider(argv[1], NULL);
	CHECK(r == 0, "loading %s: %s", argv[1], gnutls_strerror(r));
	gnutls_pkcs11_set_pin_function(pin_cb, NULL);

	r = certagent_client_new(NULL, &c, &err);
	CHECK(r == 0, "certagent_client_new: %s", err.message);
	if (r < 0)
		return 1;
	certagent_client_set_timeout(c, 20000);
	r = certagent_list_identities(c, &l, &err);
	CHECK(r == 0, "ListIdentities: %s", err.message);
	CHECK(certagent_identity_list_count(l) > 0, "no identities");
	CHECK(certagent_identity_list_get(l, certagent_identity_list_count(l)) == NULL,
	      "get past the end");
	for (size_t i = 0; i < certagent_identity_list_count(l); i++) {
		const certagent_identity *id = certagent_identity_list_get(l, i);

		printf("identity %s label=%s token=%s (%s) key=%s/%u logged-in=%d schemes=%zu "
		       "certs=%zu\n",
		       certagent_identity_uri(id), certagent_identity_label(id),
		       certagent_identity_token_label(id), certagent_identity_token(id),
		       certagent_identity_key_type(id), certagent_identity_bits(id),
		       certagent_identity_logged_in(id), certagent_identity_scheme_count(id),
		       certagent_identity_cert_count(id));
		check_identity(c, id);
	}

	/* Errors: the code and the D-Bus name the agent sent. */
	err = (certagent_error)CERTAGENT_ERROR_INIT;
	r = certagent_sign(c, "pkcs11:token=no-such-token;object=nothing;type=private",
			   "ecdsa_secp256r1_sha256", hash, sizeof(hash), NULL, &sig, &err);
	CHECK(r == -CERTAGENT_E_KEY_NOT_FOUND, "unknown key: r=%d %s %s", r, err.dbus_name,
	      err.message);
	CHECK(strcmp(err.dbus_name, "org.certagent.Error.KeyNotFound") == 0, "dbus_name %s",
	      err.dbus_name);
	r = certagent_privkey_new(c, "pkcs11:token=no-such-token;object=nothing;type=private",
				  &(gnutls_privkey_t){NULL}, &err);
	CHECK(r == -CERTAGENT_E_KEY_NOT_FOUND, "privkey_new unknown: r=%d", r);
	if (certagent_identity_list_count(l) > 0) {
		const certagent_identity *id = certagent_identity_list_get(l, 0);

		err = (certagent_error)CERTAGENT_ERROR_INIT;
		r = certagent_sign(c, certagent_identity_uri(id), "no_such_scheme", hash,
				   sizeof(hash), NULL, &sig, &err);
		CHECK(r < 0 && (err.code == CERTAGENT_E_UNSUPPORTED_SCHEME ||
				err.code == CERTAGENT_E_INVALID_ARGS),
		      "unknown scheme: r=%d %s", r, err.message);
		err = (certagent_error)CERTAGENT_ERROR_INIT;
		r = certagent_sign(c, certagent_identity_uri(id), "ecdsa_secp256r1_sha256", hash, 5,
				   NULL, &sig, &err);
		CHECK(r < 0, "a 5-byte hash was signed");
		printf("errors: %s / %s\n", err.dbus_name, err.message);
	}
	CHECK(certagent_sign(c, "x", "ed25519", hash, 70000, NULL, &sig, &err) ==
		      -CERTAGENT_E_TOO_LARGE,
	      "70000 bytes accepted");
	CHECK(certagent_unlock(c, "pkcs11:token=x", NULL, &err) == -CERTAGENT_E_INVALID_ARGS,
	      "NULL PIN accepted");

	certagent_identity_list_free(l);
	certagent_client_free(c);
	gnutls_pkcs11_deinit();
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
