/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sched-slice probe | PID...: the time slice (sched_attr.sched_runtime, in ns) the kernel has
 * for threads, read with sched_getattr(2). "probe" asks for a 100 us slice for itself and
 * prints what the kernel then reports (0: custom slices unsupported, before Linux 6.12); PID
 * prints "TID COMM NS" for every thread of each process. Run by sched-test.sh.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* struct sched_attr up to SCHED_ATTR_SIZE_VER0 (linux/sched/types.h clashes with <sched.h>). */
typedef struct SchedAttr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime;
	uint64_t sched_deadline;
	uint64_t sched_period;
} SchedAttr;

static int slice_of(pid_t tid, uint64_t *ret)
{
	SchedAttr a = {0};

	if (syscall(SYS_sched_getattr, tid, &a, sizeof(a), 0) < 0)
		return -1;
	*ret = a.sched_runtime;
	return 0;
}

static int probe(void)
{
	SchedAttr a = {0};
	uint64_t ns = 0;

	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0) {
		perror("sched_getattr");
		return 1;
	}
	a.size = sizeof(a);
	a.sched_flags = 0;
	a.sched_runtime = 100000;
	if (syscall(SYS_sched_setattr, 0, &a, 0) < 0 || slice_of(0, &ns) < 0)
		ns = 0;
	printf("%llu\n", (unsigned long long)ns);
	return 0;
}

static int threads(const char *pid)
{
	char path[64], comm[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%s/task", pid);
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "sched-slice: no process %s\n", pid);
		return 1;
	}
	while ((de = readdir(d))) {
		uint64_t ns;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task/%s/comm", pid, de->d_name);
		f = fopen(path, "re");
		if (!f || !fgets(comm, sizeof(comm), f))
			snprintf(comm, sizeof(comm), "?\n");
		if (f)
			fclose(f);
		comm[strcspn(comm, "\n")] = '\0';
		if (slice_of(atoi(de->d_name), &ns) < 0)
			continue; /* gone meanwhile */
		printf("%s %s %llu\n", de->d_name, comm, (unsigned long long)ns);
		n++;
	}
	closedir(d);
	return n ? 0 : 1;
}

int main(int argc, char **argv)
{
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: sched-slice probe | PID...\n");
		return 2;
	}
	if (strcmp(argv[1], "probe") == 0)
		return probe();
	for (int i = 1; i < argc; i++)
		rc |= threads(argv[i]);
	return rc;
}
