/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * token: one Token per slot with a token present, in every loaded module; what it can sign
 * (mechanisms with CKF_SIGN), its URIs, and the identities on it (object.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

static const struct {
	MechKind kind;
	CK_MECHANISM_TYPE type;
} mech_map[] = {
	{MECH_RSA_PKCS, CKM_RSA_PKCS},
	{MECH_RSA_PSS, CKM_RSA_PKCS_PSS},
	{MECH_ECDSA, CKM_ECDSA},
	{MECH_EDDSA, CKM_EDDSA},
};

static void token_free(Token *t)
{
	if (!t)
		return;
	session_pool_close(t);
	login_forget(t);
	for (size_t i = 0; i < t->n_ids; i++)
		identity_deinit(&t->ids[i]);
	free(t->ids);
	free(t->idle);
	token_clear_names(t);
	pthread_mutex_destroy(&t->pool_lock);
	pthread_cond_destroy(&t->pool_cond);
	pthread_mutex_destroy(&t->login_lock);
	key_copies_fini(&t->copies);
	free(t);
}

/* Frees what token_fill_names() made (also of admin.c's stub tokens). */
void token_clear_names(Token *t)
{
	free(t->label);
	free(t->serial);
	free(t->manufacturer);
	free(t->model);
	free(t->uri);
	free(t->short_uri);
	t->label = t->serial = t->manufacturer = t->model = t->uri = t->short_uri = NULL;
}

static int token_make_uris(Token *t)
{
	P11KitUri *u = p11_kit_uri_new();
	CK_TOKEN_INFO *ti;
	int r = -ENOMEM;

	if (!u)
		return -ENOMEM;
	ti = p11_kit_uri_get_token_info(u);
	*ti = t->info;
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_TOKEN, &t->uri) != P11_KIT_URI_OK)
		goto out;
	/* Only the label: what a person types in `certagent unlock 'pkcs11:token=demo'`. */
	memset(ti, 0, sizeof(*ti));
	memcpy(ti->label, t->info.label, sizeof(ti->label));
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_TOKEN, &t->short_uri) != P11_KIT_URI_OK)
		goto out;
	r = 0;
out:
	p11_kit_uri_free(u);
	return r;
}

/*
 * The names of t from t->info, replacing any it had: label, serial, manufacturer, model and
 * the two URIs (admin.c refills its stub token after C_InitToken). Returns 0 or -ENOMEM.
 */
int token_fill_names(Token *t)
{
	token_clear_names(t);
	t->label = p11_kit_space_strdup(t->info.label, sizeof(t->info.label));
	t->serial = p11_kit_space_strdup(t->info.serialNumber, sizeof(t->info.serialNumber));
	t->manufacturer =
		p11_kit_space_strdup(t->info.manufacturerID, sizeof(t->info.manufacturerID));
	t->model = p11_kit_space_strdup(t->info.model, sizeof(t->info.model));
	if (!t->label || !t->serial || !t->manufacturer || !t->model)
		return -ENOMEM;
	return token_make_uris(t);
}

static void token_probe_mechanisms(Token *t)
{
	_cleanup_free_ CK_MECHANISM_TYPE *list = NULL;
	size_t n = 0;

	if (call_get_mechanism_list(t->module, t->slot, &list, &n) != CKR_OK)
		return;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < ELEMENTSOF(mech_map); j++) {
			CK_MECHANISM_INFO mi;

			if (list[i] != mech_map[j].type)
				continue;
			if (call_get_mechanism_info(t->module, t->slot, list[i], &mi) != CKR_OK)
				continue;
			if (mi.flags & CKF_SIGN)
				t->mech[mech_map[j].kind] = true;
		}
}

/*
 * The session pool sized to the token: a module that says it allows no more sessions than
 * workers (ulMaxSessionCount) gets one fewer in the pool than it allows, the last one left
 * for enrolment and signing ahead; signatures beyond that wait for a session. A module that
 * does not say so but refuses one (CKR_SESSION_COUNT) is met in session_acquire().
 */
static void token_size_pool(Token *t)
{
	CK_ULONG max = t->info.ulMaxSessionCount;

	if (max == CK_EFFECTIVELY_INFINITE || max == CK_UNAVAILABLE_INFORMATION || max > t->cap)
		return;
	t->cap = max > 1 ? (unsigned)max - 1 : 1;
	call_log(LOG_INFO,
		 "token \"%s\": its module allows %lu sessions: signing with at most %u at once",
		 t->label, (unsigned long)max, t->cap);
}

static int token_new(Store *s, Module *m, CK_SLOT_ID slot, Token **ret)
{
	Token *t;
	CK_RV rv;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->pool_lock, NULL);
	pthread_cond_init(&t->pool_cond, NULL);
	pthread_mutex_init(&t->login_lock, NULL);
	t->module = m;
	t->module_gen = remote_generation(m); /* before the first call: a death during the scan
					       * makes the token stale at once */
	t->slot = slot;
	key_copies_init(&t->copies, m, slot, NULL); /* no search sees copies (key-copy.h) */
	t->cap = s->sessions_per_token ? s->sessions_per_token : 4;
	t->idle = calloc(t->cap, sizeof(*t->idle));
	if (!t->idle) {
		token_free(t);
		return -ENOMEM;
	}
	rv = call_get_token_info(m, slot, &t->info);
	if (rv != CKR_OK || !(t->info.flags & CKF_TOKEN_INITIALIZED)) {
		/* Gone since C_GetSlotList, or blank (SoftHSM's free slot): nothing to use. */
		token_free(t);
		return 1;
	}
	if (token_fill_names(t) < 0) {
		token_free(t);
		return -ENOMEM;
	}
	token_size_pool(t);
	token_probe_mechanisms(t);
	r = object_scan_token(t, NULL);
	if (r < 0) {
		token_free(t);
		return r;
	}
	if (r > 0)
		call_log(LOG_WARNING, "token \"%s\": could not list its objects", t->label);
	hotplug_fingerprint(t);
	*ret = t;
	return 0;
}

/* Scans every slot of every module. Returns 0 or -ENOMEM. */
int token_scan_all(Store *s, CaError *err)
{
	for (size_t i = 0; i < s->n_modules; i++) {
		Module *m = s->modules[i];
		_cleanup_free_ CK_SLOT_ID *slots = NULL;
		size_t n = 0;
		CK_RV rv;

		rv = call_get_slot_list(m, &slots, &n);
		if (rv != CKR_OK) {
			call_log(LOG_WARNING, "module %s: cannot list slots: %s", m->name,
				 p11_kit_strerror(rv));
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			Token *t = NULL, **p;
			int r = token_new(s, m, slots[j], &t);

			if (r < 0)
				return ca_error_set(err, r, "out of memory scanning tokens");
			if (r > 0)
				continue;
			p = reallocarray(s->tokens, s->n_tokens + 1, sizeof(*p));
			if (!p) {
				token_free(t);
				return ca_error_set(err, -ENOMEM, "out of memory scanning tokens");
			}
			s->tokens = p;
			s->tokens[s->n_tokens++] = t;
			hotplug_token_seen(s, t);
			call_log(LOG_INFO, "token \"%s\" (%s): %zu identities", t->label, m->name,
				 t->n_ids);
		}
	}
	return 0;
}

/* One token that arrived (hotplug.c). Returns 0, 1 when the slot has nothing usable, -ENOMEM. */
int token_add(Store *s, Module *m, CK_SLOT_ID slot, Token **ret)
{
	Token *t = NULL, **p;
	int r = token_new(s, m, slot, &t);

	if (r != 0)
		return r;
	p = reallocarray(s->tokens, s->n_tokens + 1, sizeof(*p));
	if (!p) {
		token_free(t);
		return -ENOMEM;
	}
	s->tokens = p;
	s->tokens[s->n_tokens++] = t;
	*ret = t;
	return 0;
}

/* One token that left (hotplug.c): out of the list, and everything about it forgotten. */
void token_remove(Store *s, Token *t)
{
	for (size_t i = 0; i < s->n_tokens; i++)
		if (s->tokens[i] == t) {
			memmove(s->tokens + i, s->tokens + i + 1,
				(s->n_tokens - i - 1) * sizeof(*s->tokens));
			s->n_tokens--;
			break;
		}
	token_free(t);
}

void token_free_all(Store *s)
{
	for (size_t i = 0; i < s->n_tokens; i++)
		token_free(s->tokens[i]);
	free(s->tokens);
	s->tokens = NULL;
	s->n_tokens = 0;
}

/* Whether the user is logged in, seen through session h (login is per application). */
bool token_session_logged_in(Token *t, CK_SESSION_HANDLE h, CK_RV *ret_rv)
{
	CK_SESSION_INFO si;
	CK_RV rv = call_get_session_info(t->module, h, &si);

	if (ret_rv)
		*ret_rv = rv;
	if (rv != CKR_OK)
		return false;
	return si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS ||
	       si.state == CKS_RW_SO_FUNCTIONS;
}
