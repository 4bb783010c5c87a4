/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * confirm: a yes/no question to the user through their pinentry (Assuan CONFIRM), for
 * `confirm = yes` policies. Runs on a worker thread and blocks it until the user answers or
 * the dialog times out; one dialog at a time, PIN prompts included (prompt_ui_lock). No secret
 * passes through it.
 */
#pragma once

#include "error.h"

#define CONFIRM_TIMEOUT_SEC 60 /* the client's call waits 120 s */

/*
 * Shows desc with the buttons ok / cancel. Returns 0 when the user said yes, else
 * CA_E_POLICY_DENIED (said no, or did not answer in time) or CA_E_FAILED (no pinentry:
 * "pinentry = none", or it could not be started).
 */
int confirm_ask(const char *pinentry, const char *title, const char *desc, const char *ok,
		const char *cancel, CaError *err);
