/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * helper-prime: signatures started ahead of time in a module helper (helper-prime.h says
 * when and why).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "helper-prime.h"
#include "key-copy.h"
#include "util.h"

typedef struct Prime {
	bool used;		   /* holds a key and mechanism (what) */
	bool busy;		   /* a thread works on it outside the lock: leave it alone */
	bool beginning;		   /* busy beginning the operation or checking its key */
	bool primed;		   /* an operation is active on session */
	bool removable;		   /* its slot is a reader (CKF_REMOVABLE_DEVICE): never begun */
	PrimeJob what;		   /* slot, key, mechanism */
	CK_SESSION_HANDLE session; /* ours, never the agent's; 0: none open */
	uint64_t signed_usec;	   /* its latest signature (either way) */
	uint64_t primed_usec;	   /* when the active operation began */
	uint64_t checked_usec;	   /* when its key was last seen to exist (C_SignInit, or asked) */
	uint64_t epoch;		   /* prime.epoch when it began */
	KeyCopies *copies;	   /* its slot's copies of keys (key-copy.h); NULL: none */
	CK_OBJECT_HANDLE copy;	   /* the copy the active operation began on (held); 0: the key */
} Prime;

typedef struct SessionSlot {
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
} SessionSlot;

static struct {
	Module *m;
	bool enabled;
	pthread_mutex_t lock;
	pthread_cond_t done; /* an entry stopped beginning */
	/* The copies' guard (key-copy.h): held shared while a copy is made, or destroyed and
	 * unlisted, exclusively around a search, so no search ever sees a copy it cannot tell
	 * from the key (prime_search_end()). */
	pthread_rwlock_t copying;
	uint64_t epoch; /* prime_forget() calls */
	/* Atomic: before this, prime_expire() has nothing to do (an operation begun or a copy
	 * made since lowers it). */
	uint64_t expire_usec;
	uint64_t begun, used; /* for prime_report() */
	Prime e[PRIME_MAX];
	SessionSlot *sessions; /* the agent's open sessions */
	size_t n_sessions, cap_sessions;
	/* Copies of keys (key-copy.h), per slot, for the entries' operations and the signatures
	 * not begun ahead; added under lock, never freed until exit. */
	KeyCopies *copies[PRIME_SLOTS];
	size_t n_copies;
} prime = {.lock = PTHREAD_MUTEX_INITIALIZER,
	   .done = PTHREAD_COND_INITIALIZER,
	   .copying = PTHREAD_RWLOCK_INITIALIZER};

void prime_init(Module *m, bool enabled)
{
	prime.m = m;
	prime.enabled = enabled;
}

void prime_session_opened(CK_SESSION_HANDLE h, CK_SLOT_ID slot)
{
	if (!prime.enabled)
		return;
	pthread_mutex_lock(&prime.lock);
	if (prime.n_sessions == prime.cap_sessions) {
		size_t cap = prime.cap_sessions ? 2 * prime.cap_sessions : 16;
		SessionSlot *v = realloc(prime.sessions, cap * sizeof(*v));

		if (v) {
			prime.sessions = v;
			prime.cap_sessions = cap;
		}
	}
	/* Out of memory: that session is never signed ahead for. */
	if (prime.n_sessions < prime.cap_sessions)
		prime.sessions[prime.n_sessions++] = (SessionSlot){h, slot};
	pthread_mutex_unlock(&prime.lock);
}

void prime_session_closed(CK_SESSION_HANDLE h)
{
	if (!prime.enabled)
		return;
	pthread_mutex_lock(&prime.lock);
	for (size_t i = 0; i < prime.n_sessions; i++)
		if (prime.sessions[i].h == h) {
			prime.sessions[i] = prime.sessions[--prime.n_sessions];
			break;
		}
	pthread_mutex_unlock(&prime.lock);
}

/* With the lock: the slot of the agent's session h. */
static bool prime_slot_locked(CK_SESSION_HANDLE h, CK_SLOT_ID *ret)
{
	for (size_t i = 0; i < prime.n_sessions; i++)
		if (prime.sessions[i].h == h) {
			*ret = prime.sessions[i].slot;
			return true;
		}
	return false;
}

/* With the lock: what a signature on the agent's session h with mech and key is. */
static bool prime_job_locked(CK_SESSION_HANDLE h, const CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
			     PrimeJob *job)
{
	CK_SLOT_ID slot;

	if (!prime_slot_locked(h, &slot))
		return false;
	*job = (PrimeJob){.slot = slot, .key = key, .type = mech->mechanism};
	if (mech->mechanism == CKM_RSA_PKCS_PSS && mech->pParameter &&
	    mech->ulParameterLen == sizeof(CK_RSA_PKCS_PSS_PARAMS)) {
		job->pss = *(const CK_RSA_PKCS_PSS_PARAMS *)mech->pParameter;
		job->has_pss = true;
	} else if (mech->pParameter || mech->ulParameterLen)
		return false; /* parameters we do not know how to keep */
	return true;
}

static bool prime_job_equal(const PrimeJob *a, const PrimeJob *b)
{
	return a->slot == b->slot && a->key == b->key && a->type == b->type &&
	       a->has_pss == b->has_pss &&
	       (!a->has_pss || (a->pss.hashAlg == b->pss.hashAlg && a->pss.mgf == b->pss.mgf &&
				a->pss.sLen == b->pss.sLen));
}

static Prime *prime_find_locked(const PrimeJob *job)
{
	for (size_t i = 0; i < PRIME_MAX; i++)
		if (prime.e[i].used && prime_job_equal(&prime.e[i].what, job))
			return &prime.e[i];
	return NULL;
}

/* An entry's session to close, and the copy its operation held. */
typedef struct PrimeClose {
	CK_SESSION_HANDLE session;
	KeyCopies *copies;
	CK_OBJECT_HANDLE key, copy;
} PrimeClose;

/* With the lock: takes e's session (and the copy its operation holds) out, into *c. */
static void prime_take_locked(Prime *e, PrimeClose *c)
{
	*c = (PrimeClose){e->session, e->copies, e->what.key, e->copy};
	e->session = 0;
	e->copy = 0;
	e->primed = false;
}

/* Closes our sessions, which ends their operations, then lets go of their copies; outside
 * the lock (module calls). */
static void prime_close(const PrimeClose *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].session)
			(void)call_close_session(prime.m, v[i].session);
		if (v[i].copy)
			key_copy_put(v[i].copies, v[i].key, v[i].copy, true);
	}
}

/* Something ages out at usec: prime_expire() must look then. */
static void prime_expire_at(uint64_t usec)
{
	uint64_t cur = __atomic_load_n(&prime.expire_usec, __ATOMIC_RELAXED);

	while (usec < cur && !__atomic_compare_exchange_n(&prime.expire_usec, &cur, usec, true,
							  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* With the lock: slot's copies, made when there is room. */
static KeyCopies *prime_copies_locked(CK_SLOT_ID slot)
{
	KeyCopies *c = NULL;

	for (size_t i = 0; i < prime.n_copies; i++)
		if (prime.copies[i]->slot == slot)
			return prime.copies[i];
	if (prime.n_copies < PRIME_SLOTS) {
		c = malloc(sizeof(*c));
		if (c) {
			key_copies_init(c, prime.m, slot, &prime.copying);
			prime.copies[prime.n_copies++] = c;
		}
	}
	return c;
}

void prime_forget(void)
{
	PrimeClose close[PRIME_MAX];
	size_t n = 0, n_copies;

	if (!prime.enabled)
		return;
	pthread_mutex_lock(&prime.lock);
	prime.epoch++;
	/* A busy entry's thread sees the new epoch when it is done and closes its session. */
	for (size_t i = 0; i < PRIME_MAX; i++) {
		Prime *e = &prime.e[i];

		if (e->used && !e->busy && e->session)
			prime_take_locked(e, &close[n++]);
	}
	n_copies = prime.n_copies;
	pthread_mutex_unlock(&prime.lock);
	/* The copies go once no signature is under way on them (at once, mostly). */
	for (size_t i = 0; i < n_copies; i++)
		key_copies_forget(prime.copies[i]);
	prime_close(close, n);
}

/*
 * For SIGN_ONCE on the agent's session h: signs data with an operation started ahead for
 * (h's slot, key, mech) into sig (*sig_len: its size in, the signature's length out); one
 * being begun (after a PREPARE_SIGN) is waited for, at most PRIME_WAIT_MS. True when it did
 * (CKR_OK); false: nothing was signed, sign the normal way (*ret_copies: h's slot's copies
 * of keys, or NULL; so that the normal way need not look them up again).
 */
static bool prime_sign(CK_SESSION_HANDLE h, const CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		       const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		       KeyCopies **ret_copies)
{
	PrimeClose op;
	CK_ULONG class = 0;
	CK_SLOT_ID slot;
	PrimeJob job;
	bool fresh;
	Prime *e;
	CK_RV rv;

	*ret_copies = NULL;
	if (!prime.enabled || !sig)
		return false; /* a length query keeps its operation active: the normal way */
	pthread_mutex_lock(&prime.lock);
	if (prime_slot_locked(h, &slot))
		*ret_copies = prime_copies_locked(slot);
	e = prime_job_locked(h, mech, key, &job) ? prime_find_locked(&job) : NULL;
	if (e && e->busy && e->beginning) {
		/* Being begun for this very request (a PREPARE_SIGN a moment ago): it is done
		 * sooner than a C_SignInit of our own would be. */
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += PRIME_WAIT_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		while (e->busy && e->beginning &&
		       pthread_cond_timedwait(&prime.done, &prime.lock, &until) == 0)
			;
	}
	if (!e || e->busy || !e->primed || e->epoch != prime.epoch ||
	    ca_now_usec() - e->primed_usec > PRIME_MAX_AGE_USEC) {
		pthread_mutex_unlock(&prime.lock);
		return false;
	}
	e->busy = true;
	/* C_Sign ends the operation, whatever it answers: the session stays, the copy goes. */
	prime_take_locked(e, &op);
	e->session = op.session;
	fresh = ca_now_usec() - e->checked_usec < PRIME_FRESH_USEC;
	pthread_mutex_unlock(&prime.lock);

	/* The key may have been deleted since (by another program: SoftHSM keeps what C_SignInit
	 * read, and a copy outlives its key); C_SignInit on the key would have found out, so ask
	 * as it would, unless that or an earlier question was only a moment ago. */
	rv = CKR_OK;
	if (!fresh) {
		rv = call_get_ulong(prime.m, op.session, key, CKA_CLASS, &class);
		if (rv == CKR_OK && class != CKO_PRIVATE_KEY)
			rv = CKR_KEY_HANDLE_INVALID;
		if (rv == CKR_OK && op.copies)
			(void)key_copy_seen(op.copies, key);
	}
	if (rv == CKR_OK)
		rv = call_sign(prime.m, op.session, data, len, sig, sig_len);

	pthread_mutex_lock(&prime.lock);
	e->busy = false;
	if (rv == CKR_OK) {
		prime.used++;
		if (!fresh)
			e->checked_usec = ca_now_usec();
		op.session = 0; /* kept for the next one */
	} else
		e->session = 0; /* closed below: this ends the operation whatever happened */
	pthread_mutex_unlock(&prime.lock);
	prime_close(&op, 1);
	return rv == CKR_OK;
}

CK_RV prime_sign_once(CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		      const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		      bool *ret_signing, bool *ret_ahead, KeyCopies **ret_copies)
{
	CK_ULONG cap = *sig_len;
	CK_OBJECT_HANDLE copy;
	KeyCopies *copies;
	CK_RV rv;

	*ret_copies = NULL;
	/* No copies for a length query (none are looked up): it leaves the operation active for
	 * a C_Sign later. */
	*ret_ahead = prime_sign(h, mech, key, data, len, sig, sig_len, &copies);
	if (*ret_ahead) {
		*ret_signing = true;
		return CKR_OK;
	}
	copy = copies ? key_copy_take(copies, key) : 0;
	rv = call_sign_once(prime.m, h, mech, copy ? copy : key, data, len, sig, sig_len,
			    ret_signing);
	if (copy) {
		key_copy_put(copies, key, copy, *ret_signing);
		if (*ret_signing)
			return rv;
		*sig_len = cap; /* the copy refused: the key itself */
		rv = call_sign_once(prime.m, h, mech, key, data, len, sig, sig_len, ret_signing);
	}
	if (rv == CKR_OK && copies && key_copy_seen(copies, key))
		*ret_copies = copies;
	return rv;
}

bool prime_note(CK_SESSION_HANDLE h, const CK_MECHANISM *mech, CK_OBJECT_HANDLE key, bool ahead,
		PrimeJob *job)
{
	PrimeClose evicted = {0};
	uint64_t now = ca_now_usec();
	bool want = false;
	Prime *e;

	if (!prime.enabled)
		return false;
	pthread_mutex_lock(&prime.lock);
	if (!prime_job_locked(h, mech, key, job)) {
		pthread_mutex_unlock(&prime.lock);
		return false;
	}
	e = prime_find_locked(job);
	if (e) {
		want = !e->busy && !e->primed && !e->removable &&
		       (ahead || now - e->signed_usec < PRIME_MAX_AGE_USEC);
		e->signed_usec = now;
	} else {
		/* A free entry, else the one that signed least recently and is not in use. */
		for (size_t i = 0; i < PRIME_MAX; i++) {
			Prime *c = &prime.e[i];

			if (c->busy)
				continue;
			if (!c->used) {
				e = c;
				break;
			}
			if (!e || c->signed_usec < e->signed_usec)
				e = c;
		}
		if (e) {
			if (e->used)
				prime_take_locked(e, &evicted);
			*e = (Prime){.used = true,
				     .what = *job,
				     .signed_usec = now,
				     .copies = prime_copies_locked(job->slot)};
		}
	}
	pthread_mutex_unlock(&prime.lock);
	prime_close(&evicted, 1);
	return want;
}

bool prime_prepare(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, PrimeJob *job)
{
	Prime *latest = NULL;
	CK_SLOT_ID slot;
	bool want;

	if (!prime.enabled)
		return false;
	pthread_mutex_lock(&prime.lock);
	if (!prime_slot_locked(h, &slot)) {
		pthread_mutex_unlock(&prime.lock);
		return false;
	}
	for (size_t i = 0; i < PRIME_MAX; i++) {
		Prime *e = &prime.e[i];

		if (e->used && e->what.slot == slot && e->what.key == key &&
		    (!latest || e->signed_usec > latest->signed_usec))
			latest = e;
	}
	want = latest && !latest->busy && !latest->primed && !latest->removable;
	if (want)
		*job = latest->what;
	else if (latest && latest->primed && !latest->busy && latest->epoch == prime.epoch &&
		 ca_now_usec() - latest->checked_usec >= PRIME_FRESH_USEC) {
		/* Begun a while ago: ask now whether its key is still there, so that the
		 * signature need not. A key gone is left to that signature (prime_sign asks
		 * again, fails, and the request goes the normal way). */
		Prime *e = latest;
		CK_SESSION_HANDLE s = e->session;
		CK_ULONG class = 0;
		CK_RV rv;

		e->busy = true;
		e->beginning = true;
		pthread_mutex_unlock(&prime.lock);
		rv = call_get_ulong(prime.m, s, key, CKA_CLASS, &class);
		pthread_mutex_lock(&prime.lock);
		e->busy = false;
		e->beginning = false;
		pthread_cond_broadcast(&prime.done);
		if (rv == CKR_OK && class == CKO_PRIVATE_KEY)
			e->checked_usec = ca_now_usec();
	}
	pthread_mutex_unlock(&prime.lock);
	return want;
}

void prime_start(const PrimeJob *job)
{
	CK_RSA_PKCS_PSS_PARAMS pss = job->pss;
	CK_MECHANISM mech = {job->type, job->has_pss ? &pss : NULL, job->has_pss ? sizeof(pss) : 0};
	PrimeClose close = {0};
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE copy = 0;
	KeyCopies *copies;
	uint64_t epoch;
	bool removable = false, made = false;
	Prime *e;
	CK_RV rv = CKR_OK;

	if (!prime.enabled)
		return;
	pthread_mutex_lock(&prime.lock);
	e = prime_find_locked(job);
	if (!e || e->busy || e->primed) {
		pthread_mutex_unlock(&prime.lock);
		return;
	}
	e->busy = true;
	e->beginning = true;
	s = e->session;
	copies = e->copies;
	epoch = prime.epoch;
	pthread_mutex_unlock(&prime.lock);

	if (!s) {
		/* Not on a card in a reader: there C_SignInit is small next to the card's own
		 * signature, and a card may be pulled under an operation begun for nobody. */
		CK_SLOT_INFO info;

		rv = call_get_slot_info(prime.m, job->slot, &info);
		removable = rv == CKR_OK && (info.flags & CKF_REMOVABLE_DEVICE);
		if (rv == CKR_OK && !removable)
			rv = call_open_session(prime.m, job->slot, &s);
	}
	if (rv == CKR_OK && !removable && copies) {
		/* On the key's copy (made now when there is none to use: that finds the key). */
		copy = key_copy_hold(copies, job->key);
		if (!copy) {
			made = prime_copy_make(copies, job->key);
			copy = key_copy_hold(copies, job->key);
		}
	}
	if (rv == CKR_OK && !removable) {
		rv = call_sign_init(prime.m, s, &mech, copy ? copy : job->key);
		if (rv != CKR_OK && copy) {
			/* Will the module sign with the key but not with the copy? (key-copy.h) */
			key_copy_put(copies, job->key, copy, false);
			copy = 0;
			rv = call_sign_init(prime.m, s, &mech, job->key);
		}
		if (rv == CKR_OK && !copy && copies)
			(void)key_copy_seen(copies, job->key);
	}

	pthread_mutex_lock(&prime.lock);
	e->busy = false;
	e->beginning = false;
	pthread_cond_broadcast(&prime.done);
	e->removable = removable;
	if (rv == CKR_OK && !removable && epoch == prime.epoch) {
		e->session = s;
		e->copy = copy;
		e->primed = true;
		e->primed_usec = ca_now_usec();
		prime_expire_at(e->primed_usec + PRIME_MAX_AGE_USEC);
		/* C_SignInit on the key looked at it, and so did making the copy. */
		if (!copy || made)
			e->checked_usec = e->primed_usec;
		e->epoch = epoch;
		prime.begun++;
	} else {
		/* Failed (the key is gone, not logged in...), or the login state changed while
		 * it began: not to be used; closing the session ends any operation. */
		e->session = s;
		e->copy = copy;
		prime_take_locked(e, &close);
	}
	pthread_mutex_unlock(&prime.lock);
	prime_close(&close, 1);
}

KeyCopies *prime_copies(CK_SESSION_HANDLE h)
{
	KeyCopies *c = NULL;
	CK_SLOT_ID slot;

	if (!prime.enabled)
		return NULL;
	pthread_mutex_lock(&prime.lock);
	if (prime_slot_locked(h, &slot))
		c = prime_copies_locked(slot);
	pthread_mutex_unlock(&prime.lock);
	return c;
}

bool prime_copy_make(KeyCopies *c, CK_OBJECT_HANDLE key)
{
	bool made;

	made = key_copy_make(c, key);
	if (made)
		prime_expire_at(ca_now_usec() + PRIME_COPY_MAX_AGE_USEC);
	return made;
}

void prime_search_begin(void)
{
	pthread_rwlock_wrlock(&prime.copying);
}

size_t prime_search_end(CK_OBJECT_HANDLE *objs, size_t n)
{
	size_t kept = 0;

	pthread_mutex_lock(&prime.lock);
	for (size_t i = 0; i < n; i++) {
		bool ours = false;

		for (size_t j = 0; j < prime.n_copies && !ours; j++)
			ours = key_copies_own(prime.copies[j], objs[i]);
		if (!ours)
			objs[kept++] = objs[i];
	}
	pthread_mutex_unlock(&prime.lock);
	pthread_rwlock_unlock(&prime.copying);
	return kept;
}

int prime_expire(void)
{
	PrimeClose close[PRIME_MAX];
	uint64_t now = ca_now_usec(), next = UINT64_MAX;
	size_t n = 0, n_copies;

	if (!prime.enabled)
		return -1;
	/* Nothing ages out before expire_usec: no lock taken (a lane goes idle often). */
	next = __atomic_load_n(&prime.expire_usec, __ATOMIC_RELAXED);
	if (now < next)
		return next == UINT64_MAX ? -1 : (int)((next - now) / 1000) + 1;
	/* Looked at below, or begun after this (which lowers it again). */
	__atomic_store_n(&prime.expire_usec, UINT64_MAX, __ATOMIC_RELAXED);
	next = UINT64_MAX;
	pthread_mutex_lock(&prime.lock);
	for (size_t i = 0; i < PRIME_MAX; i++) {
		Prime *e = &prime.e[i];

		if (!e->used || e->busy || !e->primed)
			continue;
		if (now - e->primed_usec >= PRIME_MAX_AGE_USEC)
			prime_take_locked(e, &close[n++]);
		else if (e->primed_usec + PRIME_MAX_AGE_USEC < next)
			next = e->primed_usec + PRIME_MAX_AGE_USEC;
	}
	n_copies = prime.n_copies;
	pthread_mutex_unlock(&prime.lock);
	prime_close(close, n);
	for (size_t i = 0; i < n_copies; i++) {
		int k = key_copies_expire(prime.copies[i]);

		if (k >= 0 && now + (uint64_t)k * 1000 < next)
			next = now + (uint64_t)k * 1000;
	}
	prime_expire_at(next);
	return next == UINT64_MAX ? -1 : (int)((next - now) / 1000) + 1;
}

void prime_report(void)
{
	uint64_t begun, used;

	pthread_mutex_lock(&prime.lock);
	begun = prime.begun;
	used = prime.used;
	pthread_mutex_unlock(&prime.lock);
	if (begun)
		call_log(LOG_INFO, "%llu signatures begun ahead, %llu of them used",
			 (unsigned long long)begun, (unsigned long long)used);
}
