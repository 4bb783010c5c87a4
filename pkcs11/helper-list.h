/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * helper-list: the modules registered with p11-kit, learned in a short-lived
 * certagent-pkcs11-helper process so that the agent never maps them (pkcs11/ only: module.c
 * asks, helper-main.c answers). See helper-list.c for the line format.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct ListedModule {
	char *name;	   /* p11-kit's name for it (its .module file without the suffix) */
	char *path;	   /* absolute file name p11-kit would dlopen */
	bool critical;	   /* "critical: yes" in its registration */
	bool trust_policy; /* "trust-policy: yes": CA anchors (p11-kit-trust), never client keys */
} ListedModule;

/* The --list-registered mode of the helper: prints the list on stdout. Returns the exit
 * status (0 with a complete list, 1 when p11-kit could not load its registration). */
int helper_list_main(void);

/*
 * The agent's side: runs `certagent-pkcs11-helper --list-registered` and parses what it
 * prints (at most HELPER_LIST_OUTPUT_MAX bytes and HELPER_LIST_MODULES_MAX modules), waiting
 * at most timeout_ms. Returns 0, -ENOMEM, or -EIO/-ETIMEDOUT/-EBADMSG when the helper could
 * not be run, took too long or printed something else than a complete list (logged).
 */
int helper_list_registered(unsigned timeout_ms, ListedModule **ret, size_t *ret_n);
ListedModule *helper_list_free(ListedModule *v, size_t n);

#define HELPER_LIST_OUTPUT_MAX (64 * 1024)
#define HELPER_LIST_MODULES_MAX 256
#define HELPER_LIST_NAME_MAX 256
