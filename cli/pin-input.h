/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pin-input: reading a PIN for the token commands, never from argv: from a file (first line),
 * else from an environment variable (copied, then wiped from the environment), else from a
 * prompt on /dev/tty with echo off (asked twice when a new PIN is being set).
 */
#pragma once

#include <stdbool.h>

#define PIN_INPUT_MAX 256

/*
 * file: --xxx-pin-file or NULL; env: "CERTAGENT_PIN" etc.; prompt: "User PIN for demo".
 * Returns 0 with a NUL-terminated PIN in *ret (free with erase_and_free_str), or a CLI exit code
 * after printing what went wrong (5: file unreadable, 2: no terminal and no other source or the
 * two entries differ).
 */
int pin_input_get(const char *file, const char *env, const char *prompt, bool confirm, char **ret);

/* Asks "question [y/N]" on /dev/tty; false without a terminal. */
bool pin_input_confirm(const char *question);
