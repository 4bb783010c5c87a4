/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-config: the agent's configuration parser (agent/settings.c on libinih), linked on its
 * own. The input is the file's content; settings_load() reads it through a memfd. Besides "no
 * crash, no leak", it checks what the agent relies on afterwards: a parsed configuration has a
 * path for every module and both token and file for every pin source, all absolute, and a
 * worker count in range; a refused one says why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "settings.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

static int config_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	Settings *c = NULL;
	CaError err = {0};
	int r;

	if (config_fd < 0) {
		config_fd = memfd_create("fuzz-config", MFD_CLOEXEC);
		check(config_fd >= 0);
	}
	check(ftruncate(config_fd, 0) == 0);
	check(pwrite(config_fd, data, size, 0) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", config_fd);

	r = settings_load(path, true, &c, &err);
	if (r != 0) {
		check(r == CA_E_INVALID_ARGS || r == CA_E_FAILED);
		check(err.message[0] != 0);
		check(c == NULL);
		return 0;
	}
	check(c != NULL);
	check(c->workers >= 1 && c->workers <= SETTINGS_WORKERS_MAX);
	for (size_t i = 0; i < c->n_modules; i++)
		check(c->modules[i].name && c->modules[i].path && c->modules[i].path[0] == '/');
	for (size_t i = 0; i < c->n_pin_sources; i++)
		check(c->pin_sources[i].token_uri && c->pin_sources[i].path &&
		      strncmp(c->pin_sources[i].token_uri, "pkcs11:", 7) == 0 &&
		      c->pin_sources[i].path[0] == '/');
	settings_free(c);
	return 0;
}
