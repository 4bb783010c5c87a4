/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * helper-spawn: starting certagent-pkcs11-helper, for an isolated module (remote.c, its RPC
 * socket on fd 3) and for the list of registered modules (helper-list.c, its output on
 * fd 1). One place decides which binary runs and what the child inherits: stdin from
 * /dev/null, the one fd it is given, default dispositions for the signals the agent handles
 * and an empty signal mask (the agent blocks signals for its signalfd).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"

const char *helper_path(void)
{
	const char *p = secure_getenv("CERTAGENT_PKCS11_HELPER");

	return p && p[0] == '/' ? p : CERTAGENT_PKCS11_HELPER_PATH;
}

int helper_spawn(char *const argv[], int fd, int target_fd, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, deflt;
	int floor = target_fd > STDERR_FILENO ? target_fd : STDERR_FILENO;
	int child = fd, k;

	/* dup2 onto itself would keep FD_CLOEXEC, and a low fd may be replaced below. */
	if (fd <= floor) {
		child = fcntl(fd, F_DUPFD_CLOEXEC, floor + 1);
		if (child < 0)
			return -errno;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (target_fd != STDOUT_FILENO)
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, child, target_fd);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&deflt);
	sigaddset(&deflt, SIGPIPE);
	sigaddset(&deflt, SIGTERM);
	sigaddset(&deflt, SIGINT);
	sigaddset(&deflt, SIGHUP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &deflt);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	k = posix_spawn(ret_pid, helper_path(), &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (child != fd)
		close(child);
	return -k;
}
