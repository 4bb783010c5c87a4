/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent unlock TOKEN-URI: logs the agent in to a token. The PIN comes from --pin-file,
 * else $CERTAGENT_PIN (for scripts), else a prompt on /dev/tty without echo; never from argv.
 * Every copy of the PIN we hold is wiped before it is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

#define PIN_MAX 256

enum { OPT_PIN_FILE = 1, OPT_ADDRESS };

static const CliOption options[] = {
	{OPT_PIN_FILE, "pin-file", 0, "FILE", "Read the PIN from the first line of FILE"},
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "D-Bus address of the bus the agent is on "
	 "(default: the session bus)"},
};

/* Reads one line (without its newline) of at most PIN_MAX bytes into a new wiped-on-free buffer. */
static int read_pin_fd(int fd, char **ret)
{
	char *buf = calloc(1, PIN_MAX + 2);
	size_t len = 0;

	if (!buf)
		return -ENOMEM;
	while (len < PIN_MAX + 1) {
		ssize_t n = read(fd, buf + len, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			erase_and_free(buf, PIN_MAX + 2);
			return -e;
		}
		if (n == 0 || buf[len] == '\n')
			break;
		len++;
	}
	if (len > PIN_MAX) {
		erase_and_free(buf, PIN_MAX + 2);
		return -E2BIG;
	}
	buf[len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	*ret = buf;
	return 0;
}

static int pin_from_file(const char *path, char **ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	return read_pin_fd(fd, ret);
}

/* The terminal as it was before the prompt, restored if a signal ends us mid-prompt. */
static int tty_fd = -1;
static struct termios tty_saved;

static void tty_restore_and_die(int sig)
{
	tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	(void)!write(tty_fd, "\n", 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int pin_from_tty(const char *token, char **ret)
{
	_cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
	struct sigaction sa = {.sa_handler = tty_restore_and_die}, old_sa[ELEMENTSOF(sigs)];
	struct termios quiet;
	int r;

	if (fd < 0)
		return -errno;
	if (tcgetattr(fd, &tty_saved) < 0)
		return -errno;
	tty_fd = fd;
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		sigaction(sigs[i], &sa, &old_sa[i]);
	quiet = tty_saved;
	quiet.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL);
	quiet.c_lflag |= ICANON;
	dprintf(fd, "PIN for %s: ", token);
	r = tcsetattr(fd, TCSAFLUSH, &quiet) < 0 ? -errno : read_pin_fd(fd, ret);
	tcsetattr(fd, TCSAFLUSH, &tty_saved);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		sigaction(sigs[i], &old_sa[i], NULL);
	tty_fd = -1;
	dprintf(fd, "\n");
	return r;
}

static int get_pin(const char *pin_file, const char *token, char **ret)
{
	char *env;
	int r;

	if (pin_file) {
		r = pin_from_file(pin_file, ret);
		if (r < 0)
			fprintf(stderr, "certagent: cannot read the PIN from %s: %s\n", pin_file,
				r == -E2BIG ? "longer than 256 bytes" : strerror(-r));
		return r < 0 ? CLI_EXIT_IO : 0;
	}
	env = secure_getenv("CERTAGENT_PIN");
	if (env) {
		*ret = strndup(env, PIN_MAX);
		/* Our copy is enough: wipe the environment's so children and /proc never see it. */
		explicit_bzero(env, strlen(env));
		unsetenv("CERTAGENT_PIN");
		if (!*ret) {
			fputs("certagent: out of memory\n", stderr);
			return CLI_EXIT_AGENT;
		}
		return 0;
	}
	r = pin_from_tty(token, ret);
	if (r < 0) {
		fprintf(stderr,
			"certagent: cannot prompt for the PIN (%s): there is no terminal; use "
			"--pin-file FILE or set CERTAGENT_PIN\n",
			r == -E2BIG ? "longer than 256 bytes" : strerror(-r));
		return CLI_EXIT_USAGE;
	}
	return 0;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	_cleanup_erase_str_ char *pin = NULL;
	const char *address = NULL, *pin_file = NULL, *token, *arg;
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_AGENT;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_PIN_FILE)
			pin_file = arg;
		else if (o == OPT_ADDRESS)
			address = arg;
	}
	token = p.n_positional == 1 ? p.positional[0] : NULL;
	if (o == 0 && !token)
		o = cli_usage_error(cmd, "unlock needs exactly one TOKEN-URI "
					 "(e.g. pkcs11:token=alice; see `certagent list`)");
	else if (o == 0 && strncmp(token, "pkcs11:", 7) != 0)
		o = cli_usage_error(cmd, "\"%s\" is not a pkcs11: URI (e.g. pkcs11:token=alice)",
				    token);
	cli_parser_deinit(&p);
	if (o == CLI_OPT_HELP)
		return CLI_EXIT_OK;
	if (o < 0)
		return CLI_EXIT_USAGE;

	/* Connect first: no point asking a person for a PIN nobody can use. */
	if (certagent_client_new(address, &c, &err) < 0)
		return cli_agent_error(&err);
	rc = get_pin(pin_file, token, &pin);
	if (rc == 0) {
		if (certagent_unlock(c, token, pin, &err) < 0) {
			rc = cli_agent_error(&err);
		} else {
			fprintf(stderr, "certagent: %s unlocked\n", token);
			rc = CLI_EXIT_OK;
		}
	}
	certagent_client_free(c);
	return rc;
}

const CliCommand cli_cmd_unlock = {
	.name = "unlock",
	.synopsis = "TOKEN-URI",
	.summary = "Log the agent in to a token (asks for the PIN)",
	.description = "Logs certagentd in to the token(s) TOKEN-URI names, so it can sign with "
		       "their keys. The PIN is read from --pin-file, else from the environment "
		       "variable CERTAGENT_PIN, else asked for on the terminal without echo; it is "
		       "never taken from the command line. A wrong PIN is not retried.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
