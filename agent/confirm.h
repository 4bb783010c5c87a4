/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * confirm: a question to the user through their pinentry (Assuan CONFIRM), for
 * `confirm = yes` policies: "Allow once", "Allow for N minutes" (when the policy remembers
 * answers and the pinentry takes a third button) or "Deny". Runs on a worker thread and
 * blocks it until the user answers or the dialog times out; one dialog at a time, PIN
 * prompts included (prompt_ui_lock). No secret passes through it.
 */
#pragma once

#include <stdbool.h>

#include "error.h"

#define CONFIRM_TIMEOUT_SEC 60 /* the client's call waits 120 s */

typedef struct ConfirmDialog {
	const char *title;
	const char *desc;      /* names the program, the server and the identity */
	unsigned remember_min; /* > 0: offer "Allow for N minutes" (pinentry's NOTOK button) */
} ConfirmDialog;

/*
 * Shows the dialog. Returns 0 when the user allowed, with *ret_remember true when they chose
 * "Allow for N minutes" (only ever with remember_min > 0 and a pinentry that took the third
 * button); else CA_E_POLICY_DENIED ("Deny", the window closed, or no answer in time) or
 * CA_E_FAILED (no pinentry: "pinentry = none", or it could not be started).
 */
int confirm_ask(const char *pinentry, const ConfirmDialog *d, bool *ret_remember, CaError *err);
