/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hotplug: tokens arriving and leaving while the agent runs.
 *
 * One watch thread per store runs store_poll(): C_GetSlotList(CK_TRUE) + C_GetTokenInfo on
 * every module, compared with the tokens we hold. It runs every poll interval, and at once
 * when woken: by a slot-event thread (one per module whose C_WaitForSlotEvent works, blocked
 * in it) or by a signature that met a removed token (hotplug_token_lost). Detection runs with
 * the store lock shared; only a change takes it exclusively.
 *
 * Which errors mean "removed" is decided here, in hotplug_check_error(): CKR_DEVICE_REMOVED
 * and its kin, and also CKR_GENERAL_ERROR / CKR_DEVICE_ERROR / CKR_FUNCTION_FAILED when the
 * slot no longer shows the token (OpenSC reports a card pulled inside C_Sign that way). A
 * device error on a token still present leaves it suspect: its remembered PIN is not sent
 * again until hotplug_verify() has seen the same serial and the same public keys.
 *
 * Slot-event threads and C_Finalize: PKCS#11 2.40 (5.4) says C_Finalize releases a thread
 * blocked in C_WaitForSlotEvent, but OpenSC's C_Finalize tears down its PC/SC context (and
 * dlcloses the PC/SC library) while the waiting thread is still inside it, which crashes the
 * process. So a module with a thread inside its C_WaitForSlotEvent is never finalised: at
 * exit it is left as it is (the process exit releases everything, and its sessions were
 * closed before), and on Reload it stays loaded and initialised (Module.pinned; p11-kit hands
 * the reloaded module the same initialised instance) and is polled for the rest of the
 * process life. The stuck thread, when the module lets it go, only looks at its own Waiter,
 * never at the store.
 *
 * A token that leaves is forgotten entirely (token_remove: sessions, login, PIN, key handles,
 * identities, failed pin sources). What we keep is a short memory of it (Gone): its token and
 * module info, the IDs and labels of its keys, and a fingerprint of its public keys and
 * certificates. The memory answers a Sign on one of its keys with TokenAbsent rather than
 * KeyNotFound, and when a token with that serial or label arrives, tells whether it is the
 * same token: another serial, or the same serial with other keys, is logged and reported as
 * a replacement. Either way the PIN is asked again: nothing of the old login survives.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <gnutls/crypto.h>

#include "internal.h"

#define GONE_MAX 32	    /* removed tokens remembered */
#define GONE_IDS_MAX 64	    /* keys remembered per removed token */
#define WAITER_JOIN_MS 3000 /* how long we wait for a waiter between two calls to leave */
/* After a device error, how long the slot may take to show a pulled card gone (pcscd looks at
 * its readers every 400 ms), and how often we look meanwhile. */
#define SETTLE_MS 1500
#define SETTLE_STEP_MS 100
#define EVENT_POLL_FACTOR 15 /* with slot events everywhere, poll this much less often */

typedef struct GoneId {
	uint8_t *id;
	size_t id_len;
	char *label;
} GoneId;

typedef struct Gone {
	char *module;
	CK_INFO module_info;
	CK_TOKEN_INFO info;
	char *label, *serial;
	uint8_t fp[32];
	bool has_fp;
	GoneId *ids;
	size_t n_ids;
} Gone;

typedef struct Waiter {
	Hotplug *h;
	Module *m;
	pthread_t thread;
	bool running; /* thread started and not joined */
	bool stop;    /* under waiter_lock: never touch h again */
	bool inside;  /* under waiter_lock: in C_WaitForSlotEvent */
	bool failed;  /* atomic: the module's events stopped working: poll it */
} Waiter;

/* Not per store: a waiter left inside a module outlives its store (see the top). */
static pthread_mutex_t waiter_lock = PTHREAD_MUTEX_INITIALIZER;

struct Hotplug {
	Store *s;
	Gone *gone;
	size_t n_gone;

	/* Watching (store_watch). Under lock, except the fields set before the thread starts. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool watching, woken, stop;
	pthread_t thread;
	bool thread_running;
	unsigned interval_ms;
	StoreEventFunc fn;
	void *userdata;

	Waiter **waiters; /* under the store lock held exclusively */
	size_t n_waiters;
	char **polled; /* paths of modules whose waiter is stuck: no blocking waits there again */
	size_t n_polled;
};

static Hotplug *hotplug_get(Store *s)
{
	Hotplug *h = s->hotplug;
	pthread_condattr_t ca;

	if (h)
		return h;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->s = s;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->hotplug = h;
	return h;
}

/* ---- fingerprints ---- */

static int digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Returns the C_FindObjects error, or CKR_HOST_MEMORY; CKR_OK with what it could read. */
static CK_RV fp_add_objects(Token *t, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
			    const CK_ATTRIBUTE_TYPE *types, size_t n_types, uint8_t **digests,
			    size_t *n)
{
	CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
	_cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
	size_t n_objs = 0;
	CK_RV rv;

	rv = call_find_objects(t->module, h, &tmpl, 1, &objs, &n_objs);
	if (rv != CKR_OK)
		return rv;
	for (size_t i = 0; i < n_objs; i++) {
		gnutls_hash_hd_t hd;
		uint8_t *grown;
		bool any = false;

		grown = reallocarray(*digests, *n + 1, 32);
		if (!grown)
			return CKR_HOST_MEMORY;
		*digests = grown;
		if (gnutls_hash_init(&hd, GNUTLS_DIG_SHA256) < 0)
			return CKR_HOST_MEMORY;
		gnutls_hash(hd, &cls, sizeof(cls));
		for (size_t k = 0; k < n_types; k++) {
			_cleanup_free_ uint8_t *v = NULL;
			size_t len = 0;

			if (call_get_attribute(t->module, h, objs[i], types[k], &v, &len) != CKR_OK)
				continue;
			gnutls_hash(hd, &types[k], sizeof(types[k]));
			gnutls_hash(hd, &len, sizeof(len));
			gnutls_hash(hd, v, len);
			any = true;
		}
		gnutls_hash_deinit(hd, *digests + 32 * *n);
		if (any)
			(*n)++;
	}
	return CKR_OK;
}

/*
 * What a token is, beyond its serial: its public keys (with their IDs) and certificates,
 * order-independent. Public objects only, so it reads the same logged in or not. With
 * `strict`, a failing search fails the whole (CKR_*); else what could be read counts.
 */
static CK_RV fp_compute(Token *t, CK_SESSION_HANDLE h, bool strict, uint8_t ret[static 32])
{
	static const CK_ATTRIBUTE_TYPE pub[] = {CKA_ID, CKA_MODULUS, CKA_PUBLIC_EXPONENT,
						CKA_EC_POINT};
	static const CK_ATTRIBUTE_TYPE cert[] = {CKA_ID, CKA_VALUE};
	_cleanup_free_ uint8_t *digests = NULL;
	size_t n = 0;
	CK_RV rv;

	rv = fp_add_objects(t, h, CKO_PUBLIC_KEY, pub, ELEMENTSOF(pub), &digests, &n);
	if (rv == CKR_OK || !strict)
		rv = fp_add_objects(t, h, CKO_CERTIFICATE, cert, ELEMENTSOF(cert), &digests, &n);
	if (rv != CKR_OK && strict)
		return rv;
	if (n > 0)
		qsort(digests, n, 32, digest_cmp);
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, digests ? digests : (uint8_t *)"", 32 * n, ret) < 0)
		return CKR_HOST_MEMORY;
	return CKR_OK;
}

void hotplug_fingerprint(Token *t)
{
	CK_SESSION_HANDLE h;

	t->has_fp = false;
	if (session_acquire(t, &h, NULL) != 0)
		return;
	t->has_fp = fp_compute(t, h, false, t->fp) == CKR_OK;
	session_release(t, h);
}

/* ---- the memory of removed tokens ---- */

static void gone_deinit(Gone *g)
{
	free(g->module);
	free(g->label);
	free(g->serial);
	for (size_t i = 0; i < g->n_ids; i++) {
		free(g->ids[i].id);
		free(g->ids[i].label);
	}
	free(g->ids);
}

static void gone_drop(Hotplug *h, size_t i)
{
	gone_deinit(&h->gone[i]);
	memmove(h->gone + i, h->gone + i + 1, (h->n_gone - i - 1) * sizeof(*h->gone));
	h->n_gone--;
}

static char *dup_or_empty(const char *p)
{
	return strdup(p ? p : "");
}

/* Before t is freed because it left (or a reload drops every token). Best effort on OOM. */
void hotplug_remember(Store *s, Token *t)
{
	Hotplug *h = hotplug_get(s);
	Gone g = {0}, *grown;

	if (!h)
		return;
	/* One memory per token: the newest. */
	for (size_t i = 0; i < h->n_gone; i++)
		if (strcmp(h->gone[i].module, t->module->name) == 0 &&
		    strcmp(h->gone[i].serial, t->serial) == 0 &&
		    strcmp(h->gone[i].label, t->label) == 0) {
			gone_drop(h, i);
			break;
		}
	if (h->n_gone >= GONE_MAX)
		gone_drop(h, 0);
	g.module = dup_or_empty(t->module->name);
	g.label = dup_or_empty(t->label);
	g.serial = dup_or_empty(t->serial);
	g.module_info = t->module->info;
	g.info = t->info;
	memcpy(g.fp, t->fp, sizeof(g.fp));
	g.has_fp = t->has_fp;
	g.ids = calloc(t->n_ids ? t->n_ids : 1, sizeof(*g.ids));
	grown = reallocarray(h->gone, h->n_gone + 1, sizeof(*h->gone));
	if (!g.module || !g.label || !g.serial || !g.ids || !grown) {
		if (grown)
			h->gone = grown;
		gone_deinit(&g);
		return;
	}
	h->gone = grown;
	for (size_t i = 0; i < t->n_ids && g.n_ids < GONE_IDS_MAX; i++) {
		GoneId *gi = &g.ids[g.n_ids];

		gi->id = malloc(t->ids[i].id_len ? t->ids[i].id_len : 1);
		gi->label = t->ids[i].label ? strdup(t->ids[i].label) : NULL;
		if (!gi->id || (t->ids[i].label && !gi->label)) {
			free(gi->id);
			free(gi->label);
			break;
		}
		memcpy(gi->id, t->ids[i].id, t->ids[i].id_len);
		gi->id_len = t->ids[i].id_len;
		g.n_ids++;
	}
	h->gone[h->n_gone++] = g;
}

/*
 * A token was scanned: if it matches a removed one (same module and serial, or same label),
 * decide whether it is the same token. Returns true when it replaces another one.
 */
bool hotplug_token_seen(Store *s, Token *t)
{
	Hotplug *h = s->hotplug;
	bool replaced = false;
	size_t i;

	if (!h)
		return false;
	for (i = 0; i < h->n_gone; i++)
		if (strcmp(h->gone[i].module, t->module->name) == 0 &&
		    strcmp(h->gone[i].serial, t->serial) == 0)
			break;
	if (i == h->n_gone)
		for (i = 0; i < h->n_gone; i++)
			if (strcmp(h->gone[i].module, t->module->name) == 0 &&
			    strcmp(h->gone[i].label, t->label) == 0)
				break;
	if (i == h->n_gone)
		return false;
	if (strcmp(h->gone[i].serial, t->serial) != 0) {
		call_log(LOG_WARNING,
			 "token \"%s\" (serial %s) is not the token \"%s\" that was removed "
			 "(serial %s): treated as a new token",
			 t->label, t->serial, h->gone[i].label, h->gone[i].serial);
		replaced = true;
	} else if (h->gone[i].has_fp && t->has_fp &&
		   memcmp(h->gone[i].fp, t->fp, sizeof(t->fp)) != 0) {
		call_log(LOG_WARNING,
			 "token \"%s\" (serial %s) came back with other keys or certificates: "
			 "treated as a new token",
			 t->label, t->serial);
		replaced = true;
	} else {
		call_log(LOG_INFO,
			 "token \"%s\" (serial %s) is the same token as before (same keys); it "
			 "needs a new login",
			 t->label, t->serial);
	}
	gone_drop(h, i);
	return replaced;
}

/* From store_sign when no key matched. Codes: CA_E_TOKEN_ABSENT if a removed token had it. */
int hotplug_match_gone(Store *s, P11KitUri *u, CaError *err)
{
	Hotplug *h = s->hotplug;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;

	for (size_t i = 0; h && i < h->n_gone; i++) {
		Gone *g = &h->gone[i];

		if (p11_kit_uri_match_module_info(u, &g->module_info) != 1 ||
		    p11_kit_uri_match_token_info(u, &g->info) != 1)
			continue;
		for (size_t j = 0; j < g->n_ids; j++) {
			CK_ATTRIBUTE attrs[] = {
				{CKA_CLASS, &cls, sizeof(cls)},
				{CKA_ID, g->ids[j].id, g->ids[j].id_len},
				{CKA_LABEL, g->ids[j].label,
				 g->ids[j].label ? strlen(g->ids[j].label) : 0},
			};

			if (p11_kit_uri_match_attributes(u, attrs, ELEMENTSOF(attrs)) == 1)
				return ca_error_set(
					err, CA_E_TOKEN_ABSENT,
					"token \"%s\" (serial %s) was removed: insert it "
					"again; its keys come back by themselves and the "
					"PIN is asked again",
					g->label, g->serial);
		}
	}
	return 0;
}

/* ---- waking the watch thread ---- */

static void hotplug_wake(Hotplug *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->woken = true;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/*
 * A call on t found it removed (hotplug_check_error): refuse it from now on, forget its PIN
 * and idle sessions at once (the poll then drops the token, TokenRemoved), look at once.
 */
void hotplug_token_lost(Store *s, Token *t)
{
	if (!__atomic_exchange_n(&t->gone, true, __ATOMIC_RELAXED))
		call_log(LOG_WARNING, "token \"%s\" is gone; looking at the slots again", t->label);
	pthread_mutex_lock(&t->login_lock);
	login_forget(t);
	t->last_used = 0;
	pthread_mutex_unlock(&t->login_lock);
	session_pool_close(t);
	hotplug_wake(s->hotplug);
}

static bool rv_removed(CK_RV rv)
{
	return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
	       rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID;
}

/* What modules answer when the device went away under a call, among other things. */
static bool rv_device(CK_RV rv)
{
	return rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR || rv == CKR_FUNCTION_FAILED ||
	       rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

/* Does t's slot show no token, or another one? One look, no waiting. */
static bool slot_shows_gone(Token *t)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_RV rv;

	rv = call_get_slot_info(t->module, t->slot, &si);
	if (rv_removed(rv) || (rv == CKR_OK && !(si.flags & CKF_TOKEN_PRESENT)))
		return true;
	rv = call_get_token_info(t->module, t->slot, &ti);
	return rv_removed(rv) || (rv == CKR_OK && memcmp(ti.serialNumber, t->info.serialNumber,
							 sizeof(ti.serialNumber)) != 0);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int token_absent_error(Token *t, CK_RV rv, CaError *err)
{
	char buf[32];

	return ca_error_set(err, CA_E_TOKEN_ABSENT,
			    "token \"%s\" was removed (%s): insert it again; its keys come back "
			    "by themselves and the PIN is asked again",
			    t->label, call_rv_name(rv, buf));
}

/*
 * The one decision on what a failed call on t means: r is call_error()'s code for rv. A
 * removal code (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, ...) or a stale helper is
 * CA_E_TOKEN_ABSENT. A device error (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR,
 * CKR_FUNCTION_FAILED, a lost session) looks at the slot, for up to SETTLE_MS while it still
 * shows the token (the reader's daemon notices a pulled card only on its next look): gone is
 * CA_E_TOKEN_ABSENT; still there, r stays and the token is suspect (no automatic login before
 * hotplug_verify()). Anything else is r. The caller marks an absent token lost
 * (hotplug_token_lost). Codes: CA_E_TOKEN_ABSENT or r.
 */
int hotplug_check_error(Token *t, CK_RV rv, int r, CaError *err)
{
	if (r == 0 || r == CA_E_TOKEN_ABSENT)
		return r;
	if (rv_removed(rv) || token_stale(t))
		return token_absent_error(t, rv, err);
	if (!rv_device(rv))
		return r;
	for (unsigned waited = 0;; waited += SETTLE_STEP_MS) {
		if (slot_shows_gone(t)) {
			char buf[32];

			call_log(LOG_INFO,
				 "token \"%s\": %s, and its slot shows it gone (after %u ms): "
				 "removed",
				 t->label, call_rv_name(rv, buf), waited);
			return token_absent_error(t, rv, err);
		}
		if (waited >= SETTLE_MS || rv == CKR_SESSION_HANDLE_INVALID ||
		    rv == CKR_SESSION_CLOSED)
			break; /* a lost session on a present token is not worth the wait */
		sleep_ms(SETTLE_STEP_MS);
	}
	pthread_mutex_lock(&t->login_lock);
	if (!t->suspect) {
		char buf[32];

		call_log(LOG_WARNING,
			 "token \"%s\": %s but still present: its PIN is not sent again until "
			 "it shows the same serial and keys",
			 t->label, call_rv_name(rv, buf));
	}
	t->suspect = true;
	pthread_mutex_unlock(&t->login_lock);
	return r;
}

/*
 * With t->login_lock held, before a remembered or configured PIN goes to a suspect token:
 * is it still present and the token we scanned (same serial, same public keys and
 * certificates, read on session h, which has no operation active)? Clears t->suspect when
 * so. Codes: CA_E_TOKEN_ABSENT (gone, or another token: the caller marks it lost),
 * CA_E_FAILED (cannot tell: nothing is sent).
 */
int hotplug_verify(Token *t, CK_SESSION_HANDLE h, CaError *err)
{
	CK_TOKEN_INFO ti;
	uint8_t fp[32];
	char buf[32];
	CK_RV rv;

	if (!t->suspect)
		return 0;
	if (slot_shows_gone(t))
		return token_absent_error(t, CKR_TOKEN_NOT_PRESENT, err);
	rv = call_get_token_info(t->module, t->slot, &ti);
	if (rv == CKR_OK)
		rv = fp_compute(t, h, true, fp);
	if (rv_removed(rv))
		return token_absent_error(t, rv, err);
	if (rv != CKR_OK)
		return ca_error_set(err, CA_E_FAILED,
				    "token \"%s\" failed before and cannot be checked now (%s): "
				    "certagent does not send its PIN to it; if it was pulled, "
				    "insert it again",
				    t->label, call_rv_name(rv, buf));
	if (t->has_fp && memcmp(fp, t->fp, sizeof(fp)) != 0) {
		call_log(LOG_WARNING,
			 "token \"%s\" (serial %s) now shows other keys or certificates: treated "
			 "as removed; its PIN is not sent",
			 t->label, t->serial);
		return token_absent_error(t, CKR_TOKEN_NOT_PRESENT, err);
	}
	call_log(LOG_INFO, "token \"%s\" (serial %s) is still the same token (same keys)", t->label,
		 t->serial);
	t->suspect = false;
	return 0;
}

/* ---- slot-event threads ---- */

/*
 * w->h and the store are touched only under waiter_lock with w->stop false: once
 * hotplug_modules_down() set it, the thread may outlive them (stuck in the module).
 */
static void *waiter_main(void *userdata)
{
	Waiter *w = userdata;

	for (;;) {
		CK_SLOT_ID slot = 0;
		CK_RV rv;
		char buf[32];

		pthread_mutex_lock(&waiter_lock);
		w->inside = !w->stop;
		pthread_mutex_unlock(&waiter_lock);
		if (!w->inside)
			break;
		rv = call_wait_for_slot_event(w->m, 0, &slot);
		pthread_mutex_lock(&waiter_lock);
		w->inside = false;
		if (w->stop) {
			pthread_mutex_unlock(&waiter_lock);
			break;
		}
		if (rv == CKR_OK) {
			call_log(LOG_DEBUG, "%s: slot event on slot %lu", w->m->name,
				 (unsigned long)slot);
			hotplug_wake(w->h);
			pthread_mutex_unlock(&waiter_lock);
			continue;
		}
		if (rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
			call_log(LOG_WARNING,
				 "module %s: C_WaitForSlotEvent failed (%s): polling it instead",
				 w->m->name, call_rv_name(rv, buf));
			__atomic_store_n(&w->failed, true, __ATOMIC_RELAXED);
			hotplug_wake(w->h);
		}
		pthread_mutex_unlock(&waiter_lock);
		break;
	}
	return NULL;
}

static bool hotplug_polled_only(Hotplug *h, Module *m)
{
	for (size_t i = 0; i < h->n_polled; i++)
		if (m->path && strcmp(h->polled[i], m->path) == 0)
			return true;
	return false;
}

/* With the store lock exclusive: a waiter for every module whose slot events work. */
void hotplug_modules_up(Store *s)
{
	Hotplug *h = s->hotplug;
	bool watching;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	watching = h->watching;
	pthread_mutex_unlock(&h->lock);
	if (!watching)
		return;
	for (size_t i = 0; i < s->n_modules; i++) {
		Module *m = s->modules[i];
		CK_SLOT_ID slot = 0;
		CK_RV rv = call_wait_for_slot_event(m, CKF_DONT_BLOCK, &slot);
		Waiter *w, **grown;
		sigset_t all, old;
		char buf[32];

		if (hotplug_polled_only(h, m)) {
			call_log(LOG_INFO,
				 "module %s: a thread is still inside its C_WaitForSlotEvent from "
				 "before: polling it every %u ms",
				 m->name, h->interval_ms);
			continue;
		}
		if (rv != CKR_OK && rv != CKR_NO_EVENT) {
			call_log(LOG_INFO, "module %s: no slot events (%s): polling every %u ms",
				 m->name, call_rv_name(rv, buf), h->interval_ms);
			continue;
		}
		w = calloc(1, sizeof(*w));
		grown = reallocarray(h->waiters, h->n_waiters + 1, sizeof(*grown));
		if (!w || !grown) {
			free(w);
			if (grown)
				h->waiters = grown;
			continue;
		}
		h->waiters = grown;
		w->h = h;
		w->m = m;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		w->running = pthread_create(&w->thread, NULL, waiter_main, w) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!w->running) {
			free(w);
			continue;
		}
		pthread_setname_np(w->thread, "ca-slotevent");
		h->waiters[h->n_waiters++] = w;
		call_log(LOG_INFO, "module %s: watching slot events (C_WaitForSlotEvent probe: %s)",
			 m->name, call_rv_name(rv, buf));
	}
}

/* A waiter stuck in its module: the module stays loaded and is polled from now on. */
static void hotplug_leave_behind(Hotplug *h, Waiter *w)
{
	char *path = w->m->path ? strdup(w->m->path) : NULL;
	char **grown = path ? reallocarray(h->polled, h->n_polled + 1, sizeof(*grown)) : NULL;

	call_log(LOG_INFO,
		 "module %s: a thread waits in its C_WaitForSlotEvent: the module is not "
		 "finalised (its C_Finalize would pull the ground from under that thread)",
		 w->m->name);
	w->m->pinned = true;
	pthread_detach(w->thread);
	call_abandon(w); /* never freed: the thread still has it */
	if (!grown) {
		free(path);
		return;
	}
	h->polled = grown;
	h->polled[h->n_polled++] = path;
}

/*
 * With the store lock exclusive, before the modules are finalised (Reload, store_free): the
 * slot-event threads stop. One between two calls leaves at once and is joined; one inside
 * C_WaitForSlotEvent is left there with its module pinned (see the top of this file).
 */
void hotplug_modules_down(Store *s)
{
	Hotplug *h = s->hotplug;

	if (!h)
		return;
	for (size_t i = 0; i < h->n_waiters; i++) {
		Waiter *w = h->waiters[i];
		struct timespec deadline;
		bool inside;

		pthread_mutex_lock(&waiter_lock);
		w->stop = true;
		inside = w->inside;
		pthread_mutex_unlock(&waiter_lock);
		if (inside) {
			hotplug_leave_behind(h, w);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += WAITER_JOIN_MS / 1000;
		if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0) {
			hotplug_leave_behind(h, w);
			continue;
		}
		free(w);
	}
	free(h->waiters);
	h->waiters = NULL;
	h->n_waiters = 0;
}

/* ---- polling ---- */

typedef struct Seen {
	Module *m;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO info;
	bool matched;
} Seen;

typedef struct Scan {
	Seen *seen;
	size_t n_seen;
	bool *keep; /* per s->tokens entry */
	size_t n_removed, n_added;
} Scan;

static void scan_clear(Scan *sc)
{
	free(sc->seen);
	free(sc->keep);
	*sc = (Scan){0};
}

static bool same_token(const Token *t, const Seen *e)
{
	return t->module == e->m && t->slot == e->slot &&
	       memcmp(t->info.label, e->info.label, sizeof(e->info.label)) == 0 &&
	       memcmp(t->info.serialNumber, e->info.serialNumber, sizeof(e->info.serialNumber)) ==
		       0 &&
	       memcmp(t->info.manufacturerID, e->info.manufacturerID,
		      sizeof(e->info.manufacturerID)) == 0 &&
	       memcmp(t->info.model, e->info.model, sizeof(e->info.model)) == 0;
}

/* With the store lock held (either way): what is in the slots now against what we hold. */
static int scan_slots(Store *s, Scan *sc)
{
	*sc = (Scan){0};
	sc->keep = calloc(s->n_tokens + 1, sizeof(*sc->keep));
	if (!sc->keep)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_modules; i++) {
		Module *m = s->modules[i];
		_cleanup_free_ CK_SLOT_ID *slots = NULL;
		size_t n = 0;

		if (call_get_slot_list(m, &slots, &n) != CKR_OK) {
			/* Cannot tell: keep this module's tokens as they are. */
			for (size_t k = 0; k < s->n_tokens; k++)
				if (s->tokens[k]->module == m)
					sc->keep[k] = true;
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			Seen e = {.m = m, .slot = slots[j]}, *grown;

			if (call_get_token_info(m, slots[j], &e.info) != CKR_OK ||
			    !(e.info.flags & CKF_TOKEN_INITIALIZED))
				continue;
			grown = reallocarray(sc->seen, sc->n_seen + 1, sizeof(*grown));
			if (!grown) {
				scan_clear(sc);
				return -ENOMEM;
			}
			sc->seen = grown;
			sc->seen[sc->n_seen++] = e;
		}
	}
	for (size_t k = 0; k < s->n_tokens; k++) {
		Token *t = s->tokens[k];

		if (__atomic_load_n(&t->gone, __ATOMIC_RELAXED) || token_stale(t))
			continue; /* even if listed: rescan it from scratch */
		for (size_t j = 0; j < sc->n_seen && !sc->keep[k]; j++)
			if (!sc->seen[j].matched && same_token(t, &sc->seen[j]))
				sc->keep[k] = sc->seen[j].matched = true;
	}
	for (size_t k = 0; k < s->n_tokens; k++)
		sc->n_removed += !sc->keep[k];
	for (size_t j = 0; j < sc->n_seen; j++)
		sc->n_added += !sc->seen[j].matched;
	return 0;
}

StoreEventList *store_event_list_free(StoreEventList *l)
{
	if (!l)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].token_uri);
		free(l->items[i].label);
		free(l->items[i].serial);
	}
	free(l->items);
	free(l);
	return NULL;
}

static void event_add(StoreEventList *l, StoreEventKind kind, Token *t, bool replaced)
{
	StoreEvent *e = &l->items[l->n];

	*e = (StoreEvent){.kind = kind, .replaced = replaced};
	e->token_uri = dup_or_empty(t->uri);
	e->label = dup_or_empty(t->label);
	e->serial = dup_or_empty(t->serial);
	if (!e->token_uri || !e->label || !e->serial) {
		free(e->token_uri);
		free(e->label);
		free(e->serial);
		return;
	}
	l->n++;
}

/* With the store lock exclusive: apply sc. */
static int apply_scan(Store *s, Scan *sc, StoreEventList *l)
{
	Token **drop;
	size_t n_drop = 0;

	l->items = calloc(sc->n_removed + sc->n_added + 1, sizeof(*l->items));
	drop = calloc(s->n_tokens + 1, sizeof(*drop));
	if (!l->items || !drop || !hotplug_get(s)) {
		free(drop);
		return -ENOMEM;
	}
	for (size_t k = 0; k < s->n_tokens; k++)
		if (!sc->keep[k])
			drop[n_drop++] = s->tokens[k];
	for (size_t k = 0; k < n_drop; k++) {
		Token *t = drop[k];

		call_log(LOG_INFO, "token \"%s\" (serial %s, %s) removed: login and keys forgotten",
			 t->label, t->serial, t->module->name);
		event_add(l, STORE_EVENT_TOKEN_REMOVED, t, false);
		hotplug_remember(s, t);
		token_remove(s, t);
	}
	free(drop);
	for (size_t j = 0; j < sc->n_seen; j++) {
		Token *t = NULL;
		bool replaced;
		int r;

		if (sc->seen[j].matched)
			continue;
		r = token_add(s, sc->seen[j].m, sc->seen[j].slot, &t);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		replaced = hotplug_token_seen(s, t);
		call_log(LOG_INFO, "token \"%s\" (serial %s, %s) inserted: %zu identities",
			 t->label, t->serial, t->module->name, t->n_ids);
		event_add(l, STORE_EVENT_TOKEN_ADDED, t, replaced);
	}
	return 0;
}

int store_poll(Store *s, StoreEventList **ret, CaError *err)
{
	StoreEventList *l = NULL;
	Scan sc;
	int r;

	*ret = NULL;
	pthread_rwlock_rdlock(&s->lock);
	r = scan_slots(s, &sc);
	/* Copies of keys (sign.c) no longer used go within a poll interval. */
	for (size_t i = 0; i < s->n_tokens; i++)
		if (sign_copies(s->tokens[i]))
			(void)key_copies_expire(&s->tokens[i]->copies);
	pthread_rwlock_unlock(&s->lock);
	if (r < 0)
		return ca_error_set(err, r, "out of memory looking at the slots");
	if (sc.n_removed + sc.n_added == 0) {
		scan_clear(&sc);
		return 0;
	}
	scan_clear(&sc);

	/* Something changed: look again with the lock exclusive (tokens may have moved). */
	pthread_rwlock_wrlock(&s->lock);
	r = scan_slots(s, &sc);
	if (r == 0 && sc.n_removed + sc.n_added > 0) {
		l = calloc(1, sizeof(*l));
		r = l ? apply_scan(s, &sc, l) : -ENOMEM;
	}
	pthread_rwlock_unlock(&s->lock);
	scan_clear(&sc);
	if (r < 0) {
		store_event_list_free(l);
		return ca_error_set(err, r, "out of memory applying slot changes");
	}
	if (l && l->n == 0)
		l = store_event_list_free(l);
	*ret = l;
	return 0;
}

/* ---- the watch thread ---- */

static bool hotplug_all_have_events(Hotplug *h)
{
	Store *s = h->s;
	bool all;

	/* n_waiters only changes with the store lock exclusive. */
	pthread_rwlock_rdlock(&s->lock);
	all = s->n_modules > 0 && h->n_waiters == s->n_modules;
	for (size_t i = 0; all && i < h->n_waiters; i++)
		all = !__atomic_load_n(&h->waiters[i]->failed, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->lock);
	return all;
}

static void *watch_main(void *userdata)
{
	Hotplug *h = userdata;

	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		StoreEventList *events = NULL;
		CaError err = {0};
		unsigned ms;

		if (!h->woken) {
			struct timespec deadline;

			pthread_mutex_unlock(&h->lock);
			ms = h->interval_ms * (hotplug_all_have_events(h) ? EVENT_POLL_FACTOR : 1);
			pthread_mutex_lock(&h->lock);
			clock_gettime(CLOCK_MONOTONIC, &deadline);
			deadline.tv_sec += ms / 1000;
			deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
			if (deadline.tv_nsec >= 1000000000L) {
				deadline.tv_sec++;
				deadline.tv_nsec -= 1000000000L;
			}
			while (!h->woken && !h->stop &&
			       pthread_cond_timedwait(&h->cond, &h->lock, &deadline) == 0)
				;
			if (h->stop)
				break;
		}
		h->woken = false;
		pthread_mutex_unlock(&h->lock);

		if (store_poll(h->s, &events, &err) != 0)
			call_log(LOG_WARNING, "cannot look at the slots: %s", err.message);
		if (events)
			h->fn(events, h->userdata);

		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int store_watch(Store *s, unsigned poll_interval_ms, StoreEventFunc fn, void *userdata)
{
	sigset_t all, old;
	Hotplug *h;
	int r = 0;

	pthread_rwlock_wrlock(&s->lock);
	h = hotplug_get(s);
	if (!h)
		r = -ENOMEM;
	else if (h->watching)
		r = -EALREADY;
	if (r) {
		pthread_rwlock_unlock(&s->lock);
		return r;
	}
	h->interval_ms = poll_interval_ms ? poll_interval_ms : 2000;
	h->fn = fn;
	h->userdata = userdata;
	pthread_mutex_lock(&h->lock);
	h->stop = h->woken = false;
	h->watching = true;
	pthread_mutex_unlock(&h->lock);
	hotplug_modules_up(s);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&h->thread, NULL, watch_main, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		hotplug_modules_down(s);
		pthread_mutex_lock(&h->lock);
		h->watching = false;
		pthread_mutex_unlock(&h->lock);
	} else {
		pthread_setname_np(h->thread, "ca-hotplug");
		h->thread_running = true;
	}
	pthread_rwlock_unlock(&s->lock);
	return r;
}

bool store_unwatch(Store *s, unsigned timeout_ms)
{
	Hotplug *h = s ? s->hotplug : NULL;
	struct timespec deadline;

	if (!h || !h->thread_running)
		return true;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	if (pthread_timedjoin_np(h->thread, NULL, &deadline) != 0)
		return false; /* stuck behind a token: the caller leaks the store */
	h->thread_running = false;
	/* Slot-event threads stay until the modules are finalised (reload or store_free). Not
	 * the store lock here: a signature stuck in a token holds it shared. */
	pthread_mutex_lock(&h->lock);
	h->watching = false;
	pthread_mutex_unlock(&h->lock);
	return true;
}

/* At store_free(), after store_unwatch(), before the modules are finalised. */
void hotplug_free(Store *s)
{
	Hotplug *h = s->hotplug;

	if (!h)
		return;
	hotplug_modules_down(s);
	for (size_t i = 0; i < h->n_gone; i++)
		gone_deinit(&h->gone[i]);
	free(h->gone);
	free(h->waiters);
	for (size_t i = 0; i < h->n_polled; i++)
		free(h->polled[i]);
	free(h->polled);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
	s->hotplug = NULL;
}
