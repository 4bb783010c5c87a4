/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * prompt: one detached thread per prompt, counted so prompt_free() can wait for them; the
 * process-wide dialog lock (prompt_ui_lock, shared with confirm.c) so only one dialog is on
 * screen at a time; the pids of open pinentries so the
 * agent can close them when it stops. The PIN lives in a fixed buffer on the prompt thread's
 * stack (and in libassuan's context, whose memory we wipe when it is freed) and is wiped as
 * soon as store_unlock() has used it.
 *
 * Pinentry protocol (Assuan): OPTION ttyname/ttytype/display from the environment when set,
 * SETTIMEOUT, SETTITLE, SETDESC, SETPROMPT, SETERROR (few tries left), then GETPIN (data
 * lines "D <pin>") or, for pinpads, CONFIRM. Cancel is GPG_ERR_CANCELED.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <assuan.h>

#include "log.h"
#include "prompt.h"

#define PROMPT_PINENTRY_PIDS_MAX 16

typedef struct PromptEntry PromptEntry;

struct PromptEntry {
	Prompter *p;
	PromptEntry *next;	 /* in p->active */
	char *key;		 /* token URI shared by waiters; NULL: a per-signature prompt */
	StorePinRequest need;	 /* copied */
	char *app, *server_name; /* of the first waiter */
	bool unlock;
	PromptWaiter *waiters, **waiters_tail;
};

struct Prompter {
	char *pinentry; /* NULL: prompting is off */
	Store *store;
	unsigned idle_sec;
	void (*logins_expired)(void *userdata);
	void *userdata;

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;  /* threads finished; stop requested */
	PromptEntry *active;
	unsigned n_threads;
	bool stopping;
	pid_t pids[PROMPT_PINENTRY_PIDS_MAX]; /* open pinentries (0: free slot) */

	pthread_t idle_thread;
	bool idle_running;
};

/* One screen per process: PIN prompts and confirmations (confirm.c) take turns. */
static pthread_mutex_t prompt_ui_mutex = PTHREAD_MUTEX_INITIALIZER;

void prompt_ui_lock(void)
{
	pthread_mutex_lock(&prompt_ui_mutex);
}

void prompt_ui_unlock(void)
{
	pthread_mutex_unlock(&prompt_ui_mutex);
}

/* ---- libassuan glue ---- */

/* libassuan's buffers see the PIN: wipe every block it frees. */
static void prompt_assuan_free(void *ptr)
{
	if (ptr)
		explicit_bzero(ptr, malloc_usable_size(ptr));
	free(ptr);
}

static void *prompt_assuan_realloc(void *ptr, size_t n)
{
	size_t old = ptr ? malloc_usable_size(ptr) : 0;
	void *q;

	if (!ptr)
		return malloc(n);
	q = malloc(n ? n : 1);
	if (!q)
		return NULL;
	memcpy(q, ptr, old < n ? old : n);
	prompt_assuan_free(ptr);
	return q;
}

static struct assuan_malloc_hooks prompt_malloc_hooks = {
	.malloc = malloc,
	.realloc = prompt_assuan_realloc,
	.free = prompt_assuan_free,
};

/* libassuan's own log could show data lines: say no to every category. */
static int prompt_assuan_log(assuan_context_t ctx, void *hook, unsigned cat, const char *msg)
{
	return 0;
}

/* In the child, before exec: the agent blocks signals in its threads and ignores SIGPIPE. */
static void prompt_atfork(void *opaque, int reserved)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
}

typedef struct PinBuf {
	char pin[PROMPT_PIN_MAX + 1];
	size_t len;
	bool too_long;
} PinBuf;

static gpg_error_t prompt_data(void *opaque, const void *data, size_t len)
{
	PinBuf *b = opaque;

	if (b->len + len > PROMPT_PIN_MAX) {
		b->too_long = true;
		return gpg_error(GPG_ERR_TOO_LARGE);
	}
	memcpy(b->pin + b->len, data, len);
	b->len += len;
	b->pin[b->len] = 0;
	return 0;
}

void prompt_command(char *buf, size_t size, const char *cmd, const char *text)
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

char *prompt_find_program(const char *name)
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

gpg_error_t prompt_pinentry_connect(assuan_context_t ctx, const char *prog)
{
	const char *argv[2] = {NULL, NULL};

	argv[0] = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;
	return assuan_pipe_connect(ctx, prog, argv, NULL, prompt_atfork, NULL, 0);
}

void prompt_pinentry_options(assuan_context_t ctx, unsigned timeout_sec)
{
	static const struct {
		const char *env, *option;
	} options[] = {
		{"GPG_TTY", "ttyname"},
		{"TERM", "ttytype"},
		{"DISPLAY", "display"},
	};
	char line[ASSUAN_LINELENGTH];

	for (size_t i = 0; i < ELEMENTSOF(options); i++) {
		const char *v = secure_getenv(options[i].env);

		if (v && v[0] && strlen(v) < 256) {
			snprintf(line, sizeof(line), "OPTION %s=%s", options[i].option, v);
			(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
		}
	}
	snprintf(line, sizeof(line), "SETTIMEOUT %u", timeout_sec);
	(void)assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
}

static void prompt_track_pid(Prompter *p, pid_t pid, bool add)
{
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < PROMPT_PINENTRY_PIDS_MAX; i++)
		if (add ? p->pids[i] == 0 : p->pids[i] == pid) {
			p->pids[i] = add ? pid : 0;
			break;
		}
	/* Asked to stop while starting: close it at once. */
	if (add && p->stopping && pid > 0)
		kill(pid, SIGTERM);
	pthread_mutex_unlock(&p->lock);
}

typedef struct PromptText {
	char title[256];
	char desc[1024];
	char error[256]; /* "" for none */
	bool confirm;	 /* a pinpad: CONFIRM, no GETPIN */
} PromptText;

/*
 * Runs the pinentry once. Returns 0 with the PIN in *b (or confirmed), or a code:
 * CA_E_CANCELLED (cancel, timeout, closed), CA_E_PIN_REQUIRED (could not be shown).
 */
static int prompt_run_pinentry(Prompter *p, const PromptText *txt, PinBuf *b, CaError *err)
{
	_cleanup_free_ char *prog = prompt_find_program(p->pinentry);
	assuan_context_t ctx = NULL;
	char line[ASSUAN_LINELENGTH];
	gpg_error_t e;
	pid_t pid = -1;
	int r = 0;

	if (!prog)
		return ca_error_set(err, CA_E_PIN_REQUIRED,
				    "no PIN prompt: the pinentry program \"%s\" is not in PATH "
				    "(set pinentry = in agent.conf), or run `certagent unlock`",
				    p->pinentry);
	e = assuan_new_ext(&ctx, GPG_ERR_SOURCE_DEFAULT, &prompt_malloc_hooks, prompt_assuan_log,
			   NULL);
	if (e)
		return ca_error_set(err, CA_E_PIN_REQUIRED, "no PIN prompt: %s", gpg_strerror(e));
	e = prompt_pinentry_connect(ctx, prog);
	if (e) {
		assuan_release(ctx);
		return ca_error_set(err, CA_E_PIN_REQUIRED,
				    "no PIN prompt: cannot start %s (%s): run `certagent unlock`",
				    prog, gpg_strerror(e));
	}
	pid = assuan_get_pid(ctx);
	prompt_track_pid(p, pid, true);

	prompt_pinentry_options(ctx, PROMPT_TIMEOUT_SEC);
	prompt_command(line, sizeof(line), "SETTITLE", txt->title);
	e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	if (!e) {
		prompt_command(line, sizeof(line), "SETDESC", txt->desc);
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (!e && !txt->confirm) {
		prompt_command(line, sizeof(line), "SETPROMPT", "PIN:");
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (!e && txt->error[0]) {
		prompt_command(line, sizeof(line), "SETERROR", txt->error);
		e = assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
	}
	if (!e)
		e = assuan_transact(ctx, txt->confirm ? "CONFIRM" : "GETPIN",
				    txt->confirm ? NULL : prompt_data, b, NULL, NULL, NULL, NULL);
	if (!e)
		(void)assuan_transact(ctx, "BYE", NULL, NULL, NULL, NULL, NULL, NULL);
	assuan_release(ctx); /* closes the pipes and reaps the child */
	prompt_track_pid(p, pid, false);

	switch (gpg_err_code(e)) {
	case GPG_ERR_NO_ERROR:
		break;
	case GPG_ERR_CANCELED:
	case GPG_ERR_FULLY_CANCELED:
	case GPG_ERR_NOT_CONFIRMED:
	case GPG_ERR_ASS_CANCELED:
		r = ca_error_set(err, CA_E_CANCELLED, "the PIN prompt was cancelled");
		break;
	case GPG_ERR_TIMEOUT:
		r = ca_error_set(err, CA_E_CANCELLED, "nobody answered the PIN prompt within %d s",
				 PROMPT_TIMEOUT_SEC);
		break;
	default:
		if (b->too_long)
			r = ca_error_set(err, CA_E_TOO_LARGE,
					 "the PIN given is longer than %d bytes", PROMPT_PIN_MAX);
		else
			r = ca_error_set(err, CA_E_PIN_REQUIRED,
					 "the PIN prompt (%s) failed: %s; run `certagent unlock` "
					 "instead",
					 prog, gpg_strerror(e));
		break;
	}
	if (r)
		explicit_bzero(b, sizeof(*b));
	return r;
}

/* ---- what the dialog says ---- */

static void prompt_text(const PromptEntry *e, PromptText *t)
{
	const StorePinRequest *n = &e->need;
	char token[160], server[320];
	const char *action;

	*t = (PromptText){.confirm = n->pinpad};
	snprintf(token, sizeof(token), "token \"%s\"%s%s%s", n->token_label,
		 n->token_serial && n->token_serial[0] ? " (serial " : "",
		 n->token_serial && n->token_serial[0] ? n->token_serial : "",
		 n->token_serial && n->token_serial[0] ? ")" : "");
	if (e->server_name)
		snprintf(server, sizeof(server), "the TLS server \"%s\"", e->server_name);
	else
		snprintf(server, sizeof(server), "a TLS server (it did not say which)");
	snprintf(t->title, sizeof(t->title), "certagent: PIN for token \"%s\"", n->token_label);

	if (n->pinpad)
		action = e->key ? "Press OK, then enter the PIN on the reader's keypad."
				: "Press OK, then enter the PIN on the reader's keypad to allow "
				  "this one signature.";
	else if (!e->key)
		action = "This key needs the PIN for every signature. Enter it to allow this "
			 "one signature.";
	else if (e->unlock)
		action = "Enter the token's PIN to unlock it.";
	else
		action = "Enter the token's PIN to unlock it for signing.";

	if (e->unlock)
		snprintf(t->desc, sizeof(t->desc), "%s asks to unlock %s.\n\n%s", e->app, token,
			 action);
	else
		snprintf(t->desc, sizeof(t->desc),
			 "%s wants to sign in to %s with a key on %s.\n\n%s", e->app, server, token,
			 action);
	if (n->few_tries && !n->pinpad)
		snprintf(t->error, sizeof(t->error),
			 "Few tries left: a wrong PIN was entered before; more wrong PINs will "
			 "lock the token.");
}

/* ---- prompt threads ---- */

static PromptEntry *prompt_entry_free(PromptEntry *e)
{
	if (!e)
		return NULL;
	free(e->key);
	store_pin_request_clear(&e->need);
	free(e->app);
	free(e->server_name);
	free(e);
	return NULL;
}

/* Under p->lock: the running login prompt for a token, or NULL. */
static PromptEntry *prompt_find(Prompter *p, const char *key)
{
	for (PromptEntry *e = p->active; e; e = e->next)
		if (e->key && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* Asks, logs in; the outcome for every waiter. pin/pin_len: per-signature only. */
static int prompt_do(PromptEntry *e, char **ret_pin, size_t *ret_pin_len, CaError *err)
{
	Prompter *p = e->p;
	StorePinRequest fresh = {0};
	PromptText txt;
	PinBuf b = {0};
	bool stopping;
	int r;

	pthread_mutex_lock(&p->lock);
	stopping = p->stopping;
	pthread_mutex_unlock(&p->lock);
	if (stopping)
		return ca_error_set(err, CA_E_CANCELLED, "the agent is shutting down");

	if (e->key) {
		/* While this prompt waited for its turn, another may have logged in, or the
		 * token may have gone or reached its final try. */
		r = store_pin_request(p->store, e->key, false, &fresh, err);
		if (r)
			return r;
		if (fresh.logged_in) {
			store_pin_request_clear(&fresh);
			return 0;
		}
		e->need.token_flags = fresh.token_flags;
		e->need.few_tries = fresh.few_tries;
		store_pin_request_clear(&fresh);
	}
	prompt_text(e, &txt);
	log_info("prompt: asking for the PIN of token \"%s\" (%s)%s%s", e->need.token_label, e->app,
		 e->need.few_tries ? "; few tries left" : "", e->need.pinpad ? "; pinpad" : "");
	r = prompt_run_pinentry(p, &txt, &b, err);
	if (r) {
		log_info("prompt: token \"%s\": %s", e->need.token_label, err->message);
		return r;
	}
	if (!e->key) {
		char *pin = malloc(b.len + 1);

		if (!pin) {
			explicit_bzero(&b, sizeof(b));
			return ca_error_set(err, -ENOMEM, "out of memory");
		}
		memcpy(pin, b.pin, b.len + 1);
		*ret_pin = pin;
		*ret_pin_len = b.len;
		explicit_bzero(&b, sizeof(b));
		return 0;
	}
	r = store_unlock(p->store, e->key, b.pin, b.len, err);
	explicit_bzero(&b, sizeof(b));
	if (r == CA_E_PIN_INCORRECT)
		ca_error_set(err, r,
			     "the PIN entered for token \"%s\" is wrong (the token counted one "
			     "failed try; certagent does not ask again by itself): try again, or "
			     "`certagent unlock '%s'`",
			     e->need.token_label, e->key);
	log_info("prompt: token \"%s\": %s", e->need.token_label,
		 r == 0 ? "logged in" : err->message);
	return r;
}

static void *prompt_thread(void *userdata)
{
	PromptEntry *e = userdata;
	Prompter *p = e->p;
	PromptWaiter *w;
	CaError err = {0};
	char *pin = NULL;
	size_t pin_len = 0;
	int r;

	prompt_ui_lock();
	r = prompt_do(e, &pin, &pin_len, &err);
	prompt_ui_unlock();

	/* Leave the active list first: a Sign parking from now on starts a fresh prompt
	 * (which sees the login and does not ask). */
	pthread_mutex_lock(&p->lock);
	for (PromptEntry **pp = &p->active; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	w = e->waiters;
	e->waiters = NULL;
	pthread_mutex_unlock(&p->lock);

	while (w) {
		PromptWaiter *next = w->next;

		w->done(w, r, &err, TAKE_PTR(pin), pin_len);
		w = next;
	}
	erase_and_free(pin, pin_len); /* a per-signature PIN nobody took */
	prompt_entry_free(e);

	pthread_mutex_lock(&p->lock);
	p->n_threads--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static PromptEntry *prompt_entry_new(Prompter *p, const PromptAsk *ask)
{
	PromptEntry *e = calloc(1, sizeof(*e));
	const StorePinRequest *n = ask->need;
	bool oom = false;

	if (!e)
		return NULL;
	e->p = p;
	e->unlock = ask->unlock;
	e->waiters_tail = &e->waiters;
#define DUP(dst, src)                                                                              \
	do {                                                                                       \
		if ((src) && !((dst) = strdup(src)))                                               \
			oom = true;                                                                \
	} while (0)
	if (!n->per_signature)
		DUP(e->key, n->token_uri);
	DUP(e->need.token_uri, n->token_uri);
	DUP(e->need.token_label, n->token_label ? n->token_label : "?");
	DUP(e->need.token_serial, n->token_serial);
	DUP(e->app, ask->app ? ask->app : "an unknown program");
	DUP(e->server_name, ask->server_name);
#undef DUP
	e->need.token_flags = n->token_flags;
	e->need.logged_in = n->logged_in;
	e->need.pinpad = n->pinpad;
	e->need.per_signature = n->per_signature;
	e->need.few_tries = n->few_tries;
	if (oom || !e->need.token_uri)
		return prompt_entry_free(e);
	return e;
}

bool prompt_login(Prompter *p, const PromptAsk *ask, PromptWaiter *w)
{
	PromptEntry *e = NULL;
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t all, old;
	bool ok = false;

	if (!p || !p->pinentry || !ask->need || !ask->need->token_uri)
		return false;
	pthread_mutex_lock(&p->lock);
	if (p->stopping)
		goto out;
	w->next = NULL;
	if (!ask->need->per_signature && (e = prompt_find(p, ask->need->token_uri))) {
		/* The prompt for this token is on its way: wait for it. */
		*e->waiters_tail = w;
		e->waiters_tail = &w->next;
		ok = true;
		goto out;
	}
	e = prompt_entry_new(p, ask);
	if (!e)
		goto out;
	*e->waiters_tail = w;
	e->waiters_tail = &w->next;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ok = pthread_create(&thread, &attr, prompt_thread, e) == 0;
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!ok) {
		log_warning("cannot start a PIN prompt thread");
		prompt_entry_free(e);
		goto out;
	}
	e->next = p->active;
	p->active = e;
	p->n_threads++;
out:
	pthread_mutex_unlock(&p->lock);
	return ok;
}

/* ---- idle logins ---- */

static void *prompt_idle_thread(void *userdata)
{
	Prompter *p = userdata;
	/* Check a few times per timeout, at least once a second for short ones. */
	unsigned period = p->idle_sec >= 8 ? p->idle_sec / 4 : 1;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct timespec until;
		size_t n = 0;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += period;
		pthread_cond_timedwait(&p->cond, &p->lock, &until);
		if (p->stopping)
			break;
		pthread_mutex_unlock(&p->lock);
		store_expire_logins(p->store, &n);
		if (n > 0)
			log_info("logged out of %zu token%s after %u s without a signature "
				 "(login-idle-timeout)",
				 n, n == 1 ? "" : "s", p->idle_sec);
		if (n > 0 && p->logins_expired)
			p->logins_expired(p->userdata);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int prompt_new(const PromptConfig *cfg, Prompter **ret)
{
	Prompter *p = calloc(1, sizeof(*p));
	sigset_t all, old;
	int r;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->store = cfg->store;
	p->idle_sec = cfg->login_idle_timeout;
	p->logins_expired = cfg->logins_expired;
	p->userdata = cfg->userdata;
	if (cfg->pinentry && !(p->pinentry = strdup(cfg->pinentry))) {
		prompt_free(p);
		return -ENOMEM;
	}
	if (p->idle_sec) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		r = -pthread_create(&p->idle_thread, NULL, prompt_idle_thread, p);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r) {
			prompt_free(p);
			return r;
		}
		pthread_setname_np(p->idle_thread, "ca-idle");
		p->idle_running = true;
	}
	*ret = p;
	return 0;
}

void prompt_stop(Prompter *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	for (size_t i = 0; i < PROMPT_PINENTRY_PIDS_MAX; i++)
		if (p->pids[i] > 0)
			kill(p->pids[i], SIGTERM);
	pthread_cond_broadcast(&p->cond);
	while (p->n_threads > 0)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (p->idle_running)
		pthread_join(p->idle_thread, NULL);
	p->idle_running = false;
}

Prompter *prompt_free(Prompter *p)
{
	if (!p)
		return NULL;
	prompt_stop(p);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->pinentry);
	free(p);
	return NULL;
}
