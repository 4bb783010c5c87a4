/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy-edit: `certagent policy add/remove` — changes one [policy NAME] section of the agent's
 * configuration file and leaves every other byte as it was. The new section is checked with
 * the agent's own parser (agent/policy-config.c) key by key, the whole new file with
 * settings_load(), and the file read back must hold exactly the rule that was asked for; only
 * then does it replace the old one, atomically (a temporary file in the same folder with the
 * same mode, fsync, rename, fsync of the folder), under an flock(2) of the folder so two
 * edits at once do not lose one another.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define POLICY_EDIT_FILE_MAX (1u << 20) /* bytes of configuration we are willing to rewrite */
#define POLICY_EDIT_NAME_MAX 40		/* libinih keeps 50 bytes of "policy NAME" */

/* Positive codes of policy_edit_apply(). */
enum {
	POLICY_EDIT_E_EXISTS = 1, /* add: [policy NAME] is there already (and force is false) */
	POLICY_EDIT_E_NOT_FOUND,  /* remove: there is no [policy NAME] */
	POLICY_EDIT_E_INVALID,	  /* the new section is wrong: err names the key and why */
	POLICY_EDIT_E_FILE,	  /* the file cannot be read, parsed or written: err says */
};

/* One line of the section: "key = value". */
typedef struct PolicyEditKey {
	const char *key;
	const char *value;
} PolicyEditKey;

/*
 * Adds [policy name] with keys (n_keys of them; keys NULL: removes it instead). An existing
 * section is replaced in place (its position decides which rule applies first) when force is
 * true; a new one goes at the end of the file, which is created (mode 0600, folders 0700)
 * when missing. *ret_replaced tells whether a section was replaced. A file that does not
 * parse now is not touched. Codes: POLICY_EDIT_E_*, -ENOMEM.
 */
int policy_edit_apply(const char *path, const char *name, const PolicyEditKey *keys, size_t n_keys,
		      bool force, bool *ret_replaced, CaError *err);
