/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * admin: the write side of pkcs11/ for the CLI's enrolment commands (see admin.h for the
 * rules it enforces). This file finds the slots, opens the AdminSession and does logins, PINs
 * and token initialisation; admin-object.c works on the objects on its token. One read-write
 * session per AdminSession; a stub Token carries the label and URI that call_error() puts in
 * messages and the login state login.c keeps.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "admin-internal.h"
#include "admin.h"
#include "internal.h"

#define PIN_MAX 256

/* --- slots ------------------------------------------------------------------------------ */

static void slot_deinit(AdminSlot *sl)
{
	free(sl->module);
	free(sl->module_path);
	free(sl->slot_description);
	free(sl->uri);
	free(sl->label);
	free(sl->serial);
	free(sl->manufacturer);
	free(sl->model);
}

AdminSlotList *admin_slot_list_free(AdminSlotList *l)
{
	if (!l)
		return NULL;
	for (size_t i = 0; i < l->n; i++)
		slot_deinit(&l->items[i]);
	free(l->items);
	free(l);
	return NULL;
}

bool admin_label_is_tmp(const char *label)
{
	return label && strncmp(label, ADMIN_TMP_PREFIX, strlen(ADMIN_TMP_PREFIX)) == 0;
}

/* Objects visible without login, and how many of them an unfinished enrolment left. */
static void slot_count_objects(Module *m, CK_SLOT_ID slot, AdminSlot *sl)
{
	_cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
	CK_SESSION_HANDLE h;
	size_t n = 0;

	if (call_open_session(m, slot, &h) != CKR_OK)
		return;
	if (call_find_objects(m, h, NULL, 0, &objs, &n) == CKR_OK) {
		sl->n_objects = n;
		for (size_t i = 0; i < n; i++) {
			_cleanup_free_ uint8_t *label = NULL;
			size_t len = 0;

			if (call_get_attribute(m, h, objs[i], CKA_LABEL, &label, &len) == CKR_OK &&
			    admin_label_is_tmp((char *)label))
				sl->n_orphans++;
		}
	}
	call_close_session(m, h);
}

int admin_list_slots(Store *s, AdminSlotList **ret, CaError *err)
{
	AdminSlotList *l = calloc(1, sizeof(*l));
	bool oom = !l;

	for (size_t i = 0; !oom && i < s->n_modules; i++) {
		Module *m = s->modules[i];
		_cleanup_free_ CK_SLOT_ID *slots = NULL;
		size_t n = 0;

		if (call_get_slot_list(m, &slots, &n) != CKR_OK)
			continue;
		for (size_t j = 0; !oom && j < n; j++) {
			CK_TOKEN_INFO ti;
			CK_SLOT_INFO si;
			AdminSlot *p, *sl;
			Token stub = {.module = m, .slot = slots[j]};

			if (call_get_token_info(m, slots[j], &ti) != CKR_OK)
				continue;
			if (call_get_slot_info(m, slots[j], &si) != CKR_OK)
				memset(&si, ' ', sizeof(si));
			p = reallocarray(l->items, l->n + 1, sizeof(*p));
			if (!p) {
				oom = true;
				break;
			}
			l->items = p;
			sl = &p[l->n++];
			memset(sl, 0, sizeof(*sl));
			sl->module = strdup(m->name);
			sl->module_path = strdup(m->path);
			sl->slot_id = slots[j];
			sl->slot_description = p11_kit_space_strdup(si.slotDescription,
								    sizeof(si.slotDescription));
			sl->initialized = ti.flags & CKF_TOKEN_INITIALIZED;
			sl->flags = ti.flags;
			sl->free_public = ti.ulFreePublicMemory;
			sl->total_public = ti.ulTotalPublicMemory;
			sl->free_private = ti.ulFreePrivateMemory;
			sl->total_private = ti.ulTotalPrivateMemory;
			sl->min_pin = ti.ulMinPinLen;
			sl->max_pin = ti.ulMaxPinLen;
			stub.info = ti;
			if (token_fill_names(&stub) < 0) {
				oom = true;
			} else {
				sl->label = TAKE_PTR(stub.label);
				sl->serial = TAKE_PTR(stub.serial);
				sl->manufacturer = TAKE_PTR(stub.manufacturer);
				sl->model = TAKE_PTR(stub.model);
				sl->uri = TAKE_PTR(stub.uri);
			}
			token_clear_names(&stub);
			if (!sl->module || !sl->module_path || !sl->slot_description)
				oom = true;
			if (sl->initialized)
				slot_count_objects(m, slots[j], sl);
		}
	}
	if (oom) {
		admin_slot_list_free(l);
		return ca_error_set(err, -ENOMEM, "out of memory listing slots");
	}
	*ret = l;
	return 0;
}

/* --- sessions --------------------------------------------------------------------------- */

AdminSession *admin_session_free(AdminSession *a)
{
	if (!a)
		return NULL;
	if (a->open) {
		call_logout(a->m, a->h);
		call_close_session(a->m, a->h);
	}
	login_forget(&a->tok);
	token_clear_names(&a->tok);
	pthread_mutex_destroy(&a->tok.login_lock);
	pthread_mutex_destroy(&a->tok.pool_lock);
	pthread_cond_destroy(&a->tok.pool_cond);
	free(a);
	return NULL;
}

static int session_reopen(AdminSession *a, CaError *err)
{
	CK_RV rv;

	if (a->open) {
		call_close_session(a->m, a->h);
		a->open = false;
	}
	rv = call_get_token_info(a->m, a->slot, &a->tok.info);
	if (rv == CKR_OK && token_fill_names(&a->tok) < 0)
		return ca_error_set(err, -ENOMEM, "out of memory");
	/* An uninitialised token takes no sessions; only C_InitToken, which wants none. */
	if (rv == CKR_OK && !(a->tok.info.flags & CKF_TOKEN_INITIALIZED))
		return 0;
	if (rv == CKR_OK)
		rv = call_open_rw_session(a->m, a->slot, &a->h);
	if (rv != CKR_OK)
		return call_error(rv, &a->tok, "C_OpenSession", err);
	a->open = true;
	return 0;
}

int admin_session_open(Store *s, const char *token, bool allow_uninitialized, AdminSession **ret,
		       CaError *err)
{
	P11KitUri *u = NULL;
	Module *fm = NULL;
	CK_SLOT_ID fslot = 0;
	size_t matches = 0;
	AdminSession *a;
	int r;

	if (strncmp(token, "pkcs11:", 7) == 0) {
		u = p11_kit_uri_new();
		if (!u)
			return ca_error_set(err, -ENOMEM, "out of memory");
		r = p11_kit_uri_parse(token, P11_KIT_URI_FOR_ANY, u);
		if (r != P11_KIT_URI_OK) {
			p11_kit_uri_free(u);
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "\"%s\" is not a valid pkcs11: URI (%s)", token,
					    p11_kit_uri_message(r));
		}
	}
	for (size_t i = 0; i < s->n_modules; i++) {
		Module *m = s->modules[i];
		_cleanup_free_ CK_SLOT_ID *slots = NULL;
		size_t n = 0;

		if (u && p11_kit_uri_match_module_info(u, &m->info) != 1)
			continue;
		if (call_get_slot_list(m, &slots, &n) != CKR_OK)
			continue;
		for (size_t j = 0; j < n; j++) {
			CK_TOKEN_INFO ti;
			CK_SLOT_INFO si;
			bool match;

			if (call_get_token_info(m, slots[j], &ti) != CKR_OK)
				continue;
			if (!(ti.flags & CKF_TOKEN_INITIALIZED) && !allow_uninitialized)
				continue;
			if (u) {
				CK_SLOT_ID want = p11_kit_uri_get_slot_id(u);

				match = p11_kit_uri_match_token_info(u, &ti) == 1 &&
					(want == (CK_SLOT_ID)-1 || want == slots[j]);
				if (match && call_get_slot_info(m, slots[j], &si) == CKR_OK)
					match = p11_kit_uri_match_slot_info(u, &si) == 1;
			} else {
				_cleanup_free_ char *label =
					p11_kit_space_strdup(ti.label, sizeof(ti.label));

				match = label && (ti.flags & CKF_TOKEN_INITIALIZED) &&
					strcmp(label, token) == 0;
			}
			if (match && matches++ == 0)
				fm = m, fslot = slots[j];
		}
	}
	p11_kit_uri_free(u);
	if (matches == 0)
		return ca_error_set(err, CA_E_TOKEN_ABSENT,
				    "no token matches \"%s\": is it inserted? `certagent tokens` "
				    "lists the tokens (and --module PATH loads another module)",
				    token);
	if (matches > 1)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "\"%s\" matches %zu tokens: name one by its serial "
				    "(pkcs11:serial=...) or slot (pkcs11:slot-id=N); see "
				    "`certagent tokens`",
				    token, matches);
	a = calloc(1, sizeof(*a));
	if (!a)
		return ca_error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&a->tok.login_lock, NULL);
	pthread_mutex_init(&a->tok.pool_lock, NULL);
	pthread_cond_init(&a->tok.pool_cond, NULL);
	a->s = s;
	a->m = fm;
	a->slot = fslot;
	a->tok.module = fm;
	a->tok.slot = fslot;
	r = session_reopen(a, err);
	if (r != 0) {
		admin_session_free(a);
		return r;
	}
	*ret = a;
	return 0;
}

const char *admin_session_label(const AdminSession *a)
{
	return a->tok.label ? a->tok.label : "";
}

const char *admin_session_uri(const AdminSession *a)
{
	return a->tok.short_uri ? a->tok.short_uri : "pkcs11:";
}

unsigned long admin_session_flags(const AdminSession *a)
{
	CK_TOKEN_INFO ti;

	if (call_get_token_info(a->m, a->slot, &ti) != CKR_OK)
		return a->tok.info.flags;
	return ti.flags;
}

bool admin_session_pinpad(const AdminSession *a)
{
	return a->tok.info.flags & CKF_PROTECTED_AUTHENTICATION_PATH;
}

/* --- logins and PINs -------------------------------------------------------------------- */

/* The store keeps read-only sessions open on each token (its pool); C_InitToken wants no
 * session at all and an SO login no read-only one (CKR_SESSION_READ_ONLY_EXISTS). */
static void close_store_sessions(AdminSession *a)
{
	for (size_t i = 0; i < a->s->n_tokens; i++)
		if (a->s->tokens[i]->module == a->m && a->s->tokens[i]->slot == a->slot)
			session_pool_close(a->s->tokens[i]);
}

static int so_error(AdminSession *a, CK_RV rv, const char *what, CaError *err)
{
	const char *label = admin_session_label(a);

	switch (rv) {
	case CKR_PIN_INCORRECT:
		return ca_error_set(err, CA_E_PIN_INCORRECT,
				    "wrong SO PIN for token \"%s\" (the token counted one failed "
				    "try; certagent does not retry it): check the SO PIN and run "
				    "the command again",
				    label);
	case CKR_PIN_LOCKED:
		return ca_error_set(err, CA_E_PIN_LOCKED,
				    "the SO PIN of token \"%s\" is locked: only the token's "
				    "vendor tools (or re-creating a software token) can help",
				    label);
	default:
		return call_error(rv, &a->tok, what, err);
	}
}

int admin_login(AdminSession *a, AdminUser who, const char *pin, size_t pin_len, CaError *err)
{
	unsigned long flags = admin_session_flags(a);
	CK_RV rv;
	int r;

	if (pin_len > PIN_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS, "the PIN is longer than %d bytes",
				    PIN_MAX);
	if (who == ADMIN_USER) {
		if (!(flags & CKF_USER_PIN_INITIALIZED))
			return ca_error_set(err, CA_E_PIN_REQUIRED,
					    "token \"%s\" has no user PIN yet: set one with "
					    "`certagent token unblock-pin '%s'` (needs the SO PIN)",
					    admin_session_label(a), admin_session_uri(a));
		r = login_with_pin(&a->tok, a->h, pin ? pin : "", pin_len, err);
		login_forget(&a->tok); /* the CLI keeps no PIN past this call */
		if (r == CA_E_PIN_INCORRECT)
			return ca_error_set(err, r,
					    "wrong user PIN for token \"%s\" (the token counted one "
					    "failed try; certagent does not retry it): check the PIN "
					    "and run the command again",
					    admin_session_label(a));
		if (r == CA_E_PIN_LOCKED && (flags & CKF_USER_PIN_LOCKED))
			return ca_error_set(err, r,
					    "the user PIN of token \"%s\" is locked (too many wrong "
					    "tries): reset it with the SO PIN: `certagent token "
					    "unblock-pin '%s'`",
					    admin_session_label(a), admin_session_uri(a));
		return r;
	}
	if (flags & CKF_SO_PIN_LOCKED)
		return so_error(a, CKR_PIN_LOCKED, "C_Login", err);
	if (flags & CKF_SO_PIN_FINAL_TRY)
		return ca_error_set(err, CA_E_PIN_LOCKED,
				    "token \"%s\" allows only one more SO PIN try before it "
				    "locks for good: certagent will not risk it",
				    admin_session_label(a));
	if (admin_session_pinpad(a))
		pin = NULL, pin_len = 0;
	close_store_sessions(a);
	rv = call_login(a->m, a->h, CKU_SO, pin, pin_len);
	if (rv == CKR_SESSION_READ_ONLY_EXISTS)
		return ca_error_set(err, CA_E_FAILED,
				    "token \"%s\" is in use by another program (a read-only "
				    "session): stop certagentd and other PKCS#11 users, then run the "
				    "command again",
				    admin_session_label(a));
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	return rv == CKR_OK ? 0 : so_error(a, rv, "C_Login", err);
}

static int pin_len_error(AdminSession *a, CK_RV rv, const char *what, CaError *err)
{
	if (rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID)
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "token \"%s\" refused the new PIN (%s): it takes PINs of %lu "
				    "to %lu characters",
				    admin_session_label(a),
				    rv == CKR_PIN_LEN_RANGE ? "wrong length" : "invalid characters",
				    (unsigned long)a->tok.info.ulMinPinLen,
				    (unsigned long)a->tok.info.ulMaxPinLen);
	return call_error(rv, &a->tok, what, err);
}

int admin_init_pin(AdminSession *a, const char *pin, size_t pin_len, CaError *err)
{
	CK_RV rv;

	if (pin_len > PIN_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS, "the PIN is longer than %d bytes",
				    PIN_MAX);
	rv = call_init_pin(a->m, a->h, pin, pin_len);
	return rv == CKR_OK ? 0 : pin_len_error(a, rv, "C_InitPIN", err);
}

int admin_set_pin(AdminSession *a, const char *old_pin, size_t old_len, const char *new_pin,
		  size_t new_len, CaError *err)
{
	unsigned long flags = admin_session_flags(a);
	CK_RV rv;

	if (old_len > PIN_MAX || new_len > PIN_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS, "a PIN is longer than %d bytes",
				    PIN_MAX);
	if (flags & CKF_USER_PIN_LOCKED)
		return admin_login(a, ADMIN_USER, old_pin, old_len, err);
	if (flags & CKF_USER_PIN_FINAL_TRY)
		return ca_error_set(err, CA_E_PIN_LOCKED,
				    "token \"%s\" allows only one more PIN try before it locks: "
				    "certagent will not risk it; reset the PIN with `certagent "
				    "token unblock-pin '%s'`",
				    admin_session_label(a), admin_session_uri(a));
	rv = call_set_pin(a->m, a->h, old_pin, old_len, new_pin, new_len);
	if (rv == CKR_PIN_INCORRECT)
		return ca_error_set(err, CA_E_PIN_INCORRECT,
				    "wrong current PIN for token \"%s\" (the token counted one "
				    "failed try; certagent does not retry it)",
				    admin_session_label(a));
	return rv == CKR_OK ? 0 : pin_len_error(a, rv, "C_SetPIN", err);
}

int admin_init_token(Store *s, AdminSession *a, const char *so_pin, size_t so_len,
		     const char *label, const char *user_pin, size_t user_len, CaError *err)
{
	uint8_t padded[32];
	CK_RV rv;
	int r;

	if (strlen(label) == 0 || strlen(label) > sizeof(padded))
		return ca_error_set(err, CA_E_INVALID_ARGS,
				    "a token label has 1 to 32 bytes; \"%s\" has %zu", label,
				    strlen(label));
	if (so_len > PIN_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS, "the SO PIN is longer than %d bytes",
				    PIN_MAX);
	if ((a->tok.info.flags & CKF_TOKEN_INITIALIZED) && (a->tok.info.flags & CKF_SO_PIN_LOCKED))
		return so_error(a, CKR_PIN_LOCKED, "C_InitToken", err);
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	/* C_InitToken wants no session open on the token: ours and the store's pool. */
	if (a->open)
		call_close_session(a->m, a->h);
	a->open = false;
	close_store_sessions(a);
	rv = call_init_token(a->m, a->slot, admin_session_pinpad(a) ? NULL : so_pin,
			     admin_session_pinpad(a) ? 0 : so_len, padded);
	if (rv != CKR_OK) {
		session_reopen(a, NULL);
		if (rv == CKR_SESSION_EXISTS)
			return ca_error_set(err, CA_E_FAILED,
					    "token \"%s\" is in use by another program (an open "
					    "session): stop certagentd and other PKCS#11 users, then "
					    "run the command again",
					    admin_session_label(a));
		return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED
			       ? so_error(a, rv, "C_InitToken", err)
			       : pin_len_error(a, rv, "C_InitToken", err);
	}
	call_log(LOG_INFO, "slot %lu: token initialised as \"%s\"", (unsigned long)a->slot, label);
	r = session_reopen(a, err);
	if (r != 0)
		return r;
	r = admin_login(a, ADMIN_SO, so_pin, so_len, err);
	if (r != 0)
		return r;
	r = admin_init_pin(a, user_pin, user_len, err);
	call_logout(a->m, a->h);
	if (r == 0)
		r = session_reopen(a, err); /* fresh flags (CKF_USER_PIN_INITIALIZED) */
	return r;
}
