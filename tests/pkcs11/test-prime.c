/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-prime: the helper's signatures begun ahead on a session copy of the key
 * (pkcs11/helper-prime.h, "The copy"), in-process on the SoftHSM token of setup-token.sh, the
 * way certagent-pkcs11-helper drives it for SIGN_ONCE requests (prime_sign, else
 * call_sign_once; prime_note; prime_start).
 *
 * - After two signatures the third uses what was begun ahead, and a copy of the key exists
 *   (the token then has one private key more than it was made with); every signature
 *   verifies with the token's public key.
 * - A search through prime_search_begin/end never shows the copy: not after the loop, and not
 *   while another thread signs ahead in a loop and makes copies (a plain search meanwhile
 *   does see them, so the check can fail).
 * - The key deleted on the token: the copy still signs when asked directly (SoftHSM keeps
 *   session objects), but once what was begun is older than PRIME_FRESH_USEC nothing is
 *   signed ahead any more and the normal way says the key is gone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helper-prime.h"
#include "internal.h"
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

/* The one private key a plain search finds besides the initial ones: the copy. */
static CK_OBJECT_HANDLE the_copy(CK_SESSION_HANDLE h)
{
	CK_OBJECT_HANDLE found[16], copy = 0;
	size_t n = find_keys(h, false, found, ELEMENTSOF(found));

	CHECK(n == n_initial + 1);
	for (size_t i = 0; i < n; i++) {
		bool known = false;

		for (size_t j = 0; j < n_initial && !known; j++)
			known = found[i] == initial[j];
		if (!known)
			copy = found[i];
	}
	CHECK(copy != 0 && copy != key);
	return copy;
}

static void verify(CK_SESSION_HANDLE h, const uint8_t *digest, const uint8_t *sig, CK_ULONG len)
{
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};

	CHECK(m.fl->C_VerifyInit(h, &mech, pub) == CKR_OK);
	CHECK(m.fl->C_Verify(h, (CK_BYTE *)digest, 32, (CK_BYTE *)sig, len) == CKR_OK);
}

/* One SIGN_ONCE as helper-main.c runs it. *ret_rv: the normal way's answer when not ahead. */
static bool sign_once(CK_SESSION_HANDLE h, unsigned n, CK_RV *ret_rv)
{
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	uint8_t digest[32] = {0}, sig[128];
	CK_ULONG len = sizeof(sig);
	bool used, signing = false;
	PrimeJob job;
	CK_RV rv = CKR_OK;

	memcpy(digest, &n, sizeof(n));
	used = prime_sign(h, &mech, key, digest, sizeof(digest), sig, &len);
	if (!used)
		rv = call_sign_once(&m, h, &mech, key, digest, sizeof(digest), sig, &len, &signing);
	if (ret_rv)
		*ret_rv = rv;
	if (rv == CKR_OK) {
		verify(h, digest, sig, len);
		if (prime_note(h, &mech, key, used, &job))
			prime_start(&job);
	}
	return used;
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
	CK_OBJECT_HANDLE found[16], copy = 0;
	size_t n_slots = 0, n, seen_copy = 0, searches = 0;
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
	CHECK(!sign_once(h, 1, NULL));
	CHECK(sign_once(h, 2, NULL));
	copy = the_copy(h);
	printf("ok: the third signature was begun ahead, on a copy of the key (handle %lu)\n",
	       (unsigned long)copy);
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
		n = find_keys(h, false, found, ELEMENTSOF(found));
		seen_copy += n > n_initial;
		pause_usec(2000);
	}
	stop = true;
	CHECK(pthread_join(th, NULL) == 0);
	printf("ok: %zu searches during a signing loop never showed a copy (plain searches "
	       "saw one %zu times)\n",
	       searches, seen_copy);
	CHECK(seen_copy > 0);

	/* The key deleted: what was begun on its copy is not used once it is not fresh. */
	(void)sign_once(h, 10, NULL);
	CHECK(sign_once(h, 11, NULL));
	copy = the_copy(h);
	CHECK(call_open_rw_session(&m, slot, &rw) == CKR_OK);
	CHECK(call_destroy_object(&m, rw, key) == CKR_OK);
	CHECK(call_close_session(&m, rw) == CKR_OK);
	{
		CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
		uint8_t digest[32] = {7}, sig[128];
		CK_ULONG len = sizeof(sig);

		/* Why the key is asked for: the copy outlives it. */
		CHECK(call_sign_init(&m, h2, &mech, copy) == CKR_OK);
		CHECK(call_sign(&m, h2, digest, sizeof(digest), sig, &len) == CKR_OK);
	}
	pause_usec(PRIME_FRESH_USEC + 1000);
	CHECK(!sign_once(h, 12, &rv));
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
