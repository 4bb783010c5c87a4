/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tokens: what the agent says about itself for `certagent status` and similar tools: its
 * Version property and its ListTokens reply (aa{sv}) decoded into certagent_token_list.
 *
 * As in identity.c, everything is copied out of the message, unknown keys are skipped (a newer
 * agent may add some), a known key with the wrong type is an error and every count is capped.
 */
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"

#define CA_MAX_TOKENS 256

struct certagent_token {
	char *uri;
	char *label;
	char *serial;
	char *manufacturer;
	char *model;
	char *module;
	uint64_t flags;
	bool logged_in;
};

struct certagent_token_list {
	certagent_token *items;
	size_t n;
};

static void token_clear(certagent_token *t)
{
	free(t->uri);
	free(t->label);
	free(t->serial);
	free(t->manufacturer);
	free(t->model);
	free(t->module);
	memset(t, 0, sizeof(*t));
}

_public_ void certagent_token_list_free(certagent_token_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		token_clear(&l->items[i]);
	free(l->items);
	free(l);
}

static void token_listp_free(certagent_token_list **l)
{
	certagent_token_list_free(*l);
}

static void messagep_unref(DBusMessage **m)
{
	if (*m)
		dbus_message_unref(*m);
}
#define _cleanup_message_ _cleanup_(messagep_unref)

static int malformed(certagent_error *err, const char *what)
{
	return client_malformed(err, "token list", what);
}

static const struct {
	const char *key;
	size_t offset;
} token_strings[] = {
	{"uri", offsetof(certagent_token, uri)},
	{"label", offsetof(certagent_token, label)},
	{"serial", offsetof(certagent_token, serial)},
	{"manufacturer", offsetof(certagent_token, manufacturer)},
	{"model", offsetof(certagent_token, model)},
	{"module", offsetof(certagent_token, module)},
};

static char **token_string(certagent_token *t, size_t i)
{
	return (char **)((char *)t + token_strings[i].offset);
}

static int read_token_entry(void *item, const char *key, DBusMessageIter *var, certagent_error *err)
{
	certagent_token *t = item;
	int type = dbus_message_iter_get_arg_type(var);

	for (size_t i = 0; i < ELEMENTSOF(token_strings); i++) {
		char **field = token_string(t, i);
		const char *s;

		if (strcmp(key, token_strings[i].key) != 0)
			continue;
		if (type != DBUS_TYPE_STRING)
			return malformed(err, key);
		dbus_message_iter_get_basic(var, &s);
		free(*field);
		*field = strndup(s, CA_MAX_STRING);
		if (!*field)
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	}
	if (strcmp(key, "flags") == 0) {
		dbus_uint64_t u;

		if (type != DBUS_TYPE_UINT64)
			return malformed(err, key);
		dbus_message_iter_get_basic(var, &u);
		t->flags = u;
	} else if (strcmp(key, "logged-in") == 0) {
		dbus_bool_t b;

		if (type != DBUS_TYPE_BOOLEAN)
			return malformed(err, key);
		dbus_message_iter_get_basic(var, &b);
		t->logged_in = b;
	}
	return 0;
}

static int finish_token(void *item, certagent_error *err)
{
	certagent_token *t = item;

	if (!t->uri)
		return malformed(err, "a token without uri");
	/* The accessors never return NULL: fill what an older agent left out. */
	for (size_t i = 0; i < ELEMENTSOF(token_strings); i++) {
		char **field = token_string(t, i);

		if (!*field && !(*field = strdup("")))
			return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	}
	return 0;
}

static const ClientDictList token_list_kind = {
	.name = "token list",
	.too_many = "too many tokens",
	.item_size = sizeof(certagent_token),
	.max = CA_MAX_TOKENS,
	.read_entry = read_token_entry,
	.finish = finish_token,
};

/* Positive codes: CERTAGENT_E_AGENT_NOT_RUNNING, _TIMEOUT, _FAILED (malformed), _NO_MEMORY. */
_public_ int certagent_list_tokens(certagent_client *c, certagent_token_list **ret,
				   certagent_error *err)
{
	_cleanup_(token_listp_free) certagent_token_list *l = NULL;
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	void *items = NULL;
	size_t n = 0;
	int r;

	if (!c || !ret)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client and ret must not be NULL");
	msg = dbus_message_new_method_call(CA_BUS_NAME, CA_OBJECT_PATH, CA_INTERFACE, "ListTokens");
	if (!msg)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_call(c, msg, &reply, err);
	if (r < 0)
		return r;
	l = calloc(1, sizeof(*l));
	if (!l)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_read_dict_list(reply, &token_list_kind, &items, &n, err);
	l->items = items;
	l->n = n;
	if (r < 0)
		return r;
	*ret = TAKE_PTR(l);
	return 0;
}

/* Positive codes: as certagent_list_tokens. */
_public_ int certagent_agent_version(certagent_client *c, char **ret_version, certagent_error *err)
{
	_cleanup_message_ DBusMessage *msg = NULL, *reply = NULL;
	const char *iface = CA_INTERFACE, *prop = "Version", *s;
	DBusMessageIter it, var;
	char *v;
	int r;

	if (!c || !ret_version)
		return client_error_set(err, CERTAGENT_E_INVALID_ARGS,
					"client and ret_version must not be NULL");
	msg = dbus_message_new_method_call(CA_BUS_NAME, CA_OBJECT_PATH, DBUS_INTERFACE_PROPERTIES,
					   "Get");
	if (!msg || !dbus_message_append_args(msg, DBUS_TYPE_STRING, &iface, DBUS_TYPE_STRING,
					      &prop, DBUS_TYPE_INVALID))
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	r = client_call(c, msg, &reply, err);
	if (r < 0)
		return r;
	if (!dbus_message_has_signature(reply, "v"))
		return client_error_set(err, CERTAGENT_E_FAILED,
					"certagentd sent a malformed Version property");
	dbus_message_iter_init(reply, &it);
	dbus_message_iter_recurse(&it, &var);
	if (dbus_message_iter_get_arg_type(&var) != DBUS_TYPE_STRING)
		return client_error_set(err, CERTAGENT_E_FAILED,
					"certagentd's Version property is not a string");
	dbus_message_iter_get_basic(&var, &s);
	v = strndup(s, CA_MAX_STRING);
	if (!v)
		return client_error_set(err, CERTAGENT_E_NO_MEMORY, "out of memory");
	*ret_version = v;
	return 0;
}

_public_ size_t certagent_token_list_count(const certagent_token_list *l)
{
	return l ? l->n : 0;
}

_public_ const certagent_token *certagent_token_list_get(const certagent_token_list *l, size_t i)
{
	return l && i < l->n ? &l->items[i] : NULL;
}

_public_ const char *certagent_token_uri(const certagent_token *t)
{
	return t ? t->uri : NULL;
}

_public_ const char *certagent_token_label(const certagent_token *t)
{
	return t ? t->label : NULL;
}

_public_ const char *certagent_token_serial(const certagent_token *t)
{
	return t ? t->serial : NULL;
}

_public_ const char *certagent_token_manufacturer(const certagent_token *t)
{
	return t ? t->manufacturer : NULL;
}

_public_ const char *certagent_token_model(const certagent_token *t)
{
	return t ? t->model : NULL;
}

_public_ const char *certagent_token_module(const certagent_token *t)
{
	return t ? t->module : NULL;
}

_public_ uint64_t certagent_token_flags(const certagent_token *t)
{
	return t ? t->flags : 0;
}

_public_ int certagent_token_logged_in(const certagent_token *t)
{
	return t ? t->logged_in : 0;
}
