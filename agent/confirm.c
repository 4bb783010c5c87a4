/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * confirm: SETTIMEOUT, SETTITLE, SETDESC, SETOK "Allow once", [SETNOTOK "Allow for N
 * minutes"], SETCANCEL "Deny", CONFIRM with a fresh pinentry each time, found, started and
 * set up with prompt.c's pinentry helpers (a CONFIRM carries no secret, so libassuan's default
 * allocator is fine). It takes the agent's one dialog slot (prompt_ui_lock, shared with the
 * PIN prompts), so a confirmation never shows while a PIN dialog is open, nor the other way
 * round.
 *
 * pinentry answers CONFIRM with OK for the OK button, GPG_ERR_NOT_CONFIRMED for the NOTOK
 * button and GPG_ERR_CANCELED for Cancel or the window's close button (pinentry.c
 * cmd_confirm; GnuPG's agent reads NOT_CONFIRMED as the NOTOK button the same way). Only an
 * answer that is exactly one of the two "allow" buttons allows: NOT_CONFIRMED counts as
 * "Allow for N minutes" only when this dialog offered that button, and a "BUTTON_INFO close"
 * status (the window was closed) refuses whatever code follows it.
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

/* "Allow for 1 minute", "Allow for 30 minutes", "Allow for 2 hours". */
static void confirm_remember_label(unsigned min, char *buf, size_t size)
{
	if (min % 60 == 0)
		snprintf(buf, size, "Allow for %u hour%s", min / 60, min == 60 ? "" : "s");
	else
		snprintf(buf, size, "Allow for %u minute%s", min, min == 1 ? "" : "s");
}

/* pinentry reports how the dialog ended in a status line before its answer. */
static gpg_error_t confirm_status(void *opaque, const char *line)
{
	bool *closed = opaque;
	size_t n = strlen("BUTTON_INFO");

	if (strncmp(line, "BUTTON_INFO", n) == 0 && (line[n] == ' ' || !line[n]) &&
	    strstr(line + n, "close"))
		*closed = true;
	return 0;
}

/*
 * Sets the dialog up on ctx and asks. Returns the CONFIRM's answer; *ret_notok tells whether
 * the pinentry took the third button, *ret_closed whether it said the window was closed.
 */
static gpg_error_t confirm_run(assuan_context_t ctx, const ConfirmDialog *d, bool *ret_notok,
			       bool *ret_closed)
{
	char line[ASSUAN_LINELENGTH], label[64];
	gpg_error_t e;

	prompt_pinentry_options(ctx, CONFIRM_TIMEOUT_SEC);
	prompt_command(line, sizeof(line), "SETTITLE", d->title);
	e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	if (!e) {
		prompt_command(line, sizeof(line), "SETDESC", d->desc);
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (e)
		return e;
	/* Button labels are cosmetic: a pinentry that refuses one keeps its own. */
	prompt_command(line, sizeof(line), "SETOK", "Allow once");
	(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	if (d->remember_min) {
		confirm_remember_label(d->remember_min, label, sizeof(label));
		prompt_command(line, sizeof(line), "SETNOTOK", label);
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
		/* An old pinentry without a third button: two buttons, nothing remembered. */
		*ret_notok = !e;
		if (e)
			log_debug("confirm: the pinentry refused SETNOTOK (%s): no \"%s\" button",
				  gpg_strerror(e), label);
	}
	prompt_command(line, sizeof(line), "SETCANCEL", "Deny");
	(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	return assuan_transact(ctx, "CONFIRM", NULL, NULL, NULL, NULL, confirm_status, ret_closed);
}

int confirm_ask(const char *pinentry, const ConfirmDialog *d, bool *ret_remember, CaError *err)
{
	_cleanup_free_ char *prog = NULL;
	assuan_context_t ctx = NULL;
	bool notok = false, closed = false;
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
	e = confirm_run(ctx, d, &notok, &closed);
	if (!e)
		(void)assuan_transact(ctx, "BYE", NULL, NULL, NULL, NULL, NULL, NULL);
	assuan_release(ctx);
	prompt_ui_unlock();

	if (closed)
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "the user refused the signature (closed the confirmation "
				    "dialog)");
	switch (gpg_err_code(e)) {
	case GPG_ERR_NO_ERROR:
		*ret_remember = false;
		return 0;
	case GPG_ERR_NOT_CONFIRMED:
		if (notok) {
			*ret_remember = true;
			return 0;
		}
		/* Without a third button, NOT_CONFIRMED is a refusal (as from older pinentries). */
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "the user refused the signature (chose \"Deny\")");
	case GPG_ERR_CANCELED:
	case GPG_ERR_FULLY_CANCELED:
	case GPG_ERR_ASS_CANCELED:
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "the user refused the signature (chose \"Deny\")");
	case GPG_ERR_TIMEOUT:
		return ca_error_set(err, CA_E_POLICY_DENIED,
				    "the signature was refused: nobody answered the confirmation "
				    "within %d s",
				    CONFIRM_TIMEOUT_SEC);
	default:
		return ca_error_set(err, CA_E_FAILED, "the confirmation dialog (%s) failed: %s",
				    prog, gpg_strerror(e));
	}
}
