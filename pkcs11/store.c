/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store: the public face of pkcs11/ (store.h). Owns the rwlock that lets signatures run in
 * parallel (shared) while reload, unlock and rescans rebuild tokens and identities
 * (exclusive); matches RFC 7512 URIs against tokens and identities with p11_kit_uri_* only;
 * hands out deep copies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <gnutls/crypto.h>

#include "internal.h"

static void options_free(Store *s)
{
	strv_free(s->registered_allow);
	for (size_t i = 0; i < s->n_modules_cfg; i++) {
		free(s->modules_cfg[i].name);
		free(s->modules_cfg[i].path);
	}
	free(s->modules_cfg);
	for (size_t i = 0; i < s->n_pin_sources; i++) {
		free(s->pin_sources[i].token_uri);
		free(s->pin_sources[i].path);
	}
	free(s->pin_sources);
}

static char *strdup_or_null(const char *p, bool *oom)
{
	char *c;

	if (!p)
		return NULL;
	c = strdup(p);
	if (!c)
		*oom = true;
	return c;
}

static int options_copy(Store *s, const StoreOptions *o)
{
	bool oom = false;

	s->load_registered = o->load_registered;
	s->sessions_per_token = o->sessions_per_token ? o->sessions_per_token : 4;
	s->prompting = o->prompting;
	s->login_idle_usec = o->login_idle_usec;
	s->isolation = o->isolation == STORE_ISOLATION_PROCESS ? STORE_ISOLATION_PROCESS
							       : STORE_ISOLATION_NONE;
	s->module_timeout_ms =
		o->module_timeout_ms ? o->module_timeout_ms : STORE_MODULE_TIMEOUT_DEFAULT_MS;
	s->busy_poll_usec = o->busy_poll_usec;
	s->sign_ahead = o->sign_ahead;
	if (o->registered_allow) {
		size_t n = 0;

		while (o->registered_allow[n])
			n++;
		s->registered_allow = calloc(n + 1, sizeof(char *));
		if (!s->registered_allow)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			s->registered_allow[i] = strdup_or_null(o->registered_allow[i], &oom);
	}
	if (o->n_modules > 0) {
		s->modules_cfg = calloc(o->n_modules, sizeof(*s->modules_cfg));
		if (!s->modules_cfg)
			return -ENOMEM;
		s->n_modules_cfg = o->n_modules;
		for (size_t i = 0; i < o->n_modules; i++) {
			s->modules_cfg[i].name = strdup_or_null(o->modules[i].name, &oom);
			s->modules_cfg[i].path = strdup_or_null(o->modules[i].path, &oom);
			s->modules_cfg[i].isolation = o->modules[i].isolation;
		}
	}
	if (o->n_pin_sources > 0) {
		s->pin_sources = calloc(o->n_pin_sources, sizeof(*s->pin_sources));
		if (!s->pin_sources)
			return -ENOMEM;
		s->n_pin_sources = o->n_pin_sources;
		for (size_t i = 0; i < o->n_pin_sources; i++) {
			s->pin_sources[i].token_uri =
				strdup_or_null(o->pin_sources[i].token_uri, &oom);
			s->pin_sources[i].path = strdup_or_null(o->pin_sources[i].path, &oom);
		}
	}
	return oom ? -ENOMEM : 0;
}

Store *store_free(Store *s)
{
	if (!s)
		return NULL;
	store_unwatch(s, 60 * 1000);
	token_free_all(s);
	hotplug_free(s); /* joins slot-event threads: before the modules go */
	module_unload_all(s);
	options_free(s);
	pthread_rwlock_destroy(&s->lock);
	free(s);
	return NULL;
}

/* Codes: none expected; -ENOMEM. Modules that fail to load are logged and skipped. */
int store_new(const StoreOptions *opts, Store **ret, CaError *err)
{
	static const StoreOptions defaults = {.load_registered = true};
	Store *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return ca_error_set(err, -ENOMEM, "out of memory");
	pthread_rwlock_init(&s->lock, NULL);
	r = options_copy(s, opts ? opts : &defaults);
	if (r < 0) {
		store_free(s);
		return ca_error_set(err, r, "out of memory");
	}
	r = module_load_all(s, err);
	if (r == 0)
		r = token_scan_all(s, err);
	if (r != 0) {
		store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

static int digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/*
 * A digest over what clients see of every identity, to tell whether a reload changed it.
 * Order-independent: modules list objects in no fixed order.
 */
static void store_fingerprint(Store *s, uint8_t out[32])
{
	_cleanup_free_ uint8_t *each = NULL;
	size_t n = 0, k = 0;

	memset(out, 0, 32);
	for (size_t i = 0; i < s->n_tokens; i++)
		n += s->tokens[i]->n_ids;
	each = calloc(n + 1, 32);
	if (!each)
		return;
	for (size_t i = 0; i < s->n_tokens; i++)
		for (size_t j = 0; j < s->tokens[i]->n_ids; j++, k++) {
			const Identity *id = &s->tokens[i]->ids[j];
			gnutls_hash_hd_t h;

			if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
				return;
			gnutls_hash(h, id->uri, strlen(id->uri) + 1);
			for (size_t q = 0; q < id->n_schemes; q++)
				gnutls_hash(h, id->schemes[q]->name,
					    strlen(id->schemes[q]->name) + 1);
			for (size_t q = 0; q < id->n_certs; q++)
				gnutls_hash(h, id->certs[q].data, id->certs[q].size);
			gnutls_hash_deinit(h, each + 32 * k);
		}
	qsort(each, n, 32, digest_cmp);
	gnutls_hash_fast(GNUTLS_DIG_SHA256, each, 32 * n, out);
}

/* Codes: -ENOMEM. */
int store_reload(Store *s, bool *ret_changed, CaError *err)
{
	uint8_t before[32], after[32];
	int r;

	pthread_rwlock_wrlock(&s->lock);
	store_fingerprint(s, before);
	/* Remembered like removed tokens: the scan tells whether each one is still the same. */
	for (size_t i = 0; i < s->n_tokens; i++)
		hotplug_remember(s, s->tokens[i]);
	token_free_all(s); /* closes sessions, wipes PINs, forgets failed pin sources */
	hotplug_modules_down(s);
	module_unload_all(s);
	r = module_load_all(s, err);
	if (r == 0)
		hotplug_modules_up(s);
	if (r == 0)
		r = token_scan_all(s, err);
	store_fingerprint(s, after);
	pthread_rwlock_unlock(&s->lock);
	if (r != 0)
		return r;
	if (ret_changed)
		*ret_changed = memcmp(before, after, sizeof(before)) != 0;
	call_log(LOG_INFO, "reloaded: %zu modules, %zu tokens", s->n_modules, s->n_tokens);
	return 0;
}

static bool token_needs_rescan(Token *t)
{
	bool v;

	pthread_mutex_lock(&t->login_lock);
	v = t->rescan_needed;
	pthread_mutex_unlock(&t->login_lock);
	return v;
}

/* With the lock held exclusively: rescan tokens whose login state changed. */
static void store_rescan_locked(Store *s)
{
	for (size_t i = 0; i < s->n_tokens; i++) {
		Token *t = s->tokens[i];

		if (!token_needs_rescan(t))
			continue;
		if (object_scan_token(t, NULL) == 0) {
			pthread_mutex_lock(&t->login_lock);
			t->rescan_needed = false;
			pthread_mutex_unlock(&t->login_lock);
		}
	}
}

static bool token_logged_in(Token *t)
{
	CK_SESSION_HANDLE h;
	bool v;

	if (session_acquire(t, &h, NULL) != 0)
		return false;
	v = token_session_logged_in(t, h, NULL);
	session_release(t, h);
	return v;
}

static void token_copy(Token *t, StoreToken *o, bool *oom)
{
	CK_TOKEN_INFO ti = t->info;

	/* Fresh flags (PIN counters) and free memory; t->info stays as scanned (shared). */
	call_get_token_info(t->module, t->slot, &ti);
	o->uri = strdup_or_null(t->uri, oom);
	o->label = strdup_or_null(t->label, oom);
	o->serial = strdup_or_null(t->serial, oom);
	o->manufacturer = strdup_or_null(t->manufacturer, oom);
	o->model = strdup_or_null(t->model, oom);
	o->module = strdup_or_null(t->module->name, oom);
	o->module_path = strdup_or_null(t->module->path, oom);
	o->slot_id = t->slot;
	o->flags = ti.flags;
	o->logged_in = token_logged_in(t);
	o->free_public_memory = ti.ulFreePublicMemory;
	o->free_private_memory = ti.ulFreePrivateMemory;
}

StoreTokenList *store_token_list_free(StoreTokenList *l)
{
	if (!l)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		StoreToken *t = &l->items[i];

		free(t->uri);
		free(t->label);
		free(t->serial);
		free(t->manufacturer);
		free(t->model);
		free(t->module);
		free(t->module_path);
	}
	free(l->items);
	free(l);
	return NULL;
}

/* Codes: -ENOMEM. */
int store_list_tokens(Store *s, StoreTokenList **ret, CaError *err)
{
	StoreTokenList *l = calloc(1, sizeof(*l));
	bool oom = false;

	if (!l)
		return ca_error_set(err, -ENOMEM, "out of memory");
	pthread_rwlock_rdlock(&s->lock);
	l->items = calloc(s->n_tokens + 1, sizeof(*l->items));
	if (l->items)
		for (size_t i = 0; i < s->n_tokens; i++) {
			if (__atomic_load_n(&s->tokens[i]->gone, __ATOMIC_RELAXED) ||
			    token_stale(s->tokens[i]))
				continue; /* removed; the next poll drops it */
			token_copy(s->tokens[i], &l->items[l->n++], &oom);
		}
	pthread_rwlock_unlock(&s->lock);
	if (!l->items || oom) {
		store_token_list_free(l);
		return ca_error_set(err, -ENOMEM, "out of memory");
	}
	*ret = l;
	return 0;
}

static void identity_copy(Token *t, const Identity *id, bool logged_in, StoreIdentity *o, bool *oom)
{
	o->uri = strdup_or_null(id->uri, oom);
	o->label = strdup_or_null(id->label, oom);
	o->token_uri = strdup_or_null(t->uri, oom);
	o->token_label = strdup_or_null(t->label, oom);
	o->module = strdup_or_null(t->module->name, oom);
	o->key_type = id->key_type;
	o->bits = id->bits;
	o->logged_in = logged_in;
	o->always_authenticate = id->always_authenticate;
	o->schemes = calloc(id->n_schemes + 1, sizeof(*o->schemes));
	o->certs = calloc(id->n_certs + 1, sizeof(*o->certs));
	if (!o->schemes || !o->certs) {
		*oom = true;
		return;
	}
	memcpy(o->schemes, id->schemes, id->n_schemes * sizeof(*o->schemes));
	o->n_schemes = id->n_schemes;
	for (size_t k = 0; k < id->n_certs; k++) {
		o->certs[k].data = malloc(id->certs[k].size);
		if (!o->certs[k].data) {
			*oom = true;
			return;
		}
		memcpy(o->certs[k].data, id->certs[k].data, id->certs[k].size);
		o->certs[k].size = id->certs[k].size;
		o->n_certs++;
	}
}

StoreIdentityList *store_identity_list_free(StoreIdentityList *l)
{
	if (!l)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		StoreIdentity *id = &l->items[i];

		free(id->uri);
		free(id->label);
		free(id->token_uri);
		free(id->token_label);
		free(id->module);
		free(id->schemes);
		for (size_t k = 0; k < id->n_certs; k++)
			free(id->certs[k].data);
		free(id->certs);
	}
	free(l->items);
	free(l);
	return NULL;
}

/* Codes: -ENOMEM. Rescans tokens logged in or out since their last scan first. */
int store_list_identities(Store *s, StoreIdentityList **ret, CaError *err)
{
	StoreIdentityList *l = calloc(1, sizeof(*l));
	bool oom = false, rescan = false;
	size_t n = 0;

	if (!l)
		return ca_error_set(err, -ENOMEM, "out of memory");
	pthread_rwlock_rdlock(&s->lock);
	for (size_t i = 0; i < s->n_tokens; i++)
		rescan |= token_needs_rescan(s->tokens[i]);
	if (rescan) {
		pthread_rwlock_unlock(&s->lock);
		pthread_rwlock_wrlock(&s->lock);
		store_rescan_locked(s);
	}
	for (size_t i = 0; i < s->n_tokens; i++)
		n += s->tokens[i]->n_ids;
	l->items = calloc(n + 1, sizeof(*l->items));
	for (size_t i = 0; l->items && i < s->n_tokens; i++) {
		Token *t = s->tokens[i];
		bool logged_in;

		if (__atomic_load_n(&t->gone, __ATOMIC_RELAXED) || token_stale(t))
			continue; /* removed; the next poll drops it */
		logged_in = t->n_ids > 0 && token_logged_in(t);

		for (size_t j = 0; j < t->n_ids; j++)
			identity_copy(t, &t->ids[j], logged_in, &l->items[l->n++], &oom);
	}
	pthread_rwlock_unlock(&s->lock);
	if (!l->items || oom) {
		store_identity_list_free(l);
		return ca_error_set(err, -ENOMEM, "out of memory");
	}
	*ret = l;
	return 0;
}

static int uri_parse(const char *str, P11KitUri **ret, CaError *err)
{
	P11KitUri *u = p11_kit_uri_new();
	int r;

	if (!u)
		return ca_error_set(err, -ENOMEM, "out of memory");
	r = p11_kit_uri_parse(str, P11_KIT_URI_FOR_ANY, u);
	if (r != P11_KIT_URI_OK) {
		p11_kit_uri_free(u);
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "\"%s\" is not a valid pkcs11: URI (%s)", str,
				    p11_kit_uri_message(r));
	}
	*ret = u;
	return 0;
}

static bool uri_matches_token(P11KitUri *u, Token *t)
{
	return p11_kit_uri_match_module_info(u, &t->module->info) == 1 &&
	       p11_kit_uri_match_token_info(u, &t->info) == 1;
}

static bool uri_matches_identity(P11KitUri *u, const Identity *id)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE attrs[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_ID, id->id, id->id_len},
		{CKA_LABEL, id->label, id->label ? strlen(id->label) : 0},
	};

	return p11_kit_uri_match_attributes(u, attrs, ELEMENTSOF(attrs)) == 1;
}

/*
 * With the lock held. Codes: CA_E_INVALID_ARGS, CA_E_KEY_NOT_FOUND.
 *
 * The URI an identity is listed with (what clients send back on every Sign) is found by
 * strcmp, without parsing: it is built from the token's model, manufacturer, serial and label
 * and the key's class, id and label, so when it has an id and a label, every identity it
 * matches as a URI lists that same string. Any other URI (one without id= or object= matches
 * more keys than its own), or one two identities share, is parsed and matched.
 */
static int store_find_identity(Store *s, const char *uri, Token **ret_t, const Identity **ret_id,
			       CaError *err)
{
	P11KitUri *u = NULL;
	Token *found_t = NULL;
	const Identity *found = NULL;
	size_t n = 0;
	int r;

	for (size_t i = 0; i < s->n_tokens; i++)
		for (size_t j = 0; j < s->tokens[i]->n_ids; j++)
			if (strcmp(s->tokens[i]->ids[j].uri, uri) == 0 && n++ == 0)
				found_t = s->tokens[i], found = &s->tokens[i]->ids[j];
	if (n == 1 && found->id_len > 0 && found->label && found->label[0]) {
		*ret_t = found_t;
		*ret_id = found;
		return 0;
	}
	n = 0;
	found_t = NULL;
	found = NULL;

	r = uri_parse(uri, &u, err);
	if (r != 0)
		return r;
	for (size_t i = 0; i < s->n_tokens; i++) {
		Token *t = s->tokens[i];

		if (!uri_matches_token(u, t))
			continue;
		for (size_t j = 0; j < t->n_ids; j++)
			if (uri_matches_identity(u, &t->ids[j])) {
				if (n++ == 0)
					found_t = t, found = &t->ids[j];
			}
	}
	/* A key of a token that was removed: say so, rather than "no such key". */
	r = n == 0 ? hotplug_match_gone(s, u, err) : 0;
	p11_kit_uri_free(u);
	if (r != 0)
		return r;
	if (n == 0)
		return ca_error_set(
			err, CA_E_KEY_NOT_FOUND,
			"no private key matches \"%s\": run `certagent list` to see the "
			"keys (or `certagent reload` if the token is new)",
			uri);
	if (n > 1)
		return ca_error_set(
			err, CA_E_INVALID_ARGS,
			"\"%s\" matches %zu private keys: add id= (or token=) to the URI "
			"to pick one, e.g. \"%s\"",
			uri, n, found->uri);
	*ret_t = found_t;
	*ret_id = found;
	return 0;
}

int store_sign(Store *s, const char *identity_uri, const CaScheme *scheme, const uint8_t *data,
	       size_t len, uint8_t **ret_sig, size_t *ret_sig_len, StoreSignInfo *ret_info,
	       CaError *err)
{
	return store_sign_pin(s, identity_uri, scheme, data, len, NULL, 0, ret_sig, ret_sig_len,
			      ret_info, err);
}

int store_sign_pin(Store *s, const char *identity_uri, const CaScheme *scheme,
		   const uint8_t *data, size_t len, const char *pin, size_t pin_len,
		   uint8_t **ret_sig, size_t *ret_sig_len, StoreSignInfo *ret_info, CaError *err)
{
	const Identity *id = NULL;
	Token *t = NULL;
	bool can = false;
	int r;

	if (!s || !identity_uri || !scheme || (!data && len > 0) || !ret_sig || !ret_sig_len)
		return ca_error_set(err, CA_E_INVALID_ARGS, "missing argument to sign");
	if (len > STORE_SIGN_DATA_MAX)
		return ca_error_set(err, CA_E_TOO_LARGE,
				    "%zu bytes to sign is more than the %d allowed", len,
				    STORE_SIGN_DATA_MAX);
	r = ca_scheme_check_input(scheme, data, len, err);
	if (r != 0)
		return r;

	pthread_rwlock_rdlock(&s->lock);
	r = store_find_identity(s, identity_uri, &t, &id, err);
	if (r != 0)
		goto out;
	for (size_t i = 0; i < id->n_schemes; i++)
		can |= strcmp(id->schemes[i]->name, scheme->name) == 0;
	if (!can) {
		r = ca_error_set(
			err, CA_E_UNSUPPORTED_SCHEME,
			"key \"%s\" (%s-%u) on token \"%s\" cannot sign %s: the key type or "
			"the token's mechanisms do not allow it",
			id->label, ca_key_type_name(id->key_type), id->bits, t->label,
			scheme->name);
		goto out;
	}
	if (__atomic_load_n(&t->gone, __ATOMIC_RELAXED) || token_stale(t)) {
		/* A stale token's helper died: the poll rescans it, logged out. */
		hotplug_token_lost(s, t);
		r = ca_error_set(err, CA_E_TOKEN_ABSENT,
				 "token \"%s\" was removed: insert it again; its keys come back by "
				 "themselves and the PIN is asked again",
				 t->label);
		goto out;
	}
	r = sign_run(s, t, id, scheme, data, len, pin, pin_len, ret_sig, ret_sig_len, ret_info,
		     err);
	if (r == CA_E_TOKEN_ABSENT)
		hotplug_token_lost(s, t); /* CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, ... */
out:
	pthread_rwlock_unlock(&s->lock);
	return r;
}

bool store_prepare_sign(Store *s, const char *identity_uri)
{
	const Identity *id = NULL;
	CK_OBJECT_HANDLE key;
	CK_SESSION_HANDLE h;
	CaError err = {0};
	bool begun = false;
	Token *t = NULL;

	if (!s || !identity_uri || !s->sign_ahead)
		return false;
	pthread_rwlock_rdlock(&s->lock);
	if (store_find_identity(s, identity_uri, &t, &id, &err) != 0 || !t->module->isolated ||
	    __atomic_load_n(&t->gone, __ATOMIC_RELAXED) || token_stale(t) || !login_cached(s, t))
		goto out;
	key = __atomic_load_n(&id->key, __ATOMIC_RELAXED);
	if (key == CK_INVALID_HANDLE || __atomic_load_n(&id->always_authenticate, __ATOMIC_RELAXED))
		goto out;
	if (session_try_acquire(t, &h, &err) != 0)
		goto out; /* all busy signing: then its helper is awake anyway */
	(void)call_prepare_sign(t->module, h, key, &begun);
	session_release(t, h);
out:
	pthread_rwlock_unlock(&s->lock);
	return begun;
}

int store_unlock(Store *s, const char *token_uri, const char *pin, size_t pin_len, CaError *err)
{
	P11KitUri *u = NULL;
	size_t matched = 0;
	int r;

	if (!s || !token_uri || (!pin && pin_len > 0))
		return ca_error_set(err, CA_E_INVALID_ARGS, "missing argument to unlock");
	r = uri_parse(token_uri, &u, err);
	if (r != 0)
		return r;
	pthread_rwlock_wrlock(&s->lock);
	for (size_t i = 0; i < s->n_tokens && r == 0; i++) {
		Token *t = s->tokens[i];
		CK_SESSION_HANDLE h;

		if (!uri_matches_token(u, t))
			continue;
		matched++;
		r = session_acquire(t, &h, err);
		if (r != 0)
			break;
		r = login_with_pin(t, h, pin ? pin : "", pin_len, err);
		session_release(t, h);
		if (r == 0 && object_scan_token(t, NULL) == 0) {
			pthread_mutex_lock(&t->login_lock);
			t->rescan_needed = false;
			pthread_mutex_unlock(&t->login_lock);
		}
	}
	pthread_rwlock_unlock(&s->lock);
	p11_kit_uri_free(u);
	if (r == 0 && matched == 0)
		return ca_error_set(err, CA_E_TOKEN_ABSENT,
				    "no token matches \"%s\": run `certagent tokens` to see them "
				    "(or `certagent reload` if it is new)",
				    token_uri);
	return r;
}

int store_lock(Store *s)
{
	int r = 0;

	pthread_rwlock_rdlock(&s->lock);
	for (size_t i = 0; i < s->n_tokens; i++) {
		int q = login_logout(s->tokens[i]);

		if (r == 0)
			r = q;
	}
	pthread_rwlock_unlock(&s->lock);
	return r;
}

void store_pin_request_clear(StorePinRequest *r)
{
	if (!r)
		return;
	free(r->token_uri);
	free(r->token_label);
	free(r->token_serial);
	*r = (StorePinRequest){0};
}

/* With the lock held: the one token a token URI names. Codes: see store_pin_request(). */
static int store_find_one_token(Store *s, const char *uri, Token **ret, CaError *err)
{
	P11KitUri *u = NULL;
	Token *found = NULL;
	size_t n = 0;
	int r;

	r = uri_parse(uri, &u, err);
	if (r != 0)
		return r;
	for (size_t i = 0; i < s->n_tokens; i++)
		if (uri_matches_token(u, s->tokens[i]) && n++ == 0)
			found = s->tokens[i];
	p11_kit_uri_free(u);
	if (n == 0)
		return ca_error_set(err, CA_E_TOKEN_ABSENT,
				    "no token matches \"%s\": run `certagent tokens` to see them "
				    "(or `certagent reload` if it is new)",
				    uri);
	if (n > 1)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "\"%s\" matches %zu tokens; a PIN prompt is for one: add "
				    "serial= to the URI, e.g. \"%s\"",
				    uri, n, found->uri);
	*ret = found;
	return 0;
}

int store_pin_request(Store *s, const char *uri, bool is_identity, StorePinRequest *ret,
		      CaError *err)
{
	StorePinRequest pr = {0};
	const Identity *id = NULL;
	CK_TOKEN_INFO ti;
	Token *t = NULL;
	bool oom = false;
	int r;

	if (!s || !uri || !ret)
		return ca_error_set(err, CA_E_INVALID_ARGS, "missing argument");
	pthread_rwlock_rdlock(&s->lock);
	if (is_identity)
		r = store_find_identity(s, uri, &t, &id, err);
	else
		r = store_find_one_token(s, uri, &t, err);
	if (r == 0)
		r = login_check(t, &ti, err);
	if (r == 0) {
		pr.token_uri = strdup_or_null(t->uri, &oom);
		pr.token_label = strdup_or_null(t->label, &oom);
		pr.token_serial = strdup_or_null(t->serial, &oom);
		pr.token_flags = ti.flags;
		pr.logged_in = !(ti.flags & CKF_LOGIN_REQUIRED) || token_logged_in(t);
		pr.pinpad = ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH;
		pr.per_signature =
			id && __atomic_load_n(&id->always_authenticate, __ATOMIC_RELAXED);
		pr.few_tries = ti.flags & CKF_USER_PIN_COUNT_LOW;
	}
	pthread_rwlock_unlock(&s->lock);
	if (r == 0 && oom)
		r = ca_error_set(err, -ENOMEM, "out of memory");
	if (r != 0) {
		store_pin_request_clear(&pr);
		return r;
	}
	*ret = pr;
	return 0;
}

int store_expire_logins(Store *s, size_t *ret_n)
{
	size_t n = 0;

	if (s->login_idle_usec) {
		pthread_rwlock_rdlock(&s->lock);
		for (size_t i = 0; i < s->n_tokens; i++)
			n += login_expire(s, s->tokens[i]);
		pthread_rwlock_unlock(&s->lock);
	}
	if (ret_n)
		*ret_n = n;
	return 0;
}
