/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * confirm: SETTIMEOUT, SETTITLE, SETDESC, SETOK, SETCANCEL, CONFIRM with a fresh pinentry
 * each time, found, started and set up with prompt.c's pinentry helpers (a CONFIRM carries no
 * secret, so libassuan's default allocator is fine). It takes the agent's one dialog slot
 * (prompt_ui_lock, shared with the PIN prompts), so a confirmation never shows while a PIN
 * dialog is open, nor the other way round.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <assuan.h>

#include "confirm.h"
#include "log.h"
#include "prompt.h"

int confirm_ask(const char *pinentry, const char *title, const char *desc, const char *ok,
		const char *cancel, CaError *err)
{
	_cleanup_free_ char *prog = NULL;
	assuan_context_t ctx = NULL;
	char line[ASSUAN_LINELENGTH];
	gpg_error_t e;

	if (!pinentry)
		return ca_error_set(err, CA_E_FAILED,
				    "this identity's policy wants a confirmation, but pinentry = "
				    "none: set a pinentry program in agent.conf or drop confirm");
	prog = prompt_find_program(pinentry);
	if (!prog)
		return ca_error_set(err, CA_E_FAILED,
				    "this identity's policy wants a confirmation, but the "
				    "pinentry program \"%s\" is not in PATH",
				    pinentry);

	prompt_ui_lock();
	e = assuan_new(&ctx);
	if (!e)
		e = prompt_pinentry_connect(ctx, prog);
	if (e) {
		prompt_ui_unlock();
		assuan_release(ctx);
		return ca_error_set(err, CA_E_FAILED,
				    "cannot ask for the confirmation this identity's policy "
				    "wants: %s does not start (%s)",
				    prog, gpg_strerror(e));
	}
	prompt_pinentry_options(ctx, CONFIRM_TIMEOUT_SEC);
	prompt_command(line, sizeof(line), "SETTITLE", title);
	e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	if (!e) {
		prompt_command(line, sizeof(line), "SETDESC", desc);
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (!e) {
		prompt_command(line, sizeof(line), "SETOK", ok);
		(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
		prompt_command(line, sizeof(line), "SETCANCEL", cancel);
		(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
		e = assuan_transact(ctx, "CONFIRM", NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (!e)
		(void)assuan_transact(ctx, "BYE", NULL, NULL, NULL, NULL, NULL, NULL);
	assuan_release(ctx);
	prompt_ui_unlock();

	switch (gpg_err_code(e)) {
	case GPG_ERR_NO_ERROR:
		return 0;
	case GPG_ERR_CANCELED:
	case GPG_ERR_FULLY_CANCELED:
	case GPG_ERR_NOT_CONFIRMED:
	case GPG_ERR_ASS_CANCELED:
		return ca_error_set(err, CA_E_POLICY_DENIED, "the user refused the signature");
	case GPG_ERR_TIMEOUT:
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "nobody confirmed the signature within %d s",
				    CONFIRM_TIMEOUT_SEC);
	default:
		return ca_error_set(err, CA_E_FAILED, "the confirmation dialog (%s) failed: %s",
				    prog, gpg_strerror(e));
	}
}
