/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log: the agent's log, to stderr or syslog, safe from any thread. One line per event; the
 * sign log line is what a person reads to see which token signed what. PINs are never passed
 * here.
 */
#pragma once

#include <stdbool.h>

#include "util.h"

typedef enum LogLevel {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
} LogLevel;

typedef enum LogTarget {
	LOG_TARGET_STDERR = 0,
	LOG_TARGET_SYSLOG,
} LogTarget;

/* Before this is called, messages go to stderr at info level. */
void log_setup(LogTarget target, LogLevel max_level);
bool log_enabled(LogLevel level);
void log_msg(LogLevel level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
