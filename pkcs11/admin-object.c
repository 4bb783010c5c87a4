/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * admin-object: the objects on an AdminSession's token (admin.c: slots, the session, logins,
 * PINs, token initialisation). Lists them with their key and certificate details, generates
 * key pairs, stores certificates, signs with a key (the CSR path), renames and destroys, and
 * cleans up what an unfinished enrolment left. Everything goes through the session's
 * read-write handle; an AdminObjectList and its strings belong to the caller
 * (admin_object_list_free()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "admin-internal.h"
#include "admin.h"
#include "internal.h"

/* --- small helpers ---------------------------------------------------------------------- */

static const struct {
	const char *name;
	CK_KEY_TYPE ckk;
	CK_ULONG bits;
	const uint8_t *params;
	size_t params_len;
} key_types[] = {
	{"rsa2048", CKK_RSA, 2048, NULL, 0},
	{"rsa3072", CKK_RSA, 3072, NULL, 0},
	{"rsa4096", CKK_RSA, 4096, NULL, 0},
	{"p256", CKK_EC, 256, object_oid_p256, sizeof(object_oid_p256)},
	{"p384", CKK_EC, 384, object_oid_p384, sizeof(object_oid_p384)},
	{"p521", CKK_EC, 521, object_oid_p521, sizeof(object_oid_p521)},
	{"ed25519", CKK_EC_EDWARDS, 255, object_oid_ed25519, sizeof(object_oid_ed25519)},
};

static bool bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = 0;
}

static bool attr_bool(AdminSession *a, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, bool dflt)
{
	_cleanup_free_ uint8_t *v = NULL;
	size_t n = 0;

	if (call_get_attribute(a->m, a->h, o, type, &v, &n) != CKR_OK || n != 1)
		return dflt;
	return v[0] == CK_TRUE;
}

/* --- objects ---------------------------------------------------------------------------- */

static int class_of(CK_OBJECT_CLASS c)
{
	switch (c) {
	case CKO_CERTIFICATE:
		return ADMIN_OBJ_CERT;
	case CKO_PUBLIC_KEY:
		return ADMIN_OBJ_PUBLIC;
	case CKO_PRIVATE_KEY:
		return ADMIN_OBJ_PRIVATE;
	case CKO_SECRET_KEY:
		return ADMIN_OBJ_SECRET;
	case CKO_DATA:
		return ADMIN_OBJ_DATA;
	default:
		return ADMIN_OBJ_OTHER;
	}
}

static int make_uri(AdminSession *a, CK_OBJECT_CLASS cls, const uint8_t *id, size_t id_len,
		    const char *label, char **ret)
{
	P11KitUri *u = p11_kit_uri_new();
	CK_ATTRIBUTE at;
	int r = -ENOMEM;

	if (!u)
		return -ENOMEM;
	*p11_kit_uri_get_token_info(u) = a->tok.info;
	at = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	if (cls != (CK_OBJECT_CLASS)-1 && p11_kit_uri_set_attribute(u, &at) != P11_KIT_URI_OK)
		goto out;
	at = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};
	if (id_len > 0 && p11_kit_uri_set_attribute(u, &at) != P11_KIT_URI_OK)
		goto out;
	at = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, label ? strlen(label) : 0};
	if (label && *label && p11_kit_uri_set_attribute(u, &at) != P11_KIT_URI_OK)
		goto out;
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, ret) != P11_KIT_URI_OK)
		goto out;
	r = 0;
out:
	p11_kit_uri_free(u);
	return r;
}

static bool datum_from_gnutls(gnutls_datum_t *dst, gnutls_datum_t *src)
{
	dst->data = malloc(src->size ? src->size : 1);
	if (dst->data) {
		memcpy(dst->data, src->data, src->size);
		dst->size = src->size;
	}
	gnutls_free(src->data);
	src->data = NULL;
	return dst->data != NULL;
}

static bool pubkey_to_spki(gnutls_pubkey_t pub, gnutls_datum_t *ret)
{
	gnutls_datum_t d = {NULL, 0};

	if (gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &d) < 0)
		return false;
	return datum_from_gnutls(ret, &d);
}

static void key_read(AdminSession *a, CK_OBJECT_HANDLE o, AdminObject *obj)
{
	_cleanup_free_ uint8_t *mod = NULL, *exp = NULL, *params = NULL, *point = NULL;
	size_t mod_n = 0, exp_n = 0, params_n = 0, point_n = 0;
	CK_ULONG ckk = CKK_VENDOR_DEFINED;
	gnutls_pubkey_t pub = NULL;

	if (obj->cls == ADMIN_OBJ_PRIVATE) {
		obj->sensitive = attr_bool(a, o, CKA_SENSITIVE, false);
		obj->extractable = attr_bool(a, o, CKA_EXTRACTABLE, true);
		obj->can_sign = attr_bool(a, o, CKA_SIGN, false);
		obj->can_decrypt = attr_bool(a, o, CKA_DECRYPT, false) ||
				   attr_bool(a, o, CKA_UNWRAP, false);
	}
	if (call_get_ulong(a->m, a->h, o, CKA_KEY_TYPE, &ckk) != CKR_OK)
		return;
	if (gnutls_pubkey_init(&pub) < 0)
		return;
	if (ckk == CKK_RSA &&
	    call_get_attribute(a->m, a->h, o, CKA_MODULUS, &mod, &mod_n) == CKR_OK) {
		gnutls_datum_t m = {mod, mod_n}, e = {NULL, 0};

		obj->key_type = CA_KEY_RSA;
		obj->bits = object_bits_of(mod, mod_n);
		if (call_get_attribute(a->m, a->h, o, CKA_PUBLIC_EXPONENT, &exp, &exp_n) ==
			    CKR_OK &&
		    exp_n > 0) {
			e = (gnutls_datum_t){exp, exp_n};
			if (gnutls_pubkey_import_rsa_raw(pub, &m, &e) == 0)
				pubkey_to_spki(pub, &obj->spki);
		}
	} else if ((ckk == CKK_EC || ckk == CKK_EC_EDWARDS) &&
		   call_get_attribute(a->m, a->h, o, CKA_EC_PARAMS, &params, &params_n) ==
			   CKR_OK) {
		gnutls_ecc_curve_t c = object_curve_from_params(params, params_n);

		object_curve_to_type(c, &obj->key_type, &obj->bits);
		if (obj->cls == ADMIN_OBJ_PUBLIC && obj->key_type != CA_KEY_UNKNOWN &&
		    call_get_attribute(a->m, a->h, o, CKA_EC_POINT, &point, &point_n) == CKR_OK &&
		    object_pubkey_import_ec(pub, c, point, point_n))
			pubkey_to_spki(pub, &obj->spki);
	}
	gnutls_pubkey_deinit(pub);
}

static void cert_read(AdminSession *a, CK_OBJECT_HANDLE o, AdminObject *obj)
{
	_cleanup_free_ uint8_t *value = NULL;
	size_t n = 0;
	CK_ULONG cat = 0;
	gnutls_x509_crt_t crt;
	gnutls_pubkey_t pub;
	unsigned bits = 0;
	int pk;

	if (call_get_attribute(a->m, a->h, o, CKA_VALUE, &value, &n) != CKR_OK || n == 0)
		return;
	obj->der.data = TAKE_PTR(value);
	obj->der.size = n;
	if (call_get_ulong(a->m, a->h, o, CKA_CERTIFICATE_CATEGORY, &cat) == CKR_OK && cat == 2)
		obj->is_ca = true;
	if (gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &obj->der, GNUTLS_X509_FMT_DER) == 0) {
		if (gnutls_x509_crt_get_ca_status(crt, NULL) > 0)
			obj->is_ca = true;
		pk = gnutls_x509_crt_get_pk_algorithm(crt, &bits);
		obj->key_type = pk == GNUTLS_PK_RSA		    ? CA_KEY_RSA
				: pk == GNUTLS_PK_ECDSA		    ? CA_KEY_EC
				: pk == GNUTLS_PK_EDDSA_ED25519 ? CA_KEY_ED25519
								    : CA_KEY_UNKNOWN;
		obj->bits = pk == GNUTLS_PK_EDDSA_ED25519 ? 255 : bits;
		if (gnutls_pubkey_init(&pub) == 0) {
			if (gnutls_pubkey_import_x509(pub, crt, 0) == 0)
				pubkey_to_spki(pub, &obj->spki);
			gnutls_pubkey_deinit(pub);
		}
	}
	gnutls_x509_crt_deinit(crt);
}

static void object_deinit(AdminObject *o)
{
	free(o->label);
	free(o->id);
	free(o->uri);
	free(o->der.data);
	free(o->spki.data);
}

AdminObjectList *admin_object_list_free(AdminObjectList *l)
{
	if (!l)
		return NULL;
	for (size_t i = 0; i < l->n; i++)
		object_deinit(&l->items[i]);
	free(l->items);
	free(l);
	return NULL;
}

int admin_list_objects(AdminSession *a, AdminObjectList **ret, CaError *err)
{
	_cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
	AdminObjectList *l;
	size_t n = 0;
	CK_RV rv;

	rv = call_find_objects(a->m, a->h, NULL, 0, &objs, &n);
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_FindObjects", err);
	l = calloc(1, sizeof(*l));
	if (!l || !(l->items = calloc(n + 1, sizeof(*l->items)))) {
		free(l);
		return ca_error_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		AdminObject *o = &l->items[l->n];
		CK_ULONG cls = 0;
		size_t len = 0;

		if (call_get_ulong(a->m, a->h, objs[i], CKA_CLASS, &cls) != CKR_OK)
			continue;
		l->n++;
		o->handle = objs[i];
		o->cls = class_of(cls);
		if (call_get_attribute(a->m, a->h, objs[i], CKA_LABEL, (uint8_t **)&o->label,
				       &len) != CKR_OK)
			o->label = strdup("");
		call_get_attribute(a->m, a->h, objs[i], CKA_ID, &o->id, &o->id_len);
		if (o->cls == ADMIN_OBJ_PUBLIC || o->cls == ADMIN_OBJ_PRIVATE)
			key_read(a, objs[i], o);
		else if (o->cls == ADMIN_OBJ_CERT)
			cert_read(a, objs[i], o);
		if (!o->label || make_uri(a, cls, o->id, o->id_len, o->label, &o->uri) < 0) {
			admin_object_list_free(l);
			return ca_error_set(err, -ENOMEM, "out of memory");
		}
	}
	*ret = l;
	return 0;
}

int admin_uri_matches(const char *uri, const AdminObject *o, bool *ret, CaError *err)
{
	static const CK_OBJECT_CLASS classes[] = {
		[ADMIN_OBJ_DATA] = CKO_DATA,	       [ADMIN_OBJ_CERT] = CKO_CERTIFICATE,
		[ADMIN_OBJ_PUBLIC] = CKO_PUBLIC_KEY,   [ADMIN_OBJ_PRIVATE] = CKO_PRIVATE_KEY,
		[ADMIN_OBJ_SECRET] = CKO_SECRET_KEY,
	};
	CK_OBJECT_CLASS cls = o->cls <= ADMIN_OBJ_SECRET ? classes[o->cls] : CKO_VENDOR_DEFINED;
	CK_ATTRIBUTE attrs[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_ID, o->id, o->id_len},
		{CKA_LABEL, o->label, o->label ? strlen(o->label) : 0},
	};
	P11KitUri *u = p11_kit_uri_new();
	int r;

	if (!u)
		return ca_error_set(err, -ENOMEM, "out of memory");
	r = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, u);
	if (r != P11_KIT_URI_OK) {
		p11_kit_uri_free(u);
		return ca_error_set(err, CA_E_INVALID_ARGS, "\"%s\" is not a valid pkcs11: URI (%s)",
				    uri, p11_kit_uri_message(r));
	}
	*ret = p11_kit_uri_match_attributes(u, attrs, ELEMENTSOF(attrs)) == 1;
	p11_kit_uri_free(u);
	return 0;
}

bool admin_key_type_valid(const char *type)
{
	for (size_t i = 0; i < ELEMENTSOF(key_types); i++)
		if (strcmp(key_types[i].name, type) == 0)
			return true;
	return false;
}

int admin_check_unused(AdminSession *a, const char *label, const uint8_t *id, size_t id_len,
		       CaError *err)
{
	AdminObjectList *l = NULL;
	int r = admin_list_objects(a, &l, err);

	for (size_t i = 0; r == 0 && i < l->n; i++) {
		const AdminObject *o = &l->items[i];
		char hx[2 * ADMIN_ID_MAX + 1];

		if (label && strcmp(o->label, label) == 0)
			r = ca_error_set(err, CA_E_POLICY_DENIED,
					 "token \"%s\" already has an object labelled \"%s\" (%s): "
					 "choose another --label",
					 admin_session_label(a), label, o->uri);
		else if (id_len > 0 && bytes_eq(o->id, o->id_len, id, id_len)) {
			hex(id, id_len, hx);
			r = ca_error_set(err, CA_E_POLICY_DENIED,
					 "token \"%s\" already has an object with ID %s (%s): "
					 "choose another --id, or leave it out for a random one",
					 admin_session_label(a), hx, o->uri);
		}
	}
	admin_object_list_free(l);
	return r;
}

int admin_generate_key(AdminSession *a, const char *type, const char *label, const uint8_t *id,
		       size_t id_len, char **ret_uri, CaError *err)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 0;
	uint8_t e65537[] = {0x01, 0x00, 0x01};
	CK_MECHANISM mech = {0, NULL, 0};
	CK_OBJECT_HANDLE pub = 0, priv = 0;
	CK_ATTRIBUTE pubt[16], privt[16];
	size_t npub = 0, npriv = 0, k;
	CK_RV rv;
	int r;

	for (k = 0; k < ELEMENTSOF(key_types); k++)
		if (strcmp(key_types[k].name, type) == 0)
			break;
	if (k == ELEMENTSOF(key_types))
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "unknown key type \"%s\": use rsa2048, rsa3072, rsa4096, p256, "
				    "p384, p521 or ed25519",
				    type);
	if (!label || !*label || strlen(label) > ADMIN_LABEL_MAX || id_len == 0 ||
	    id_len > ADMIN_ID_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "a key needs a label of 1 to %d bytes and an ID of 1 to %d bytes",
				    ADMIN_LABEL_MAX, ADMIN_ID_MAX);
	r = admin_check_unused(a, label, id, id_len, err);
	if (r != 0)
		return r;

#define PUB(t, p, l) pubt[npub++] = (CK_ATTRIBUTE){(t), (void *)(p), (l)}
#define PRIV(t, p, l) privt[npriv++] = (CK_ATTRIBUTE){(t), (void *)(p), (l)}
	PUB(CKA_TOKEN, &yes, sizeof(yes));
	PUB(CKA_PRIVATE, &no, sizeof(no));
	PUB(CKA_VERIFY, &yes, sizeof(yes));
	PUB(CKA_ENCRYPT, &no, sizeof(no));
	PUB(CKA_WRAP, &no, sizeof(no));
	PUB(CKA_LABEL, label, strlen(label));
	PUB(CKA_ID, id, id_len);
	PRIV(CKA_TOKEN, &yes, sizeof(yes));
	PRIV(CKA_PRIVATE, &yes, sizeof(yes));
	PRIV(CKA_SENSITIVE, &yes, sizeof(yes));
	PRIV(CKA_EXTRACTABLE, &no, sizeof(no));
	PRIV(CKA_SIGN, &yes, sizeof(yes));
	PRIV(CKA_DECRYPT, &no, sizeof(no));
	PRIV(CKA_UNWRAP, &no, sizeof(no));
	PRIV(CKA_DERIVE, &no, sizeof(no));
	PRIV(CKA_LABEL, label, strlen(label));
	PRIV(CKA_ID, id, id_len);
	if (key_types[k].ckk == CKK_RSA) {
		bits = key_types[k].bits;
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		PUB(CKA_MODULUS_BITS, &bits, sizeof(bits));
		PUB(CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537));
	} else {
		mech.mechanism = key_types[k].ckk == CKK_EC ? CKM_EC_KEY_PAIR_GEN
							    : CKM_EC_EDWARDS_KEY_PAIR_GEN;
		PUB(CKA_EC_PARAMS, key_types[k].params, key_types[k].params_len);
	}
#undef PUB
#undef PRIV
	rv = call_generate_key_pair(a->m, a->h, &mech, pubt, npub, privt, npriv, &pub, &priv);
	if ((rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_DOMAIN_PARAMS_INVALID ||
	     rv == CKR_TEMPLATE_INCONSISTENT) &&
	    key_types[k].ckk == CKK_EC_EDWARDS) {
		/* Older modules name the curve with a PrintableString, as RFC 8410 once did. */
		pubt[npub - 1] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)object_str_ed25519,
						sizeof(object_str_ed25519)};
		rv = call_generate_key_pair(a->m, a->h, &mech, pubt, npub, privt, npriv, &pub,
					    &priv);
	}
	if (rv == CKR_MECHANISM_INVALID || rv == CKR_DOMAIN_PARAMS_INVALID ||
	    rv == CKR_KEY_SIZE_RANGE || rv == CKR_ATTRIBUTE_VALUE_INVALID)
		return ca_error_set(err, CA_E_UNSUPPORTED_SCHEME,
				    "token \"%s\" cannot generate %s keys (%s): choose another "
				    "--type",
				    admin_session_label(a), type,
				    call_rv_name(rv, (char[32]){0}));
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_GenerateKeyPair", err);
	if (!attr_bool(a, priv, CKA_SENSITIVE, false) ||
	    attr_bool(a, priv, CKA_EXTRACTABLE, true)) {
		call_destroy_object(a->m, a->h, priv);
		call_destroy_object(a->m, a->h, pub);
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "token \"%s\" made the new key extractable or not sensitive "
				    "despite the template: the key was destroyed",
				    admin_session_label(a));
	}
	call_log(LOG_INFO, "token \"%s\": generated %s key \"%s\"", admin_session_label(a), type,
		 label);
	if (ret_uri && make_uri(a, CKO_PRIVATE_KEY, id, id_len, label, ret_uri) < 0)
		return ca_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* DER INTEGER of a certificate serial, as CKA_SERIAL_NUMBER wants it. */
static size_t serial_der(const uint8_t *s, size_t n, uint8_t *out)
{
	size_t k = 0;

	out[k++] = 0x02;
	out[k++] = (uint8_t)(n + (s[0] & 0x80 ? 1 : 0));
	if (s[0] & 0x80)
		out[k++] = 0;
	memcpy(out + k, s, n);
	return k + n;
}

int admin_store_cert(AdminSession *a, const gnutls_datum_t *der, const char *label,
		     const uint8_t *id, size_t id_len, AdminCertCategory category,
		     unsigned long *ret_handle, CaError *err)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_ULONG cat = category;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	gnutls_datum_t subj = {NULL, 0}, iss = {NULL, 0};
	uint8_t serial[64], serial_enc[68];
	size_t serial_n = sizeof(serial);
	_cleanup_free_ CK_OBJECT_HANDLE *dups = NULL;
	size_t n_dups = 0;
	gnutls_x509_crt_t crt;
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv;
	int r = 0;

	if (!label || strlen(label) > ADMIN_LABEL_MAX || id_len > ADMIN_ID_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS, "label or ID too long");
	CK_ATTRIBUTE find[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_VALUE, der->data, der->size},
	};
	rv = call_find_objects(a->m, a->h, find, ELEMENTSOF(find), &dups, &n_dups);
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_FindObjects", err);
	if (n_dups > 0)
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "this certificate is already on token \"%s\": nothing stored",
				    admin_session_label(a));
	if (gnutls_x509_crt_init(&crt) < 0)
		return ca_error_set(err, -ENOMEM, "out of memory");
	if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_x509_crt_get_raw_dn(crt, &subj) < 0 ||
	    gnutls_x509_crt_get_raw_issuer_dn(crt, &iss) < 0 ||
	    gnutls_x509_crt_get_serial(crt, serial, &serial_n) < 0 || serial_n == 0 ||
	    serial_n > sizeof(serial)) {
		r = ca_error_set(err, CA_E_INVALID_ARGS, "not a usable X.509 certificate");
		goto out;
	}
	CK_ATTRIBUTE t[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
		{CKA_TOKEN, &yes, sizeof(yes)},
		{CKA_PRIVATE, &no, sizeof(no)},
		{CKA_MODIFIABLE, &yes, sizeof(yes)},
		{CKA_CERTIFICATE_CATEGORY, &cat, sizeof(cat)},
		{CKA_VALUE, der->data, der->size},
		{CKA_SUBJECT, subj.data, subj.size},
		{CKA_ISSUER, iss.data, iss.size},
		{CKA_SERIAL_NUMBER, serial_enc, serial_der(serial, serial_n, serial_enc)},
		{CKA_LABEL, (void *)label, strlen(label)},
		{CKA_ID, (void *)id, id_len},
	};
	rv = call_create_object(a->m, a->h, t, id_len > 0 ? ELEMENTSOF(t) : ELEMENTSOF(t) - 1,
				&h);
	if (rv != CKR_OK) {
		r = rv == CKR_DEVICE_MEMORY
			    ? ca_error_set(err, CA_E_FAILED,
					   "token \"%s\" is full: delete objects you no longer "
					   "need (`certagent delete`) and try again",
					   admin_session_label(a))
			    : call_error(rv, &a->tok, "C_CreateObject", err);
		goto out;
	}
	if (ret_handle)
		*ret_handle = h;
out:
	gnutls_free(subj.data);
	gnutls_free(iss.data);
	gnutls_x509_crt_deinit(crt);
	return r;
}

int admin_destroy(AdminSession *a, unsigned long handle, CaError *err)
{
	CK_RV rv = call_destroy_object(a->m, a->h, handle);

	return rv == CKR_OK ? 0 : call_error(rv, &a->tok, "C_DestroyObject", err);
}

int admin_set_label(AdminSession *a, unsigned long handle, const char *label, CaError *err)
{
	CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
	CK_RV rv = call_set_attributes(a->m, a->h, handle, &t, 1);

	return rv == CKR_OK ? 0 : call_error(rv, &a->tok, "C_SetAttributeValue", err);
}

int admin_sign(AdminSession *a, const uint8_t *id, size_t id_len, CaSigKind kind,
	       const uint8_t *data, size_t len, uint8_t **ret_sig, size_t *ret_len, CaError *err)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE find[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_ID, (void *)id, id_len},
	};
	_cleanup_free_ CK_OBJECT_HANDLE *keys = NULL;
	CK_MECHANISM mech = {0, NULL, 0};
	uint8_t sig[1024];
	CK_ULONG sig_len = sizeof(sig);
	size_t n = 0;
	CK_RV rv;

	rv = call_find_objects(a->m, a->h, find, ELEMENTSOF(find), &keys, &n);
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_FindObjects", err);
	if (n != 1)
		return ca_error_set(err, CA_E_KEY_NOT_FOUND,
				    "%zu private keys with this ID on token \"%s\" (logged in): "
				    "name exactly one key",
				    n, admin_session_label(a));
	mech.mechanism = kind == CA_SIG_RSA_PKCS1 ? CKM_RSA_PKCS
			 : kind == CA_SIG_ECDSA	  ? CKM_ECDSA
			 : kind == CA_SIG_EDDSA	  ? CKM_EDDSA
						  : CKM_VENDOR_DEFINED;
	if (mech.mechanism == CKM_VENDOR_DEFINED)
		return ca_error_set(err, CA_E_UNSUPPORTED_SCHEME, "unsupported signature kind");
	rv = call_sign_init(a->m, a->h, &mech, keys[0]);
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_SignInit", err);
	rv = call_sign(a->m, a->h, data, len, sig, &sig_len);
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_Sign", err);
	if (kind == CA_SIG_ECDSA) {
		gnutls_datum_t rr = {sig, sig_len / 2}, ss = {sig + sig_len / 2, sig_len / 2};
		gnutls_datum_t d = {NULL, 0};

		if (sig_len == 0 || sig_len % 2 || gnutls_encode_rs_value(&d, &rr, &ss) < 0)
			return ca_error_set(err, CA_E_FAILED, "malformed ECDSA signature");
		*ret_sig = malloc(d.size);
		if (!*ret_sig) {
			gnutls_free(d.data);
			return -ENOMEM;
		}
		memcpy(*ret_sig, d.data, d.size);
		*ret_len = d.size;
		gnutls_free(d.data);
		return 0;
	}
	*ret_sig = malloc(sig_len);
	if (!*ret_sig)
		return -ENOMEM;
	memcpy(*ret_sig, sig, sig_len);
	*ret_len = sig_len;
	return 0;
}

/* Reads the hex ID after ADMIN_TMP_PREFIX. */
static size_t tmp_label_id(const char *label, uint8_t *out)
{
	const char *p = label + strlen(ADMIN_TMP_PREFIX);
	size_t n = 0;
	unsigned v;

	while (n < ADMIN_ID_MAX && sscanf(p, "%2x", &v) == 1 && p[0] && p[1] &&
	       strchr("0123456789abcdefABCDEF", p[0]) && strchr("0123456789abcdefABCDEF", p[1])) {
		out[n++] = (uint8_t)v;
		p += 2;
	}
	return n;
}

/* Gives a CA certificate stored by a committed enrolment its final label: its CN. */
static int cert_label_final(AdminSession *a, const AdminObject *o, CaError *err)
{
	gnutls_x509_crt_t crt;
	char cn[ADMIN_LABEL_MAX + 1] = "CA";
	size_t n = sizeof(cn);

	if (gnutls_x509_crt_init(&crt) == 0) {
		if (gnutls_x509_crt_import(crt, &o->der, GNUTLS_X509_FMT_DER) < 0 ||
		    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &n) < 0)
			snprintf(cn, sizeof(cn), "CA");
		gnutls_x509_crt_deinit(crt);
	}
	call_log(LOG_INFO, "token \"%s\": finishing an enrolment: %s is now \"%s\"",
		 admin_session_label(a), o->uri, cn);
	return admin_set_label(a, o->handle, cn, err);
}

int admin_cleanup_orphans(AdminSession *a, size_t *ret_n, CaError *err)
{
	AdminObjectList *l = NULL;
	size_t destroyed = 0;
	int r;

	r = admin_list_objects(a, &l, err);
	if (r != 0)
		return r;
	for (size_t i = 0; i < l->n && r == 0; i++) {
		uint8_t id[ADMIN_ID_MAX];
		size_t id_len;
		bool finished = false;

		if (!admin_label_is_tmp(l->items[i].label))
			continue;
		id_len = tmp_label_id(l->items[i].label, id);
		for (size_t j = 0; j < l->n; j++)
			if (l->items[j].cls == ADMIN_OBJ_PRIVATE &&
			    bytes_eq(l->items[j].id, l->items[j].id_len, id, id_len) &&
			    !admin_label_is_tmp(l->items[j].label))
				finished = true;
		for (size_t j = 0; j < l->n && r == 0; j++) {
			AdminObject *o = &l->items[j];

			if (o->handle == 0)
				continue; /* already destroyed */
			if (j != i && (finished || id_len == 0 ||
				       !bytes_eq(o->id, o->id_len, id, id_len)))
				continue;
			if (j == i && finished && o->cls == ADMIN_OBJ_CERT) {
				/* Committed (the private key has its final label), killed before
				 * the CA certificate was renamed: finish the job. */
				r = cert_label_final(a, o, err);
				continue;
			}
			call_log(LOG_INFO, "token \"%s\": removing %s left by an unfinished "
				 "enrolment", admin_session_label(a), o->uri);
			r = admin_destroy(a, o->handle, err);
			if (r == 0) {
				o->handle = 0;
				destroyed++;
			}
		}
	}
	admin_object_list_free(l);
	if (ret_n)
		*ret_n = destroyed;
	return r;
}
