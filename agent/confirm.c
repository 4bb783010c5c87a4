/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * confirm: SETTIMEOUT, SETTITLE, SETDESC, SETOK, SETCANCEL, CONFIRM with a fresh pinentry
 * each time (as prompt.c does for PINs; a CONFIRM carries no secret, so libassuan's default
 * allocator is fine). It takes the agent's one dialog slot (prompt_ui_lock, shared with the PIN
 * prompts), so a confirmation never shows while a PIN dialog is open, nor the other way round.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <assuan.h>

#include "confirm.h"
#include "log.h"
#include "prompt.h"

/* Restores what a child of the agent should start with (signals blocked in our threads). */
static void confirm_atfork(void *opaque, int reserved)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
}

/* "CMD text", percent-escaped as Assuan wants, cut to one line. */
static void confirm_command(char *buf, size_t size, const char *cmd, const char *text)
{
	size_t n = (size_t)snprintf(buf, size, "%s ", cmd);

	if (size > ASSUAN_LINELENGTH - 2)
		size = ASSUAN_LINELENGTH - 2;
	for (; *text && n + 4 < size; text++) {
		unsigned char c = (unsigned char)*text;

		if (c == '%' || c < 0x20)
			n += (size_t)snprintf(buf + n, size - n, "%%%02X", c);
		else
			buf[n++] = (char)c;
	}
	buf[n] = 0;
}

static char *confirm_find_program(const char *name)
{
	const char *path = secure_getenv("PATH");
	_cleanup_free_ char *dirs = NULL;
	char *dir, *save = NULL;

	if (strchr(name, '/'))
		return strdup(name);
	dirs = strdup(path && path[0] ? path : "/usr/local/bin:/usr/bin:/bin");
	if (!dirs)
		return NULL;
	for (dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char *full;

		if (asprintf(&full, "%s/%s", dir[0] ? dir : ".", name) < 0)
			return NULL;
		if (access(full, X_OK) == 0)
			return full;
		free(full);
	}
	return NULL;
}

int confirm_ask(const char *pinentry, const char *title, const char *desc, const char *ok,
		const char *cancel, CaError *err)
{
	static const struct {
		const char *env, *option;
	} options[] = {{"GPG_TTY", "ttyname"}, {"TERM", "ttytype"}, {"DISPLAY", "display"}};
	_cleanup_free_ char *prog = NULL;
	const char *argv[2] = {NULL, NULL};
	assuan_context_t ctx = NULL;
	char line[ASSUAN_LINELENGTH];
	gpg_error_t e;

	if (!pinentry)
		return ca_error_set(err, CA_E_FAILED,
				    "this identity's policy wants a confirmation, but pinentry = "
				    "none: set a pinentry program in agent.conf or drop confirm");
	prog = confirm_find_program(pinentry);
	if (!prog)
		return ca_error_set(err, CA_E_FAILED,
				    "this identity's policy wants a confirmation, but the "
				    "pinentry program \"%s\" is not in PATH",
				    pinentry);
	argv[0] = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;

	prompt_ui_lock();
	e = assuan_new(&ctx);
	if (!e)
		e = assuan_pipe_connect(ctx, prog, argv, NULL, confirm_atfork, NULL, 0);
	if (e) {
		prompt_ui_unlock();
		assuan_release(ctx);
		return ca_error_set(err, CA_E_FAILED,
				    "cannot ask for the confirmation this identity's policy "
				    "wants: %s does not start (%s)",
				    prog, gpg_strerror(e));
	}
	for (size_t i = 0; i < ELEMENTSOF(options); i++) {
		const char *v = secure_getenv(options[i].env);

		if (v && v[0] && strlen(v) < 256) {
			snprintf(line, sizeof(line), "OPTION %s=%s", options[i].option, v);
			(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
		}
	}
	snprintf(line, sizeof(line), "SETTIMEOUT %d", CONFIRM_TIMEOUT_SEC);
	(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	confirm_command(line, sizeof(line), "SETTITLE", title);
	e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	if (!e) {
		confirm_command(line, sizeof(line), "SETDESC", desc);
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (!e) {
		confirm_command(line, sizeof(line), "SETOK", ok);
		(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
		confirm_command(line, sizeof(line), "SETCANCEL", cancel);
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
