/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pin-input: PIN sources for the token commands (see pin-input.h). The terminal is restored if
 * a signal ends us mid-prompt. Every buffer that held a PIN is wiped before it is freed.
 * Every command that needs a PIN (unlock and the token commands) reads it here.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "options.h"
#include "pin-input.h"
#include "util.h"

/* One line (without its newline) of at most PIN_INPUT_MAX bytes into a new buffer. */
static int read_line_fd(int fd, char **ret)
{
	char *buf = calloc(1, PIN_INPUT_MAX + 2);
	size_t len = 0;

	if (!buf)
		return -ENOMEM;
	while (len < PIN_INPUT_MAX + 1) {
		ssize_t n = read(fd, buf + len, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			erase_and_free(buf, PIN_INPUT_MAX + 2);
			return -e;
		}
		if (n == 0 || buf[len] == '\n')
			break;
		len++;
	}
	if (len > PIN_INPUT_MAX) {
		erase_and_free(buf, PIN_INPUT_MAX + 2);
		return -E2BIG;
	}
	buf[len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	*ret = buf;
	return 0;
}

static int tty_fd = -1;
static struct termios tty_saved;

static void tty_restore_and_die(int sig)
{
	tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	(void)!write(tty_fd, "\n", 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int prompt_tty(int fd, const char *prompt, char **ret)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
	struct sigaction sa = {.sa_handler = tty_restore_and_die}, old_sa[ELEMENTSOF(sigs)];
	struct termios quiet;
	int r;

	if (tcgetattr(fd, &tty_saved) < 0)
		return -errno;
	tty_fd = fd;
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		sigaction(sigs[i], &sa, &old_sa[i]);
	quiet = tty_saved;
	quiet.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL);
	quiet.c_lflag |= ICANON;
	/* Prompts are written to follow "cannot ask for the …" too: capitalise here. */
	dprintf(fd, "%c%s: ", toupper((unsigned char)prompt[0]), prompt[0] ? prompt + 1 : "");
	r = tcsetattr(fd, TCSAFLUSH, &quiet) < 0 ? -errno : read_line_fd(fd, ret);
	tcsetattr(fd, TCSAFLUSH, &tty_saved);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		sigaction(sigs[i], &old_sa[i], NULL);
	tty_fd = -1;
	dprintf(fd, "\n");
	return r;
}

/* The file option that goes with each PIN variable, for the message when nothing can be read. */
static const char *file_option(const char *env)
{
	static const struct {
		const char *env, *option;
	} map[] = {
		{"CERTAGENT_PIN", "--pin-file"},
		{"CERTAGENT_NEW_PIN", "--new-pin-file"},
		{"CERTAGENT_SO_PIN", "--so-pin-file"},
	};

	for (size_t i = 0; env && i < ELEMENTSOF(map); i++)
		if (strcmp(env, map[i].env) == 0)
			return map[i].option;
	return "--pin-file";
}

int pin_input_get(const char *file, const char *env, const char *prompt, bool confirm, char **ret)
{
	_cleanup_close_ int fd = -1;
	_cleanup_erase_str_ char *again = NULL;
	char *v;
	int r;

	if (file) {
		fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		r = fd < 0 ? -errno : read_line_fd(fd, ret);
		if (r < 0)
			fprintf(stderr, "certagent: cannot read the PIN from %s: %s\n", file,
				r == -E2BIG ? "longer than 256 bytes" : strerror(-r));
		return r < 0 ? CLI_EXIT_IO : 0;
	}
	v = env ? secure_getenv(env) : NULL;
	if (v) {
		*ret = strndup(v, PIN_INPUT_MAX);
		/* Our copy is enough: children and /proc/PID/environ never see it again. */
		explicit_bzero(v, strlen(v));
		unsetenv(env);
		if (!*ret) {
			fputs("certagent: out of memory\n", stderr);
			return CLI_EXIT_FAILED;
		}
		return 0;
	}
	fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	r = fd < 0 ? -errno : prompt_tty(fd, prompt, ret);
	if (r == 0 && confirm) {
		_cleanup_free_ char *p2 = NULL;

		if (asprintf(&p2, "%s (again)", prompt) < 0)
			r = -ENOMEM;
		else
			r = prompt_tty(fd, p2, &again);
		if (r == 0 && strcmp(*ret, again) != 0) {
			*ret = erase_and_free_str(*ret);
			fputs("certagent: the two PINs differ: nothing changed\n", stderr);
			return CLI_EXIT_USAGE;
		}
		if (r != 0)
			*ret = erase_and_free_str(*ret);
	}
	if (r == -E2BIG) {
		fprintf(stderr, "certagent: the %s is longer than %d bytes: nothing was tried\n",
			prompt, PIN_INPUT_MAX);
		return CLI_EXIT_USAGE;
	}
	if (r < 0) {
		fprintf(stderr,
			"certagent: cannot ask for the %s: no terminal to ask on (%s); give it "
			"in a file with %s FILE%s%s (PINs are never taken from the command line)\n",
			prompt, strerror(-r), file_option(env), env ? " or in $" : "",
			env ? env : "");
		return CLI_EXIT_USAGE;
	}
	return 0;
}

bool pin_input_confirm(const char *question)
{
	_cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	char answer[8] = {0};
	ssize_t n;

	if (fd < 0 || !isatty(STDIN_FILENO))
		return false;
	dprintf(fd, "%s [y/N] ", question);
	n = read(fd, answer, sizeof(answer) - 1);
	return n > 0 && (answer[0] == 'y' || answer[0] == 'Y');
}
