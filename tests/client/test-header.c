/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent.h on its own, compiled with -std=c99 -pedantic -Werror (see meson.build): the
 * public header must not lean on anything the application did not include, nor on GNU C.
 */
#include "certagent.h"

int main(void)
{
	certagent_error err = CERTAGENT_ERROR_INIT;

	return err.version == CERTAGENT_API_VERSION && err.code == CERTAGENT_OK ? 0 : 1;
}
