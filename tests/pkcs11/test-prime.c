/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-prime: the helper's signatures on session copies of the key (pkcs11/helper-prime.h,
 * "The copy", and pkcs11/key-copy.h), in-process on the SoftHSM token of setup-token.sh, the
 * way certagent-pkcs11-helper drives them for SIGN_ONCE requests (prime_sign_once;
 * prime_copy_make; prime_note; prime_start).
 *
 * - After two signatures the third uses what was begun ahead; the first made a copy of the
 *   key, which the second signed on and the third was begun on (the token then has one
 *   private key more than it was made with); every signature verifies with the token's
 *   public key.
 * - A search through prime_search_begin/end never shows a copy: not after the loop, and not
 *   while another thread signs in a loop and makes copies (a plain search meanwhile does see
 *   them, so the check can fail).
 * - Signatures not begun ahead: most of a loop's run on the copy (the key itself signs once
 *   every 5 ms); there is never more than one copy, made again every second; forgetting
 *   (a login, a search) does not destroy a copy under a signature, it goes when that is done;
 *   prime_expire() destroys one unused for a second.
 * - The key deleted on the token: the copy still signs when asked directly (SoftHSM keeps
 *   session objects), but once the key was last seen more than PRIME_FRESH_USEC ago nothing
 *   signs on them any more and the normal way says the key is gone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helper-prime.h"
#include "internal.h"
#include "key-copy.h"
#include "util.h"
#include "check-fatal.h"

static Module m;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE key, pub;
static CK_OBJECT_HANDLE initial[16];
static size_t n_initial;
static volatile bool stop;

static void pause_usec(long usec)
{
	struct timespec ts = {usec / 1000000, (usec % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, uint8_t id)
{
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE *objs = NULL, o;
	size_t n = 0;

	CHECK(call_find_objects(&m, h, tmpl, 2, &objs, &n) == CKR_OK && n == 1);
	o = objs[0];
	free(objs);
	return o;
}

/* The private keys a search finds; through prime_search_begin/end when hide. */
static size_t find_keys(CK_SESSION_HANDLE h, bool hide, CK_OBJECT_HANDLE *out, size_t cap)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
	CK_OBJECT_HANDLE *objs = NULL;
	size_t n = 0;
	CK_RV rv;

	if (hide)
		prime_search_begin();
	rv = call_find_objects(&m, h, &tmpl, 1, &objs, &n);
	if (hide)
		n = prime_search_end(objs, rv == CKR_OK ? n : 0);
	CHECK(rv == CKR_OK && n <= cap);
	memcpy(out, objs, n * sizeof(*objs));
	free(objs);
	return n;
}

static bool same_as_initial(const CK_OBJECT_HANDLE *v, size_t n)
{
	if (n != n_initial)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool found = false;

		for (size_t j = 0; j < n && !found; j++)
			found = v[i] == initial[j];
		if (!found)
			return false;
	}
	return true;
}

/* The private keys a plain search finds besides the initial ones (copies) into out[]. */
static size_t extra_keys(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *out, size_t cap)
{
	CK_OBJECT_HANDLE found[16];
	size_t n = find_keys(h, false, found, ELEMENTSOF(found)), k = 0;

	for (size_t i = 0; i < n; i++) {
		bool known = false;

		for (size_t j = 0; j < n_initial && !known; j++)
			known = found[i] == initial[j];
		if (!known) {
			CHECK(k < cap && found[i] != key);
			out[k++] = found[i];
		}
	}
	return k;
}

/* Whether object o exists (for SoftHSM, a destroyed copy's handle is not reused). */
static bool exists(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	CK_ULONG cls = 0;

	return call_get_ulong(&m, h, o, CKA_CLASS, &cls) == CKR_OK;
}

static void verify(CK_SESSION_HANDLE h, const uint8_t *digest, const uint8_t *sig, CK_ULONG len)
{
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};

	CHECK(m.fl->C_VerifyInit(h, &mech, pub) == CKR_OK);
	CHECK(m.fl->C_Verify(h, (CK_BYTE *)digest, 32, (CK_BYTE *)sig, len) == CKR_OK);
}

/*
 * One SIGN_ONCE as helper-main.c runs it; plain: without prime_note (nothing is begun ahead).
 * *ret_rv: the answer (verified when CKR_OK).
 */
static bool sign_once_as(CK_SESSION_HANDLE h, unsigned n, bool plain, CK_RV *ret_rv)
{
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	uint8_t digest[32] = {0}, sig[128];
	CK_ULONG len = sizeof(sig);
	bool used = false, signing = false;
	KeyCopies *copies = NULL;
	PrimeJob job;
	CK_RV rv;

	memcpy(digest, &n, sizeof(n));
	rv = prime_sign_once(h, &mech, key, digest, sizeof(digest), sig, &len, &signing, &used,
			     &copies);
	if (ret_rv)
		*ret_rv = rv;
	if (rv == CKR_OK) {
		verify(h, digest, sig, len);
		if (copies)
			prime_copy_make(copies, key);
		if (!plain && prime_note(h, &mech, key, used, &job))
			prime_start(&job);
	}
	return used;
}

static bool sign_once(CK_SESSION_HANDLE h, unsigned n, CK_RV *ret_rv)
{
	return sign_once_as(h, n, false, ret_rv);
}

/* A signature not begun ahead (CKR_OK asserted); true when it was made on the key itself. */
static bool sign_plain(CK_SESSION_HANDLE h, unsigned n)
{
	KeyCopies *c = prime_copies(h);
	uint64_t seen = 0;
	CK_RV rv;

	CHECK(c);
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++)
		if (c->e[i].key == key)
			seen = c->e[i].seen_usec;
	pthread_mutex_unlock(&c->lock);
	CHECK(!sign_once_as(h, n, true, &rv));
	CHECK(rv == CKR_OK);
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++)
		if (c->e[i].key == key && c->e[i].seen_usec != seen)
			seen = 0; /* only a signature on the key itself says it was seen */
	pthread_mutex_unlock(&c->lock);
	return seen == 0;
}

static void *signer(void *arg)
{
	CK_SESSION_HANDLE h = *(CK_SESSION_HANDLE *)arg;
	unsigned long used = 0, n = 0;

	while (!stop) {
		CK_RV rv;

		used += sign_once(h, (unsigned)n++, &rv);
		CHECK(rv == CKR_OK);
	}
	printf("signer: %lu signatures, %lu begun ahead\n", n, used);
	CHECK(used > n / 2);
	return NULL;
}

int main(void)
{
	const char *path = getenv("TEST_MODULE");
	CK_SESSION_HANDLE h, h2, rw;
	CK_SLOT_ID *slots = NULL;
	CK_OBJECT_HANDLE found[16], extra[4], copy = 0;
	size_t n_slots = 0, n, seen_copy = 0, searches = 0;
	unsigned long n_plain = 0, on_key = 0;
	unsigned n_copies = 0;
	pthread_t th;
	CK_RV rv;

	CHECK(path);
	m = (Module){.name = "softhsm", .path = (char *)path};
	m.fl = p11_kit_module_load(path, 0);
	CHECK(m.fl);
	CHECK(call_module_initialize(&m) == CKR_OK);
	CHECK(call_get_slot_list(&m, &slots, &n_slots) == CKR_OK && n_slots >= 1);
	slot = slots[0];
	free(slots);
	CHECK(call_open_session(&m, slot, &h) == CKR_OK);
	CHECK(call_open_session(&m, slot, &h2) == CKR_OK);
	CHECK(call_login(&m, h, CKU_USER, "1234", 4) == CKR_OK);
	key = find_one(h, CKO_PRIVATE_KEY, 0x02);
	pub = find_one(h, CKO_PUBLIC_KEY, 0x02);
	n_initial = find_keys(h, false, initial, ELEMENTSOF(initial));
	CHECK(n_initial == 6);

	prime_init(&m, true);
	prime_session_opened(h, slot);
	prime_session_opened(h2, slot);

	/* Two signatures in a row: the next one is begun ahead, on a copy. */
	CHECK(!sign_once(h, 0, NULL));
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 1);
	copy = extra[0];
	CHECK(!sign_once(h, 1, NULL));
	CHECK(sign_once(h, 2, NULL));
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 1 && extra[0] == copy);
	printf("ok: the third signature was begun ahead; the first made a copy of the key, "
	       "which the second signed on and the third was begun on\n");
	n = find_keys(h, true, found, ELEMENTSOF(found));
	CHECK(same_as_initial(found, n));
	printf("ok: a search through prime_search_begin/end does not show it\n");

	/* Searches while another thread signs in a loop, its copies made again as they age. */
	stop = false;
	CHECK(pthread_create(&th, NULL, signer, &h2) == 0);
	for (uint64_t until = ca_now_usec() + 2500000; ca_now_usec() < until; searches++) {
		prime_forget(); /* as the helper does before every search */
		n = find_keys(h, true, found, ELEMENTSOF(found));
		CHECK(same_as_initial(found, n));
		pause_usec(1000); /* the signer makes a copy again */
		n = find_keys(h, true, found, ELEMENTSOF(found));
		CHECK(same_as_initial(found, n));
		n = find_keys(h, false, found, ELEMENTSOF(found));
		seen_copy += n > n_initial;
		pause_usec(1000);
	}
	stop = true;
	CHECK(pthread_join(th, NULL) == 0);
	printf("ok: %zu searches during a signing loop never showed a copy (plain searches "
	       "saw one %zu times)\n",
	       searches, seen_copy);
	CHECK(seen_copy > 0);

	/* Signatures not begun ahead, in a loop of 1.5 s: on the copy but for one every 5 ms,
	 * never more than one copy, and a new one every second. */
	prime_forget();
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 0);
	for (uint64_t until = ca_now_usec() + 1500000; ca_now_usec() < until; n_plain++) {
		on_key += sign_plain(h, (unsigned)n_plain);
		if (extra_keys(h, extra, ELEMENTSOF(extra)) == 1 && extra[0] != copy) {
			copy = extra[0];
			n_copies++;
		}
		CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) <= 1);
	}
	printf("ok: %lu signatures not begun ahead, %lu of them on the key, %u copies one after "
	       "the other\n",
	       n_plain, on_key, n_copies);
	CHECK(on_key < n_plain / 2 && n_copies >= 2);
	n = find_keys(h, true, found, ELEMENTSOF(found));
	CHECK(same_as_initial(found, n));

	/* Forgotten (a login, a search) under a signature on the copy: it goes when that is
	 * done, not before. */
	{
		KeyCopies *c = prime_copies(h);
		CK_OBJECT_HANDLE taken = 0;

		for (int i = 0; i < 1000 && !taken; i++) {
			(void)sign_plain(h, 100);
			taken = key_copy_take(c, key); /* the copy, unless the key was not fresh */
		}
		CHECK(taken && exists(h, taken));
		prime_forget();
		CHECK(exists(h, taken));
		CHECK(key_copy_take(c, key) == 0);
		key_copy_put(c, key, taken, true);
		CHECK(!exists(h, taken));
		CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 0);
		printf("ok: a copy forgotten under a signature stays until it is done\n");
	}

	/* Unused for a second: the copy goes (as the helper's lanes call prime_expire). */
	(void)sign_plain(h, 200);
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 1);
	CHECK(prime_expire() > 0);
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 1);
	pause_usec(PRIME_COPY_MAX_AGE_USEC + 10000);
	CHECK(prime_expire() == -1);
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 0);
	printf("ok: a copy unused for a second is destroyed\n");

	/* The key deleted: neither copy signs once the key is not fresh. */
	(void)sign_once(h, 10, NULL);
	(void)sign_once(h, 11, NULL);
	CHECK(sign_once(h, 12, NULL));
	CHECK(extra_keys(h, extra, ELEMENTSOF(extra)) == 1);
	CHECK(call_open_rw_session(&m, slot, &rw) == CKR_OK);
	CHECK(call_destroy_object(&m, rw, key) == CKR_OK);
	CHECK(call_close_session(&m, rw) == CKR_OK);
	{
		CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
		uint8_t digest[32] = {7}, sig[128];
		CK_ULONG len = sizeof(sig);

		/* Why the key is asked for: a copy outlives it. */
		CHECK(call_sign_init(&m, h2, &mech, extra[0]) == CKR_OK);
		CHECK(call_sign(&m, h2, digest, sizeof(digest), sig, &len) == CKR_OK);
	}
	pause_usec(PRIME_FRESH_USEC + 1000);
	CHECK(!sign_once(h, 13, &rv));
	CHECK(rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID);
	CHECK(!sign_once(h, 14, &rv));
	CHECK(rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID);
	printf("ok: the key deleted, nothing signs with its copy (the normal way: 0x%lx)\n",
	       (unsigned long)rv);

	prime_forget();
	CHECK(call_logout(&m, h) == CKR_OK);
	CHECK(call_close_session(&m, h) == CKR_OK);
	CHECK(call_close_session(&m, h2) == CKR_OK);
	CHECK(call_module_finalize(&m) == CKR_OK);
	return 0;
}
