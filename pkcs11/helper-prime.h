/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * helper-prime: signatures started ahead of time in a module helper (docs/design.md,
 * "Signing ahead"). C_SignInit of a token key costs as much as C_Sign itself or more (SoftHSM
 * checks its object files, decrypts the key and sets it up), and on the signature's critical
 * path it is paid while the caller waits. When a key has just signed with a mechanism for the
 * second time within PRIME_MAX_AGE_USEC, the lane thread that answered runs C_SignInit for the
 * next signature with the same key and mechanism once the reply is out (at once for a caller
 * the lane busy-polls for, else after the lane stayed quiet for PRIME_DELAY_MS:
 * helper-main.c), in a session of the helper's own (never one of the agent's, which may be in
 * use). A SIGN_ONCE for that key and mechanism then costs one C_Sign on it.
 *
 * Such an operation is used only while it is younger than PRIME_MAX_AGE_USEC and nothing
 * changed the login state or searched for objects since it began (prime_forget(), called for
 * every Login, Logout and object search: a logout ends it before a signature could follow
 * without the PIN, a rescan after the token's keys changed ends it too); older ones are
 * closed by prime_expire(). A C_Sign on it that does not succeed closes its session and the
 * request goes the normal way (C_SignInit and C_Sign on the agent's session), so errors are
 * exactly the ones the normal way gives. Only SIGN_ONCE uses it, and the agent never sends
 * SIGN_ONCE for a CKA_ALWAYS_AUTHENTICATE key. Never for a slot with CKF_REMOVABLE_DEVICE (a
 * card in a reader: C_SignInit is small next to the card's signature, and a card pulled
 * under an operation begun for nobody is trouble we need not make).
 *
 * The copy. C_SignInit of a token key in SoftHSM reads the token's and the key's object
 * files each time (to notice other programs' changes: a third of its cost); on a session
 * object it reads nothing. So an entry begins its operations on its slot's session copy of
 * the key (key-copy.h: one per key, shared with the signatures not begun ahead, made when
 * there is none to use, held until the operation ends); a change to the key's attributes
 * reaches it within PRIME_COPY_MAX_AGE_USEC. Whether the key itself still exists is asked as
 * before, when nothing looked at it for PRIME_FRESH_USEC. Searches hide the copies
 * (prime_search_begin/end): the agent must never list or use one as a key of the token.
 *
 * Thread-safe: one lock around a table of at most PRIME_MAX entries, never held across a
 * module call; an entry a thread works on is marked busy and skipped by the others.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#define PRIME_MAX 4
#define PRIME_SLOTS 8		   /* slots with copies of keys for signatures not begun ahead */
#define PRIME_MAX_AGE_USEC 1000000 /* an operation started longer ago is not used */
#define PRIME_DELAY_MS 1	   /* after a reply, the quiet time before priming (slow callers) */
/*
 * An operation begun less than this long ago is used without asking first whether its key
 * still exists: its C_SignInit found the key then. Older ones are asked (a key deleted by
 * another program since must not sign; SoftHSM keeps what C_SignInit read). A deletion this
 * close to a signature is the race every signature in flight has; asking costs a cold P-256
 * signature about 60 of its ~210 us in the agent (SoftHSM reads the token's generation file
 * and the key's object file for it, as C_SignInit does; docs/performance.md).
 */
#define PRIME_FRESH_USEC 5000
/* A copy of a key (key-copy.h) is made again when it is this old. */
#define PRIME_COPY_MAX_AGE_USEC 1000000
/* A signature for an entry being begun (or checked) waits at most this long for it. */
#define PRIME_WAIT_MS 5

/* What prime_start() starts: a copy, so the request frame may go. */
typedef struct PrimeJob {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	CK_MECHANISM_TYPE type;
	CK_RSA_PKCS_PSS_PARAMS pss;
	bool has_pss;
} PrimeJob;

/* m: the helper's module; enabled false: every function below does nothing. */
void prime_init(Module *m, bool enabled);

/* The agent's sessions and their slots (OPEN_SESSION, CLOSE_SESSION). */
void prime_session_opened(CK_SESSION_HANDLE h, CK_SLOT_ID slot);
void prime_session_closed(CK_SESSION_HANDLE h);

/* Login state or objects may change: no operation started before may be used. */
void prime_forget(void);

/*
 * After a SIGN_ONCE on h that succeeded (ahead: with what was begun ahead): true (and *job)
 * when nothing is started for that key and mechanism yet and it signed with them less than
 * PRIME_MAX_AGE_USEC before, or this signature was begun ahead itself (after a PREPARE_SIGN
 * the next one may well come soon, as after any two in a row).
 */
bool prime_note(CK_SESSION_HANDLE h, const CK_MECHANISM *mech, CK_OBJECT_HANDLE key, bool ahead,
		PrimeJob *job);

/*
 * PREPARE_SIGN on the agent's session h: a signature with key is coming (the client has
 * chosen it for a handshake). True (and *job) when that key signed in this helper before and
 * nothing is begun for it: job is its latest mechanism, to be begun at once (prime_start()).
 * When one is begun already but longer ago than PRIME_FRESH_USEC, asks now whether the key
 * still exists (as the signature on it would), so that the signature need not.
 */
bool prime_prepare(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, PrimeJob *job);

/* Starts job's operation: C_OpenSession (once per entry), C_SignInit. */
void prime_start(const PrimeJob *job);

/*
 * A SIGN_ONCE on the agent's session h, as the helper runs it (the arguments as
 * call_sign_once()'s): with what was begun ahead (*ret_ahead; one being begun after a
 * PREPARE_SIGN is waited for, at most PRIME_WAIT_MS), else on a copy of the key (key-copy.h)
 * when one is there to use, else on the key. *ret_copies: the set in which to make key's copy
 * once the reply is out (prime_copy_make()), else NULL.
 */
CK_RV prime_sign_once(CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		      const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		      bool *ret_signing, bool *ret_ahead, KeyCopies **ret_copies);

/*
 * Copies of keys (key-copy.h), per slot, for the entries' operations and the signatures not
 * begun ahead: h's slot's set (NULL when signing ahead is off, or h is unknown). Searches
 * hide them (prime_search_end()), prime_forget() forgets them, prime_expire() destroys the
 * unused ones. prime_copy_make() makes one, with searches kept out; true when it did.
 */
KeyCopies *prime_copies(CK_SESSION_HANDLE h);
bool prime_copy_make(KeyCopies *c, CK_OBJECT_HANDLE key);

/*
 * Around a C_FindObjects for the agent: no copy is made meanwhile, and prime_search_end()
 * takes our copies out of the handles found (returns how many are left).
 */
void prime_search_begin(void);
size_t prime_search_end(CK_OBJECT_HANDLE *objs, size_t n);

/* Logs how many signatures were begun ahead and how many of them were used (none: nothing). */
void prime_report(void);

/* Closes operations older than PRIME_MAX_AGE_USEC, and destroys copies of keys too old to
 * be used (key_copies_expire()). Returns the ms until the next one ages out (at least 1), or
 * -1 when none is left. */
int prime_expire(void);
