/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * key-copy: session copies of keys to sign with (docs/design.md, "Signing ahead").
 *
 * SoftHSM's C_SignInit on a token key reads the token's and the key's object files every time
 * (to notice other programs' changes: a third of a P-256 signature's cost); on a session
 * object it reads nothing. So a signature may begin on a session copy of its key: C_CopyObject
 * with CKA_TOKEN false, sensitive and not extractable as the key is, private, in the module
 * (for SoftHSM: the process's memory) only, gone when its session closes. A KeyCopies holds
 * the copies of one slot's keys, in a session of its own (never one that signs):
 *
 * - a copy is made right after a signature on the key itself succeeded (key_copy_seen() says
 *   when, key_copy_make() makes it), or for an operation begun ahead (helper-prime.h), and
 *   made again when older than PRIME_COPY_MAX_AGE_USEC, so a change to the key's attributes
 *   reaches it within that;
 * - it is used only while the last signature on the key itself is younger than
 *   PRIME_FRESH_USEC: a copy outlives a deleted key, so in a signing loop one signature every
 *   5 ms goes to the key and sees that it still exists;
 * - it is never destroyed under a signature: signatures on it are counted, and copies
 *   forgotten (key_copies_forget(): a logout, a scan) go when the last one is done;
 * - a module that will not copy a key while the key signs within a second, or copies it but
 *   will not begin a signature on the copy while it does on the key right after (5 ms), signs
 *   with its keys for good (a failure the key shares, a logout say, is not the module's way);
 * - never for a slot with CKF_REMOVABLE_DEVICE (a card: C_SignInit is small next to the card's
 *   own signature).
 *
 * Thread-safe: one mutex per set, never held across a module call. Searches: a copy is
 * listed (key_copies_own() tells it from a key in what a search found) from before a search
 * can see it until after it is gone, when the set has a guard: a read-write lock that the
 * searches take for writing and the set takes shared while it makes a copy and while it
 * destroys and unlists one (the helper's). Without one, nothing may search while copies
 * change but for token objects (the agent: scans under its exclusive store lock, the key
 * searched by ID with CKA_TOKEN true).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

struct Module;

#define KEY_COPY_MAX 16 /* keys per slot with a copy; more sign with the key */

typedef struct KeyCopy {
	CK_OBJECT_HANDLE key;
	CK_OBJECT_HANDLE copy; /* 0: none */
	uint64_t copy_usec;    /* when copy was made */
	uint64_t seen_usec;    /* when a signature on the key itself last succeeded */
	unsigned users;	       /* signatures begun on copy and not finished */
	bool dead;	       /* not to be used again; replaced once users is 0 */
	uint64_t refused_usec; /* when a signature on copy would not begin; 0: never */
	uint64_t failed_usec;  /* when the module would not make the copy; 0: never */
} KeyCopy;

typedef struct KeyCopies {
	struct Module *m;
	CK_SLOT_ID slot;
	pthread_rwlock_t *guard; /* NULL: none (above) */
	pthread_mutex_t lock;
	CK_SESSION_HANDLE session; /* where the copies live; 0: none open */
	uint64_t gen;		   /* key_copies_forget() calls */
	unsigned users;		   /* of all copies */
	bool making;		   /* key_copy_make() at work outside the lock */
	bool stale;	/* forgotten under signatures: session closed when they are done */
	bool closing;	/* session being closed outside the lock: copies still listed */
	bool removable; /* the slot is a reader: no copies */
	bool no_copy;	/* the module's way: no copies */
	KeyCopy e[KEY_COPY_MAX];
	size_t n;
} KeyCopies;

void key_copies_init(KeyCopies *c, struct Module *m, CK_SLOT_ID slot, pthread_rwlock_t *guard);
/* Closes the copies' session; no signature may be under way. */
void key_copies_fini(KeyCopies *c);

/* The copy of key to sign with (counted until key_copy_put()), or 0: sign with the key. */
CK_OBJECT_HANDLE key_copy_take(KeyCopies *c, CK_OBJECT_HANDLE key);
/* The same, also when the key was not seen for PRIME_FRESH_USEC: for an operation begun ahead,
 * whose signature asks whether the key still exists when it was not seen for that long. */
CK_OBJECT_HANDLE key_copy_hold(KeyCopies *c, CK_OBJECT_HANDLE key);
/* A signature on copy of key is done; began: its C_SignInit succeeded (else the copy is not
 * used again: sign with the key). */
void key_copy_put(KeyCopies *c, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE copy, bool began);

/* A signature on key itself succeeded: it exists. True when a copy should be made now. */
bool key_copy_seen(KeyCopies *c, CK_OBJECT_HANDLE key);
/* Makes (or renews) key's copy, when wanted (none usable, none in use); true when it did
 * (which found the key: it counts as seen). */
bool key_copy_make(KeyCopies *c, CK_OBJECT_HANDLE key);

/* Login state or objects may change: no copy is used again, each goes when its last
 * signature is done (at once when none is under way). */
void key_copies_forget(KeyCopies *c);

/*
 * Destroys a copy that is too old to be used (a signature on its key makes a new one), so
 * none outlives its use by much. Returns the ms until the next one is too old (at least 1),
 * or -1 when none is left.
 */
int key_copies_expire(KeyCopies *c);

/* Whether object h is one of c's copies. */
bool key_copies_own(KeyCopies *c, CK_OBJECT_HANDLE h);
