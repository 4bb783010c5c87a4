/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * key-copy: session copies of keys to sign with (key-copy.h says when and why).
 */
#include "key-copy.h"
#include "helper-prime.h" /* PRIME_FRESH_USEC, PRIME_COPY_MAX_AGE_USEC */
#include "internal.h"
#include "util.h"

void key_copies_init(KeyCopies *c, Module *m, CK_SLOT_ID slot, pthread_rwlock_t *guard)
{
	*c = (KeyCopies){.m = m, .slot = slot, .guard = guard};
	pthread_mutex_init(&c->lock, NULL);
}

/* Searches kept out (key-copy.h): while a copy is made, or destroyed and unlisted. */
static void key_copies_guard(KeyCopies *c)
{
	if (c->guard)
		pthread_rwlock_rdlock(c->guard);
}

static void key_copies_unguard(KeyCopies *c)
{
	if (c->guard)
		pthread_rwlock_unlock(c->guard);
}

void key_copies_fini(KeyCopies *c)
{
	key_copies_forget(c);
	pthread_mutex_destroy(&c->lock);
}

static KeyCopy *key_copy_find_locked(KeyCopies *c, CK_OBJECT_HANDLE key)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->e[i].key == key)
			return &c->e[i];
	return NULL;
}

/* With the lock: key's entry, made when there is room (or one idle for a while to reuse). */
static KeyCopy *key_copy_add_locked(KeyCopies *c, CK_OBJECT_HANDLE key, uint64_t now)
{
	KeyCopy *e = key_copy_find_locked(c, key);

	if (e)
		return e;
	if (c->n < KEY_COPY_MAX)
		e = &c->e[c->n++];
	else
		for (size_t i = 0; i < c->n && !e; i++)
			if (!c->e[i].copy && !c->e[i].users && !c->making &&
			    now - c->e[i].seen_usec >= PRIME_COPY_MAX_AGE_USEC)
				e = &c->e[i];
	if (e)
		*e = (KeyCopy){.key = key};
	return e;
}

/*
 * With the lock: once forgotten copies have no signature left on them, their session, for
 * the caller to close with key_copies_close(); 0: nothing to close (now).
 */
static CK_SESSION_HANDLE key_copies_drain_locked(KeyCopies *c)
{
	if (!c->stale || c->users || c->making || c->closing)
		return 0;
	c->stale = false;
	if (!c->session) {
		c->n = 0;
		return 0;
	}
	c->closing = true;
	return c->session;
}

/* Closes s, which destroys the copies in it; they stay listed until then (key_copies_own). */
static void key_copies_close(KeyCopies *c, CK_SESSION_HANDLE s)
{
	if (!s)
		return;
	key_copies_guard(c);
	(void)call_close_session(c->m, s);
	pthread_mutex_lock(&c->lock);
	c->session = 0;
	c->closing = false;
	c->stale = false; /* a forget meanwhile: everything is gone now */
	c->n = 0;
	pthread_mutex_unlock(&c->lock);
	key_copies_unguard(c);
}

static CK_OBJECT_HANDLE key_copy_get(KeyCopies *c, CK_OBJECT_HANDLE key, bool fresh)
{
	uint64_t now = ca_now_usec();
	CK_OBJECT_HANDLE copy = 0;
	KeyCopy *e;

	pthread_mutex_lock(&c->lock);
	e = key_copy_find_locked(c, key);
	if (e && e->copy && !e->dead && (!fresh || now - e->seen_usec < PRIME_FRESH_USEC) &&
	    now - e->copy_usec < PRIME_COPY_MAX_AGE_USEC) {
		copy = e->copy;
		e->users++;
		c->users++;
	}
	pthread_mutex_unlock(&c->lock);
	return copy;
}

CK_OBJECT_HANDLE key_copy_take(KeyCopies *c, CK_OBJECT_HANDLE key)
{
	return key_copy_get(c, key, true);
}

CK_OBJECT_HANDLE key_copy_hold(KeyCopies *c, CK_OBJECT_HANDLE key)
{
	return key_copy_get(c, key, false);
}

void key_copy_put(KeyCopies *c, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE copy, bool began)
{
	CK_SESSION_HANDLE s;
	KeyCopy *e;

	pthread_mutex_lock(&c->lock);
	/* An entry with users is never cleared nor given another copy. */
	e = key_copy_find_locked(c, key);
	if (e && e->copy == copy && e->users) {
		e->users--;
		if (!began) {
			e->dead = true;
			e->refused_usec = ca_now_usec();
		}
	}
	if (c->users)
		c->users--;
	s = key_copies_drain_locked(c);
	pthread_mutex_unlock(&c->lock);
	key_copies_close(c, s);
}

bool key_copy_seen(KeyCopies *c, CK_OBJECT_HANDLE key)
{
	uint64_t now = ca_now_usec();
	bool want = false;
	KeyCopy *e;

	pthread_mutex_lock(&c->lock);
	e = c->no_copy || c->removable ? NULL : key_copy_add_locked(c, key, now);
	if (e) {
		e->seen_usec = now;
		/* The copy would not be made, or begin a signature, and the key signs right
		 * after: the module's way (not a failure both share: a logout, a lost device). */
		if ((e->refused_usec && now - e->refused_usec < PRIME_FRESH_USEC) ||
		    (e->failed_usec && now - e->failed_usec < PRIME_COPY_MAX_AGE_USEC))
			c->no_copy = true;
		want = !c->no_copy && !c->making && !c->stale && !c->closing && !e->users &&
		       (!e->copy || e->dead || now - e->copy_usec >= PRIME_COPY_MAX_AGE_USEC);
	}
	pthread_mutex_unlock(&c->lock);
	return want;
}

bool key_copy_make(KeyCopies *c, CK_OBJECT_HANDLE key)
{
	CK_SESSION_HANDLE s, opened = 0, drained;
	CK_OBJECT_HANDLE old, copy = 0;
	uint64_t gen, now = ca_now_usec();
	bool removable = false, made = false;
	KeyCopy *e;
	CK_RV rv = CKR_OK;

	key_copies_guard(c);
	pthread_mutex_lock(&c->lock);
	e = c->no_copy || c->removable || c->making || c->stale || c->closing
		    ? NULL
		    : key_copy_add_locked(c, key, now);
	if (!e || e->users ||
	    (e->copy && !e->dead && now - e->copy_usec < PRIME_COPY_MAX_AGE_USEC) ||
	    (e->failed_usec && now - e->failed_usec < PRIME_COPY_MAX_AGE_USEC)) {
		pthread_mutex_unlock(&c->lock);
		key_copies_unguard(c);
		return false;
	}
	c->making = true;
	old = e->copy;
	e->copy = 0; /* no signature takes it meanwhile */
	e->dead = false;
	s = c->session;
	gen = c->gen;
	pthread_mutex_unlock(&c->lock);

	if (!s) {
		CK_SLOT_INFO info;

		rv = call_get_slot_info(c->m, c->slot, &info);
		removable = rv == CKR_OK && (info.flags & CKF_REMOVABLE_DEVICE);
		if (rv == CKR_OK && !removable)
			rv = call_open_session(c->m, c->slot, &s);
		if (rv == CKR_OK && !removable)
			opened = s;
	} else if (old)
		(void)call_destroy_object(c->m, s, old);
	if (rv == CKR_OK && !removable)
		rv = call_copy_key(c->m, s, key, &copy);

	pthread_mutex_lock(&c->lock);
	e = gen == c->gen ? key_copy_find_locked(c, key) : NULL;
	if (!e && copy) {
		/* Forgotten meanwhile: the copy, never listed, goes now, while making still
		 * keeps its session open (the guard keeps searches out until it is gone). */
		pthread_mutex_unlock(&c->lock);
		(void)call_destroy_object(c->m, s, copy);
		copy = 0;
		pthread_mutex_lock(&c->lock);
	}
	c->making = false;
	c->removable = c->removable || removable;
	if (gen == c->gen) {
		if (opened) {
			c->session = opened;
			opened = 0;
		}
		if (rv == CKR_OK && !removable && e) {
			e->copy = copy;
			e->copy_usec = ca_now_usec();
			e->seen_usec = e->copy_usec; /* C_CopyObject found the key */
			e->refused_usec = 0;
			e->failed_usec = 0;
			made = true;
			copy = 0;
		} else if (rv != CKR_OK && s && e)
			/* Not again for a second; for good when the key signs now (the module's
			 * way, not a logout: key_copy_seen()). */
			e->failed_usec = ca_now_usec();
	}
	/* Else forgotten meanwhile: a session we opened (never listed) is closed below. */
	drained = key_copies_drain_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (opened)
		(void)call_close_session(c->m, opened);
	key_copies_unguard(c);
	key_copies_close(c, drained);
	return made;
}

void key_copies_forget(KeyCopies *c)
{
	CK_SESSION_HANDLE s;

	pthread_mutex_lock(&c->lock);
	c->gen++;
	for (size_t i = 0; i < c->n; i++)
		c->e[i].dead = true;
	c->stale = true;
	s = key_copies_drain_locked(c);
	pthread_mutex_unlock(&c->lock);
	key_copies_close(c, s);
}

/* With the lock: a copy too old to be used and free to destroy, else NULL; *next: when the
 * next one ages, UINT64_MAX for never. */
static KeyCopy *key_copy_aged_locked(KeyCopies *c, uint64_t now, uint64_t *next)
{
	KeyCopy *aged = NULL;

	*next = UINT64_MAX;
	for (size_t i = 0; i < c->n; i++) {
		KeyCopy *e = &c->e[i];

		if (!e->copy)
			continue;
		if (now - e->copy_usec < PRIME_COPY_MAX_AGE_USEC) {
			if (e->copy_usec + PRIME_COPY_MAX_AGE_USEC < *next)
				*next = e->copy_usec + PRIME_COPY_MAX_AGE_USEC;
		} else if (!aged && !e->users && !c->making && !c->stale && !c->closing)
			aged = e;
		else if (now + 100000 < *next)
			*next = now + 100000; /* in use (or being replaced): look again later */
	}
	return aged;
}

int key_copies_expire(KeyCopies *c)
{
	uint64_t now = ca_now_usec(), next;
	CK_SESSION_HANDLE s, drained = 0;
	CK_OBJECT_HANDLE old;
	KeyCopy *e;

	pthread_mutex_lock(&c->lock);
	while ((e = key_copy_aged_locked(c, now, &next))) {
		/* Listed until destroyed (key_copies_own), too old for key_copy_take(), and
		 * making keeps key_copy_make() and the session's closing away meanwhile. */
		c->making = true;
		old = e->copy;
		s = c->session;
		pthread_mutex_unlock(&c->lock);
		key_copies_guard(c);
		(void)call_destroy_object(c->m, s, old);
		pthread_mutex_lock(&c->lock);
		c->making = false;
		if (e->copy == old)
			e->copy = 0;
		key_copies_unguard(c);
	}
	drained = key_copies_drain_locked(c);
	pthread_mutex_unlock(&c->lock);
	key_copies_close(c, drained);
	return next == UINT64_MAX ? -1 : (int)((next - now) / 1000) + 1;
}

bool key_copies_own(KeyCopies *c, CK_OBJECT_HANDLE h)
{
	bool own = false;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n && !own; i++)
		own = c->e[i].copy == h;
	pthread_mutex_unlock(&c->lock);
	return own;
}
