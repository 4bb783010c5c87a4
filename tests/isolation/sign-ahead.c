/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sign-ahead CHECK [MODULE PIN KEY-URL]: signatures through an agent whose module helper
 * begins a key's next signature ahead of the request (pkcs11/helper-prime.h). Signatures come
 * a few ms apart, as handshakes do, so that the helper has begun the next one before each.
 *
 *   verify   the agent's identities "ec" (P-256) and "rsa" (RSA-2048) sign in runs, the RSA
 *            key switching between PSS SHA-256, PKCS#1 v1.5 SHA-256 and PSS SHA-384 (so a
 *            signature begun ahead has another mechanism than the request): every signature
 *            verifies with the certificate's public key
 *   lock     after signing with "ec", certagent_lock(): the next Sign is refused with
 *            PinRequired (the agent has no pinentry) instead of being made with what was begun
 *            before the logout
 *   loop     "ec" signs LOOP_N digests back to back (a signing loop: the helper begins each
 *            next signature while the reply travels); every signature verifies afterwards
 *   delete   after signing with "ec", the key (KEY-URL) is deleted from the token by this
 *            process (GnuTLS, in-process, through MODULE with PIN), as another program
 *            would: the next Sign must not succeed (KeyNotFound)
 *
 * Prints one "ok" line per check; exits 1 with FAIL lines otherwise. Run by sign-ahead-test.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/pkcs11.h>

#include "certagent.h"
#include "check.h"

#define GAP_MS 5
#define LOOP_N 400

static const char *pin;

static void pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static const certagent_identity *find(const certagent_identity_list *l, const char *object)
{
	char want[64];

	snprintf(want, sizeof(want), "object=%s;", object);
	for (size_t i = 0; i < certagent_identity_list_count(l); i++) {
		const certagent_identity *id = certagent_identity_list_get(l, i);
		char uri[1024];

		snprintf(uri, sizeof(uri), "%s;", certagent_identity_uri(id));
		if (strstr(uri, want))
			return id;
	}
	return NULL;
}

/* One signature of a fresh message with scheme through the agent; verified. 0 or the error. */
static int sign_one(certagent_client *c, const certagent_identity *id, gnutls_sign_algorithm_t algo,
		    unsigned n, certagent_error *err)
{
	const char *uri = certagent_identity_uri(id);
	gnutls_privkey_t key = NULL;
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t sig = {NULL, 0};
	char msg[96];
	gnutls_datum_t m = {(unsigned char *)msg, 0};
	int r;

	m.size = (unsigned)snprintf(msg, sizeof(msg), "sign-ahead message %u with %s", n,
				    gnutls_sign_get_name(algo));
	if (certagent_privkey_new(c, uri, &key, err) < 0)
		return err->code;
	r = gnutls_privkey_sign_data2(key, algo, 0, &m, &sig);
	if (r < 0) {
		const certagent_error *last = certagent_client_last_error(c);

		*err = last ? *last : (certagent_error)CERTAGENT_ERROR_INIT;
		gnutls_privkey_deinit(key);
		return err->code ? (int)err->code : CERTAGENT_E_FAILED;
	}
	r = gnutls_pubkey_init(&pub);
	r = r < 0 ? r
		  : gnutls_pubkey_import_x509_raw(pub, certagent_identity_cert(id, 0),
						  GNUTLS_X509_FMT_DER, 0);
	r = r < 0 ? r : gnutls_pubkey_verify_data2(pub, algo, 0, &m, &sig);
	CHECK(r >= 0, "signature %u (%s) by %s does not verify: %s", n, gnutls_sign_get_name(algo),
	      uri, gnutls_strerror(r));
	gnutls_free(sig.data);
	gnutls_pubkey_deinit(pub);
	gnutls_privkey_deinit(key);
	return 0;
}

/* Signs in a run, GAP_MS apart, as a client making handshakes; every one must succeed. */
static void run(certagent_client *c, const certagent_identity *id,
		const gnutls_sign_algorithm_t *algos, size_t n_algos, unsigned rounds)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	unsigned n = 0;

	for (unsigned i = 0; i < rounds; i++)
		for (size_t j = 0; j < n_algos; j++, n++) {
			int r = sign_one(c, id, algos[j], n, &err);

			CHECK(r == 0, "signature %u (%s) by %s: %s", n,
			      gnutls_sign_get_name(algos[j]), certagent_identity_uri(id),
			      err.message);
			pause_ms(GAP_MS);
		}
}

/* LOOP_N signatures back to back, nothing between them; verified once all are made. */
static void loop(certagent_client *c, const certagent_identity *id)
{
	gnutls_datum_t *sigs = calloc(LOOP_N, sizeof(*sigs));
	certagent_error err = CERTAGENT_ERROR_INIT;
	gnutls_pubkey_t pub = NULL;
	uint8_t digest[32];
	unsigned n = 0;
	int r;

	CHECK(sigs != NULL, "out of memory");
	if (!sigs)
		return;
	for (; n < LOOP_N; n++) {
		memset(digest, 0, sizeof(digest));
		memcpy(digest, &n, sizeof(n));
		r = certagent_sign(c, certagent_identity_uri(id), "ecdsa_secp256r1_sha256", digest,
				   sizeof(digest), NULL, &sigs[n], &err);
		CHECK(r == 0, "signature %u of a loop: %s", n, err.message);
		if (r)
			break;
	}
	r = gnutls_pubkey_init(&pub);
	r = r < 0 ? r
		  : gnutls_pubkey_import_x509_raw(pub, certagent_identity_cert(id, 0),
						  GNUTLS_X509_FMT_DER, 0);
	CHECK(r >= 0, "the certificate's public key: %s", gnutls_strerror(r));
	for (unsigned i = 0; i < n && r >= 0; i++) {
		gnutls_datum_t d = {digest, sizeof(digest)};

		memset(digest, 0, sizeof(digest));
		memcpy(digest, &i, sizeof(i));
		r = gnutls_pubkey_verify_hash2(pub, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, 0, &d,
					       &sigs[i]);
		CHECK(r >= 0, "signature %u of the loop does not verify: %s", i,
		      gnutls_strerror(r));
	}
	for (unsigned i = 0; i < n; i++)
		gnutls_free(sigs[i].data);
	free(sigs);
	gnutls_pubkey_deinit(pub);
}

static int pin_cb(void *userdata, int attempt, const char *token_url, const char *token_label,
		  unsigned int flags, char *out, size_t out_max)
{
	if (attempt > 0 || !pin || strlen(pin) >= out_max)
		return -1;
	strcpy(out, pin);
	return 0;
}

int main(int argc, char **argv)
{
	static const gnutls_sign_algorithm_t ec[] = {GNUTLS_SIGN_ECDSA_SECP256R1_SHA256};
	static const gnutls_sign_algorithm_t ec_then[] = {GNUTLS_SIGN_ECDSA_SECP256R1_SHA256,
							  GNUTLS_SIGN_ECDSA_SECP256R1_SHA256};
	static const gnutls_sign_algorithm_t rsa[] = {
		GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, GNUTLS_SIGN_RSA_PSS_RSAE_SHA256,
		GNUTLS_SIGN_RSA_SHA256,		 GNUTLS_SIGN_RSA_SHA256,
		GNUTLS_SIGN_RSA_PSS_RSAE_SHA384, GNUTLS_SIGN_RSA_PSS_RSAE_SHA256,
	};
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	certagent_identity_list *ids = NULL;
	const certagent_identity *id_ec, *id_rsa;
	const char *check = argc > 1 ? argv[1] : "";
	int r;

	if (certagent_client_new(NULL, &c, &err) < 0 ||
	    certagent_list_identities(c, &ids, &err) < 0) {
		fprintf(stderr, "FAIL: the agent: %s\n", err.message);
		return 1;
	}
	id_ec = find(ids, "ec");
	id_rsa = find(ids, "rsa");
	if (!id_ec || !id_rsa || !certagent_identity_cert_count(id_ec) ||
	    !certagent_identity_cert_count(id_rsa)) {
		fprintf(stderr, "FAIL: the agent lists no \"ec\" and \"rsa\" with certificates\n");
		return 1;
	}

	if (strcmp(check, "verify") == 0) {
		run(c, id_ec, ec, 1, 12);
		run(c, id_rsa, rsa, 6, 3);
		run(c, id_ec, ec_then, 2, 3);
		if (!failures)
			printf("ok verify: 36 signatures, 5 ms apart, all verify\n");
	} else if (strcmp(check, "loop") == 0) {
		loop(c, id_ec);
		if (!failures)
			printf("ok loop: %d signatures back to back, all verify\n", LOOP_N);
	} else if (strcmp(check, "lock") == 0) {
		run(c, id_ec, ec, 1, 4);
		pause_ms(50); /* the helper has begun the next one */
		r = certagent_lock(c, &err);
		CHECK(r == 0, "certagent_lock: %s", err.message);
		r = sign_one(c, id_ec, ec[0], 100, &err);
		CHECK(r == CERTAGENT_E_PIN_REQUIRED,
		      "after Lock a signature must need the PIN again; got %s (%d)",
		      r ? err.message : "a signature", r);
		if (!failures)
			printf("ok lock: after Lock, PinRequired (%s)\n", err.message);
	} else if (strcmp(check, "delete") == 0 && argc == 5) {
		const char *url = argv[4];

		pin = argv[3];
		run(c, id_ec, ec, 1, 4);
		pause_ms(50);
		r = gnutls_pkcs11_init(GNUTLS_PKCS11_FLAG_MANUAL, NULL);
		r = r < 0 ? r : gnutls_pkcs11_add_provider(argv[2], NULL);
		gnutls_pkcs11_set_pin_function(pin_cb, NULL);
		r = r < 0 ? r : gnutls_pkcs11_delete_url(url, GNUTLS_PKCS11_OBJ_FLAG_LOGIN);
		CHECK(r >= 1, "deleting %s in-process: %s", url,
		      r < 0 ? gnutls_strerror(r) : "none");
		r = sign_one(c, id_ec, ec[0], 100, &err);
		CHECK(r == CERTAGENT_E_KEY_NOT_FOUND, "a deleted key must not sign; got %s (%d)",
		      r ? err.message : "a signature", r);
		if (!failures)
			printf("ok delete: the deleted key is refused (%s)\n", err.message);
		gnutls_pkcs11_deinit();
	} else {
		fprintf(stderr,
			"usage: sign-ahead verify | loop | lock | delete MODULE PIN KEY-URL\n");
		return 2;
	}
	certagent_identity_list_free(ids);
	certagent_client_free(c);
	return failures ? 1 : 0;
}
