/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util: scope-bound cleanup, secret wiping and the monotonic clock, shared by every layer.
 *
 * Every owned local carries a _cleanup_ attribute; ownership leaves a scope only through
 * TAKE_PTR(). Buffers that may hold a PIN, a digest or signature scratch are freed with
 * erase_and_free(), never plain free().
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _nonnull_ __attribute__((nonnull))
#define _public_ __attribute__((visibility("default")))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* CLOCK_MONOTONIC in microseconds. */
static inline uint64_t ca_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Hand the pointer out of a _cleanup_ scope: returns it and leaves NULL behind. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _p_ = (p);                                                           \
		(p) = NULL;                                                                        \
		_p_;                                                                               \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Wipe then free: for PINs, digests and signature scratch buffers. */
static inline void *erase_and_free(void *p, size_t n)
{
	if (p) {
		explicit_bzero(p, n);
		free(p);
	}
	return NULL;
}

/* Wipe then free a NUL-terminated secret (a PIN). */
static inline char *erase_and_free_str(char *s)
{
	if (s)
		erase_and_free(s, strlen(s));
	return NULL;
}

static inline void erase_and_free_strp(char **s)
{
	erase_and_free_str(*s);
}
#define _cleanup_erase_str_ _cleanup_(erase_and_free_strp)

static inline void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}
static inline void strv_freep(char ***v)
{
	strv_free(*v);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)
