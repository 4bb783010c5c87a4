/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * session: a pool of read-only sessions per token, so parallel signatures do not queue on
 * one session. A caller takes an idle session, or opens a new one while fewer than the cap
 * are open, or waits. Sessions are kept open: closing the last one would log the token out.
 */
#include <errno.h>
#include <stdlib.h>
#include <syslog.h>

#include "internal.h"

/*
 * Codes: CA_E_TOKEN_ABSENT, CA_E_FAILED (from C_OpenSession). A token that refuses a session
 * (CKR_SESSION_COUNT: its limit, which its module did not announce, or sessions of other
 * programs) while we hold others gets no more from us: the pool's cap comes down to what we
 * have, and the caller waits for one of them.
 */
static int session_get(Token *t, bool wait, CK_SESSION_HANDLE *ret, CaError *err)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	pthread_mutex_lock(&t->pool_lock);
	for (;;) {
		if (t->n_idle > 0) {
			*ret = t->idle[--t->n_idle];
			pthread_mutex_unlock(&t->pool_lock);
			return 0;
		}
		if (t->n_open >= t->cap && !wait) {
			pthread_mutex_unlock(&t->pool_lock);
			return -EAGAIN;
		}
		if (t->n_open >= t->cap) {
			pthread_cond_wait(&t->pool_cond, &t->pool_lock);
			continue;
		}
		t->n_open++;
		pthread_mutex_unlock(&t->pool_lock);
		rv = call_open_session(t->module, t->slot, &h);
		if (rv == CKR_OK) {
			*ret = h;
			return 0;
		}
		pthread_mutex_lock(&t->pool_lock);
		t->n_open--;
		if (rv != CKR_SESSION_COUNT || t->n_open == 0)
			break;
		if (t->cap > t->n_open) {
			t->cap = t->n_open;
			call_log(LOG_INFO,
				 "token \"%s\" refused a session: signing with at most %u at once",
				 t->label, t->cap);
		}
	}
	pthread_cond_signal(&t->pool_cond);
	pthread_mutex_unlock(&t->pool_lock);
	return call_error(rv, t, "C_OpenSession", err);
}

int session_acquire(Token *t, CK_SESSION_HANDLE *ret, CaError *err)
{
	return session_get(t, true, ret, err);
}

int session_try_acquire(Token *t, CK_SESSION_HANDLE *ret, CaError *err)
{
	return session_get(t, false, ret, err);
}

void session_release(Token *t, CK_SESSION_HANDLE h)
{
	pthread_mutex_lock(&t->pool_lock);
	t->idle[t->n_idle++] = h; /* n_idle < n_open <= cap */
	pthread_cond_signal(&t->pool_cond);
	pthread_mutex_unlock(&t->pool_lock);
}

/* For a session in an unknown state (operation half done, handle invalid): close, forget. */
void session_discard(Token *t, CK_SESSION_HANDLE h)
{
	call_close_session(t->module, h);
	pthread_mutex_lock(&t->pool_lock);
	t->n_open--;
	pthread_cond_signal(&t->pool_cond);
	pthread_mutex_unlock(&t->pool_lock);
}

/* Closes the idle sessions (at teardown, and when a lost session shows the others are dead),
 * and the one holding copies of keys (sign.c). */
void session_pool_close(Token *t)
{
	key_copies_forget(&t->copies);
	pthread_mutex_lock(&t->pool_lock);
	while (t->n_idle > 0) {
		call_close_session(t->module, t->idle[--t->n_idle]);
		t->n_open--;
	}
	pthread_mutex_unlock(&t->pool_lock);
}
