/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * error: the expected failures every layer shares, and the message a person can act on.
 *
 * Functions return 0 on success, a negative errno for the unexpected ("pass it up"), or a
 * positive CA_E_* code for an expected failure the caller must handle. A CaError, owned by
 * the caller and optional (NULL is fine), receives the code and a sentence that says what
 * happened and what to do next. The one table that maps codes to D-Bus error names lives in
 * dbus/ipc-error.c; the one function that maps CK_RV lives in pkcs11/.
 */
#pragma once

#include <stdarg.h>

#include "util.h"

enum {
	CA_E_KEY_NOT_FOUND = 1, /* no identity/key with that URI */
	CA_E_PIN_REQUIRED,      /* the token needs a login first */
	CA_E_PIN_INCORRECT,     /* C_Login said CKR_PIN_INCORRECT */
	CA_E_PIN_LOCKED,        /* PIN blocked, or final try: we refuse to try */
	CA_E_TOKEN_ABSENT,      /* token or slot gone */
	CA_E_UNSUPPORTED_SCHEME, /* the key or token cannot do that signature scheme */
	CA_E_INVALID_ARGS,      /* malformed input (bad URI, bad DigestInfo, wrong hash length) */
	CA_E_TOO_LARGE,         /* a client-controlled size over its cap */
	CA_E_FAILED,            /* the token failed in a way we cannot explain better */
	CA_E_CANCELLED,         /* the user cancelled a prompt */
	CA_E_POLICY_DENIED,     /* refused by policy */
	_CA_E_MAX,
};

#define CA_ERROR_MESSAGE_MAX 512

typedef struct CaError {
	int code;                            /* CA_E_* or negative errno; 0 = none */
	char message[CA_ERROR_MESSAGE_MAX];
} CaError;

/* Sets err (if not NULL) and returns code, so callers can `return ca_error_set(...)`. */
int ca_error_set(CaError *err, int code, const char *fmt, ...) _printf_(3, 4);
int ca_error_setv(CaError *err, int code, const char *fmt, va_list ap) _printf_(3, 0);

/* Short English name of a code ("PinIncorrect"), also the D-Bus error suffix. */
const char *ca_error_name(int code);
