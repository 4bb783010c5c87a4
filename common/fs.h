/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs: the one file-system helper both the agent (the audit log's folder) and the CLI (the
 * configuration's folder) need.
 */
#pragma once

#include <sys/types.h>

/* mkdir -p of the folders above path (not path itself), each new one with mode. 0 or -errno. */
int mkdir_parents(const char *path, mode_t mode);
