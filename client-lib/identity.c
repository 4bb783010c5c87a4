/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * identity: decodes the agent's ListIdentities reply (aa{sv}) into certagent_identity_list,
 * and the accessors of the public API.
 *
 * Everything is copied out of the message (strings borrowed from a message die with it).
 * Unknown keys are skipped so a newer agent can add fields; a known key with the wrong type
 * is an error. Every count and size the agent sends is capped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"

static void identity_clear(certagent_identity *id)
{
	free(id->uri);
	free(id->label);
	free(id->token);
	free(id->token_label);
	free(id->module);
	free(id->key_type);
	strv_free(id->schemes);
	for (size_t i = 0; i < id->n_certs; i++)
		gnutls_free(id->certs[i].data);
	free(id->certs);
	cert_cache_free(id->cert_cache, id->n_certs);
	memset(id, 0, sizeof(*id));
}

_public_ void certagent_identity_list_free(certagent_identity_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		identity_clear(&l->items[i]);
	free(l->items);
	free(l);
}

static void identity_listp_free(certagent_identity_list **l)
{
	certagent_identity_list_free(*l);
}

static int malformed(certagent_error *err, const char *what)
{
	return client_malformed(err, "identity list", what);
}

static int read_string(DBusMessageIter *var, const char *key, char **ret, certagent_error *err)
{
	const char *s;

	if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_STRING)
		return malformed(err, key);
	dbus_message_iter_get_basic(var, &s);
	if (strlen(s) > CA_MAX_STRING)
		return malformed(err, key);
	free(*ret);
	*ret = strdup(s);
	if (!*ret)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	return 0;
}

static int read_schemes(DBusMessageIter *var, certagent_identity *id, certagent_error *err)
{
	DBusMessageIter arr;
	char **v;
	size_t n = 0;

	if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(var) != DBUS_TYPE_STRING)
		return malformed(err, "schemes");
	v = calloc(CA_MAX_SCHEMES + 1, sizeof(char *));
	if (!v)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	dbus_message_iter_recurse(var, &arr);
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRING) {
		const char *s;

		if (n == CA_MAX_SCHEMES) {
			strv_free(v);
			return malformed(err, "too many schemes");
		}
		dbus_message_iter_get_basic(&arr, &s);
		v[n] = strndup(s, CA_MAX_STRING);
		if (!v[n]) {
			strv_free(v);
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
		}
		n++;
		dbus_message_iter_next(&arr);
	}
	strv_free(id->schemes);
	id->schemes = v;
	id->n_schemes = n;
	return 0;
}

static int read_certs(DBusMessageIter *var, certagent_identity *id, certagent_error *err)
{
	DBusMessageIter arr;

	if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(var) != DBUS_TYPE_ARRAY)
		return malformed(err, "certificates");
	if (id->certs)
		return malformed(err, "certificates given twice");
	id->certs = calloc(CA_MAX_CERTS, sizeof(gnutls_datum_t));
	id->cert_cache = calloc(CA_MAX_CERTS, sizeof(CertKeyCache));
	if (!id->certs || !id->cert_cache)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	dbus_message_iter_recurse(var, &arr);
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_ARRAY) {
		DBusMessageIter bytes;
		const uint8_t *p;
		int n;

		if (dbus_message_iter_get_element_type(&arr) != DBUS_TYPE_BYTE)
			return malformed(err, "certificates");
		if (id->n_certs == CA_MAX_CERTS)
			return malformed(err, "too many certificates");
		dbus_message_iter_recurse(&arr, &bytes);
		dbus_message_iter_get_fixed_array(&bytes, &p, &n);
		if (n <= 0 || n > CA_MAX_CERT_SIZE)
			return malformed(err, "certificate size");
		id->certs[id->n_certs].data = gnutls_malloc(n);
		if (!id->certs[id->n_certs].data)
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
		memcpy(id->certs[id->n_certs].data, p, n);
		id->certs[id->n_certs].size = n;
		id->n_certs++;
		dbus_message_iter_next(&arr);
	}
	return 0;
}

static int read_identity_entry(void *item, const char *key, DBusMessageIter *var,
			       certagent_error *err)
{
	certagent_identity *id = item;

	if (strcmp(key, "uri") == 0)
		return read_string(var, key, &id->uri, err);
	if (strcmp(key, "label") == 0)
		return read_string(var, key, &id->label, err);
	if (strcmp(key, "token") == 0)
		return read_string(var, key, &id->token, err);
	if (strcmp(key, "token-label") == 0)
		return read_string(var, key, &id->token_label, err);
	if (strcmp(key, "module") == 0)
		return read_string(var, key, &id->module, err);
	if (strcmp(key, "key-type") == 0)
		return read_string(var, key, &id->key_type, err);
	if (strcmp(key, "schemes") == 0)
		return read_schemes(var, id, err);
	if (strcmp(key, "certificates") == 0)
		return read_certs(var, id, err);
	if (strcmp(key, "bits") == 0) {
		uint32_t u;

		if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_UINT32)
			return malformed(err, key);
		dbus_message_iter_get_basic(var, &u);
		id->bits = u;
	} else if (strcmp(key, "logged-in") == 0) {
		dbus_bool_t b;

		if (dbus_message_iter_get_arg_type(var) != DBUS_TYPE_BOOLEAN)
			return malformed(err, key);
		dbus_message_iter_get_basic(var, &b);
		id->logged_in = b;
	}
	return 0;
}

static int finish_identity(void *item, certagent_error *err)
{
	certagent_identity *id = item;

	if (!id->uri)
		return malformed(err, "an identity without uri");
	/* The accessors never return NULL strings: fill what an older agent left out. */
	char **fields[] = {&id->label, &id->token, &id->token_label, &id->module, &id->key_type};
	for (size_t i = 0; i < ELEMENTSOF(fields); i++)
		if (!*fields[i] && !(*fields[i] = strdup("")))
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	if (!id->schemes && !(id->schemes = calloc(1, sizeof(char *))))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	return 0;
}

static const ClientDictList identity_list_kind = {
	.name = "identity list",
	.too_many = "too many identities",
	.item_size = sizeof(certagent_identity),
	.max = CA_MAX_IDENTITIES,
	.read_entry = read_identity_entry,
	.finish = finish_identity,
};

int identity_list_from_reply(DBusMessage *reply, certagent_identity_list **ret,
			     certagent_error *err)
{
	_cleanup_(identity_listp_free) certagent_identity_list *l = NULL;
	void *items = NULL;
	size_t n = 0;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_read_dict_list(reply, &identity_list_kind, &items, &n, err);
	l->items = items;
	l->n = n;
	if (r < 0)
		return r;
	*ret = TAKE_PTR(l);
	return 0;
}

bool identity_has_scheme(const certagent_identity *id, const CaScheme *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < id->n_schemes; i++)
		if (strcmp(id->schemes[i], s->name) == 0)
			return true;
	return false;
}

gnutls_pk_algorithm_t identity_pk_algorithm(const certagent_identity *id)
{
	switch (ca_key_type_from_name(id->key_type)) {
	case CA_KEY_RSA:
		return GNUTLS_PK_RSA;
	case CA_KEY_EC:
		return GNUTLS_PK_ECDSA;
	case CA_KEY_ED25519:
		return GNUTLS_PK_EDDSA_ED25519;
	default:
		return GNUTLS_PK_UNKNOWN;
	}
}

const certagent_identity *client_find_identity(const certagent_identity_list *l, const char *uri)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (strcmp(l->items[i].uri, uri) == 0)
			return &l->items[i];
	return NULL;
}

_public_ size_t certagent_identity_list_count(const certagent_identity_list *l)
{
	return l ? l->n : 0;
}

_public_ const certagent_identity *certagent_identity_list_get(const certagent_identity_list *l,
							       size_t i)
{
	return l && i < l->n ? &l->items[i] : NULL;
}

_public_ const char *certagent_identity_uri(const certagent_identity *id)
{
	return id ? id->uri : NULL;
}

_public_ const char *certagent_identity_label(const certagent_identity *id)
{
	return id ? id->label : NULL;
}

_public_ const char *certagent_identity_token(const certagent_identity *id)
{
	return id ? id->token : NULL;
}

_public_ const char *certagent_identity_token_label(const certagent_identity *id)
{
	return id ? id->token_label : NULL;
}

_public_ const char *certagent_identity_key_type(const certagent_identity *id)
{
	return id ? id->key_type : NULL;
}

_public_ unsigned certagent_identity_bits(const certagent_identity *id)
{
	return id ? id->bits : 0;
}

_public_ int certagent_identity_logged_in(const certagent_identity *id)
{
	return id ? id->logged_in : 0;
}

_public_ size_t certagent_identity_scheme_count(const certagent_identity *id)
{
	return id ? id->n_schemes : 0;
}

_public_ const char *certagent_identity_scheme(const certagent_identity *id, size_t i)
{
	return id && i < id->n_schemes ? id->schemes[i] : NULL;
}

_public_ size_t certagent_identity_cert_count(const certagent_identity *id)
{
	return id ? id->n_certs : 0;
}

_public_ const gnutls_datum_t *certagent_identity_cert(const certagent_identity *id, size_t i)
{
	return id && i < id->n_certs ? &id->certs[i] : NULL;
}
