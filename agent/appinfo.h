/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * appinfo: who is asking, in words a person recognises on a PIN prompt. From the caller's pid
 * (the bus told us; see caller.c): the executable (/proc/PID/exe), the systemd unit it runs in
 * (/proc/PID/cgroup: …/NAME.service or …/NAME.scope) and the Flatpak application id
 * (/proc/PID/root/.flatpak-info, [Application] name=). Everything read is capped and
 * sanitised (no control characters); what cannot be read is simply left out.
 */
#pragma once

#include <sys/types.h>

#define APPINFO_FIELD_MAX 256

typedef struct AppInfo {
	pid_t pid;			 /* 0 when unknown */
	char exe[APPINFO_FIELD_MAX];	 /* "/usr/bin/python3.11", or "" */
	char unit[APPINFO_FIELD_MAX];	 /* "app-firefox-1234.scope", or "" */
	char flatpak[APPINFO_FIELD_MAX]; /* "org.mozilla.firefox", or "" */
} AppInfo;

/* Fills info for pid (0: nothing known). Never fails: missing parts stay empty. */
void appinfo_read(pid_t pid, AppInfo *ret);

/*
 * One line for a prompt: "python3.11 (/usr/bin/python3.11, pid 42, unit foo.service)" or
 * "Flatpak app org.mozilla.firefox (…)"; "an unknown program" when nothing is known.
 */
void appinfo_describe(const AppInfo *info, char *buf, size_t size);
