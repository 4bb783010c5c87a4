/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * check-fatal.h: the pkcs11/ unit tests' assertion. CHECK(cond) prints the place and the
 * condition and exits 1 at the first one that fails (the cases build on each other's state).
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)
