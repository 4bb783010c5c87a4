/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagentd: the per-user agent that keeps TLS client keys in PKCS#11 tokens and signs for
 * TLS handshakes over D-Bus (org.certagent.Agent1). This file: options, process hardening,
 * daemonising, and the order things start and stop in.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#include <dirent.h>

#include <dbus/dbus.h>

#include "config.h"
#include "log.h"
#include "prompt.h"
#include "server.h"
#include "settings.h"
#include "store.h"

typedef struct Options {
	const char *config;
	const char *address;
	bool foreground;
	bool debug;
} Options;

/* The one table behind getopt and --help. */
static const struct {
	struct option opt;
	const char *arg;
	const char *help;
} option_table[] = {
	{{"config", required_argument, NULL, 'c'},
	 "FILE",
	 "read FILE instead of $XDG_CONFIG_HOME/certagent/agent.conf"},
	{{"address", required_argument, NULL, 'a'},
	 "ADDR",
	 "serve on the bus at ADDR instead of the session bus"},
	{{"foreground", no_argument, NULL, 'f'},
	 NULL,
	 "do not fork (for systemd and D-Bus activation)"},
	{{"debug", no_argument, NULL, 'd'}, NULL, "log at debug level"},
	{{"version", no_argument, NULL, 'V'}, NULL, "print the version and exit"},
	{{"help", no_argument, NULL, 'h'}, NULL, "print this help and exit"},
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: certagentd [OPTION]...\n"
		"Keeps TLS client keys in PKCS#11 tokens and signs for TLS handshakes over D-Bus\n"
		"(%s on the session bus).\n\n",
		IPC_BUS_NAME);
	for (size_t i = 0; i < ELEMENTSOF(option_table); i++) {
		char left[64];

		snprintf(left, sizeof(left), "--%s%s%s", option_table[i].opt.name,
			 option_table[i].arg ? " " : "",
			 option_table[i].arg ? option_table[i].arg : "");
		fprintf(f, "  -%c, %-20s %s\n", option_table[i].opt.val, left,
			option_table[i].help);
	}
}

/* Returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, Options *o)
{
	struct option longopts[ELEMENTSOF(option_table) + 1];
	char shortopts[3 * ELEMENTSOF(option_table) + 1];
	size_t n = 0;
	int c;

	for (size_t i = 0; i < ELEMENTSOF(option_table); i++) {
		longopts[i] = option_table[i].opt;
		shortopts[n++] = (char)option_table[i].opt.val;
		if (option_table[i].opt.has_arg)
			shortopts[n++] = ':';
	}
	shortopts[n] = 0;
	longopts[ELEMENTSOF(option_table)] = (struct option){0};

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'a':
			o->address = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = true;
			break;
		case 'V':
			printf("certagentd %s\n", CERTAGENT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'certagentd --help'.\n");
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certagentd: unexpected argument \"%s\"; try 'certagentd --help'\n",
			argv[optind]);
		return 1;
	}
	return -1;
}

/* Marks every inherited fd above stderr close-on-exec: nothing leaks into modules' children. */
static void cloexec_inherited(void)
{
	DIR *d;
	struct dirent *de;

#ifdef CLOSE_RANGE_CLOEXEC
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
#endif
	d = opendir("/proc/self/fd");
	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (fd > 2 && fd != dirfd(d))
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	closedir(d);
}

/* No core dumps and no ptrace attach by other processes of the user, as ssh-agent does. */
static void harden(void)
{
	struct rlimit no_core = {0, 0};

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_warning("cannot disable ptrace and core dumps (PR_SET_DUMPABLE): %m");
	if (setrlimit(RLIMIT_CORE, &no_core) < 0)
		log_warning("cannot disable core dumps (RLIMIT_CORE): %m");
	umask(077);
	cloexec_inherited();
}

/*
 * Forks; the parent waits until the child owns the bus name and is ready (a byte on a pipe)
 * and exits 0, or 1 when the child failed. Returns the write end in the child, -1 on failure.
 */
static int daemonize(void)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		char c;
		int status;

		close(p[1]);
		if (read(p[0], &c, 1) == 1)
			_exit(0);
		waitpid(pid, &status, 0);
		_exit(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") < 0)
		log_warning("cannot change to /: %m");
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	return p[1];
}

static void settings_freep(Settings **s)
{
	settings_free(*s);
}

/* The syslog priority of each level, for store_set_log_priority(): store_log() maps back. */
static const int store_priority[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARNING] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/* The pkcs11/ layer's messages (token events, failing C_* calls at debug) into our log. */
static void store_log(int prio, const char *msg, void *userdata)
{
	LogLevel level = prio <= LOG_ERR       ? LOG_LEVEL_ERROR
			 : prio <= LOG_WARNING ? LOG_LEVEL_WARNING
			 : prio <= LOG_INFO    ? LOG_LEVEL_INFO
					       : LOG_LEVEL_DEBUG;

	log_msg(level, "%s", msg);
}

int main(int argc, char **argv)
{
	Options o = {0};
	_cleanup_(settings_freep) Settings *settings = NULL;
	_cleanup_free_ char *default_path = NULL;
	StoreOptions store_opts;
	DBusConnection *conn = NULL;
	Store *store = NULL;
	Server *server = NULL;
	Prompter *prompter = NULL;
	CaError err = {0};
	sigset_t mask;
	int ready_fd = -1, r;
	bool clean;

	/* Before anything could start a thread: libdbus needs its locks. */
	dbus_threads_init_default();
	harden();

	r = parse_options(argc, argv, &o);
	if (r >= 0)
		return r;

	if (!o.config)
		default_path = settings_default_path();
	r = settings_load(o.config ? o.config : default_path, o.config != NULL, &settings, &err);
	if (r) {
		log_error("%s", err.message[0] ? err.message : strerror(-r));
		return 1;
	}
	if (o.debug)
		settings->log_level = LOG_LEVEL_DEBUG;
	log_setup(settings->log_target, settings->log_level);
	store_set_log(store_log, NULL);
	/* The pkcs11/ layer then formats nothing the log would drop. */
	store_set_log_priority(store_priority[settings->log_level]);

	/* Signals arrive through the server's signalfd; every thread inherits this mask. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	if (!o.foreground) {
		ready_fd = daemonize();
		if (ready_fd < 0) {
			log_error("cannot go to the background: %m");
			return 1;
		}
	}
	log_info("certagentd %s starting (configuration: %s)", CERTAGENT_VERSION,
		 settings->path ? settings->path : "none, defaults");

	/* The name first: a second agent stops here, before it touches any token. */
	r = server_connect(o.address, &conn, &err);
	if (r) {
		log_error("%s", err.message);
		return 1;
	}
	settings_store_options(settings, &store_opts);
	r = store_new(&store_opts, &store, &err);
	if (r) {
		log_error("cannot load the PKCS#11 modules: %s",
			  err.message[0] ? err.message : strerror(-r));
		dbus_connection_close(conn);
		dbus_connection_unref(conn);
		return 1;
	}
	r = server_new(conn, store, settings, &server, &err);
	if (r) {
		log_error("%s", err.message[0] ? err.message : strerror(-r));
		store_free(store);
		dbus_connection_close(conn);
		dbus_connection_unref(conn);
		return 1;
	}
	r = prompt_new(&(PromptConfig){.pinentry = settings->pinentry,
				       .store = store,
				       .login_idle_timeout = settings->login_idle_timeout,
				       .logins_expired = methods_refresh_internal,
				       .userdata = server},
		       &prompter);
	if (r) {
		log_error("cannot start the PIN prompter: %s", strerror(-r));
		server_shutdown(server);
		server_free(server);
		store_free(store);
		dbus_connection_close(conn);
		dbus_connection_unref(conn);
		return 1;
	}
	if (settings->pinentry)
		methods_set_prompter(prompter);
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "1", 1);
		close(ready_fd);
	}

	r = server_run(server);
	if (r < 0)
		log_error("the main loop failed: %s", strerror(-r));

	/* Closes open dialogs; their waiters go back to the pools, which answer them. */
	prompt_stop(prompter);
	clean = server_shutdown(server);
	prompter = prompt_free(prompter);
	server_free(server);
	if (clean)
		store_free(store);
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
	log_info("stopped");
	if (!clean)
		_exit(r < 0 ? 1 : 0); /* a module thread may still be stuck: skip atexit */
	return r < 0 ? 1 : 0;
}
