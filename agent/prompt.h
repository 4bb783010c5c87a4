/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * prompt: asking the user for a token's PIN with their pinentry program (Assuan, through
 * libassuan), and the lifetime of the logins that follow.
 *
 * A request that met CA_E_PIN_REQUIRED parks itself here (prompt_login) instead of holding a
 * worker thread; the first one for a token starts a prompt thread, later ones for the same
 * token wait for that one prompt and share its outcome. The prompt thread asks, logs in
 * (store_unlock; the PIN is wiped right after and never logged) and hands every waiter back
 * through its done callback, which resubmits it to a worker pool. Keys with
 * CKA_ALWAYS_AUTHENTICATE get a prompt of their own per signature, whose PIN goes to that one
 * signature. Dialogs are shown one at a time, confirmations included (prompt_ui_lock); neither
 * the D-Bus loop nor other tokens wait.
 *
 * The prompter also runs the idle-logout clock (login-idle-timeout).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <assuan.h>

#include "error.h"
#include "store.h"

#define PROMPT_PIN_MAX 256    /* longest PIN taken from pinentry (as IPC_PIN_MAX) */
#define PROMPT_TIMEOUT_SEC 90 /* pinentry gives up (a client's call waits 120 s) */

typedef struct Prompter Prompter;
typedef struct PromptWaiter PromptWaiter;

struct PromptWaiter {
	/*
	 * On the prompt thread, once: r is 0 (the token is logged in now; for a per-signature
	 * prompt, pin holds the PIN, malloc'd, to be wiped and freed by the callee), or a code
	 * with err: CA_E_CANCELLED (the user cancelled, or the agent stops), CA_E_PIN_INCORRECT,
	 * CA_E_PIN_LOCKED, CA_E_PIN_REQUIRED (no prompt could be shown), CA_E_TOKEN_ABSENT.
	 */
	void (*done)(PromptWaiter *w, int r, const CaError *err, char *pin, size_t pin_len);
	PromptWaiter *next; /* owned by the prompter while waiting */
};

typedef struct PromptConfig {
	const char *pinentry;	     /* program (searched in PATH) or path; NULL: never prompt */
	Store *store;		     /* borrowed */
	unsigned login_idle_timeout; /* seconds; 0: no idle clock */
	/* On the idle thread after logging out of idle tokens (to refresh what clients see). */
	void (*logins_expired)(void *userdata);
	void *userdata;
} PromptConfig;

/* Starts the idle thread when needed. Returns 0 or a negative errno. */
int prompt_new(const PromptConfig *cfg, Prompter **ret);

/*
 * Kills dialogs still open, answers their waiters with CA_E_CANCELLED and waits for the
 * prompt threads; later prompt_login() calls return false. Call before the worker pools stop
 * (waiters are resubmitted to them). Idempotent.
 */
void prompt_stop(Prompter *p);

/* Stops (if not yet) and frees; after the worker pools stopped (they may still call in). */
Prompter *prompt_free(Prompter *p);

/* What to say in the dialog. */
typedef struct PromptAsk {
	const StorePinRequest *need; /* from store_pin_request(); copied */
	const char *app;	     /* appinfo_describe() of the caller */
	const char *server_name;     /* the TLS server the client named, or NULL */
	bool unlock;		     /* an Unlock call, not a Sign */
} PromptAsk;

/*
 * Parks w until the prompt for need->token_uri is over (starting it unless one is running).
 * Returns false, not touching w, when prompting is off or the prompter stops: the caller
 * finishes with its own error. w->done may run before this returns.
 */
bool prompt_login(Prompter *p, const PromptAsk *ask, PromptWaiter *w);

/*
 * The agent's one dialog slot: a PIN prompt (here) and a confirmation (confirm.c) each hold it
 * while their pinentry is open, so the user never has two dialogs on screen and always knows
 * which question a dialog asks. Process-wide on purpose: there is one screen, and the policy
 * that asks for confirmations is built before the prompter and does not know it. Blocks
 * until the dialog before it is closed (each closes within its pinentry timeout).
 */
void prompt_ui_lock(void);
void prompt_ui_unlock(void);

/*
 * The pinentry plumbing prompt.c and confirm.c share (each brings its own assuan context: the
 * PIN prompt's wipes what libassuan frees). prompt_find_program(): the program path, as
 * configured when it has a slash, else the first match in PATH; NULL if none (or out of
 * memory). The caller frees it.
 */
char *prompt_find_program(const char *name);
/* Starts prog on ctx, with the signal mask and SIGPIPE a child should start with. */
gpg_error_t prompt_pinentry_connect(assuan_context_t ctx, const char *prog);
/* OPTION ttyname/ttytype/display from the environment when set, then SETTIMEOUT; best effort. */
void prompt_pinentry_options(assuan_context_t ctx, unsigned timeout_sec);
/* "CMD text" with text percent-escaped as Assuan wants, cut to fit one line. */
void prompt_command(char *buf, size_t size, const char *cmd, const char *text);

/* methods.c: where parked requests come from (set once at start, NULL when prompting is off). */
void methods_set_prompter(Prompter *p);
/* methods.c, any thread: refresh the snapshot clients see (after an idle logout). */
void methods_refresh_internal(void *server);
