/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault-module: a PKCS#11 module for tests that forwards every call to the real SoftHSM and,
 * on command from the test, behaves like a misbehaving smartcard: the token vanishes and comes
 * back, sessions are lost, the card is pulled in the middle of a signature, signs slowly,
 * hangs, or crashes the process. It exists because SoftHSM cannot produce these faults by
 * itself; everything else is the real SoftHSM, unchanged (C_Initialize arguments included, so
 * CKF_OS_LOCKING_OK reaches it).
 *
 * Environment:
 *   CERTAGENT_FAULT_REAL  the module to wrap (default /usr/lib/softhsm/libsofthsm2.so)
 *   CERTAGENT_FAULT_CTL   the control file, read again on every call. Lines "key=value":
 *     mode=present                  forward everything (also: no file, empty file)
 *     mode=remove                   the token is gone: C_GetSlotList(CK_TRUE) omits its slot,
 *                                   C_GetSlotInfo clears CKF_TOKEN_PRESENT, token calls give
 *                                   CKR_TOKEN_NOT_PRESENT, its sessions CKR_DEVICE_REMOVED.
 *                                   Its sessions are closed in SoftHSM, so the login is gone
 *                                   when it returns (mode=present), as with a real card.
 *     mode=invalidate-sessions      every open session of the token is closed in SoftHSM; the
 *                                   old handles answer CKR_SESSION_HANDLE_INVALID, new ones work
 *     mode=device-removed-mid-sign  the next C_Sign pulls the card: it returns
 *                                   CKR_DEVICE_REMOVED and the token stays removed (as with
 *                                   mode=remove) until the file changes
 *     mode=slow[:MS]                C_Sign sleeps MS milliseconds (default 500) first
 *     mode=hang                     C_Sign blocks until the mode changes
 *     mode=crash                    C_Sign calls abort()
 *     mode=pin-count-low            C_GetTokenInfo adds CKF_USER_PIN_COUNT_LOW (a wrong PIN
 *                                   was entered); everything else is forwarded
 *     mode=pin-final-try            C_GetTokenInfo adds CKF_USER_PIN_FINAL_TRY (and COUNT_LOW);
 *                                   a caller must not try a PIN now
 *     mode=pin-locked               C_GetTokenInfo adds CKF_USER_PIN_LOCKED; a user login
 *                                   (C_Login as CKU_USER or CKU_CONTEXT_SPECIFIC) answers
 *                                   CKR_PIN_LOCKED without reaching SoftHSM. The SO still logs
 *                                   in (token unblock-pin); the flag stays until the mode changes
 *     mode=full[:N]                 the token is full: C_CreateObject, C_CopyObject,
 *                                   C_GenerateKey and C_GenerateKeyPair answer
 *                                   CKR_DEVICE_MEMORY, after N of them (default 0) succeeded
 *                                   in this process since the command was given
 *     mode=pinpad                   a pinpad reader: C_GetTokenInfo adds
 *                                   CKF_PROTECTED_AUTHENTICATION_PATH, and a user or
 *                                   context-specific C_Login with a NULL PIN logs in to SoftHSM
 *                                   with the PIN in CERTAGENT_FAULT_PINPAD_PIN (the user typing
 *                                   on the keypad; CKR_FUNCTION_CANCELED when it is unset).
 *                                   Such a login is traced "login LABEL user|context pinpad";
 *                                   a PIN given by the caller is forwarded, and traced
 *                                   "login-pin-given LABEL" (a pinpad caller should send none)
 *     sessions=N[:hidden]           besides the mode: at most N sessions of the token open at
 *                                   once through this module; C_OpenSession answers
 *                                   CKR_SESSION_COUNT beyond that (traced "session-count
 *                                   LABEL"), and C_GetTokenInfo says ulMaxSessionCount = N,
 *                                   or with ":hidden" what SoftHSM says (no limit), as a
 *                                   module that does not announce its card's limit
 *     token=LABEL                   only the token with this label is affected (default: all)
 *   CERTAGENT_FAULT_LOG   optional: a file the module appends one line to per fault it acts
 *                         on ("sign-slow LABEL", "sign-hang LABEL", "full LABEL C_CreateObject",
 *                         ...), so a test knows when a signature is inside the token without
 *                         guessing with sleeps; also one line per C_Login, faulty or not
 *                         ("login LABEL user|so|context"), so a test can check that nobody
 *                         tried a PIN
 *   A command that closes sessions acts once, when the file's content changes; write the file
 *   to a temporary name and rename it over, so the module never reads half a command.
 *
 * Session handles given to the caller are our own (a counter), mapped to SoftHSM's: SoftHSM
 * reuses handle numbers, and a stale handle must never reach a newer session.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "util.h"

#define FAULT_DEFAULT_REAL "/usr/lib/softhsm/libsofthsm2.so"
#define FAULT_CTL_MAX 1024	/* bytes of the control file we read */
#define FAULT_SESSIONS_MAX 1024 /* sessions open at once through this module */
#define FAULT_SLOTS_MAX 64	/* slots whose label we remember */
#define FAULT_SLOW_DEFAULT_MS 500
#define FAULT_POLL_MS 20 /* how often a hanging C_Sign looks at the control file */

typedef enum FaultMode {
	FAULT_PRESENT,
	FAULT_REMOVE,
	FAULT_INVALIDATE,
	FAULT_MID_SIGN,
	FAULT_SLOW,
	FAULT_HANG,
	FAULT_CRASH,
	FAULT_PIN_COUNT_LOW,
	FAULT_PIN_FINAL_TRY,
	FAULT_PIN_LOCKED,
	FAULT_FULL,
	FAULT_PINPAD,
} FaultMode;

static const char *const fault_mode_names[] = {
	[FAULT_PRESENT] = "present",
	[FAULT_REMOVE] = "remove",
	[FAULT_INVALIDATE] = "invalidate-sessions",
	[FAULT_MID_SIGN] = "device-removed-mid-sign",
	[FAULT_SLOW] = "slow",
	[FAULT_HANG] = "hang",
	[FAULT_CRASH] = "crash",
	[FAULT_PIN_COUNT_LOW] = "pin-count-low",
	[FAULT_PIN_FINAL_TRY] = "pin-final-try",
	[FAULT_PIN_LOCKED] = "pin-locked",
	[FAULT_FULL] = "full",
	[FAULT_PINPAD] = "pinpad",
};

typedef struct FaultCommand {
	FaultMode mode;
	unsigned slow_ms;
	unsigned full_after;   /* mode=full:N: creations that still succeed */
	unsigned max_sessions; /* sessions=N: 0 = no limit */
	bool sessions_hidden;  /* sessions=N:hidden: not in ulMaxSessionCount */
	char token[33];	       /* "" = every token */
} FaultCommand;

typedef struct FaultSession {
	CK_SESSION_HANDLE handle; /* ours; 0 = free entry */
	CK_SESSION_HANDLE real;
	CK_SLOT_ID slot;
	bool dead; /* closed in SoftHSM behind the caller's back */
} FaultSession;

typedef struct FaultSlot {
	CK_SLOT_ID slot;
	char label[33];
} FaultSlot;

static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST fault_functions;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

/* Everything below is under fault_lock. */
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static char ctl_seen[FAULT_CTL_MAX + 1]; /* the content the current command came from */
static FaultCommand cmd;
static bool mid_sign_fired; /* device-removed-mid-sign happened: the token is gone */
static unsigned full_used;  /* mode=full:N: creations let through since the command */
static FaultSession sessions[FAULT_SESSIONS_MAX];
static CK_SESSION_HANDLE next_handle = 0x1000;
static FaultSlot slots[FAULT_SLOTS_MAX];
static size_t n_slots;

static void fault_real_load(void)
{
	const char *path = secure_getenv("CERTAGENT_FAULT_REAL");
	CK_C_GetFunctionList get;
	void *dl;

	if (!path || !*path)
		path = FAULT_DEFAULT_REAL;
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "certagent-fault-pkcs11: cannot load %s: %s\n", path, dlerror());
		return;
	}
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (!get || get(&real) != CKR_OK) {
		fprintf(stderr, "certagent-fault-pkcs11: %s has no usable C_GetFunctionList\n",
			path);
		real = NULL;
		return;
	}
	fault_functions.version = real->version; /* we speak whatever it speaks */
	/* Never dlclose'd: SoftHSM stays for the life of the process, as when loaded directly. */
}

static void fault_trace(const char *fmt, ...) _printf_(1, 2);
static void fault_trace(const char *fmt, ...)
{
	const char *path = secure_getenv("CERTAGENT_FAULT_LOG");
	_cleanup_close_ int fd = -1;
	char line[128];
	va_list ap;
	int n;

	if (!path || !*path)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		(void)!write(fd, line, (size_t)n); /* one write: lines never interleave */
}

/* "label   " (blank padded, 32 bytes) to a C string. */
static void fault_label(const CK_UTF8CHAR src[32], char dst[33])
{
	size_t n = 32;

	while (n > 0 && src[n - 1] == ' ')
		n--;
	memcpy(dst, src, n);
	dst[n] = 0;
}

/* With fault_lock: the slot's token label from SoftHSM, remembered ("" if none). */
static const char *fault_slot_label(CK_SLOT_ID slot)
{
	CK_TOKEN_INFO ti;

	for (size_t i = 0; i < n_slots; i++)
		if (slots[i].slot == slot)
			return slots[i].label;
	if (real->C_GetTokenInfo(slot, &ti) != CKR_OK)
		return "";
	if (n_slots == FAULT_SLOTS_MAX)
		n_slots = 0; /* SoftHSM has a handful of slots; start over rather than grow */
	slots[n_slots].slot = slot;
	fault_label(ti.label, slots[n_slots].label);
	return slots[n_slots++].label;
}

/* With fault_lock. */
static bool fault_affects(CK_SLOT_ID slot)
{
	return !cmd.token[0] || strcmp(fault_slot_label(slot), cmd.token) == 0;
}

/* With fault_lock: is the token in this slot gone now? */
static bool fault_removed(CK_SLOT_ID slot)
{
	bool gone = cmd.mode == FAULT_REMOVE || (cmd.mode == FAULT_MID_SIGN && mid_sign_fired);

	return gone && fault_affects(slot);
}

/* With fault_lock: close every session of the affected tokens in SoftHSM; keep the handles. */
static void fault_kill_sessions(void)
{
	unsigned n = 0;

	for (size_t i = 0; i < FAULT_SESSIONS_MAX; i++) {
		FaultSession *s = &sessions[i];

		if (s->handle == 0 || s->dead || !fault_affects(s->slot))
			continue;
		real->C_CloseSession(s->real);
		s->dead = true;
		n++;
	}
	fault_trace("sessions-closed %u", n);
}

static void fault_parse(const char *text, FaultCommand *ret)
{
	FaultCommand c = {.mode = FAULT_PRESENT, .slow_ms = FAULT_SLOW_DEFAULT_MS};
	_cleanup_free_ char *copy = strdup(text);
	char *save = NULL;

	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, '=');

		if (!v)
			continue;
		*v++ = 0;
		v[strcspn(v, "\r")] = 0;
		if (strcmp(line, "token") == 0)
			snprintf(c.token, sizeof(c.token), "%s", v);
		else if (strcmp(line, "sessions") == 0) {
			char *end;

			c.max_sessions = (unsigned)strtoul(v, &end, 10);
			c.sessions_hidden = strcmp(end, ":hidden") == 0;
		} else if (strcmp(line, "mode") == 0 && strncmp(v, "slow", 4) == 0 &&
			   (v[4] == 0 || v[4] == ':')) {
			c.mode = FAULT_SLOW;
			if (v[4] == ':')
				c.slow_ms = (unsigned)strtoul(v + 5, NULL, 10);
		} else if (strcmp(line, "mode") == 0 && strncmp(v, "full", 4) == 0 &&
			   (v[4] == 0 || v[4] == ':')) {
			c.mode = FAULT_FULL;
			if (v[4] == ':')
				c.full_after = (unsigned)strtoul(v + 5, NULL, 10);
		} else if (strcmp(line, "mode") == 0) {
			size_t m = 0;

			while (m < ELEMENTSOF(fault_mode_names) &&
			       strcmp(v, fault_mode_names[m]) != 0)
				m++;
			if (m < ELEMENTSOF(fault_mode_names))
				c.mode = (FaultMode)m;
			else
				fprintf(stderr, "certagent-fault-pkcs11: unknown mode \"%s\"\n", v);
		}
	}
	*ret = c;
}

/* With fault_lock: reads the control file; a new content is a new command, applied once. */
static void fault_refresh(void)
{
	const char *path = secure_getenv("CERTAGENT_FAULT_CTL");
	char buf[FAULT_CTL_MAX + 1];
	_cleanup_close_ int fd = -1;
	ssize_t n = 0;

	if (path && *path)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		while ((n = read(fd, buf, FAULT_CTL_MAX)) < 0 && errno == EINTR)
			;
	if (n < 0)
		n = 0;
	buf[n] = 0;
	if (strcmp(buf, ctl_seen) == 0)
		return;
	memcpy(ctl_seen, buf, (size_t)n + 1);
	fault_parse(buf, &cmd);
	fault_trace("command %s token=%s", fault_mode_names[cmd.mode],
		    cmd.token[0] ? cmd.token : "*");
	mid_sign_fired = false;
	full_used = 0;
	if (cmd.mode == FAULT_REMOVE || cmd.mode == FAULT_INVALIDATE)
		fault_kill_sessions();
}

static FaultSession *fault_session_find(CK_SESSION_HANDLE h)
{
	for (size_t i = 0; h != 0 && i < FAULT_SESSIONS_MAX; i++)
		if (sessions[i].handle == h)
			return &sessions[i];
	return NULL;
}

/*
 * The entry of every call on a session: our handle to SoftHSM's, or the error a card would
 * give now (CKR_DEVICE_REMOVED while the token is gone, CKR_SESSION_HANDLE_INVALID for a
 * session lost behind the caller's back).
 */
static CK_RV fault_session_enter(CK_SESSION_HANDLE h, CK_SESSION_HANDLE *ret_real,
				 CK_SLOT_ID *ret_slot)
{
	FaultSession *s;
	CK_RV rv = CKR_OK;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&fault_lock);
	fault_refresh();
	s = fault_session_find(h);
	if (!s)
		rv = CKR_SESSION_HANDLE_INVALID;
	else if (fault_removed(s->slot)) {
		rv = CKR_DEVICE_REMOVED;
		fault_trace("session-removed %s", fault_slot_label(s->slot));
	} else if (s->dead) {
		rv = CKR_SESSION_HANDLE_INVALID;
		fault_trace("session-invalid %s", fault_slot_label(s->slot));
	} else {
		*ret_real = s->real;
		if (ret_slot)
			*ret_slot = s->slot;
	}
	pthread_mutex_unlock(&fault_lock);
	return rv;
}

/* Token-level calls: CKR_TOKEN_NOT_PRESENT while the slot's token is gone. */
static CK_RV fault_slot_enter(CK_SLOT_ID slot)
{
	bool gone;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&fault_lock);
	fault_refresh();
	gone = fault_removed(slot);
	pthread_mutex_unlock(&fault_lock);
	return gone ? CKR_TOKEN_NOT_PRESENT : CKR_OK;
}

static void fault_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * What C_Sign/C_SignFinal do before the real signature: the faults of the sign path.
 * Returns CKR_OK to go on with *ret_real, or the error to return.
 */
static CK_RV fault_sign_enter(CK_SESSION_HANDLE h, CK_SESSION_HANDLE *ret_real)
{
	CK_SLOT_ID slot;
	FaultCommand c;
	bool hit, hanging = false;
	char label[33];
	CK_RV rv;

	for (;;) {
		rv = fault_session_enter(h, ret_real, &slot);
		if (rv != CKR_OK)
			return rv;
		pthread_mutex_lock(&fault_lock);
		c = cmd;
		hit = fault_affects(slot);
		snprintf(label, sizeof(label), "%s", fault_slot_label(slot));
		if (hit && c.mode == FAULT_MID_SIGN) {
			/* The card leaves now: this signature fails and so does everything
			 * else on the token until the test changes the command. */
			mid_sign_fired = true;
			fault_kill_sessions();
		}
		pthread_mutex_unlock(&fault_lock);
		if (hanging && (!hit || c.mode != FAULT_HANG)) {
			hanging = false;
			fault_trace("sign-hang-end %s", label);
		}
		if (!hit)
			return CKR_OK;
		switch (c.mode) {
		case FAULT_MID_SIGN:
			fault_trace("sign-removed %s", label);
			return CKR_DEVICE_REMOVED;
		case FAULT_SLOW:
			fault_trace("sign-slow %s %u", label, c.slow_ms);
			fault_sleep_ms(c.slow_ms);
			fault_trace("sign-slow-end %s", label);
			return fault_session_enter(h, ret_real, NULL);
		case FAULT_HANG:
			if (!hanging)
				fault_trace("sign-hang %s", label);
			hanging = true;
			fault_sleep_ms(FAULT_POLL_MS);
			continue; /* until the command changes; then whatever it says */
		case FAULT_CRASH:
			fault_trace("sign-crash %s", label);
			fprintf(stderr, "certagent-fault-pkcs11: mode=crash: abort() in C_Sign\n");
			abort();
		default:
			return CKR_OK;
		}
	}
}

/* --- general and slot functions ------------------------------------------------------------ */

static CK_RV fault_C_Initialize(CK_VOID_PTR args)
{
	if (!real)
		return CKR_GENERAL_ERROR;
	return real->C_Initialize(args);
}

static CK_RV fault_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = real->C_Finalize(reserved);
	if (rv == CKR_OK) {
		/* SoftHSM closed every session; a new C_Initialize may renumber slots. */
		pthread_mutex_lock(&fault_lock);
		memset(sessions, 0, sizeof(sessions));
		n_slots = 0;
		pthread_mutex_unlock(&fault_lock);
	}
	return rv;
}

static CK_RV fault_C_GetInfo(CK_INFO_PTR info)
{
	return real ? real->C_GetInfo(info) : CKR_CRYPTOKI_NOT_INITIALIZED;
}

static CK_RV fault_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
	if (!ret)
		return CKR_ARGUMENTS_BAD;
	*ret = &fault_functions;
	return CKR_OK;
}

static CK_RV fault_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	_cleanup_free_ CK_SLOT_ID *all = NULL;
	CK_ULONG n = 0, kept = 0;
	CK_RV rv;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (!present)
		return real->C_GetSlotList(present, list, count);
	if (!count)
		return CKR_ARGUMENTS_BAD;
	rv = real->C_GetSlotList(present, NULL, &n);
	if (rv != CKR_OK)
		return rv;
	all = calloc(n + 1, sizeof(*all));
	if (!all)
		return CKR_HOST_MEMORY;
	rv = real->C_GetSlotList(present, all, &n);
	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&fault_lock);
	fault_refresh();
	for (CK_ULONG i = 0; i < n; i++)
		if (!fault_removed(all[i]))
			all[kept++] = all[i];
	pthread_mutex_unlock(&fault_lock);
	if (list && *count < kept) {
		*count = kept;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (list)
		memcpy(list, all, kept * sizeof(*all));
	*count = kept;
	return CKR_OK;
}

static CK_RV fault_C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	CK_RV rv;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = real->C_GetSlotInfo(slot, info);
	if (rv == CKR_OK && fault_slot_enter(slot) != CKR_OK)
		info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
	return rv;
}

/* Token-level calls: refused while the token is gone, else forwarded unchanged. */
#define FAULT_FORWARD_SLOT(name, params, args)                                                     \
	static CK_RV fault_##name params                                                           \
	{                                                                                          \
		CK_RV rv = fault_slot_enter(slot);                                                 \
		return rv != CKR_OK ? rv : real->name args;                                        \
	}

/* The PIN modes show in the flags, as a card that counted wrong PINs shows them. */
static CK_RV fault_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	CK_FLAGS add = 0;
	CK_RV rv = fault_slot_enter(slot);

	if (rv != CKR_OK)
		return rv;
	rv = real->C_GetTokenInfo(slot, info);
	if (rv != CKR_OK || !info)
		return rv;
	pthread_mutex_lock(&fault_lock);
	if (fault_affects(slot)) {
		if (cmd.mode == FAULT_PIN_COUNT_LOW)
			add = CKF_USER_PIN_COUNT_LOW;
		else if (cmd.mode == FAULT_PIN_FINAL_TRY)
			add = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY;
		else if (cmd.mode == FAULT_PIN_LOCKED)
			add = CKF_USER_PIN_LOCKED;
		else if (cmd.mode == FAULT_PINPAD)
			add = CKF_PROTECTED_AUTHENTICATION_PATH;
		if (cmd.max_sessions && !cmd.sessions_hidden)
			info->ulMaxSessionCount = cmd.max_sessions;
	}
	pthread_mutex_unlock(&fault_lock);
	info->flags |= add;
	return CKR_OK;
}
FAULT_FORWARD_SLOT(C_GetMechanismList,
		   (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count),
		   (slot, list, count))
FAULT_FORWARD_SLOT(C_GetMechanismInfo,
		   (CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),
		   (slot, type, info))
FAULT_FORWARD_SLOT(C_InitToken,
		   (CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label),
		   (slot, pin, pin_len, label))

static CK_RV fault_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
	/* Forwarded as is: SoftHSM has none, so a caller polls, and polling sees our faults. */
	return real ? real->C_WaitForSlotEvent(flags, slot, reserved)
		    : CKR_CRYPTOKI_NOT_INITIALIZED;
}

/* --- sessions ------------------------------------------------------------------------------- */

static CK_RV fault_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
				 CK_SESSION_HANDLE_PTR ret)
{
	CK_SESSION_HANDLE h;
	FaultSession *s;
	CK_RV rv;

	if (!ret)
		return CKR_ARGUMENTS_BAD;
	rv = fault_slot_enter(slot);
	if (rv != CKR_OK)
		return rv;
	/* Notify callbacks get SoftHSM's handle; SoftHSM never calls them. */
	rv = real->C_OpenSession(slot, flags, app, notify, &h);
	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&fault_lock);
	if (cmd.max_sessions && fault_affects(slot)) {
		unsigned open = 0;

		for (size_t i = 0; i < FAULT_SESSIONS_MAX; i++)
			open += sessions[i].handle != 0 && !sessions[i].dead &&
				sessions[i].slot == slot;
		if (open >= cmd.max_sessions) {
			fault_trace("session-count %s", fault_slot_label(slot));
			pthread_mutex_unlock(&fault_lock);
			real->C_CloseSession(h);
			return CKR_SESSION_COUNT;
		}
	}
	s = NULL;
	for (size_t i = 0; !s && i < FAULT_SESSIONS_MAX; i++)
		if (sessions[i].handle == 0)
			s = &sessions[i];
	if (s) {
		*s = (FaultSession){.handle = next_handle++, .real = h, .slot = slot};
		*ret = s->handle;
	}
	pthread_mutex_unlock(&fault_lock);
	if (!s) {
		real->C_CloseSession(h);
		return CKR_SESSION_COUNT;
	}
	return CKR_OK;
}

static CK_RV fault_C_CloseSession(CK_SESSION_HANDLE h)
{
	FaultSession *s;
	CK_SESSION_HANDLE r = 0;
	CK_RV rv = CKR_SESSION_HANDLE_INVALID;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&fault_lock);
	fault_refresh();
	s = fault_session_find(h);
	if (s) {
		if (fault_removed(s->slot))
			rv = CKR_DEVICE_REMOVED;
		else if (!s->dead)
			r = s->real;
		*s = (FaultSession){0};
	}
	pthread_mutex_unlock(&fault_lock);
	return r ? real->C_CloseSession(r) : rv;
}

static CK_RV fault_C_CloseAllSessions(CK_SLOT_ID slot)
{
	CK_RV rv;

	if (!real)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&fault_lock);
	fault_refresh();
	for (size_t i = 0; i < FAULT_SESSIONS_MAX; i++)
		if (sessions[i].handle != 0 && sessions[i].slot == slot)
			sessions[i] = (FaultSession){0};
	rv = fault_removed(slot) ? CKR_TOKEN_NOT_PRESENT : CKR_OK;
	pthread_mutex_unlock(&fault_lock);
	return rv != CKR_OK ? rv : real->C_CloseAllSessions(slot);
}

static CK_RV fault_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	CK_SESSION_HANDLE r;
	CK_RV rv = fault_session_enter(h, &r, NULL);

	if (rv != CKR_OK)
		return rv;
	return real->C_GetSessionInfo(r, info);
}

static CK_RV fault_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
			  CK_ULONG_PTR sig_len)
{
	CK_SESSION_HANDLE r;
	CK_RV rv;

	/* A length query (sig == NULL) is answered by the host, fast, on a real card too. */
	rv = sig ? fault_sign_enter(h, &r) : fault_session_enter(h, &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_Sign(r, data, len, sig, sig_len);
}

static CK_RV fault_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	CK_SESSION_HANDLE r;
	CK_RV rv;

	rv = sig ? fault_sign_enter(h, &r) : fault_session_enter(h, &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignFinal(r, sig, sig_len);
}

/*
 * Every other call on a session: our handle to SoftHSM's, then forwarded unchanged. `args`
 * names the session `r`.
 */
#define FAULT_FORWARD_SESSION(name, params, args)                                                  \
	static CK_RV fault_##name params                                                           \
	{                                                                                          \
		CK_SESSION_HANDLE r;                                                               \
		CK_RV rv = fault_session_enter(h, &r, NULL);                                       \
		return rv != CKR_OK ? rv : real->name args;                                        \
	}

typedef CK_SESSION_HANDLE Sh;
typedef CK_OBJECT_HANDLE Oh;

FAULT_FORWARD_SESSION(C_InitPIN, (Sh h, CK_UTF8CHAR_PTR pin, CK_ULONG n), (r, pin, n))
FAULT_FORWARD_SESSION(C_SetPIN,
		      (Sh h, CK_UTF8CHAR_PTR o, CK_ULONG on, CK_UTF8CHAR_PTR p, CK_ULONG pn),
		      (r, o, on, p, pn))
FAULT_FORWARD_SESSION(C_GetOperationState, (Sh h, CK_BYTE_PTR st, CK_ULONG_PTR n), (r, st, n))
FAULT_FORWARD_SESSION(C_SetOperationState, (Sh h, CK_BYTE_PTR st, CK_ULONG n, Oh ek, Oh ak),
		      (r, st, n, ek, ak))
FAULT_FORWARD_SESSION(C_Logout, (Sh h), (r))
FAULT_FORWARD_SESSION(C_DestroyObject, (Sh h, Oh o), (r, o))
FAULT_FORWARD_SESSION(C_GetObjectSize, (Sh h, Oh o, CK_ULONG_PTR n), (r, o, n))
FAULT_FORWARD_SESSION(C_GetAttributeValue, (Sh h, Oh o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
		      (r, o, t, n))
FAULT_FORWARD_SESSION(C_SetAttributeValue, (Sh h, Oh o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
		      (r, o, t, n))
FAULT_FORWARD_SESSION(C_FindObjectsInit, (Sh h, CK_ATTRIBUTE_PTR t, CK_ULONG n), (r, t, n))
FAULT_FORWARD_SESSION(C_FindObjects, (Sh h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n),
		      (r, o, max, n))
FAULT_FORWARD_SESSION(C_FindObjectsFinal, (Sh h), (r))
FAULT_FORWARD_SESSION(C_EncryptInit, (Sh h, CK_MECHANISM_PTR m, Oh k), (r, m, k))
FAULT_FORWARD_SESSION(C_Encrypt, (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_EncryptUpdate,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_EncryptFinal, (Sh h, CK_BYTE_PTR o, CK_ULONG_PTR on), (r, o, on))
FAULT_FORWARD_SESSION(C_DecryptInit, (Sh h, CK_MECHANISM_PTR m, Oh k), (r, m, k))
FAULT_FORWARD_SESSION(C_Decrypt, (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_DecryptUpdate,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_DecryptFinal, (Sh h, CK_BYTE_PTR o, CK_ULONG_PTR on), (r, o, on))
FAULT_FORWARD_SESSION(C_DigestInit, (Sh h, CK_MECHANISM_PTR m), (r, m))
FAULT_FORWARD_SESSION(C_Digest, (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_DigestUpdate, (Sh h, CK_BYTE_PTR d, CK_ULONG n), (r, d, n))
FAULT_FORWARD_SESSION(C_DigestKey, (Sh h, Oh k), (r, k))
FAULT_FORWARD_SESSION(C_DigestFinal, (Sh h, CK_BYTE_PTR o, CK_ULONG_PTR on), (r, o, on))
FAULT_FORWARD_SESSION(C_SignInit, (Sh h, CK_MECHANISM_PTR m, Oh k), (r, m, k))
FAULT_FORWARD_SESSION(C_SignUpdate, (Sh h, CK_BYTE_PTR d, CK_ULONG n), (r, d, n))
FAULT_FORWARD_SESSION(C_SignRecoverInit, (Sh h, CK_MECHANISM_PTR m, Oh k), (r, m, k))
FAULT_FORWARD_SESSION(C_SignRecover,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_VerifyInit, (Sh h, CK_MECHANISM_PTR m, Oh k), (r, m, k))
FAULT_FORWARD_SESSION(C_Verify, (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s, CK_ULONG sn),
		      (r, d, n, s, sn))
FAULT_FORWARD_SESSION(C_VerifyUpdate, (Sh h, CK_BYTE_PTR d, CK_ULONG n), (r, d, n))
FAULT_FORWARD_SESSION(C_VerifyFinal, (Sh h, CK_BYTE_PTR s, CK_ULONG sn), (r, s, sn))
FAULT_FORWARD_SESSION(C_VerifyRecoverInit, (Sh h, CK_MECHANISM_PTR m, Oh k), (r, m, k))
FAULT_FORWARD_SESSION(C_VerifyRecover,
		      (Sh h, CK_BYTE_PTR s, CK_ULONG sn, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, s, sn, o, on))
FAULT_FORWARD_SESSION(C_DigestEncryptUpdate,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_DecryptDigestUpdate,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_SignEncryptUpdate,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_DecryptVerifyUpdate,
		      (Sh h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, d, n, o, on))
FAULT_FORWARD_SESSION(C_WrapKey,
		      (Sh h, CK_MECHANISM_PTR m, Oh wk, Oh k, CK_BYTE_PTR o, CK_ULONG_PTR on),
		      (r, m, wk, k, o, on))
FAULT_FORWARD_SESSION(C_UnwrapKey,
		      (Sh h, CK_MECHANISM_PTR m, Oh uk, CK_BYTE_PTR w, CK_ULONG wn,
		       CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
		      (r, m, uk, w, wn, t, n, k))
FAULT_FORWARD_SESSION(C_DeriveKey,
		      (Sh h, CK_MECHANISM_PTR m, Oh base, CK_ATTRIBUTE_PTR t, CK_ULONG n,
		       CK_OBJECT_HANDLE_PTR k),
		      (r, m, base, t, n, k))
FAULT_FORWARD_SESSION(C_SeedRandom, (Sh h, CK_BYTE_PTR d, CK_ULONG n), (r, d, n))
FAULT_FORWARD_SESSION(C_GenerateRandom, (Sh h, CK_BYTE_PTR d, CK_ULONG n), (r, d, n))
FAULT_FORWARD_SESSION(C_GetFunctionStatus, (Sh h), (r))
FAULT_FORWARD_SESSION(C_CancelFunction, (Sh h), (r))

/* --- logins and object creation: the PIN and "token full" faults ------------------------------ */

/*
 * Every login is traced; with mode=pin-locked a user login answers as a blocked card does;
 * with mode=pinpad a NULL PIN is "typed on the keypad" (CERTAGENT_FAULT_PINPAD_PIN).
 */
static CK_RV fault_C_Login(Sh h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG n)
{
	const char *who = user == CKU_SO ? "so" : user == CKU_USER ? "user" : "context";
	CK_SLOT_ID slot;
	bool locked, pinpad;
	char label[33];
	CK_SESSION_HANDLE r;
	CK_RV rv = fault_session_enter(h, &r, &slot);

	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&fault_lock);
	snprintf(label, sizeof(label), "%s", fault_slot_label(slot));
	locked = cmd.mode == FAULT_PIN_LOCKED && user != CKU_SO && fault_affects(slot);
	pinpad = cmd.mode == FAULT_PINPAD && user != CKU_SO && fault_affects(slot);
	pthread_mutex_unlock(&fault_lock);
	if (pinpad && !pin) {
		const char *keypad = secure_getenv("CERTAGENT_FAULT_PINPAD_PIN");

		fault_trace("login %s %s pinpad", label, who);
		if (!keypad)
			return CKR_FUNCTION_CANCELED; /* nobody typed anything */
		return real->C_Login(r, user, (CK_UTF8CHAR_PTR)keypad, (CK_ULONG)strlen(keypad));
	}
	fault_trace("login %s %s", label, who);
	if (pinpad)
		fault_trace("login-pin-given %s", label);
	if (locked) {
		fault_trace("login-locked %s", label);
		return CKR_PIN_LOCKED;
	}
	return real->C_Login(r, user, pin, n);
}

/* Before a call that stores an object: CKR_DEVICE_MEMORY when mode=full says the token is. */
static CK_RV fault_create_enter(Sh h, const char *fn, CK_SESSION_HANDLE *ret_real)
{
	CK_SLOT_ID slot;
	bool full = false;
	char label[33];
	CK_RV rv = fault_session_enter(h, ret_real, &slot);

	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&fault_lock);
	if (cmd.mode == FAULT_FULL && fault_affects(slot)) {
		if (full_used < cmd.full_after)
			full_used++;
		else
			full = true;
	}
	snprintf(label, sizeof(label), "%s", fault_slot_label(slot));
	pthread_mutex_unlock(&fault_lock);
	if (!full)
		return CKR_OK;
	fault_trace("full %s %s", label, fn);
	return CKR_DEVICE_MEMORY;
}

static CK_RV fault_C_CreateObject(Sh h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o)
{
	CK_SESSION_HANDLE r;
	CK_RV rv = fault_create_enter(h, "C_CreateObject", &r);

	return rv != CKR_OK ? rv : real->C_CreateObject(r, t, n, o);
}

static CK_RV fault_C_CopyObject(Sh h, Oh o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
				CK_OBJECT_HANDLE_PTR ret)
{
	CK_SESSION_HANDLE r;
	CK_RV rv = fault_create_enter(h, "C_CopyObject", &r);

	return rv != CKR_OK ? rv : real->C_CopyObject(r, o, t, n, ret);
}

static CK_RV fault_C_GenerateKey(Sh h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
				 CK_OBJECT_HANDLE_PTR k)
{
	CK_SESSION_HANDLE r;
	CK_RV rv = fault_create_enter(h, "C_GenerateKey", &r);

	return rv != CKR_OK ? rv : real->C_GenerateKey(r, m, t, n, k);
}

static CK_RV fault_C_GenerateKeyPair(Sh h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
				     CK_ATTRIBUTE_PTR st, CK_ULONG sn, CK_OBJECT_HANDLE_PTR pk,
				     CK_OBJECT_HANDLE_PTR sk)
{
	CK_SESSION_HANDLE r;
	CK_RV rv = fault_create_enter(h, "C_GenerateKeyPair", &r);

	return rv != CKR_OK ? rv : real->C_GenerateKeyPair(r, m, pt, pn, st, sn, pk, sk);
}

#define F(name) .name = fault_##name
static CK_FUNCTION_LIST fault_functions = {
	.version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
	F(C_Initialize),
	F(C_Finalize),
	F(C_GetInfo),
	F(C_GetFunctionList),
	F(C_GetSlotList),
	F(C_GetSlotInfo),
	F(C_GetTokenInfo),
	F(C_GetMechanismList),
	F(C_GetMechanismInfo),
	F(C_InitToken),
	F(C_InitPIN),
	F(C_SetPIN),
	F(C_OpenSession),
	F(C_CloseSession),
	F(C_CloseAllSessions),
	F(C_GetSessionInfo),
	F(C_GetOperationState),
	F(C_SetOperationState),
	F(C_Login),
	F(C_Logout),
	F(C_CreateObject),
	F(C_CopyObject),
	F(C_DestroyObject),
	F(C_GetObjectSize),
	F(C_GetAttributeValue),
	F(C_SetAttributeValue),
	F(C_FindObjectsInit),
	F(C_FindObjects),
	F(C_FindObjectsFinal),
	F(C_EncryptInit),
	F(C_Encrypt),
	F(C_EncryptUpdate),
	F(C_EncryptFinal),
	F(C_DecryptInit),
	F(C_Decrypt),
	F(C_DecryptUpdate),
	F(C_DecryptFinal),
	F(C_DigestInit),
	F(C_Digest),
	F(C_DigestUpdate),
	F(C_DigestKey),
	F(C_DigestFinal),
	F(C_SignInit),
	F(C_Sign),
	F(C_SignUpdate),
	F(C_SignFinal),
	F(C_SignRecoverInit),
	F(C_SignRecover),
	F(C_VerifyInit),
	F(C_Verify),
	F(C_VerifyUpdate),
	F(C_VerifyFinal),
	F(C_VerifyRecoverInit),
	F(C_VerifyRecover),
	F(C_DigestEncryptUpdate),
	F(C_DecryptDigestUpdate),
	F(C_SignEncryptUpdate),
	F(C_DecryptVerifyUpdate),
	F(C_GenerateKey),
	F(C_GenerateKeyPair),
	F(C_WrapKey),
	F(C_UnwrapKey),
	F(C_DeriveKey),
	F(C_SeedRandom),
	F(C_GenerateRandom),
	F(C_GetFunctionStatus),
	F(C_CancelFunction),
	F(C_WaitForSlotEvent),
};
#undef F

/* The module's one export. Loads the real module on first use; fails if it cannot. */
_public_ CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
	pthread_once(&real_once, fault_real_load);
	if (!real)
		return CKR_GENERAL_ERROR;
	return fault_C_GetFunctionList(ret);
}
