/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * login: every decision about logging in to a token, in one place.
 *
 * Rules: a PIN that failed is never tried again: any C_Login failure with a remembered PIN
 * (not only CKR_PIN_INCORRECT: OpenSC reports some wrong PINs as CKR_GENERAL_ERROR) forgets
 * it, and a pin-source file is not read again until store_reload; a remembered or configured
 * PIN never goes to a token whose state is unknown (Token.suspect, after a device error or a
 * lost session) before hotplug_verify() has seen it is still the same token; we refuse to
 * try when the token says the PIN is locked, on its final try or must be changed;
 * CKR_USER_ALREADY_LOGGED_IN is success;
 * tokens with a protected authentication path (pinpad) log in with a NULL PIN; keys with
 * CKA_ALWAYS_AUTHENTICATE get a CKU_CONTEXT_SPECIFIC login right before C_Sign. PINs are
 * wiped after use and never logged.
 *
 * With StoreOptions.prompting the agent asks the user: where a PIN is neither remembered nor
 * in a pin source (and for pinpads, so the user is told to use the keypad) we answer
 * CA_E_PIN_REQUIRED and the agent comes back with store_unlock() or a PIN for one signature
 * (store_sign_pin()); a CKA_ALWAYS_AUTHENTICATE key then never reuses a remembered PIN.
 * A login idle for StoreOptions.login_idle_usec is dropped (login_expire()).
 *
 * Signatures do not ask the token whether it is still logged in (a C_GetSessionInfo, a round
 * trip to an isolated module's helper, per signature): Token.logged_in remembers our login
 * (login_cached()); a signature that meets CKR_USER_NOT_LOGGED_IN or a vanished key handle
 * forgets it (login_distrust()) and comes back through login_ensure(), which asks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"

#define PIN_MAX 256 /* longest PIN we read from a pin source or accept from Unlock */

void login_forget(Token *t)
{
	t->pin = erase_and_free(t->pin, t->pin_len);
	t->pin_len = 0;
}

/* A signature or a login just happened: the idle clock starts again. */
void login_touch(Token *t)
{
	pthread_mutex_lock(&t->login_lock);
	t->last_used = ca_now_usec();
	pthread_mutex_unlock(&t->login_lock);
}

/* Codes: CA_E_PIN_LOCKED when the token's flags forbid a try. */
static int login_policy(Token *t, const CK_TOKEN_INFO *ti, CaError *err)
{
	if (ti->flags & CKF_USER_PIN_LOCKED)
		return call_error(CKR_PIN_LOCKED, t, "C_Login", err);
	if (ti->flags & CKF_USER_PIN_FINAL_TRY)
		return ca_error_set(
			err, CA_E_PIN_LOCKED,
			"token \"%s\" allows only one more PIN try: one wrong PIN locks it, so "
			"certagent tries none (not even from `certagent unlock`); reset the PIN "
			"with the SO PIN: `certagent token unblock-pin '%s'`, or, if you are sure "
			"of the PIN, log in once with the token's own tools to reset the counter",
			t->label, t->short_uri);
	if (ti->flags & CKF_USER_PIN_TO_BE_CHANGED)
		return ca_error_set(err, CA_E_PIN_LOCKED,
				    "token \"%s\" requires its PIN to be changed first: change it "
				    "with the token's tools (e.g. `pkcs11-tool --change-pin`)",
				    t->label);
	return 0;
}

/*
 * The policy before any try (or prompt), on fresh token flags, given back in *ret_info when
 * not NULL. Codes: CA_E_PIN_LOCKED when the flags forbid a try; those of call_error().
 */
int login_check(Token *t, CK_TOKEN_INFO *ret_info, CaError *err)
{
	CK_TOKEN_INFO ti;
	CK_RV rv = call_get_token_info(t->module, t->slot, &ti);

	if (rv != CKR_OK)
		return call_error(rv, t, "C_GetTokenInfo", err);
	if (ret_info)
		*ret_info = ti;
	return login_policy(t, &ti, err);
}

static int login_check_flags(Token *t, CK_RV *ret_rv, CaError *err)
{
	CK_TOKEN_INFO ti;
	CK_RV rv = call_get_token_info(t->module, t->slot, &ti);

	if (rv != CKR_OK) {
		*ret_rv = rv;
		return call_error(rv, t, "C_GetTokenInfo", err);
	}
	return login_policy(t, &ti, err);
}

/*
 * One C_Login, no retry. pin may be NULL for a protected authentication path. *ret_sent
 * (optional) tells whether C_Login was called.
 */
static int login_do(Token *t, CK_SESSION_HANDLE h, CK_USER_TYPE user, const char *pin,
		    size_t pin_len, CK_RV *ret_rv, bool *ret_sent, CaError *err)
{
	CK_RV rv;
	int r;

	if (ret_sent)
		*ret_sent = false;
	r = login_check_flags(t, ret_rv, err);
	if (r != 0)
		return r;
	if (t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
		pin = NULL;
		pin_len = 0;
	}
	if (ret_sent)
		*ret_sent = true;
	rv = call_login(t->module, h, user, pin, pin_len);
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	*ret_rv = rv;
	if (rv != CKR_OK) {
		call_log(LOG_WARNING, "token \"%s\": login failed", t->label);
		return call_error(rv, t, "C_Login", err);
	}
	if (user == CKU_USER) {
		t->logged_in = true;
		t->rescan_needed = true;
		t->last_used = ca_now_usec();
		call_log(LOG_INFO, "token \"%s\": logged in", t->label);
	}
	return 0;
}

/*
 * With login_lock held: a login with the remembered (Unlock) PIN, only on a token known to be
 * the same one (hotplug_verify()); any failed C_Login forgets the PIN.
 */
static int login_remembered(Token *t, CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_RV *ret_rv,
			    CaError *err)
{
	bool sent = false;
	char buf[32];
	int r;

	r = hotplug_verify(t, h, err);
	if (r != 0)
		return r;
	r = login_do(t, h, user, t->pin, t->pin_len, ret_rv, &sent, err);
	if (r == 0 || !sent)
		return r;
	login_forget(t);
	if (r == CA_E_PIN_INCORRECT || r == CA_E_PIN_LOCKED || r == CA_E_TOKEN_ABSENT)
		return r;
	return ca_error_set(err, r,
			    "token \"%s\" refused the login (%s); certagent forgot the PIN rather "
			    "than try it again: run `certagent unlock '%s'`",
			    t->label, call_rv_name(*ret_rv, buf), t->short_uri);
}

/* With login_lock held, before C_SignInit: a suspect token verified on session h (which has
 * no operation active yet), so a context-specific login may send the remembered PIN.
 * Codes: those of hotplug_verify(). */
int login_verify(Token *t, CK_SESSION_HANDLE h, CaError *err)
{
	int r;

	pthread_mutex_lock(&t->login_lock);
	r = t->pin ? hotplug_verify(t, h, err) : 0;
	pthread_mutex_unlock(&t->login_lock);
	return r;
}

static int login_prompt_needed(Token *t, bool per_signature, CaError *err)
{
	if (t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH)
		return ca_error_set(err, CA_E_PIN_REQUIRED,
				    "token \"%s\" needs a login on the reader's keypad%s", t->label,
				    per_signature ? " for this signature" : "");
	return ca_error_set(err, CA_E_PIN_REQUIRED,
			    per_signature
				    ? "the key on token \"%s\" needs the PIN for every "
				      "signature"
				    : "token \"%s\" needs its PIN: run `certagent unlock '%s'`",
			    t->label, t->short_uri);
}

/* Reads the first line of path into a new NUL-terminated buffer. -errno on failure. */
static int login_read_pin_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	char *buf;
	size_t n = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	buf = calloc(1, PIN_MAX + 2);
	if (!buf)
		return -ENOMEM;
	while (n < PIN_MAX + 1) {
		ssize_t k = read(fd, buf + n, PIN_MAX + 1 - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = -errno;

			erase_and_free(buf, PIN_MAX + 2);
			return e;
		}
		if (k == 0)
			break;
		n += k;
	}
	buf[strcspn(buf, "\r\n")] = 0;
	if (strlen(buf) > PIN_MAX) {
		erase_and_free(buf, PIN_MAX + 2);
		return -E2BIG;
	}
	/* Wipe whatever followed the first line. */
	explicit_bzero(buf + strlen(buf), PIN_MAX + 2 - strlen(buf));
	*ret_len = strlen(buf);
	*ret = buf;
	return 0;
}

static const StorePinSource *login_find_pin_source(Store *s, Token *t)
{
	for (size_t i = 0; i < s->n_pin_sources; i++) {
		const StorePinSource *ps = &s->pin_sources[i];
		P11KitUri *u;
		bool match;

		if (!ps->token_uri || !ps->path)
			continue;
		u = p11_kit_uri_new();
		if (!u)
			return NULL;
		match = p11_kit_uri_parse(ps->token_uri, P11_KIT_URI_FOR_TOKEN, u) ==
				P11_KIT_URI_OK &&
			p11_kit_uri_match_token_info(u, &t->info) == 1;
		p11_kit_uri_free(u);
		if (match)
			return ps;
	}
	return NULL;
}

/*
 * With login_lock held: log in as user with the PIN for this signature (op_pin), the Unlock
 * PIN, else a pin source; else ask the prompting layer.
 */
static int login_user_locked(Store *s, Token *t, CK_SESSION_HANDLE h, const char *op_pin,
			     size_t op_pin_len, CK_RV *ret_rv, CaError *err)
{
	const StorePinSource *ps;
	char *pin = NULL;
	size_t pin_len = 0;
	bool sent = false;
	int r;

	if (t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
		if (s && s->prompting && !op_pin && !t->pin)
			return login_prompt_needed(t, false, err);
		return login_do(t, h, CKU_USER, NULL, 0, ret_rv, NULL, err);
	}
	if (op_pin)
		return login_do(t, h, CKU_USER, op_pin, op_pin_len, ret_rv, NULL, err);
	if (t->pin)
		return login_remembered(t, h, CKU_USER, ret_rv, err);
	ps = s ? login_find_pin_source(s, t) : NULL;
	if (!ps && s && s->prompting)
		return login_prompt_needed(t, false, err);
	if (!ps)
		return call_error(CKR_USER_NOT_LOGGED_IN, t, "C_Login", err);
	if (t->pin_source_failed)
		return ca_error_set(err, CA_E_PIN_INCORRECT,
				    "the PIN in %s was wrong for token \"%s\" and is not tried "
				    "again: fix the file and run `certagent reload`, or run "
				    "`certagent unlock '%s'`",
				    ps->path, t->label, t->short_uri);
	r = hotplug_verify(t, h, err);
	if (r != 0)
		return r;
	r = login_read_pin_file(ps->path, &pin, &pin_len);
	if (r < 0)
		return ca_error_set(err, CA_E_PIN_REQUIRED,
				    "token \"%s\" needs a PIN and its pin source %s cannot be read "
				    "(%s): fix it or run `certagent unlock '%s'`",
				    t->label, ps->path, strerror(-r), t->short_uri);
	r = login_do(t, h, CKU_USER, pin, pin_len, ret_rv, &sent, err);
	erase_and_free(pin, PIN_MAX + 2);
	if (r == CA_E_PIN_INCORRECT) {
		t->pin_source_failed = true;
		ca_error_set(err, CA_E_PIN_INCORRECT,
			     "the PIN in %s is wrong for token \"%s\" (the token counted one "
			     "failed try; certagent will not retry it): fix the file and run "
			     "`certagent reload`",
			     ps->path, t->label);
	} else if (r != 0 && sent && r != CA_E_PIN_LOCKED && r != CA_E_TOKEN_ABSENT) {
		char buf[32];

		t->pin_source_failed = true; /* it may have been wrong: never again */
		ca_error_set(err, r,
			     "token \"%s\" refused the login with the PIN in %s (%s); certagent "
			     "will not try it again: check the file and run `certagent reload`, or "
			     "run `certagent unlock '%s'`",
			     t->label, ps->path, call_rv_name(*ret_rv, buf), t->short_uri);
	}
	return r;
}

/*
 * Makes sure the user is logged in when the token needs it, with the Unlock PIN or a pin
 * source. *ret_rv gets the failing CK_RV (for the caller's reopen-once on lost sessions).
 * Codes: CA_E_PIN_REQUIRED, CA_E_PIN_INCORRECT, CA_E_PIN_LOCKED, CA_E_TOKEN_ABSENT, CA_E_FAILED.
 */
int login_ensure(Store *s, Token *t, CK_SESSION_HANDLE h, const char *pin, size_t pin_len,
		 CK_RV *ret_rv, CaError *err)
{
	CK_RV rv = CKR_OK;
	int r;

	*ret_rv = CKR_OK;
	if (!(t->info.flags & CKF_LOGIN_REQUIRED))
		return 0;
	if (s)
		login_expire(s, t);
	if (token_session_logged_in(t, h, &rv)) {
		pthread_mutex_lock(&t->login_lock);
		t->logged_in = true;
		pthread_mutex_unlock(&t->login_lock);
		return 0;
	}
	if (rv != CKR_OK) {
		*ret_rv = rv;
		return call_error(rv, t, "C_GetSessionInfo", err);
	}
	pthread_mutex_lock(&t->login_lock);
	if (token_session_logged_in(t, h, &rv)) {
		t->logged_in = true;
		r = 0; /* another signer logged in meanwhile */
	} else if (rv != CKR_OK) {
		*ret_rv = rv;
		r = call_error(rv, t, "C_GetSessionInfo", err);
	} else
		r = login_user_locked(s, t, h, pin, pin_len, ret_rv, err);
	pthread_mutex_unlock(&t->login_lock);
	return r;
}

/*
 * Whether a signature may go without login_ensure(), so without a C_GetSessionInfo: the token
 * needs no login, or we logged in and nothing said otherwise since (a suspect token is asked
 * again). Drops an idle login first (login_expire()).
 */
bool login_cached(Store *s, Token *t)
{
	bool cached;

	if (!(t->info.flags & CKF_LOGIN_REQUIRED))
		return true;
	if (s)
		login_expire(s, t);
	pthread_mutex_lock(&t->login_lock);
	if (t->suspect)
		t->logged_in = false;
	cached = t->logged_in;
	pthread_mutex_unlock(&t->login_lock);
	return cached;
}

/* The token said we are not logged in (or acted so): login_cached() says no until we know. */
void login_distrust(Token *t)
{
	pthread_mutex_lock(&t->login_lock);
	t->logged_in = false;
	pthread_mutex_unlock(&t->login_lock);
}

/*
 * The context-specific login for a CKA_ALWAYS_AUTHENTICATE key, after C_SignInit, with the
 * PIN given for this signature (pin), else (without prompting) the Unlock PIN.
 * Codes: CA_E_PIN_REQUIRED (no PIN for it), CA_E_PIN_INCORRECT, CA_E_PIN_LOCKED, CA_E_FAILED.
 */
int login_context_specific(Store *s, Token *t, CK_SESSION_HANDLE h, const char *pin, size_t pin_len,
			   CK_RV *ret_rv, CaError *err)
{
	bool prompting = s && s->prompting;
	int r;

	*ret_rv = CKR_OK;
	pthread_mutex_lock(&t->login_lock);
	if ((t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) && prompting && !pin)
		r = login_prompt_needed(t, true, err);
	else if (t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH)
		r = login_do(t, h, CKU_CONTEXT_SPECIFIC, NULL, 0, ret_rv, NULL, err);
	else if (pin)
		r = login_do(t, h, CKU_CONTEXT_SPECIFIC, pin, pin_len, ret_rv, NULL, err);
	else if (prompting)
		r = login_prompt_needed(t, true, err);
	else if (!t->pin)
		r = ca_error_set(err, CA_E_PIN_REQUIRED,
				 "the key on token \"%s\" needs the PIN for every signature: run "
				 "`certagent unlock '%s'` so the agent can give it",
				 t->label, t->short_uri);
	else if (t->suspect)
		/* Not verified before C_SignInit (login_verify()): nothing is sent. */
		r = ca_error_set(err, CA_E_FAILED,
				 "token \"%s\" failed before and was not checked again: certagent "
				 "does not send its PIN to it now; try again",
				 t->label);
	else
		r = login_remembered(t, h, CKU_CONTEXT_SPECIFIC, ret_rv, err);
	pthread_mutex_unlock(&t->login_lock);
	return r;
}

/*
 * store_unlock's login: verifies pin with one C_Login (logging out first if already logged
 * in, so a wrong PIN is never remembered) and remembers it on success.
 * Codes: CA_E_INVALID_ARGS (PIN too long), CA_E_PIN_INCORRECT, CA_E_PIN_LOCKED, CA_E_FAILED.
 */
int login_with_pin(Token *t, CK_SESSION_HANDLE h, const char *pin, size_t pin_len, CaError *err)
{
	CK_RV rv = CKR_OK;
	char *copy;
	int r;

	if (pin_len > PIN_MAX)
		return ca_error_set(err, CA_E_INVALID_ARGS, "the PIN is longer than %d bytes",
				    PIN_MAX);
	copy = malloc(pin_len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, pin, pin_len);
	copy[pin_len] = 0;

	pthread_mutex_lock(&t->login_lock);
	t->logged_in = false;
	if (token_session_logged_in(t, h, NULL))
		call_logout(t->module, h);
	r = login_do(t, h, CKU_USER, copy, pin_len, &rv, NULL, err);
	if (r == 0) {
		login_forget(t);
		t->pin = copy;
		t->pin_len = pin_len;
		copy = NULL;
	} else if (r == CA_E_PIN_INCORRECT)
		login_forget(t);
	pthread_mutex_unlock(&t->login_lock);
	erase_and_free(copy, pin_len + 1);
	return r;
}

/* C_Logout and forget the PIN. Returns 0 or a code from call_error(). */
int login_logout(Token *t)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int r;

	pthread_mutex_lock(&t->login_lock);
	login_forget(t);
	t->last_used = 0;
	t->logged_in = false;
	pthread_mutex_unlock(&t->login_lock);
	key_copies_forget(&t->copies);
	r = session_acquire(t, &h, NULL);
	if (r != 0)
		return r;
	rv = call_logout(t->module, h);
	session_release(t, h);
	if (rv == CKR_USER_NOT_LOGGED_IN)
		rv = CKR_OK;
	if (rv == CKR_OK) {
		pthread_mutex_lock(&t->login_lock);
		t->rescan_needed = true;
		pthread_mutex_unlock(&t->login_lock);
	}
	return call_error(rv, t, "C_Logout", NULL);
}

/*
 * Logs out of t when s->login_idle_usec passed since its last login or signature (a login
 * not made by us, e.g. by a pinpad elsewhere, has no clock and is left alone). Returns
 * whether it logged out.
 */
bool login_expire(Store *s, Token *t)
{
	bool idle;

	if (!s->login_idle_usec)
		return false;
	pthread_mutex_lock(&t->login_lock);
	idle = t->last_used && ca_now_usec() - t->last_used >= s->login_idle_usec;
	pthread_mutex_unlock(&t->login_lock);
	if (!idle)
		return false;
	call_log(LOG_INFO, "token \"%s\": no signature for %llu s: logging out", t->label,
		 (unsigned long long)(s->login_idle_usec / 1000000u));
	login_logout(t);
	return true;
}
