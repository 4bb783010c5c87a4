/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * object: turns a token's objects into identities: a private key, its certificate and the
 * intermediates on the same token that chain up from it.
 *
 * Pairing: by CKA_ID first (checked against the public key when both are known), else by the
 * public key itself (SHA-1 key id of the SubjectPublicKeyInfo, built from CKA_MODULUS /
 * CKA_PUBLIC_EXPONENT of the private key or CKA_EC_POINT of the public key with the same ID).
 * Private keys are usually CKA_PRIVATE, invisible before login: then identities are inferred
 * from public keys and certificates, and the key is looked up by CKA_ID when signing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "internal.h"

#define KID_LEN 20
#define CHAIN_MAX 8

typedef struct KeyObj {
	CK_OBJECT_HANDLE handle;
	uint8_t *id;
	size_t id_len;
	char *label;
	CaKeyType type;
	unsigned bits;
	uint8_t kid[KID_LEN];
	bool has_kid;
	bool always_auth;
	bool used;
} KeyObj;

typedef struct CertObj {
	uint8_t *id;
	size_t id_len;
	char *label;
	gnutls_datum_t der;
	gnutls_x509_crt_t crt;
	CaKeyType type;
	unsigned bits;
	uint8_t kid[KID_LEN];
	bool has_kid;
	bool is_ca;
	bool is_other; /* category "other entity": never inferred as an identity */
	bool used;
} CertObj;

typedef struct Scan {
	Token *t;
	CK_SESSION_HANDLE h;
	KeyObj *privs, *pubs;
	size_t n_privs, n_pubs;
	CertObj *certs;
	size_t n_certs;
} Scan;

const uint8_t object_oid_p256[10] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const uint8_t object_oid_p384[7] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
const uint8_t object_oid_p521[7] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
const uint8_t object_oid_ed25519[5] = {0x06, 0x03, 0x2b, 0x65, 0x70};
const uint8_t object_str_ed25519[14] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
					'd',  's',  '2', '5', '5', '1', '9'};

static bool bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The curve CKA_EC_PARAMS names; GNUTLS_ECC_CURVE_INVALID for one we do not know. */
gnutls_ecc_curve_t object_curve_from_params(const uint8_t *p, size_t n)
{
	if (bytes_eq(p, n, object_oid_p256, sizeof(object_oid_p256)))
		return GNUTLS_ECC_CURVE_SECP256R1;
	if (bytes_eq(p, n, object_oid_p384, sizeof(object_oid_p384)))
		return GNUTLS_ECC_CURVE_SECP384R1;
	if (bytes_eq(p, n, object_oid_p521, sizeof(object_oid_p521)))
		return GNUTLS_ECC_CURVE_SECP521R1;
	if (bytes_eq(p, n, object_oid_ed25519, sizeof(object_oid_ed25519)) ||
	    bytes_eq(p, n, object_str_ed25519, sizeof(object_str_ed25519)))
		return GNUTLS_ECC_CURVE_ED25519;
	return GNUTLS_ECC_CURVE_INVALID;
}

/* Key type and size of curve c: CA_KEY_UNKNOWN and 0 for one we do not know. */
void object_curve_to_type(gnutls_ecc_curve_t c, CaKeyType *type, unsigned *bits)
{
	switch (c) {
	case GNUTLS_ECC_CURVE_SECP256R1:
		*type = CA_KEY_EC, *bits = 256;
		break;
	case GNUTLS_ECC_CURVE_SECP384R1:
		*type = CA_KEY_EC, *bits = 384;
		break;
	case GNUTLS_ECC_CURVE_SECP521R1:
		*type = CA_KEY_EC, *bits = 521;
		break;
	case GNUTLS_ECC_CURVE_ED25519:
		*type = CA_KEY_ED25519, *bits = 255;
		break;
	default:
		*type = CA_KEY_UNKNOWN, *bits = 0;
	}
}

/* Bits of a big-endian unsigned integer (CKA_MODULUS), leading zero bytes skipped. */
unsigned object_bits_of(const uint8_t *p, size_t n)
{
	while (n > 0 && *p == 0)
		p++, n--;
	if (n == 0)
		return 0;
	return (unsigned)(n - 1) * 8 + (32 - __builtin_clz(*p));
}

/*
 * CKA_EC_POINT: DER OCTET STRING around the point (the spec), or the bare point (some
 * modules); the point has exactly want bytes.
 */
static bool ec_point_unwrap(const uint8_t *p, size_t n, size_t want, const uint8_t **ret,
			    size_t *ret_n)
{
	size_t len, hdr;

	if (n == want) {
		*ret = p, *ret_n = n;
		return true;
	}
	if (n < 2 || p[0] != 0x04)
		return false;
	if (p[1] < 0x80)
		len = p[1], hdr = 2;
	else if (p[1] == 0x81 && n >= 3)
		len = p[2], hdr = 3;
	else
		return false;
	if (hdr + len != n || len != want)
		return false;
	*ret = p + hdr, *ret_n = len;
	return true;
}

/*
 * Imports into pub the public key of curve with CKA_EC_POINT point: 32 bytes for Ed25519,
 * else an uncompressed point (0x04, x, y). Returns false for anything else.
 */
bool object_pubkey_import_ec(gnutls_pubkey_t pub, gnutls_ecc_curve_t curve, const uint8_t *point,
			     size_t n)
{
	bool ed = curve == GNUTLS_ECC_CURVE_ED25519;
	size_t coord = ed ? 32 : gnutls_ecc_curve_get_size(curve);
	gnutls_datum_t x, y;
	const uint8_t *pt;
	size_t pt_n;

	if (coord == 0 || !ec_point_unwrap(point, n, ed ? 32 : 1 + 2 * coord, &pt, &pt_n))
		return false;
	if (ed) {
		x = (gnutls_datum_t){(unsigned char *)pt, pt_n};
		return gnutls_pubkey_import_ecc_raw(pub, curve, &x, NULL) == 0;
	}
	if (pt[0] != 0x04) /* only uncompressed points */
		return false;
	x = (gnutls_datum_t){(unsigned char *)pt + 1, coord};
	y = (gnutls_datum_t){(unsigned char *)pt + 1 + coord, coord};
	return gnutls_pubkey_import_ecc_raw(pub, curve, &x, &y) == 0;
}

static bool pubkey_kid(gnutls_pubkey_t pub, uint8_t kid[KID_LEN])
{
	size_t size = KID_LEN;

	return gnutls_pubkey_get_key_id(pub, 0, kid, &size) == 0 && size == KID_LEN;
}

static bool kid_rsa(const uint8_t *mod, size_t mod_n, const uint8_t *exp, size_t exp_n,
		    uint8_t kid[KID_LEN])
{
	gnutls_pubkey_t pub;
	gnutls_datum_t m = {(unsigned char *)mod, mod_n}, e = {(unsigned char *)exp, exp_n};
	bool ok;

	if (gnutls_pubkey_init(&pub) < 0)
		return false;
	ok = gnutls_pubkey_import_rsa_raw(pub, &m, &e) == 0 && pubkey_kid(pub, kid);
	gnutls_pubkey_deinit(pub);
	return ok;
}

static bool kid_ec(gnutls_ecc_curve_t curve, const uint8_t *point, size_t n, uint8_t kid[KID_LEN])
{
	gnutls_pubkey_t pub;
	bool ok;

	if (gnutls_pubkey_init(&pub) < 0)
		return false;
	ok = object_pubkey_import_ec(pub, curve, point, n) && pubkey_kid(pub, kid);
	gnutls_pubkey_deinit(pub);
	return ok;
}

static bool attr(Scan *sc, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, uint8_t **ret, size_t *n)
{
	*ret = NULL;
	*n = 0;
	return call_get_attribute(sc->t->module, sc->h, o, type, ret, n) == CKR_OK;
}

/* Reads a private or public key object; returns false for keys we cannot sign with. */
static bool key_read(Scan *sc, CK_OBJECT_HANDLE o, bool is_private, KeyObj *k)
{
	_cleanup_free_ uint8_t *mod = NULL, *exp = NULL, *params = NULL, *point = NULL,
			       *always = NULL;
	size_t mod_n, exp_n, params_n, point_n, always_n;
	CK_ULONG ckk = CKK_VENDOR_DEFINED;
	gnutls_ecc_curve_t curve;

	memset(k, 0, sizeof(*k));
	k->handle = o;
	if (call_get_ulong(sc->t->module, sc->h, o, CKA_KEY_TYPE, &ckk) != CKR_OK)
		return false;
	switch (ckk) {
	case CKK_RSA:
		if (!attr(sc, o, CKA_MODULUS, &mod, &mod_n))
			return false;
		k->type = CA_KEY_RSA;
		k->bits = object_bits_of(mod, mod_n);
		if (attr(sc, o, CKA_PUBLIC_EXPONENT, &exp, &exp_n))
			k->has_kid = kid_rsa(mod, mod_n, exp, exp_n, k->kid);
		break;
	case CKK_EC:
	case CKK_EC_EDWARDS:
		if (!attr(sc, o, CKA_EC_PARAMS, &params, &params_n))
			return false;
		curve = object_curve_from_params(params, params_n);
		object_curve_to_type(curve, &k->type, &k->bits);
		if (k->type == CA_KEY_UNKNOWN)
			return false;
		if (!is_private && attr(sc, o, CKA_EC_POINT, &point, &point_n))
			k->has_kid = kid_ec(curve, point, point_n, k->kid);
		break;
	default:
		return false;
	}
	if (is_private && attr(sc, o, CKA_ALWAYS_AUTHENTICATE, &always, &always_n) && always_n == 1)
		k->always_auth = always[0] == CK_TRUE;
	attr(sc, o, CKA_ID, &k->id, &k->id_len);
	attr(sc, o, CKA_LABEL, (uint8_t **)&k->label, &always_n);
	return true;
}

static bool cert_read(Scan *sc, CK_OBJECT_HANDLE o, CertObj *c)
{
	_cleanup_free_ uint8_t *value = NULL;
	size_t n, kid_n = KID_LEN;
	unsigned bits = 0;
	CK_ULONG cat = 0;
	int pk;

	memset(c, 0, sizeof(*c));
	if (!attr(sc, o, CKA_VALUE, &value, &n) || n == 0)
		return false;
	if (gnutls_x509_crt_init(&c->crt) < 0)
		return false;
	c->der.data = gnutls_malloc(n);
	if (!c->der.data)
		return false;
	memcpy(c->der.data, value, n);
	c->der.size = n;
	if (gnutls_x509_crt_import(c->crt, &c->der, GNUTLS_X509_FMT_DER) < 0)
		return false;
	pk = gnutls_x509_crt_get_pk_algorithm(c->crt, &bits);
	if (pk == GNUTLS_PK_RSA) {
		c->type = CA_KEY_RSA, c->bits = bits;
	} else if (pk == GNUTLS_PK_ECDSA) {
		gnutls_ecc_curve_t curve;
		gnutls_datum_t x = {0}, y = {0};

		if (gnutls_x509_crt_get_pk_ecc_raw(c->crt, &curve, &x, &y) == 0)
			object_curve_to_type(curve, &c->type, &c->bits);
		gnutls_free(x.data);
		gnutls_free(y.data);
	} else if (pk == GNUTLS_PK_EDDSA_ED25519) {
		c->type = CA_KEY_ED25519, c->bits = 255;
	}
	c->has_kid = gnutls_x509_crt_get_key_id(c->crt, 0, c->kid, &kid_n) == 0 && kid_n == KID_LEN;
	c->is_ca = gnutls_x509_crt_get_ca_status(c->crt, NULL) > 0;
	/* CKA_CERTIFICATE_CATEGORY 3, "other entity": someone else's certificate, stored
	 * without its key (certagent cert import --no-key). */
	c->is_other =
		call_get_ulong(sc->t->module, sc->h, o, CKA_CERTIFICATE_CATEGORY, &cat) == CKR_OK &&
		cat == 3;
	attr(sc, o, CKA_ID, &c->id, &c->id_len);
	attr(sc, o, CKA_LABEL, (uint8_t **)&c->label, &n);
	return true;
}

static void cert_deinit(CertObj *c)
{
	if (c->crt)
		gnutls_x509_crt_deinit(c->crt);
	gnutls_free(c->der.data);
	free(c->id);
	free(c->label);
}

static void keyobj_deinit(KeyObj *k)
{
	free(k->id);
	free(k->label);
}

static void scan_deinit(Scan *sc)
{
	for (size_t i = 0; i < sc->n_privs; i++)
		keyobj_deinit(&sc->privs[i]);
	for (size_t i = 0; i < sc->n_pubs; i++)
		keyobj_deinit(&sc->pubs[i]);
	for (size_t i = 0; i < sc->n_certs; i++)
		cert_deinit(&sc->certs[i]);
	free(sc->privs);
	free(sc->pubs);
	free(sc->certs);
}

static CK_RV scan_find(Scan *sc, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_ATTRIBUTE tmpl[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
	};

	return call_find_objects(sc->t->module, sc->h, tmpl, cls == CKO_CERTIFICATE ? 2 : 1, ret,
				 ret_n);
}

static CK_RV scan_objects(Scan *sc)
{
	_cleanup_free_ CK_OBJECT_HANDLE *privs = NULL, *pubs = NULL, *certs = NULL;
	size_t n_privs = 0, n_pubs = 0, n_certs = 0;
	CK_RV rv;

	rv = scan_find(sc, CKO_PRIVATE_KEY, &privs, &n_privs);
	if (rv == CKR_OK)
		rv = scan_find(sc, CKO_PUBLIC_KEY, &pubs, &n_pubs);
	if (rv == CKR_OK)
		rv = scan_find(sc, CKO_CERTIFICATE, &certs, &n_certs);
	if (rv != CKR_OK)
		return rv;
	sc->privs = calloc(n_privs + 1, sizeof(KeyObj));
	sc->pubs = calloc(n_pubs + 1, sizeof(KeyObj));
	sc->certs = calloc(n_certs + 1, sizeof(CertObj));
	if (!sc->privs || !sc->pubs || !sc->certs)
		return CKR_HOST_MEMORY;
	for (size_t i = 0; i < n_privs; i++)
		if (key_read(sc, privs[i], true, &sc->privs[sc->n_privs]))
			sc->n_privs++;
		else
			keyobj_deinit(&sc->privs[sc->n_privs]);
	for (size_t i = 0; i < n_pubs; i++)
		if (key_read(sc, pubs[i], false, &sc->pubs[sc->n_pubs]))
			sc->n_pubs++;
		else
			keyobj_deinit(&sc->pubs[sc->n_pubs]);
	/* Skip the certificates of tokens without keys (trust stores): nothing to pair. */
	if (sc->n_privs == 0 && sc->n_pubs == 0 && !(sc->t->info.flags & CKF_LOGIN_REQUIRED))
		n_certs = 0;
	for (size_t i = 0; i < n_certs; i++)
		if (cert_read(sc, certs[i], &sc->certs[sc->n_certs]))
			sc->n_certs++;
		else
			cert_deinit(&sc->certs[sc->n_certs]);
	return CKR_OK;
}

static bool key_matches_cert(const KeyObj *k, const CertObj *c)
{
	if (k->has_kid && c->has_kid)
		return memcmp(k->kid, c->kid, KID_LEN) == 0;
	return k->type == c->type && k->bits == c->bits;
}

static CertObj *pair_cert(Scan *sc, const KeyObj *k)
{
	for (size_t i = 0; i < sc->n_certs; i++) {
		CertObj *c = &sc->certs[i];

		if (k->id_len > 0 && bytes_eq(k->id, k->id_len, c->id, c->id_len) &&
		    key_matches_cert(k, c))
			return c;
	}
	if (!k->has_kid)
		return NULL;
	for (size_t i = 0; i < sc->n_certs; i++) {
		CertObj *c = &sc->certs[i];

		if (c->has_kid && memcmp(k->kid, c->kid, KID_LEN) == 0)
			return c;
	}
	return NULL;
}

static bool signed_by(CertObj *c, CertObj *issuer)
{
	unsigned status = 0;

	if (!gnutls_x509_crt_check_issuer(c->crt, issuer->crt))
		return false;
	if (gnutls_x509_crt_verify(c->crt, &issuer->crt, 1,
				   GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
					   GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
				   &status) < 0)
		return false;
	return !(status & (GNUTLS_CERT_SIGNATURE_FAILURE | GNUTLS_CERT_SIGNER_NOT_FOUND |
			   GNUTLS_CERT_SIGNER_NOT_CA));
}

static bool datum_copy(gnutls_datum_t *dst, const gnutls_datum_t *src)
{
	dst->data = gnutls_malloc(src->size);
	if (!dst->data)
		return false;
	memcpy(dst->data, src->data, src->size);
	dst->size = src->size;
	return true;
}

/* leaf, then the intermediates on the token (not self-signed roots), at most CHAIN_MAX. */
static int identity_set_chain(Scan *sc, Identity *id, CertObj *leaf)
{
	CertObj *chain[CHAIN_MAX];
	size_t n = 0;

	chain[n++] = leaf;
	while (n < CHAIN_MAX) {
		CertObj *cur = chain[n - 1], *next = NULL;

		if (gnutls_x509_crt_check_issuer(cur->crt, cur->crt))
			break; /* self-issued: top of the chain */
		for (size_t i = 0; i < sc->n_certs && !next; i++) {
			CertObj *c = &sc->certs[i];
			bool seen = false;

			for (size_t j = 0; j < n; j++)
				seen |= chain[j] == c;
			if (!seen && signed_by(cur, c))
				next = c;
		}
		if (!next || gnutls_x509_crt_check_issuer(next->crt, next->crt))
			break;
		chain[n++] = next;
	}
	id->certs = calloc(n, sizeof(gnutls_datum_t));
	if (!id->certs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!datum_copy(&id->certs[i], &chain[i]->der))
			return -ENOMEM;
		id->n_certs++;
	}
	return 0;
}

static int identity_set_uri(Token *t, Identity *id)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE a;
	P11KitUri *u = p11_kit_uri_new();
	int r = -ENOMEM;

	if (!u)
		return -ENOMEM;
	*p11_kit_uri_get_token_info(u) = t->info;
	a = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	if (p11_kit_uri_set_attribute(u, &a) != P11_KIT_URI_OK)
		goto out;
	if (id->id_len > 0) {
		a = (CK_ATTRIBUTE){CKA_ID, id->id, id->id_len};
		if (p11_kit_uri_set_attribute(u, &a) != P11_KIT_URI_OK)
			goto out;
	}
	if (id->label && id->label[0]) {
		a = (CK_ATTRIBUTE){CKA_LABEL, id->label, strlen(id->label)};
		if (p11_kit_uri_set_attribute(u, &a) != P11_KIT_URI_OK)
			goto out;
	}
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &id->uri) != P11_KIT_URI_OK)
		goto out;
	r = 0;
out:
	p11_kit_uri_free(u);
	return r;
}

static bool scheme_on_token(const Token *t, const CaScheme *s)
{
	switch (s->kind) {
	case CA_SIG_RSA_PKCS1:
		return t->mech[MECH_RSA_PKCS];
	case CA_SIG_RSA_PSS:
		return t->mech[MECH_RSA_PSS];
	case CA_SIG_ECDSA:
		return t->mech[MECH_ECDSA];
	case CA_SIG_EDDSA:
		return t->mech[MECH_EDDSA];
	}
	return false;
}

static int identity_set_schemes(Token *t, Identity *id)
{
	size_t n;
	const CaScheme *table = ca_scheme_table(&n);

	id->schemes = calloc(n, sizeof(*id->schemes));
	if (!id->schemes)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (ca_scheme_fits_key(&table[i], id->key_type, id->bits) &&
		    scheme_on_token(t, &table[i]))
			id->schemes[id->n_schemes++] = &table[i];
	return 0;
}

void identity_deinit(Identity *id)
{
	free(id->uri);
	free(id->label);
	free(id->id);
	free(id->schemes);
	for (size_t i = 0; i < id->n_certs; i++)
		gnutls_free(id->certs[i].data);
	free(id->certs);
	memset(id, 0, sizeof(*id));
}

/* Appends an identity for key k (handle CK_INVALID_HANDLE when inferred) or cert-only c. */
static int identity_add(Scan *sc, Identity **ids, size_t *n_ids, const KeyObj *k, CertObj *cert)
{
	Identity *p, *id;
	const uint8_t *idv = k ? k->id : cert->id;
	size_t idn = k ? k->id_len : cert->id_len;
	const char *label = k ? k->label : cert->label;
	int r;

	p = reallocarray(*ids, *n_ids + 1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	*ids = p;
	id = &p[*n_ids];
	memset(id, 0, sizeof(*id));
	(*n_ids)++;
	id->key = k ? k->handle : CK_INVALID_HANDLE;
	id->key_type = k ? k->type : cert->type;
	id->bits = k ? k->bits : cert->bits;
	id->always_authenticate = k ? k->always_auth : false;
	id->label = strdup(label ? label : "");
	if (!id->label)
		return -ENOMEM;
	if (idn > 0) {
		id->id = malloc(idn);
		if (!id->id)
			return -ENOMEM;
		memcpy(id->id, idv, idn);
		id->id_len = idn;
	}
	if (!cert && k)
		cert = pair_cert(sc, k);
	if (cert) {
		cert->used = true;
		r = identity_set_chain(sc, id, cert);
		if (r < 0)
			return r;
	}
	r = identity_set_uri(sc->t, id);
	if (r < 0)
		return r;
	return identity_set_schemes(sc->t, id);
}

static int scan_build(Scan *sc, bool infer, Identity **ids, size_t *n_ids)
{
	int r;

	/* Private keys get the public key id of their public key object when they lack one. */
	for (size_t i = 0; i < sc->n_privs; i++) {
		KeyObj *k = &sc->privs[i];

		for (size_t j = 0; j < sc->n_pubs; j++) {
			KeyObj *pub = &sc->pubs[j];

			if (k->id_len == 0 || !bytes_eq(k->id, k->id_len, pub->id, pub->id_len) ||
			    pub->type != k->type)
				continue;
			pub->used = true;
			if (!k->has_kid && pub->has_kid) {
				memcpy(k->kid, pub->kid, KID_LEN);
				k->has_kid = true;
			}
		}
		r = identity_add(sc, ids, n_ids, k, NULL);
		if (r < 0)
			return r;
	}
	if (!infer)
		return 0;
	/* Not logged in: the private keys may be hidden. Infer from public objects. */
	for (size_t j = 0; j < sc->n_pubs; j++) {
		KeyObj *pub = &sc->pubs[j];

		if (pub->used)
			continue;
		pub->handle = CK_INVALID_HANDLE;
		r = identity_add(sc, ids, n_ids, pub, NULL);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < sc->n_certs; i++) {
		CertObj *c = &sc->certs[i];

		if (c->used || c->is_ca || c->is_other || c->type == CA_KEY_UNKNOWN)
			continue;
		r = identity_add(sc, ids, n_ids, NULL, c);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * (Re)builds t->ids; the caller holds the store lock exclusively (or owns t alone).
 * Returns 0, -ENOMEM, or a code from call_error() (the old list is kept then).
 */
int object_scan_token(Token *t, CaError *err)
{
	Scan sc = {.t = t};
	Identity *ids = NULL;
	size_t n_ids = 0;
	bool logged_in;
	CK_RV rv;
	int r;

	/* With the store lock exclusive (no signature under way): no copy of a key is seen. */
	key_copies_forget(&t->copies);
	r = session_acquire(t, &sc.h, err);
	if (r != 0)
		return r;
	logged_in = token_session_logged_in(t, sc.h, &rv);
	if (rv == CKR_OK)
		rv = scan_objects(&sc);
	if (rv != CKR_OK) {
		session_discard(t, sc.h);
		scan_deinit(&sc);
		return rv == CKR_HOST_MEMORY ? -ENOMEM : call_error(rv, t, "C_FindObjects", err);
	}
	session_release(t, sc.h);
	r = scan_build(&sc, (t->info.flags & CKF_LOGIN_REQUIRED) && !logged_in, &ids, &n_ids);
	scan_deinit(&sc);
	if (r < 0) {
		for (size_t i = 0; i < n_ids; i++)
			identity_deinit(&ids[i]);
		free(ids);
		return ca_error_set(err, r, "out of memory listing token \"%s\"", t->label);
	}
	for (size_t i = 0; i < t->n_ids; i++)
		identity_deinit(&t->ids[i]);
	free(t->ids);
	t->ids = ids;
	t->n_ids = n_ids;
	return 0;
}

/*
 * The private key of an identity inferred before login, by CKA_ID (or label without an ID).
 * Codes: CA_E_KEY_NOT_FOUND, CA_E_INVALID_ARGS (several keys share that ID), from call_error().
 */
int object_find_private_key(Token *t, CK_SESSION_HANDLE h, const Identity *id,
			    CK_OBJECT_HANDLE *ret_key, bool *ret_always_auth, CK_RV *ret_rv,
			    CaError *err)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_BBOOL yes = CK_TRUE;
	/* Token objects only where sign.c may have made session copies of keys meanwhile. */
	CK_ATTRIBUTE tmpl[3] = {
		{CKA_CLASS, &cls, sizeof(cls)}, {0}, {CKA_TOKEN, &yes, sizeof(yes)}};
	_cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
	_cleanup_free_ uint8_t *always = NULL;
	size_t n = 0, always_n = 0;
	CK_RV rv;

	if (id->id_len > 0)
		tmpl[1] = (CK_ATTRIBUTE){CKA_ID, id->id, id->id_len};
	else
		tmpl[1] = (CK_ATTRIBUTE){CKA_LABEL, id->label, strlen(id->label)};
	rv = call_find_objects(t->module, h, tmpl, sign_copies(t) ? 3 : 2, &objs, &n);
	*ret_rv = rv;
	if (rv != CKR_OK)
		return call_error(rv, t, "C_FindObjects", err);
	if (n == 0)
		return ca_error_set(err, CA_E_KEY_NOT_FOUND,
				    "no private key for \"%s\" on token \"%s\" (logged in): the "
				    "certificate or public key has no key; run `certagent list`",
				    id->label, t->label);
	if (n > 1)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "%zu private keys on token \"%s\" share the ID of \"%s\": give "
				    "each key its own CKA_ID",
				    n, t->label, id->label);
	*ret_key = objs[0];
	*ret_always_auth = call_get_attribute(t->module, h, objs[0], CKA_ALWAYS_AUTHENTICATE,
					      &always, &always_n) == CKR_OK &&
			   always_n == 1 && always[0] == CK_TRUE;
	return 0;
}
