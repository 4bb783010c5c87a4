/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-dict: writing and reading the a{sv} dictionaries certagent uses for identities, tokens
 * and options. Readers are table-driven and check every type and size a peer controls; unknown
 * keys are ignored so either side can add fields.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

bool ipc_dict_open(DBusMessageIter *parent, DBusMessageIter *ret_dict)
{
	return dbus_message_iter_open_container(parent, DBUS_TYPE_ARRAY, "{sv}", ret_dict);
}

bool ipc_dict_close(DBusMessageIter *parent, DBusMessageIter *dict)
{
	return dbus_message_iter_close_container(parent, dict);
}

/* Opens {key: variant<sig>}; the caller appends the value and calls entry_close. */
static bool entry_open(DBusMessageIter *dict, const char *key, const char *sig,
		       DBusMessageIter *entry, DBusMessageIter *variant)
{
	if (!dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, entry))
		return false;
	if (!dbus_message_iter_append_basic(entry, DBUS_TYPE_STRING, &key) ||
	    !dbus_message_iter_open_container(entry, DBUS_TYPE_VARIANT, sig, variant)) {
		dbus_message_iter_abandon_container(dict, entry);
		return false;
	}
	return true;
}

static bool entry_close(DBusMessageIter *dict, DBusMessageIter *entry, DBusMessageIter *variant,
			bool ok)
{
	if (!ok) {
		dbus_message_iter_abandon_container(entry, variant);
		dbus_message_iter_abandon_container(dict, entry);
		return false;
	}
	if (!dbus_message_iter_close_container(entry, variant)) {
		dbus_message_iter_abandon_container(dict, entry);
		return false;
	}
	return dbus_message_iter_close_container(dict, entry);
}

static bool append_basic(DBusMessageIter *dict, const char *key, int type, const void *value)
{
	DBusMessageIter entry, variant;
	char sig[2] = {(char)type, 0};

	if (!entry_open(dict, key, sig, &entry, &variant))
		return false;
	return entry_close(dict, &entry, &variant,
			   dbus_message_iter_append_basic(&variant, type, value));
}

bool ipc_dict_append_string(DBusMessageIter *dict, const char *key, const char *value)
{
	_cleanup_free_ char *copy = NULL;
	const char *v = ipc_utf8_safe(value, &copy);

	return append_basic(dict, key, DBUS_TYPE_STRING, &v);
}

bool ipc_dict_append_u32(DBusMessageIter *dict, const char *key, uint32_t value)
{
	dbus_uint32_t v = value;

	return append_basic(dict, key, DBUS_TYPE_UINT32, &v);
}

bool ipc_dict_append_u64(DBusMessageIter *dict, const char *key, uint64_t value)
{
	dbus_uint64_t v = value;

	return append_basic(dict, key, DBUS_TYPE_UINT64, &v);
}

bool ipc_dict_append_bool(DBusMessageIter *dict, const char *key, bool value)
{
	dbus_bool_t v = value;

	return append_basic(dict, key, DBUS_TYPE_BOOLEAN, &v);
}

bool ipc_dict_append_strv(DBusMessageIter *dict, const char *key, const char *const *v, size_t n)
{
	DBusMessageIter entry, variant, array;
	bool ok = true;

	if (!entry_open(dict, key, "as", &entry, &variant))
		return false;
	if (!dbus_message_iter_open_container(&variant, DBUS_TYPE_ARRAY, "s", &array))
		return entry_close(dict, &entry, &variant, false);
	for (size_t i = 0; ok && i < n; i++) {
		_cleanup_free_ char *copy = NULL;
		const char *s = ipc_utf8_safe(v[i], &copy);

		ok = dbus_message_iter_append_basic(&array, DBUS_TYPE_STRING, &s);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(&variant, &array);
		return entry_close(dict, &entry, &variant, false);
	}
	ok = dbus_message_iter_close_container(&variant, &array);
	return entry_close(dict, &entry, &variant, ok);
}

bool ipc_dict_append_bytes_array(DBusMessageIter *dict, const char *key, const gnutls_datum_t *v,
				 size_t n)
{
	DBusMessageIter entry, variant, array;
	bool ok = true;

	if (!entry_open(dict, key, "aay", &entry, &variant))
		return false;
	if (!dbus_message_iter_open_container(&variant, DBUS_TYPE_ARRAY, "ay", &array))
		return entry_close(dict, &entry, &variant, false);
	for (size_t i = 0; ok && i < n; i++) {
		DBusMessageIter bytes;
		const unsigned char *data = v[i].data;

		ok = dbus_message_iter_open_container(&array, DBUS_TYPE_ARRAY, "y", &bytes);
		if (!ok)
			break;
		ok = dbus_message_iter_append_fixed_array(&bytes, DBUS_TYPE_BYTE, &data,
							  (int)v[i].size);
		if (!ok) {
			dbus_message_iter_abandon_container(&array, &bytes);
			break;
		}
		ok = dbus_message_iter_close_container(&array, &bytes);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(&variant, &array);
		return entry_close(dict, &entry, &variant, false);
	}
	ok = dbus_message_iter_close_container(&variant, &array);
	return entry_close(dict, &entry, &variant, ok);
}

void ipc_bytes_array_clear(IpcBytesArray *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		free(a->items[i].data);
	free(a->items);
	a->items = NULL;
	a->n = 0;
}

static bool has_sig(DBusMessageIter *variant, const char *sig)
{
	char *s = dbus_message_iter_get_signature(variant);
	bool same = s && strcmp(s, sig) == 0;

	dbus_free(s);
	return same;
}

static int read_strv(DBusMessageIter *variant, const IpcDictField *f, char ***ret, CaError *err)
{
	DBusMessageIter array;
	size_t max = f->max ? f->max : IPC_LIST_MAX;
	int n = dbus_message_iter_get_element_count(variant);
	_cleanup_strv_free_ char **v = NULL;
	size_t i = 0;

	if (n < 0 || (size_t)n > max)
		return ca_error_set(err, CA_E_TOO_LARGE, "\"%s\" has more than %zu entries", f->key,
				    max);
	v = calloc((size_t)n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	dbus_message_iter_recurse(variant, &array);
	for (; dbus_message_iter_get_arg_type(&array) == DBUS_TYPE_STRING;
	     dbus_message_iter_next(&array)) {
		const char *s;

		dbus_message_iter_get_basic(&array, &s);
		if (f->item_max && strlen(s) > f->item_max)
			return ca_error_set(err, CA_E_TOO_LARGE,
					    "an entry of \"%s\" is longer than %zu bytes", f->key,
					    f->item_max);
		if (i >= (size_t)n)
			break;
		v[i] = strdup(s);
		if (!v[i])
			return -ENOMEM;
		i++;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

static int read_bytes_array(DBusMessageIter *variant, const IpcDictField *f, IpcBytesArray *ret,
			    CaError *err)
{
	DBusMessageIter array;
	size_t max = f->max ? f->max : IPC_LIST_MAX;
	int n = dbus_message_iter_get_element_count(variant);
	IpcBytesArray a = {0};
	int r = 0;

	if (n < 0 || (size_t)n > max)
		return ca_error_set(err, CA_E_TOO_LARGE, "\"%s\" has more than %zu entries", f->key,
				    max);
	a.items = calloc((size_t)n + 1, sizeof(gnutls_datum_t));
	if (!a.items)
		return -ENOMEM;
	dbus_message_iter_recurse(variant, &array);
	for (; dbus_message_iter_get_arg_type(&array) == DBUS_TYPE_ARRAY && a.n < (size_t)n;
	     dbus_message_iter_next(&array)) {
		DBusMessageIter bytes;
		const unsigned char *data;
		int len;

		dbus_message_iter_recurse(&array, &bytes);
		dbus_message_iter_get_fixed_array(&bytes, &data, &len);
		if (f->item_max && (size_t)len > f->item_max) {
			r = ca_error_set(err, CA_E_TOO_LARGE,
					 "an entry of \"%s\" is longer than %zu bytes", f->key,
					 f->item_max);
			break;
		}
		a.items[a.n].data = malloc(len ? (size_t)len : 1);
		if (!a.items[a.n].data) {
			r = -ENOMEM;
			break;
		}
		if (len)
			memcpy(a.items[a.n].data, data, (size_t)len);
		a.items[a.n].size = (unsigned)len;
		a.n++;
	}
	if (r) {
		ipc_bytes_array_clear(&a);
		return r;
	}
	*ret = a;
	return 0;
}

/* Undoes what ipc_dict_read wrote before a failure. */
static void fields_clear(const IpcDictField *fields, size_t n_fields, uint64_t seen)
{
	for (size_t i = 0; i < n_fields; i++) {
		if (!(seen & (UINT64_C(1) << i)))
			continue;
		if (fields[i].type == IPC_DICT_STRV) {
			char ***p = fields[i].ret;

			strv_free(*p);
			*p = NULL;
		} else if (fields[i].type == IPC_DICT_BYTES_ARRAY) {
			ipc_bytes_array_clear(fields[i].ret);
		}
	}
}

static int read_field(DBusMessageIter *variant, const IpcDictField *f, CaError *err)
{
	static const char *const sigs[] = {
		[IPC_DICT_STRING] = "s", [IPC_DICT_U32] = "u",	 [IPC_DICT_U64] = "t",
		[IPC_DICT_BOOL] = "b",	 [IPC_DICT_STRV] = "as", [IPC_DICT_BYTES_ARRAY] = "aay",
	};

	if (!has_sig(variant, sigs[f->type]))
		return ca_error_set(err, CA_E_INVALID_ARGS, "\"%s\" must be of type %s", f->key,
				    sigs[f->type]);
	switch (f->type) {
	case IPC_DICT_STRING: {
		const char *s;

		dbus_message_iter_get_basic(variant, &s);
		if (f->max && strlen(s) > f->max)
			return ca_error_set(err, CA_E_TOO_LARGE, "\"%s\" is longer than %zu bytes",
					    f->key, f->max);
		*(const char **)f->ret = s;
		return 0;
	}
	case IPC_DICT_U32: {
		dbus_uint32_t v;

		dbus_message_iter_get_basic(variant, &v);
		*(uint32_t *)f->ret = v;
		return 0;
	}
	case IPC_DICT_U64: {
		dbus_uint64_t v;

		dbus_message_iter_get_basic(variant, &v);
		*(uint64_t *)f->ret = v;
		return 0;
	}
	case IPC_DICT_BOOL: {
		dbus_bool_t v;

		dbus_message_iter_get_basic(variant, &v);
		*(bool *)f->ret = v;
		return 0;
	}
	case IPC_DICT_STRV:
		return read_strv(variant, f, f->ret, err);
	case IPC_DICT_BYTES_ARRAY:
		return read_bytes_array(variant, f, f->ret, err);
	}
	return -EINVAL;
}

int ipc_dict_read(DBusMessageIter *iter, const IpcDictField *fields, size_t n_fields,
		  size_t max_entries, CaError *err)
{
	DBusMessageIter array;
	uint64_t seen = 0; /* bit i: field i was read */
	int n, r = 0;

	if (n_fields > 64)
		return -EINVAL;

	if (dbus_message_iter_get_arg_type(iter) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(iter) != DBUS_TYPE_DICT_ENTRY)
		return ca_error_set(err, CA_E_INVALID_ARGS, "expected a dictionary a{sv}");
	n = dbus_message_iter_get_element_count(iter);
	if (n < 0 || (size_t)n > max_entries)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "a dictionary has %d entries, at most %zu are accepted", n,
				    max_entries);
	dbus_message_iter_recurse(iter, &array);
	for (; dbus_message_iter_get_arg_type(&array) == DBUS_TYPE_DICT_ENTRY;
	     dbus_message_iter_next(&array)) {
		DBusMessageIter entry, variant;
		const char *key;

		dbus_message_iter_recurse(&array, &entry);
		if (dbus_message_iter_get_arg_type(&entry) != DBUS_TYPE_STRING) {
			r = ca_error_set(err, CA_E_INVALID_ARGS, "dictionary keys must be strings");
			break;
		}
		dbus_message_iter_get_basic(&entry, &key);
		dbus_message_iter_next(&entry);
		if (dbus_message_iter_get_arg_type(&entry) != DBUS_TYPE_VARIANT) {
			r = ca_error_set(err, CA_E_INVALID_ARGS,
					 "dictionary values must be variants");
			break;
		}
		dbus_message_iter_recurse(&entry, &variant);
		for (size_t i = 0; i < n_fields; i++) {
			if (strcmp(fields[i].key, key) != 0)
				continue;
			if (seen & (UINT64_C(1) << i)) {
				r = ca_error_set(err, CA_E_INVALID_ARGS,
						 "\"%s\" appears twice in a dictionary",
						 fields[i].key);
				break;
			}
			r = read_field(&variant, &fields[i], err);
			if (r)
				break;
			seen |= UINT64_C(1) << i;
			if (fields[i].ret_present)
				*fields[i].ret_present = true;
			break;
		}
		if (r)
			break;
	}
	if (r)
		fields_clear(fields, n_fields, seen);
	return r;
}
