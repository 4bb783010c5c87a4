/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * helper-list: which modules p11-kit has registered, learned without mapping any of them in
 * the agent. Loading a module runs its code (constructors, C_GetFunctionList), so with
 * isolation = process the agent never asks p11-kit itself: it runs
 * `certagent-pkcs11-helper --list-registered` (helper_list_main), a short-lived process in
 * which p11_kit_modules_load() dlopens the registered modules and checks C_GetFunctionList
 * but initialises none, and reads back one line per module (helper_list_registered). The
 * agent then starts one isolated helper per module it keeps (module.c).
 *
 * p11-kit applies enable-in/disable-in against the program's name, which in the helper would
 * be "certagent-pkcs11-helper": the helper calls itself "certagentd" for p11-kit first, so it
 * lists exactly the modules p11-kit would load in the agent. Trust-policy and critical flags
 * are passed on; the agent decides.
 *
 * Output on stdout, text, fields separated by one TAB, every line ending in LF:
 *   certagent-registered-modules 1
 *   module TAB NAME TAB ABSOLUTE-PATH TAB FLAGS     FLAGS: "-", or words joined by ",":
 *   ...                                             critical, trust-policy
 *   end
 * NAME and PATH never hold a control character (such a module is left out with a warning).
 * "end" tells a complete list from one cut short. While p11-kit loads the modules, the
 * helper's fd 1 points to stderr (the agent's log), so nothing a module prints can forge a
 * line; the list goes to a private copy of the original stdout.
 */
/* p11_kit_set_progname() sits behind this guard in p11-kit.h although libp11-kit has exported
 * it since 0.x (LIBP11_KIT_1.0); it is the documented way to set what enable-in matches. */
#define P11_KIT_FUTURE_UNSTABLE_API 1
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "helper-list.h"
#include "internal.h"

#define HELPER_LIST_MAGIC "certagent-registered-modules 1"
/* The name p11-kit matches enable-in/disable-in against: the agent's. */
#define HELPER_LIST_PROGNAME "certagentd"

extern char **environ;

/* Non-empty, at most max bytes, no control character (no TAB, no LF). */
static bool list_text_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return false;
	return n > 0 && n <= max;
}

/* ---- the helper's side ---- */

static bool list_option_yes(CK_FUNCTION_LIST *m, const char *key)
{
	_cleanup_free_ char *v = p11_kit_config_option(m, key);

	return v && strcmp(v, "yes") == 0; /* p11-kit's own booleans: "yes" or "no" */
}

int helper_list_main(void)
{
	struct rlimit no_core = {0, 0};
	CK_FUNCTION_LIST **list;
	size_t n = 0;
	FILE *out;
	int fd;

	/* Module code runs here: no core dumps, no ptrace by the user's other processes. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || setrlimit(RLIMIT_CORE, &no_core) < 0) {
		perror("certagent-pkcs11-helper: hardening");
		return 1;
	}
	fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 || !(out = fdopen(fd, "w"))) {
		perror("certagent-pkcs11-helper: stdout");
		return 1;
	}
	p11_kit_set_progname(HELPER_LIST_PROGNAME);
	list = p11_kit_modules_load(NULL, 0);
	if (!list) {
		fprintf(stderr,
			"certagent-pkcs11-helper: p11-kit could not load its registered "
			"modules: %s\n",
			p11_kit_message() ? p11_kit_message() : "unknown error");
		return 1;
	}
	fprintf(out, "%s\n", HELPER_LIST_MAGIC);
	for (size_t i = 0; list[i]; i++) {
		_cleanup_free_ char *name = p11_kit_module_get_name(list[i]);
		_cleanup_free_ char *path = p11_kit_module_get_filename(list[i]);
		bool critical = list_option_yes(list[i], "critical");
		bool trust = list_option_yes(list[i], "trust-policy");

		if (!name || !path || path[0] != '/') {
			/* p11-kit "remote:" modules have no file to run in a helper. */
			fprintf(stderr,
				"certagent-pkcs11-helper: registered module %s has no module "
				"file: skipped\n",
				name ? name : "(unnamed)");
			continue;
		}
		if (!list_text_ok(name, HELPER_LIST_NAME_MAX) ||
		    !list_text_ok(path, PATH_MAX - 1)) {
			fprintf(stderr,
				"certagent-pkcs11-helper: a registered module has a name or "
				"path with control characters or too long: skipped\n");
			continue;
		}
		if (n == HELPER_LIST_MODULES_MAX) {
			fprintf(stderr,
				"certagent-pkcs11-helper: more than %d registered modules: "
				"%s and later ones skipped\n",
				HELPER_LIST_MODULES_MAX, name);
			break;
		}
		fprintf(out, "module\t%s\t%s\t%s\n", name, path,
			critical && trust ? "critical,trust-policy"
			: critical	  ? "critical"
			: trust		  ? "trust-policy"
					  : "-");
		n++;
	}
	fprintf(out, "end\n");
	if (fflush(out) != 0 || ferror(out))
		return 1;
	fflush(stderr);
	/* Not released: no module destructor has a say in our exit status. */
	_exit(0);
}

/* ---- the agent's side ---- */

static long list_ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* Reads fd to EOF into buf (cap bytes): 0, -ETIMEDOUT, -EMSGSIZE or -errno. */
static int list_read_all(int fd, const struct timespec *deadline, char *buf, size_t cap,
			 size_t *ret_len)
{
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long ms = list_ms_left(deadline);
		ssize_t k;

		if (ms <= 0)
			return -ETIMEDOUT;
		k = poll(&pfd, 1, (int)ms);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ETIMEDOUT;
		if (len == cap) {
			char c;

			k = read(fd, &c, 1);
			if (k == 0)
				break;
			if (k > 0)
				return -EMSGSIZE;
		} else
			k = read(fd, buf + len, cap - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		len += (size_t)k;
	}
	*ret_len = len;
	return 0;
}

/* Reaps pid, killing it first when kill_it or when it outlives the deadline. Returns its wait
 * status, or -1 when it was killed by us. */
static int list_reap(pid_t pid, bool kill_it, const struct timespec *deadline)
{
	int status = 0;

	while (!kill_it) {
		pid_t k = waitpid(pid, &status, WNOHANG);

		if (k == pid)
			return status;
		if (k < 0 && errno != EINTR)
			return -1;
		if (list_ms_left(deadline) <= 0)
			break;
		usleep(10 * 1000);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return -1;
}

static int list_parse_flags(char *s, ListedModule *m)
{
	char *save = NULL;

	if (strcmp(s, "-") == 0)
		return 0;
	for (char *w = strtok_r(s, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (strcmp(w, "critical") == 0)
			m->critical = true;
		else if (strcmp(w, "trust-policy") == 0)
			m->trust_policy = true;
		else
			return -EBADMSG;
	}
	return 0;
}

/* One "module" line (its fields after the keyword), appended to *v. */
static int list_parse_module(char *fields, ListedModule **v, size_t *n)
{
	char *name = fields, *path, *flags;
	ListedModule m = {}, *p;

	path = strchr(name, '\t');
	if (!path)
		return -EBADMSG;
	*path++ = '\0';
	flags = strchr(path, '\t');
	if (!flags)
		return -EBADMSG;
	*flags++ = '\0';
	if (!list_text_ok(name, HELPER_LIST_NAME_MAX) || !list_text_ok(path, PATH_MAX - 1) ||
	    path[0] != '/' || !list_text_ok(flags, 64) || list_parse_flags(flags, &m) < 0 ||
	    *n >= HELPER_LIST_MODULES_MAX)
		return -EBADMSG;
	p = reallocarray(*v, *n + 1, sizeof(**v));
	if (!p)
		return -ENOMEM;
	*v = p;
	m.name = strdup(name);
	m.path = strdup(path);
	p[(*n)++] = m; /* freed with the vector, even half-filled */
	return m.name && m.path ? 0 : -ENOMEM;
}

/* The whole output: magic, module lines, "end", nothing after. */
static int list_parse(char *buf, size_t len, ListedModule **ret, size_t *ret_n)
{
	ListedModule *v = NULL;
	size_t n = 0;
	bool magic = false, end = false;
	char *line = buf;
	int r = 0;

	if (memchr(buf, '\0', len))
		return -EBADMSG;
	buf[len] = '\0';
	while (r == 0 && *line) {
		char *nl = strchr(line, '\n');

		if (!nl || end) {
			r = -EBADMSG; /* a line cut short, or something after "end" */
			break;
		}
		*nl = '\0';
		if (!magic)
			r = strcmp(line, HELPER_LIST_MAGIC) == 0 ? 0 : -EBADMSG;
		else if (strcmp(line, "end") == 0)
			end = true;
		else if (strncmp(line, "module\t", 7) == 0)
			r = list_parse_module(line + 7, &v, &n);
		else
			r = -EBADMSG;
		magic = true;
		line = nl + 1;
	}
	if (r == 0 && !end)
		r = -EBADMSG;
	if (r < 0) {
		helper_list_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int helper_list_registered(unsigned timeout_ms, ListedModule **ret, size_t *ret_n)
{
	char *argv[] = {(char *)"certagent-pkcs11-helper", (char *)"--list-registered", NULL};
	_cleanup_free_ char *buf = NULL;
	struct timespec deadline;
	size_t len = 0;
	int p[2], k, status;
	pid_t pid;

	buf = malloc(HELPER_LIST_OUTPUT_MAX + 1);
	if (!buf)
		return -ENOMEM;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	k = helper_spawn(argv, p[1], STDOUT_FILENO, &pid);
	close(p[1]);
	if (k != 0) {
		call_log(LOG_WARNING,
			 "cannot start %s to list the modules registered with p11-kit: %s",
			 helper_path(), strerror(-k));
		close(p[0]);
		return -EIO;
	}

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	k = list_read_all(p[0], &deadline, buf, HELPER_LIST_OUTPUT_MAX, &len);
	close(p[0]);
	status = list_reap(pid, k < 0, &deadline);
	if (k == 0 && status < 0)
		k = -ETIMEDOUT; /* closed its stdout, then hung */
	else if (k == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		k = -EIO;
	if (k == 0)
		k = list_parse(buf, len, ret, ret_n);
	if (k < 0 && k != -ENOMEM)
		call_log(LOG_WARNING, "%s --list-registered (pid %d) %s", helper_path(), (int)pid,
			 k == -ETIMEDOUT  ? "did not finish in time: killed"
			 : k == -EMSGSIZE ? "printed too much: killed"
			 : k == -EBADMSG  ? "printed a malformed list"
					  : "failed (see its messages above)");
	if (k == -EMSGSIZE)
		k = -EBADMSG;
	return k;
}

ListedModule *helper_list_free(ListedModule *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].path);
	}
	free(v);
	return NULL;
}
