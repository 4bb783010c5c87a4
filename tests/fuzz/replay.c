/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * replay: main() of a fuzz target built without libFuzzer. Every argument is a file or a folder
 * of files (a seed corpus); each file is handed to LLVMFuzzerTestOneInput() once. A crash or a
 * sanitizer report fails the meson test; the exit status is 1 when no input was found at all,
 * so a corpus that went missing is noticed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "util.h"

/* Inputs larger than this are not seeds: libFuzzer's default -max_len is 4096. */
#define REPLAY_INPUT_MAX (1024 * 1024)

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static int replay_file(const char *path)
{
	_cleanup_(fclosep) FILE *f = fopen(path, "re");
	_cleanup_free_ uint8_t *buf = NULL;
	size_t n;

	if (!f) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(REPLAY_INPUT_MAX);
	if (!buf)
		return -1;
	n = fread(buf, 1, REPLAY_INPUT_MAX, f);
	if (ferror(f)) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		return -1;
	}
	/* An exact-size copy, so ASan sees reads past the end of the input. */
	{
		_cleanup_free_ uint8_t *exact = malloc(n ? n : 1);

		if (!exact)
			return -1;
		memcpy(exact, buf, n);
		LLVMFuzzerTestOneInput(exact, n);
	}
	return 0;
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Returns the number of inputs replayed, or -1 on an error. */
static int replay_path(const char *path)
{
	struct dirent **names = NULL;
	struct stat st;
	int n, count = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path) < 0 ? -1 : 1;
	n = scandir(path, &names, NULL, name_cmp);
	if (n < 0) {
		fprintf(stderr, "replay: cannot list %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char file[4096];

		if (count >= 0 && names[i]->d_name[0] != '.') {
			snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
			if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
				count = replay_file(file) < 0 ? -1 : count + 1;
		}
		free(names[i]);
	}
	free(names);
	return count;
}

int main(int argc, char **argv)
{
	int total = 0;

	for (int i = 1; i < argc; i++) {
		int n = replay_path(argv[i]);

		if (n < 0)
			return 1;
		total += n;
	}
	printf("replayed %d inputs\n", total);
	return total > 0 ? 0 : 1;
}
