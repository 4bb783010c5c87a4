/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"
#include "util.h"

int mkdir_parents(const char *path, mode_t mode)
{
	_cleanup_free_ char *dir = strdup(path);

	if (!dir)
		return -ENOMEM;
	for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	return 0;
}
