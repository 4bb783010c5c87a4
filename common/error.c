/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>

#include "error.h"

static const char *const error_names[_CA_E_MAX] = {
	[CA_E_KEY_NOT_FOUND] = "KeyNotFound",
	[CA_E_PIN_REQUIRED] = "PinRequired",
	[CA_E_PIN_INCORRECT] = "PinIncorrect",
	[CA_E_PIN_LOCKED] = "PinLocked",
	[CA_E_TOKEN_ABSENT] = "TokenAbsent",
	[CA_E_UNSUPPORTED_SCHEME] = "UnsupportedScheme",
	[CA_E_INVALID_ARGS] = "InvalidArgs",
	[CA_E_TOO_LARGE] = "TooLarge",
	[CA_E_FAILED] = "Failed",
	[CA_E_CANCELLED] = "Cancelled",
	[CA_E_POLICY_DENIED] = "PolicyDenied",
};

const char *ca_error_name(int code)
{
	if (code > 0 && code < _CA_E_MAX && error_names[code])
		return error_names[code];
	return "Failed";
}

int ca_error_setv(CaError *err, int code, const char *fmt, va_list ap)
{
	if (err) {
		err->code = code;
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
	}
	return code;
}

int ca_error_set(CaError *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ca_error_setv(err, code, fmt, ap);
	va_end(ap);
	return code;
}
