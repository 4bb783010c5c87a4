/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log: formats a whole line first and writes it with one call, so lines from worker threads
 * never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "log.h"

/* glibc opens the syslog socket close-on-exec. */
static LogTarget log_target = LOG_TARGET_STDERR;
static LogLevel log_max = LOG_LEVEL_INFO;

void log_setup(LogTarget target, LogLevel max_level)
{
	log_target = target;
	log_max = max_level;
	if (target == LOG_TARGET_SYSLOG)
		openlog("certagentd", LOG_PID | LOG_NDELAY, LOG_USER);
}

bool log_enabled(LogLevel level)
{
	return level <= log_max;
}

void log_msg(LogLevel level, const char *fmt, ...)
{
	static const char *const prefixes[] = {
		[LOG_LEVEL_ERROR] = "error: ",
		[LOG_LEVEL_WARNING] = "warning: ",
		[LOG_LEVEL_INFO] = "",
		[LOG_LEVEL_DEBUG] = "debug: ",
	};
	static const int priorities[] = {
		[LOG_LEVEL_ERROR] = LOG_ERR,
		[LOG_LEVEL_WARNING] = LOG_WARNING,
		[LOG_LEVEL_INFO] = LOG_INFO,
		[LOG_LEVEL_DEBUG] = LOG_DEBUG,
	};
	char line[2048];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_target == LOG_TARGET_SYSLOG)
		syslog(priorities[level], "%s", line);
	else
		fprintf(stderr, "certagentd: %s%s\n", prefixes[level], line);
}
