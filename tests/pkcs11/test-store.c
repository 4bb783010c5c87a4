/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-store: pkcs11/ against a real SoftHSM token built by setup-token.sh (see there for what
 * is on it). One binary, one case per run: `test-store CASE`. Signatures are verified with
 * GnuTLS against the certificate the store paired with the key.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "helper-prime.h" /* PRIME_FRESH_USEC */
#include "internal.h"	  /* the session-loss and copy cases: reach the module and token */
#include "store.h"
#include "check-fatal.h"

#define CHECK_CODE(r, want, err)                                                                   \
	do {                                                                                       \
		int r_ = (r);                                                                      \
		if (r_ != (want)) {                                                                \
			fprintf(stderr, "%s:%d: got %d (%s) want %d: %s\n", __FILE__, __LINE__,    \
				r_, r_ > 0 ? ca_error_name(r_) : "-", (want), (err)->message);     \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static int n_logins;
static bool copies; /* sign-ahead on: in-process signatures on copies of keys (sign.c) */
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

static void log_cb(int prio, const char *msg, void *ud)
{
	pthread_mutex_lock(&log_mutex);
	if (strstr(msg, "C_Login ("))
		n_logins++;
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "log<%d>: %s\n", prio, msg);
	pthread_mutex_unlock(&log_mutex);
}

static char *env(const char *name)
{
	char *v = getenv(name);

	CHECK(v);
	return v;
}

static Store *open_store(const char *pin_file)
{
	StoreModuleConfig mod = {.name = "softhsm", .path = env("TEST_MODULE")};
	StorePinSource ps = {.token_uri = "pkcs11:token=demo", .path = (char *)pin_file};
	StoreOptions o = {
		.load_registered = false,
		.modules = &mod,
		.n_modules = 1,
		.pin_sources = pin_file ? &ps : NULL,
		.n_pin_sources = pin_file ? 1 : 0,
		.sign_ahead = copies,
	};
	CaError err = {0};
	Store *s = NULL;

	CHECK_CODE(store_new(&o, &s, &err), 0, &err);
	return s;
}

static const StoreIdentity *find_id(StoreIdentityList *l, const char *label)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i].label, label) == 0)
			return &l->items[i];
	return NULL;
}

static bool has_scheme(const StoreIdentity *id, const char *name)
{
	for (size_t i = 0; i < id->n_schemes; i++)
		if (strcmp(id->schemes[i]->name, name) == 0)
			return true;
	return false;
}

static char *cert_dn(const gnutls_datum_t *der)
{
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn;
	char *s;

	CHECK(gnutls_x509_crt_init(&crt) == 0);
	CHECK(gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0);
	CHECK(gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0);
	s = strdup((char *)dn.data);
	gnutls_free(dn.data);
	gnutls_x509_crt_deinit(crt);
	return s;
}

static void check_identities(Store *s, bool logged_in)
{
	StoreIdentityList *l = NULL;
	const StoreIdentity *id;
	CaError err = {0};
	char *dn;

	CHECK_CODE(store_list_identities(s, &l, &err), 0, &err);
	for (size_t i = 0; i < l->n; i++)
		fprintf(stderr, "identity %s: %s-%u, %zu certs, %zu schemes, logged_in=%d\n",
			l->items[i].uri, ca_key_type_name(l->items[i].key_type), l->items[i].bits,
			l->items[i].n_certs, l->items[i].n_schemes, l->items[i].logged_in);
	CHECK(l->n == 6);

	id = find_id(l, "rsa");
	CHECK(id && id->key_type == CA_KEY_RSA && id->bits == 2048);
	CHECK(id->logged_in == logged_in);
	CHECK(id->n_certs == 2);
	dn = cert_dn(&id->certs[0]);
	CHECK(strcmp(dn, "CN=rsa") == 0);
	free(dn);
	dn = cert_dn(&id->certs[1]);
	CHECK(strcmp(dn, "CN=Test Intermediate") == 0);
	free(dn);
	CHECK(id->n_schemes == 6);
	CHECK(has_scheme(id, "rsa_pkcs1_sha256") && has_scheme(id, "rsa_pss_rsae_sha512"));
	CHECK(strstr(id->uri, "token=demo") && strstr(id->uri, "id=%01") &&
	      strstr(id->uri, "object=rsa") && strstr(id->uri, "type=private"));
	CHECK(strstr(id->token_uri, "token=demo") && !strstr(id->token_uri, "object="));

	id = find_id(l, "ec");
	CHECK(id && id->key_type == CA_KEY_EC && id->bits == 256 && id->n_certs == 2);
	CHECK(id->n_schemes == 1 && strcmp(id->schemes[0]->name, "ecdsa_secp256r1_sha256") == 0);

	id = find_id(l, "ed");
	CHECK(id && id->key_type == CA_KEY_ED25519 && id->n_certs == 2);
	CHECK(id->n_schemes == 1 && strcmp(id->schemes[0]->name, "ed25519") == 0);

	id = find_id(l, "lone");
	CHECK(id && id->key_type == CA_KEY_EC && id->n_certs == 0 && id->n_schemes == 1);

	id = find_id(l, "always");
	CHECK(id && id->n_certs == 0 && id->always_authenticate == logged_in);

	/* CKA_ID 05 on the key, 55 on the certificate: paired by public key. */
	id = find_id(l, "mism");
	CHECK(id && id->n_certs == 2 && strstr(id->uri, "id=%05"));
	dn = cert_dn(&id->certs[0]);
	CHECK(strcmp(dn, "CN=mism") == 0);
	free(dn);

	store_identity_list_free(l);
}

static void unlock(Store *s)
{
	CaError err = {0};

	CHECK_CODE(store_unlock(s, "pkcs11:token=demo", "1234", 4, &err), 0, &err);
}

static void case_enumerate(void)
{
	Store *s = open_store(NULL);
	StoreTokenList *tl = NULL;
	CaError err = {0};

	CHECK_CODE(store_list_tokens(s, &tl, &err), 0, &err);
	CHECK(tl->n == 1 && strcmp(tl->items[0].label, "demo") == 0);
	CHECK(strcmp(tl->items[0].module, "softhsm") == 0 && !tl->items[0].logged_in);
	CHECK((tl->items[0].flags & CKF_LOGIN_REQUIRED) != 0);
	store_token_list_free(tl);

	/* Before login the keys are hidden: identities inferred from public objects. */
	check_identities(s, false);
	unlock(s);
	check_identities(s, true);
	CHECK_CODE(store_lock(s), 0, &err);
	check_identities(s, false);
	store_free(s);
}

/* Signs `msg` the way TLS would for the scheme and verifies with the leaf certificate. */
static void sign_verify(Store *s, const StoreIdentity *id, const char *scheme_name)
{
	const CaScheme *sc = ca_scheme_by_name(scheme_name);
	static const char msg[] = "certagent test message";
	uint8_t hash[64], *data = NULL, *sig = NULL;
	size_t data_len = 0, sig_len = 0;
	gnutls_pubkey_t pub;
	StoreSignInfo info = {0};
	CaError err = {0};
	gnutls_datum_t h, sd, m = {(unsigned char *)msg, sizeof(msg) - 1};
	int r;

	CHECK(sc);
	if (sc->kind == CA_SIG_EDDSA) {
		/* Ed25519 input must be framed as a TLS 1.3 client CertificateVerify. */
		static const char ctx[] = "TLS 1.3, client CertificateVerify";

		data_len = 64 + sizeof(ctx) + 32;
		data = malloc(data_len);
		memset(data, ' ', 64);
		memcpy(data + 64, ctx, sizeof(ctx));
		CHECK(gnutls_hash_fast(GNUTLS_DIG_SHA256, msg, sizeof(msg) - 1,
				       data + 64 + sizeof(ctx)) == 0);
		m = (gnutls_datum_t){data, data_len};
	} else {
		CHECK(gnutls_hash_fast(sc->digest, msg, sizeof(msg) - 1, hash) == 0);
		if (sc->kind == CA_SIG_RSA_PKCS1)
			CHECK(ca_digest_info_encode(sc->digest, hash, sc->hash_len, &data,
						    &data_len) == 0);
		else {
			data = malloc(sc->hash_len);
			memcpy(data, hash, sc->hash_len);
			data_len = sc->hash_len;
		}
	}
	CHECK_CODE(store_sign(s, id->uri, sc, data, data_len, &sig, &sig_len, &info, &err), 0,
		   &err);
	CHECK(strcmp(info.token_label, "demo") == 0 && info.mechanism[0]);
	CHECK(gnutls_pubkey_init(&pub) == 0);
	CHECK(id->n_certs > 0);
	CHECK(gnutls_pubkey_import_x509_raw(pub, &id->certs[0], GNUTLS_X509_FMT_DER, 0) == 0);
	sd = (gnutls_datum_t){sig, sig_len};
	h = (gnutls_datum_t){hash, sc->hash_len};
	if (sc->kind == CA_SIG_EDDSA)
		r = gnutls_pubkey_verify_data2(pub, sc->sign13, 0, &m, &sd);
	else
		r = gnutls_pubkey_verify_hash2(pub, sc->sign13, 0, &h, &sd);
	if (r < 0)
		fprintf(stderr, "verify %s: %s\n", scheme_name, gnutls_strerror(r));
	CHECK(r >= 0);
	gnutls_pubkey_deinit(pub);
	free(data);
	free(sig);
}

static StoreIdentityList *identities(Store *s)
{
	StoreIdentityList *l = NULL;
	CaError err = {0};

	CHECK_CODE(store_list_identities(s, &l, &err), 0, &err);
	return l;
}

static void case_sign(void)
{
	Store *s = open_store(NULL);
	StoreIdentityList *l = identities(s);
	const CaScheme *p256 = ca_scheme_by_name("ecdsa_secp256r1_sha256");
	const CaScheme *pkcs1 = ca_scheme_by_name("rsa_pkcs1_sha256");
	uint8_t buf[64] = {1, 2, 3}, *sig = NULL, *di = NULL;
	size_t sig_len = 0, di_len = 0;
	StoreSignInfo info;
	CaError err = {0};

	/* Before unlock: the key needs a login, and no PIN is known. */
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_PIN_REQUIRED, &err);
	CHECK(strstr(err.message, "certagent unlock 'pkcs11:token=demo'"));
	unlock(s);

	/* Identities listed before login (inferred) still sign after it. */
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	store_identity_list_free(l);
	l = identities(s);
	sign_verify(s, find_id(l, "rsa"), "rsa_pkcs1_sha256");
	sign_verify(s, find_id(l, "rsa"), "rsa_pkcs1_sha384");
	sign_verify(s, find_id(l, "rsa"), "rsa_pkcs1_sha512");
	sign_verify(s, find_id(l, "rsa"), "rsa_pss_rsae_sha256");
	sign_verify(s, find_id(l, "rsa"), "rsa_pss_rsae_sha384");
	sign_verify(s, find_id(l, "rsa"), "rsa_pss_rsae_sha512");
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	sign_verify(s, find_id(l, "ed"), "ed25519");
	sign_verify(s, find_id(l, "mism"), "rsa_pss_rsae_sha256");

	/* CKA_ALWAYS_AUTHENTICATE: a context-specific login before the signature. */
	n_logins = 0;
	CHECK_CODE(store_sign(s, find_id(l, "always")->uri, p256, buf, 32, &sig, &sig_len, &info,
			      &err),
		   0, &err);
	CHECK(n_logins == 1 && sig[0] == 0x30);
	free(sig);

	/* A URI that is not the listed one but names exactly one key. */
	CHECK_CODE(store_sign(s, "pkcs11:token=demo;id=%02", p256, buf, 32, &sig, &sig_len, NULL,
			      &err),
		   0, &err);
	CHECK(sig_len > 8 && sig[0] == 0x30); /* DER SEQUENCE */
	free(sig);
	CHECK_CODE(store_sign(s, "pkcs11:object=lone;type=private", p256, buf, 32, &sig, &sig_len,
			      NULL, &err),
		   0, &err);
	free(sig);

	/* Bad input. */
	CHECK_CODE(
		store_sign(s, find_id(l, "rsa")->uri, pkcs1, buf, 51, &sig, &sig_len, NULL, &err),
		CA_E_INVALID_ARGS, &err);
	CHECK(ca_digest_info_encode(GNUTLS_DIG_SHA384, buf, 48, &di, &di_len) == 0);
	CHECK_CODE(store_sign(s, find_id(l, "rsa")->uri, pkcs1, di, di_len, &sig, &sig_len, NULL,
			      &err),
		   CA_E_INVALID_ARGS, &err); /* SHA-384 DigestInfo for a SHA-256 scheme */
	free(di);
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, buf, 31, &sig, &sig_len, NULL, &err),
		   CA_E_INVALID_ARGS, &err);
	CHECK_CODE(store_sign(s, "pkcs11:token=demo;id=%99", p256, buf, 32, &sig, &sig_len, NULL,
			      &err),
		   CA_E_KEY_NOT_FOUND, &err);
	CHECK_CODE(store_sign(s, "pkcs11:token=nosuch", p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_KEY_NOT_FOUND, &err);
	CHECK_CODE(store_sign(s, "not a uri", p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_INVALID_ARGS, &err);
	CHECK_CODE(store_sign(s, "pkcs11:token=demo", p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_INVALID_ARGS, &err);
	CHECK(strstr(err.message, "id="));
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, ca_scheme_by_name("ecdsa_secp384r1_sha384"),
			      buf, 48, &sig, &sig_len, NULL, &err),
		   CA_E_UNSUPPORTED_SCHEME, &err);
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, pkcs1, buf, 0, &sig, &sig_len, NULL, &err),
		   CA_E_INVALID_ARGS, &err);
	CHECK_CODE(store_sign(s, find_id(l, "ed")->uri, ca_scheme_by_name("ed25519"), buf,
			      STORE_SIGN_DATA_MAX + 1, &sig, &sig_len, NULL, &err),
		   CA_E_TOO_LARGE, &err);

	/* store_lock logs out: a PIN is needed again. */
	CHECK_CODE(store_lock(s), 0, &err);
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_PIN_REQUIRED, &err);
	store_identity_list_free(l);
	store_free(s);
}

static unsigned long token_flags(Store *s)
{
	StoreTokenList *tl = NULL;
	CaError err = {0};
	unsigned long f;

	CHECK_CODE(store_list_tokens(s, &tl, &err), 0, &err);
	CHECK(tl->n >= 1);
	f = tl->items[0].flags;
	store_token_list_free(tl);
	return f;
}

static void case_pin(void)
{
	char path[4096];
	Store *s = open_store(NULL);
	StoreIdentityList *l;
	const CaScheme *p256 = ca_scheme_by_name("ecdsa_secp256r1_sha256");
	uint8_t buf[32] = {0}, *sig = NULL;
	size_t sig_len = 0;
	CaError err = {0};

	CHECK(!(token_flags(s) & CKF_USER_PIN_COUNT_LOW));
	n_logins = 0;
	CHECK_CODE(store_unlock(s, "pkcs11:token=demo", "0000", 4, &err), CA_E_PIN_INCORRECT, &err);
	CHECK(n_logins == 1);
	CHECK(token_flags(s) & CKF_USER_PIN_COUNT_LOW);
	/* The wrong PIN is not remembered nor retried by a signature. */
	l = identities(s);
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_PIN_REQUIRED, &err);
	CHECK(n_logins == 1);
	CHECK_CODE(store_unlock(s, "pkcs11:token=nosuch", "1234", 4, &err), CA_E_TOKEN_ABSENT,
		   &err);
	/* A right PIN resets the counter. */
	unlock(s);
	CHECK(!(token_flags(s) & CKF_USER_PIN_COUNT_LOW));
	store_identity_list_free(l);
	store_free(s);

	/* A pin source with a wrong PIN: tried once, then never again until reload. */
	snprintf(path, sizeof(path), "%s/badpin", env("TEST_DIR"));
	s = open_store(path);
	l = identities(s);
	n_logins = 0;
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_PIN_INCORRECT, &err);
	CHECK(strstr(err.message, "badpin"));
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, buf, 32, &sig, &sig_len, NULL, &err),
		   CA_E_PIN_INCORRECT, &err);
	CHECK(n_logins == 1);
	CHECK(token_flags(s) & CKF_USER_PIN_COUNT_LOW);
	store_identity_list_free(l);
	store_free(s);

	/* A right pin source: signing works without unlock. */
	snprintf(path, sizeof(path), "%s/pin", env("TEST_DIR"));
	s = open_store(path);
	l = identities(s);
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	CHECK(!(token_flags(s) & CKF_USER_PIN_COUNT_LOW));
	store_identity_list_free(l);
	store_free(s);
}

static void case_reload(void)
{
	Store *s = open_store(NULL);
	StoreTokenList *tl = NULL;
	CaError err = {0};
	bool changed = true;
	char cmd[8192];

	CHECK_CODE(store_reload(s, &changed, &err), 0, &err);
	CHECK(!changed);
	snprintf(cmd, sizeof(cmd),
		 "softhsm2-util --init-token --free --label second --pin 1234 --so-pin 123456 "
		 ">/dev/null && p11tool --provider '%s' --login --set-pin=1234 "
		 "--generate-privkey ecdsa --curve secp384r1 --label k2 --id 0a "
		 "'pkcs11:token=second' >/dev/null 2>&1",
		 env("TEST_MODULE"));
	CHECK(system(cmd) == 0);
	CHECK_CODE(store_list_tokens(s, &tl, &err), 0, &err);
	CHECK(tl->n == 1);
	store_token_list_free(tl);

	unlock(s);
	CHECK_CODE(store_reload(s, &changed, &err), 0, &err);
	CHECK(changed);
	CHECK_CODE(store_list_tokens(s, &tl, &err), 0, &err);
	CHECK(tl->n == 2);
	for (size_t i = 0; i < tl->n; i++)
		CHECK(!tl->items[i].logged_in); /* logins forgotten */
	store_token_list_free(tl);
	CHECK_CODE(store_unlock(s, "pkcs11:token=second", "1234", 4, &err), 0, &err);
	{
		StoreIdentityList *l = identities(s);
		const StoreIdentity *id = find_id(l, "k2");

		CHECK(id && id->key_type == CA_KEY_EC && id->bits == 384 && id->n_certs == 0);
		CHECK(id->n_schemes == 1 &&
		      strcmp(id->schemes[0]->name, "ecdsa_secp384r1_sha384") == 0);
		store_identity_list_free(l);
	}
	store_free(s);
}

typedef struct Worker {
	Store *s;
	const StoreIdentity *ec, *rsa;
	int failures;
} Worker;

static void *worker(void *p)
{
	Worker *w = p;

	for (int i = 0; i < 25; i++) {
		sign_verify(w->s, w->ec, "ecdsa_secp256r1_sha256");
		sign_verify(w->s, w->rsa, i % 2 ? "rsa_pss_rsae_sha256" : "rsa_pkcs1_sha384");
	}
	return NULL;
}

static void case_threads(void)
{
	Store *s = open_store(NULL);
	StoreIdentityList *l;
	pthread_t th[8];
	Worker w[8];

	unlock(s);
	l = identities(s);
	for (int i = 0; i < 8; i++) {
		w[i] = (Worker){s, find_id(l, "ec"), find_id(l, "rsa"), 0};
		CHECK(pthread_create(&th[i], NULL, worker, &w[i]) == 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	/* The pool never grew past its cap. */
	CHECK(s->tokens[0]->n_open <= 4 && s->tokens[0]->n_open >= 1);
	store_identity_list_free(l);
	store_free(s);
}

/* Sessions closed behind the pool's back (as after a module reset): reopen once, log in again. */
static void case_session_lost(void)
{
	Store *s = open_store(NULL);
	StoreIdentityList *l;
	Token *t;

	unlock(s);
	l = identities(s);
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	t = s->tokens[0];
	CHECK(t->module->fl->C_CloseAllSessions(t->slot) == CKR_OK);
	n_logins = 0;
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	CHECK(n_logins == 1); /* closing all sessions logged out; the Unlock PIN logged in again */
	sign_verify(s, find_id(l, "rsa"), "rsa_pss_rsae_sha256");
	store_identity_list_free(l);
	store_free(s);
}

/* The private keys a plain search on t's token finds (copies included). */
static size_t count_private_keys(Token *t)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
	CK_OBJECT_HANDLE objs[32];
	CK_SESSION_HANDLE h;
	CK_ULONG n = 0;

	CHECK(t->module->fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &h) == CKR_OK);
	CHECK(t->module->fl->C_FindObjectsInit(h, &tmpl, 1) == CKR_OK);
	CHECK(t->module->fl->C_FindObjects(h, objs, 32, &n) == CKR_OK);
	CHECK(t->module->fl->C_FindObjectsFinal(h) == CKR_OK);
	CHECK(t->module->fl->C_CloseSession(h) == CKR_OK);
	return n;
}

static Identity *token_id(Token *t, const char *label)
{
	for (size_t i = 0; i < t->n_ids; i++)
		if (strcmp(t->ids[i].label, label) == 0)
			return &t->ids[i];
	CHECK(!"no such identity");
	return NULL;
}

/* Whether t holds a copy of identity label's key to sign with (key-copy.h). */
static bool has_copy(Token *t, const char *label)
{
	CK_OBJECT_HANDLE key = token_id(t, label)->key;
	bool has = false;

	pthread_mutex_lock(&t->copies.lock);
	for (size_t i = 0; i < t->copies.n; i++)
		has = has || (t->copies.e[i].key == key && t->copies.e[i].copy);
	pthread_mutex_unlock(&t->copies.lock);
	return has;
}

/*
 * In-process signatures on a session copy of the key (sign.c, sign-ahead on): made after the
 * first signature and used by the next ones, all verifying; a rescan and a Lock destroy the
 * copies and the identities stay what they were; the slot poll destroys one unused for a
 * second; a key deleted on the token no longer signs
 * once the last signature on the key itself is 5 ms old (the copy would).
 */
static void case_copy(void)
{
	const CaScheme *p256 = ca_scheme_by_name("ecdsa_secp256r1_sha256");
	uint8_t hash[32] = {1}, *sig = NULL;
	size_t sig_len = 0, n_ids, keys;
	StoreIdentityList *l;
	CaError err = {0};
	Store *s;
	Token *t;
	CK_SESSION_HANDLE rw;
	CK_OBJECT_HANDLE key;

	copies = true;
	s = open_store(NULL);
	unlock(s);
	l = identities(s);
	n_ids = l->n;
	t = s->tokens[0];
	keys = count_private_keys(t);
	CHECK(keys == 6);
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	CHECK(has_copy(t, "ec"));
	CHECK(count_private_keys(t) == keys + 1);
	for (int i = 0; i < 200; i++)
		sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	sign_verify(s, find_id(l, "rsa"), "rsa_pss_rsae_sha256");
	sign_verify(s, find_id(l, "rsa"), "rsa_pss_rsae_sha256");
	CHECK(count_private_keys(t) == keys + 2);
	fprintf(stderr, "ok: copies made and signed with, every signature verifies\n");

	/* A rescan: the copies go first, and the identities are the same. */
	t->rescan_needed = true;
	store_identity_list_free(l);
	l = identities(s);
	CHECK(l->n == n_ids && find_id(l, "ec") && find_id(l, "rsa"));
	CHECK(count_private_keys(t) == keys);
	fprintf(stderr, "ok: a rescan sees no copy\n");

	/* Unused for a second: the slot poll destroys the copy. */
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	CHECK(count_private_keys(t) == keys + 1);
	{
		struct timespec ts = {1, 10000000L}; /* PRIME_COPY_MAX_AGE_USEC and a bit */
		StoreEventList *events = NULL;

		nanosleep(&ts, NULL);
		CHECK_CODE(store_poll(s, &events, &err), 0, &err);
		CHECK(!events);
	}
	CHECK(count_private_keys(t) == keys && !has_copy(t, "ec"));
	fprintf(stderr, "ok: a copy unused for a second goes at the next slot poll\n");

	/* Lock: the copies go with the login. */
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	CHECK(count_private_keys(t) == keys + 1);
	CHECK_CODE(store_lock(s), 0, &err);
	CHECK(count_private_keys(t) == 0); /* logged out: no private object is visible */
	CHECK(!has_copy(t, "ec"));
	unlock(s);
	store_identity_list_free(l);
	l = identities(s);

	/* The key deleted by another session: refused once not seen for 5 ms. */
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	sign_verify(s, find_id(l, "ec"), "ecdsa_secp256r1_sha256");
	CHECK(has_copy(t, "ec"));
	key = token_id(t, "ec")->key;
	CHECK(t->module->fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
					   &rw) == CKR_OK);
	CHECK(t->module->fl->C_DestroyObject(rw, key) == CKR_OK);
	CHECK(t->module->fl->C_CloseSession(rw) == CKR_OK);
	{
		struct timespec ts = {0, (PRIME_FRESH_USEC + 1000) * 1000L};

		nanosleep(&ts, NULL);
	}
	err = (CaError){0};
	CHECK_CODE(store_sign(s, find_id(l, "ec")->uri, p256, hash, sizeof(hash), &sig, &sig_len,
			      NULL, &err),
		   CA_E_KEY_NOT_FOUND, &err);
	fprintf(stderr, "ok: a deleted key is refused: %s\n", err.message);
	store_identity_list_free(l);
	store_free(s);
}

static void case_threads_copy(void)
{
	copies = true;
	case_threads();
}

static void case_session_lost_copy(void)
{
	copies = true;
	case_session_lost();
}

/* Registered modules: the allow list keeps softhsm2 only; the same file by path is not loaded
 * twice. */
static void case_registered(void)
{
	char *allow[] = {"softhsm2", NULL};
	StoreModuleConfig mod = {.name = "softhsm", .path = env("TEST_MODULE")};
	StoreOptions o = {
		.load_registered = true,
		.registered_allow = allow,
		.modules = &mod,
		.n_modules = 1,
	};
	StoreTokenList *tl = NULL;
	CaError err = {0};
	Store *s = NULL;

	CHECK_CODE(store_new(&o, &s, &err), 0, &err);
	CHECK_CODE(store_list_tokens(s, &tl, &err), 0, &err);
	for (size_t i = 0; i < tl->n; i++)
		fprintf(stderr, "token %s from %s\n", tl->items[i].uri, tl->items[i].module);
	CHECK(tl->n == 1 && strcmp(tl->items[0].label, "demo") == 0);
	CHECK(strcmp(tl->items[0].module, "softhsm2") == 0);
	store_token_list_free(tl);
	store_free(s);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"enumerate", case_enumerate},
		{"sign", case_sign},
		{"pin", case_pin},
		{"reload", case_reload},
		{"threads", case_threads},
		{"session-lost", case_session_lost},
		{"registered", case_registered},
		{"copy", case_copy},
		{"threads-copy", case_threads_copy},
		{"session-lost-copy", case_session_lost_copy},
	};

	store_set_log(log_cb, NULL);
	for (size_t i = 0; argc > 1 && i < ELEMENTSOF(cases); i++)
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].fn();
			fprintf(stderr, "%s: ok\n", argv[1]);
			return 0;
		}
	fprintf(stderr, "usage: %s CASE\n", argv[0]);
	return 2;
}
