/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * p11cli: helpers shared by the token commands (see p11cli.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "cli.h"
#include "p11cli.h"
#include "pin-input.h"
#include "util.h"

static void log_to_stderr(int prio, const char *msg, void *ud)
{
	/* Our errors carry the message; the layer's own lines are for debugging. */
	if (prio <= LOG_ERR || secure_getenv("CERTAGENT_DEBUG"))
		fprintf(stderr, "certagent: %s\n", msg);
}

int p11cli_store_open(const char *module, Store **ret)
{
	StoreModuleConfig mc = {.name = (char *)"module"};
	StoreOptions o = {.load_registered = true};
	CaError err = {0};
	int r;

	if (!module)
		module = secure_getenv("CERTAGENT_MODULE");
	if (module && *module) {
		if (module[0] != '/') {
			fprintf(stderr, "certagent: --module needs an absolute path, not \"%s\"\n",
				module);
			return CLI_EXIT_USAGE;
		}
		if (access(module, R_OK) < 0) {
			fprintf(stderr, "certagent: cannot read the module %s: %s\n", module,
				strerror(errno));
			return CLI_EXIT_IO;
		}
		mc.path = (char *)module;
		o.load_registered = false;
		o.modules = &mc;
		o.n_modules = 1;
	}
	store_set_log(log_to_stderr, NULL);
	r = store_new(&o, ret, &err);
	return r == 0 ? 0 : p11cli_fail(r, &err);
}

int p11cli_exit_code(int r)
{
	switch (r) {
	case 0:
		return 0;
	case CA_E_PIN_REQUIRED:
	case CA_E_PIN_INCORRECT:
	case CA_E_PIN_LOCKED:
	case CA_E_TOKEN_ABSENT:
		return CLI_EXIT_PIN;
	case CA_E_INVALID_ARGS:
	case CA_E_TOO_LARGE:
		return CLI_EXIT_USAGE;
	case CA_E_POLICY_DENIED:
		return CLI_EXIT_REFUSED;
	case CA_E_KEY_NOT_FOUND:
		return CLI_EXIT_NOT_FOUND;
	default:
		return CLI_EXIT_FAILED;
	}
}

int p11cli_fail(int r, const CaError *err)
{
	if (r == 0)
		return 0;
	if (err && err->message[0])
		fprintf(stderr, "certagent: %s\n", err->message);
	else
		fprintf(stderr, "certagent: %s\n", r < 0 ? strerror(-r) : ca_error_name(r));
	return p11cli_exit_code(r);
}

int p11cli_session(Store *s, const char *token, bool allow_uninitialized, AdminSession **ret)
{
	CaError err = {0};
	int r = admin_session_open(s, token, allow_uninitialized, ret, &err);

	return p11cli_fail(r, &err);
}

char *p11cli_crt_label(gnutls_x509_crt_t crt)
{
	char buf[ADMIN_LABEL_MAX + 1];
	size_t n = sizeof(buf);
	char *s;

	if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &n) == 0)
		return strdup(buf);
	s = cli_crt_dn(crt, false);
	if (s && strlen(s) > ADMIN_LABEL_MAX) {
		/* Cut at a character boundary: a label stays valid UTF-8. */
		size_t k = ADMIN_LABEL_MAX;

		while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
			k--;
		s[k] = '\0';
	}
	return s;
}

int p11cli_open(const char *module, const char *token, bool allow_uninitialized, Store **ret_store,
		AdminSession **ret_session)
{
	Store *s = NULL;
	int rc = p11cli_store_open(module, &s);

	if (rc == 0)
		rc = p11cli_session(s, token, allow_uninitialized, ret_session);
	if (rc != 0) {
		store_free(s);
		return rc;
	}
	*ret_store = s;
	return 0;
}

int p11cli_check_pin_state(AdminSession *a)
{
	unsigned long flags = admin_session_flags(a);
	const char *label = admin_session_label(a), *uri = admin_session_uri(a);

	if (flags & CKF_USER_PIN_LOCKED) {
		fprintf(stderr,
			"certagent: the user PIN of token \"%s\" is locked (too many wrong tries); "
			"nothing was tried. Reset it with the SO PIN: `certagent token unblock-pin "
			"'%s'`\n",
			label, uri);
		return CLI_EXIT_PIN;
	}
	if (flags & CKF_USER_PIN_FINAL_TRY) {
		fprintf(stderr,
			"certagent: token \"%s\" allows only one more user PIN try before it "
			"locks, "
			"so certagent does not risk it; nothing was tried. Reset the PIN with the "
			"SO "
			"PIN (`certagent token unblock-pin '%s'`), or, if you are sure of the PIN, "
			"log in once with the token's own tools to reset the counter\n",
			label, uri);
		return CLI_EXIT_PIN;
	}
	return 0;
}

int p11cli_login_user(AdminSession *a, const char *pin_file)
{
	_cleanup_erase_str_ char *pin = NULL;
	_cleanup_free_ char *prompt = NULL;
	CaError err = {0};
	int r;

	r = p11cli_check_pin_state(a);
	if (r != 0)
		return r;
	if (!admin_session_pinpad(a)) {
		if (asprintf(&prompt, "user PIN of token \"%s\"", admin_session_label(a)) < 0)
			return CLI_EXIT_FAILED;
		r = pin_input_get(pin_file, "CERTAGENT_PIN", prompt, false, &pin);
		if (r != 0)
			return r;
	}
	r = admin_login(a, ADMIN_USER, pin, pin ? strlen(pin) : 0, &err);
	return p11cli_fail(r, &err);
}

int p11cli_login_cleanup(AdminSession *a, const char *pin_file)
{
	CaError err = {0};
	size_t orphans = 0;
	int rc = p11cli_login_user(a, pin_file);

	if (rc != 0)
		return rc;
	rc = p11cli_fail(admin_cleanup_orphans(a, &orphans, &err), &err);
	if (orphans)
		fprintf(stderr,
			"certagent: removed %zu object(s) an interrupted enrollment had left\n",
			orphans);
	return rc;
}

void p11cli_free_certs(gnutls_x509_crt_t *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		gnutls_x509_crt_deinit(v[i]);
	gnutls_free(v);
}

#define CERT_FILE_MAX (1024 * 1024)
#define CERTS_MAX 16

int p11cli_read_certs(const char *path, gnutls_x509_crt_t **ret, size_t *ret_n)
{
	gnutls_datum_t d = {NULL, 0};
	gnutls_x509_crt_t *v = NULL;
	unsigned n = 0;
	int r;

	r = gnutls_load_file(path, &d);
	if (r < 0) {
		fprintf(stderr, "certagent: cannot read %s: %s\n", path,
			errno ? strerror(errno) : gnutls_strerror(r));
		return CLI_EXIT_IO;
	}
	if (d.size > CERT_FILE_MAX) {
		gnutls_free(d.data);
		fprintf(stderr, "certagent: %s is larger than 1 MiB: not a certificate file\n",
			path);
		return CLI_EXIT_IO;
	}
	r = gnutls_x509_crt_list_import2(&v, &n, &d, GNUTLS_X509_FMT_PEM, 0);
	if (r < 0 || n == 0)
		r = gnutls_x509_crt_list_import2(&v, &n, &d, GNUTLS_X509_FMT_DER, 0);
	gnutls_free(d.data);
	if (r < 0 || n == 0) {
		fprintf(stderr,
			"certagent: %s holds no X.509 certificate (PEM \"BEGIN CERTIFICATE\" or "
			"DER expected): %s\n",
			path, r < 0 ? gnutls_strerror(r) : "empty");
		return CLI_EXIT_IO;
	}
	if (n > CERTS_MAX) {
		p11cli_free_certs(v, n);
		fprintf(stderr, "certagent: %s holds more than %d certificates\n", path, CERTS_MAX);
		return CLI_EXIT_IO;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

bool p11cli_parse_hex(const char *s, uint8_t *out, size_t max, size_t *ret_n)
{
	size_t n = 0;

	while (*s) {
		unsigned v;

		if (*s == ':') {
			s++;
			continue;
		}
		if (!s[1] || !strchr("0123456789abcdefABCDEF", s[0]) ||
		    !strchr("0123456789abcdefABCDEF", s[1]) || n >= max ||
		    sscanf(s, "%2x", &v) != 1)
			return false;
		out[n++] = (uint8_t)v;
		s += 2;
	}
	*ret_n = n;
	return n > 0;
}

void p11cli_hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = 0;
}

/* --- progress ----------------------------------------------------------------------------- */

static pthread_t spin_thread;
static pthread_mutex_t spin_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spin_cond = PTHREAD_COND_INITIALIZER;
static bool spin_on, spin_stop;
static const char *spin_what;

static void *spin_main(void *ud)
{
	static const char frames[] = "|/-\\";
	unsigned i = 0;
	struct timespec ts;

	pthread_mutex_lock(&spin_lock);
	while (!spin_stop) {
		fprintf(stderr, "\r%s %c", spin_what, frames[i++ % 4]);
		fflush(stderr);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 150 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&spin_cond, &spin_lock, &ts);
	}
	fprintf(stderr, "\r%s done\n", spin_what);
	pthread_mutex_unlock(&spin_lock);
	return NULL;
}

void p11cli_progress_start(const char *what)
{
	if (!isatty(STDERR_FILENO) || spin_on)
		return;
	spin_what = what;
	spin_stop = false;
	spin_on = pthread_create(&spin_thread, NULL, spin_main, NULL) == 0;
}

void p11cli_progress_stop(void)
{
	if (!spin_on)
		return;
	pthread_mutex_lock(&spin_lock);
	spin_stop = true;
	pthread_cond_signal(&spin_cond);
	pthread_mutex_unlock(&spin_lock);
	pthread_join(spin_thread, NULL);
	spin_on = false;
}

/* --- interruption ------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

void p11cli_trap_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

bool p11cli_interrupted(void)
{
	return interrupted != 0;
}

void p11cli_test_stop(const char *step)
{
	const char *want = secure_getenv("CERTAGENT_TEST_STOP_AT");

	if (!want || strcmp(want, step) != 0)
		return;
	fprintf(stderr, "certagent: test hook: stopped after step \"%s\"\n", step);
	raise(SIGSTOP);
}

int p11cli_write_file(const char *path, const void *data, size_t len, bool no_overwrite)
{
	_cleanup_free_ char *tmp = NULL;
	FILE *f;
	bool ok;

	if (no_overwrite && access(path, F_OK) == 0) {
		fprintf(stderr, "certagent: %s exists: not overwritten\n", path);
		return CLI_EXIT_REFUSED;
	}
	if (asprintf(&tmp, "%s.certagent-tmp", path) < 0)
		return CLI_EXIT_IO;
	f = fopen(tmp, "we");
	if (!f) {
		/* Named as the user named it: the temporary file is ours, not theirs. */
		fprintf(stderr, "certagent: cannot write %s: %s\n", path, strerror(errno));
		return CLI_EXIT_IO;
	}
	ok = fwrite(data, 1, len, f) == len;
	ok = (fflush(f) == 0 && fsync(fileno(f)) == 0) && ok;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		fprintf(stderr, "certagent: cannot write %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return CLI_EXIT_IO;
	}
	return 0;
}
