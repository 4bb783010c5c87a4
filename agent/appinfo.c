/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * appinfo: reads a few small files under /proc/PID. A caller can name itself anything, so
 * what we show is only what the kernel says (the executable path, the cgroup) and, for
 * Flatpak, the sandbox's own metadata; control characters are replaced so a crafted name
 * cannot forge lines of the prompt.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "appinfo.h"
#include "util.h"

#define APPINFO_FILE_MAX 8192 /* bytes read of /proc/PID/cgroup and .flatpak-info */

/* Replaces control characters by '?' (keeps the prompt one line per field). */
static void appinfo_sanitise(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* Reads up to APPINFO_FILE_MAX-1 bytes of path into buf (NUL-terminated). -errno on failure. */
static int appinfo_read_file(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	size_t n = 0;

	if (fd < 0)
		return -errno;
	while (n + 1 < size) {
		ssize_t k = read(fd, buf + n, size - 1 - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		n += (size_t)k;
	}
	buf[n] = 0;
	return 0;
}

/* The last .service or .scope component of the unified (or name=systemd) cgroup path. */
static void appinfo_unit(pid_t pid, char *ret, size_t size)
{
	char path[64], buf[APPINFO_FILE_MAX];
	char *line, *save = NULL;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if (appinfo_read_file(path, buf, sizeof(buf)) < 0)
		return;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *cg = strchr(line, ':');
		char *comp, *csave = NULL, *best = NULL;

		/* "0::/user.slice/…" (cgroup v2) or "1:name=systemd:/…" (v1) */
		if (!cg || !(cg = strchr(cg + 1, ':')))
			continue;
		if (!(strncmp(line, "0::", 3) == 0 || strstr(line, ":name=systemd:")))
			continue;
		for (comp = strtok_r(cg + 1, "/", &csave); comp;
		     comp = strtok_r(NULL, "/", &csave)) {
			size_t len = strlen(comp);

			if ((len > 8 && strcmp(comp + len - 8, ".service") == 0) ||
			    (len > 6 && strcmp(comp + len - 6, ".scope") == 0))
				best = comp;
		}
		/* The user manager itself says nothing about the application. */
		if (best && strncmp(best, "user@", 5) != 0 &&
		    strncmp(best, "init.scope", 10) != 0) {
			snprintf(ret, size, "%s", best);
			return;
		}
	}
}

/* [Application] name= of /proc/PID/root/.flatpak-info. */
static void appinfo_flatpak(pid_t pid, char *ret, size_t size)
{
	char path[64], buf[APPINFO_FILE_MAX];
	char *line, *save = NULL;
	bool in_app = false;

	snprintf(path, sizeof(path), "/proc/%d/root/.flatpak-info", (int)pid);
	if (appinfo_read_file(path, buf, sizeof(buf)) < 0)
		return;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '[') {
			in_app = strcmp(line, "[Application]") == 0;
			continue;
		}
		if (in_app && strncmp(line, "name=", 5) == 0) {
			snprintf(ret, size, "%s", line + 5);
			return;
		}
	}
}

void appinfo_read(pid_t pid, AppInfo *ret)
{
	char path[64];
	ssize_t n;

	*ret = (AppInfo){.pid = pid};
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, ret->exe, sizeof(ret->exe) - 1);
	ret->exe[n > 0 ? n : 0] = 0;
	appinfo_unit(pid, ret->unit, sizeof(ret->unit));
	appinfo_flatpak(pid, ret->flatpak, sizeof(ret->flatpak));
	appinfo_sanitise(ret->exe);
	appinfo_sanitise(ret->unit);
	appinfo_sanitise(ret->flatpak);
}

void appinfo_describe(const AppInfo *info, char *buf, size_t size)
{
	const char *base = strrchr(info->exe, '/');
	char details[3 * APPINFO_FIELD_MAX + 64];
	size_t len = 0;

	base = base ? base + 1 : info->exe;
	details[0] = 0;
#define APPEND(...)                                                                                \
	do {                                                                                       \
		int w_ = snprintf(details + len, sizeof(details) - len, __VA_ARGS__);              \
		if (w_ > 0)                                                                        \
			len = (size_t)w_ < sizeof(details) - len ? len + (size_t)w_                \
								 : sizeof(details) - 1;            \
	} while (0)
	if (info->exe[0])
		APPEND("%s", info->exe);
	if (info->pid > 0)
		APPEND("%spid %d", len ? ", " : "", (int)info->pid);
	if (info->unit[0])
		APPEND("%sunit %s", len ? ", " : "", info->unit);
#undef APPEND
	if (info->flatpak[0])
		snprintf(buf, size, "Flatpak app %s (%s)", info->flatpak, details);
	else if (base[0])
		snprintf(buf, size, "%s (%s)", base, details);
	else if (info->pid > 0)
		snprintf(buf, size, "an unknown program (%s)", details);
	else
		snprintf(buf, size, "an unknown program");
}
