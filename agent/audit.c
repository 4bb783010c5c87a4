/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit: the writer. The fd stays open between lines and the file's size is kept in memory
 * (fstat at open, plus what we append), so a line costs one write(2) on the O_APPEND fd and
 * no stat: the size decides rotation. At most once a second the path is checked (a file moved
 * or deleted by someone else, e.g. logrotate, is reopened) and the size read again (someone
 * else appended or truncated). A failure closes the fd so the next line tries afresh.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "audit.h"
#include "json.h"
#include "log.h"

struct AuditLog {
	pthread_mutex_t lock;
	char *path;
	uint64_t max_size;
	unsigned files;
	bool fail_closed;
	int fd;
	dev_t dev;
	ino_t ino;
	uint64_t size;	       /* of the open file: fstat at open plus what we wrote */
	uint64_t checked_usec; /* when the path and size were last checked */
	bool warned;	       /* a failure was logged; cleared by the next good line */
};

int audit_new(const PolicyConfig *cfg, AuditLog **ret)
{
	AuditLog *a;

	*ret = NULL;
	if (cfg->audit_off)
		return 0;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->path = cfg->audit_path ? strdup(cfg->audit_path) : policy_audit_default_path();
	if (!a->path) {
		free(a);
		if (!cfg->audit_path) {
			log_warning("no audit log: neither XDG_STATE_HOME nor HOME is set (set "
				    "audit-log = PATH)");
			return 0;
		}
		return -ENOMEM;
	}
	pthread_mutex_init(&a->lock, NULL);
	a->max_size = cfg->audit_max_size;
	a->files = cfg->audit_files;
	a->fail_closed = cfg->audit_fail_closed;
	a->fd = -1;
	*ret = a;
	return 0;
}

AuditLog *audit_free(AuditLog *a)
{
	if (!a)
		return NULL;
	if (a->fd >= 0)
		close(a->fd);
	pthread_mutex_destroy(&a->lock);
	free(a->path);
	free(a);
	return NULL;
}

bool audit_fail_closed(const AuditLog *a)
{
	return a && a->fail_closed;
}

static int audit_open_fd(AuditLog *a)
{
	struct stat st;
	int r;

	r = mkdir_parents(a->path, 0700);
	if (r < 0)
		return r;
	a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
		     0600);
	if (a->fd < 0)
		return -errno;
	if (fstat(a->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = S_ISREG(st.st_mode) ? -errno : -EISDIR;
		close(a->fd);
		a->fd = -1;
		return r;
	}
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->size = (uint64_t)st.st_size;
	return 0;
}

/* audit.jsonl.N-1 → .N, …, audit.jsonl → .1 (the oldest falls off). */
static int audit_rotate(AuditLog *a)
{
	size_t len = strlen(a->path) + 16;
	_cleanup_free_ char *from = malloc(len), *to = malloc(len);

	if (!from || !to)
		return -ENOMEM;
	if (a->fd >= 0) {
		close(a->fd);
		a->fd = -1;
	}
	for (unsigned i = a->files; i >= 1; i--) {
		if (i == 1)
			snprintf(from, len, "%s", a->path);
		else
			snprintf(from, len, "%s.%u", a->path, i - 1);
		snprintf(to, len, "%s.%u", a->path, i);
		if (rename(from, to) < 0 && errno != ENOENT)
			return -errno;
	}
	return audit_open_fd(a);
}

/* up to the second (at most 31 bytes: rfc3339_now), ".uuuuuuZ" and the NUL */
#define AUDIT_TIME_MAX 40

#define AUDIT_RECHECK_USEC 1000000u /* how often the path is looked at again */

static uint64_t audit_now_usec(void)
{
	struct timespec ts;

	/* The coarse clock is read without a system call; a tick's precision is plenty. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Opens, reopens (the file was moved away) or rotates so that n more bytes fit. */
static int audit_prepare(AuditLog *a, size_t n)
{
	uint64_t now = audit_now_usec();
	struct stat st;
	int r;

	if (a->fd >= 0 && now - a->checked_usec >= AUDIT_RECHECK_USEC) {
		a->checked_usec = now;
		if (stat(a->path, &st) < 0 || st.st_dev != a->dev || st.st_ino != a->ino) {
			close(a->fd);
			a->fd = -1;
		} else {
			a->size = (uint64_t)st.st_size;
		}
	}
	if (a->fd < 0) {
		r = audit_open_fd(a);
		if (r < 0)
			return r;
		a->checked_usec = now;
	}
	if (a->size > 0 && a->size + n > a->max_size)
		return audit_rotate(a);
	return 0;
}

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"; the part up to the second is formatted once a second. */
static void rfc3339_now(char buf[static AUDIT_TIME_MAX])
{
	static _Thread_local time_t cached_sec = -1;
	static _Thread_local char cached[32];
	static _Thread_local size_t cached_len;
	struct timespec ts;
	struct tm tm;
	long usec;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = ts.tv_sec;
	}
	memcpy(buf, cached, cached_len);
	buf[cached_len] = '.';
	usec = ts.tv_nsec / 1000;
	for (int i = 6; i >= 1; i--, usec /= 10)
		buf[cached_len + i] = (char)('0' + usec % 10);
	memcpy(buf + cached_len + 7, "Z", 2);
}

static void put_opt(JsonBuf *b, const char *key, const char *v)
{
	/* Empty means unknown: leave the member out rather than write "". */
	if (v && v[0])
		json_buf_string(b, key, v);
}

int audit_write(AuditLog *a, const AuditRecord *rec, CaError *err)
{
	JsonBuf b;
	char now[AUDIT_TIME_MAX];
	int r = 0;

	if (!a)
		return 0;
	rfc3339_now(now);
	json_buf_begin(&b);
	json_buf_string(&b, "time", now);
	json_buf_string(&b, "decision", rec->decision);
	json_buf_string(&b, "identity", rec->identity ? rec->identity : "");
	put_opt(&b, "scheme", rec->scheme);
	put_opt(&b, "server", rec->server_name);
	put_opt(&b, "bus_name", rec->bus_name);
	if (rec->pid > 0)
		json_buf_int(&b, "pid", rec->pid);
	put_opt(&b, "exe", rec->exe);
	put_opt(&b, "unit", rec->unit);
	put_opt(&b, "app_id", rec->app_id);
	put_opt(&b, "policy", rec->policy);
	put_opt(&b, "reason", rec->reason);
	json_buf_int(&b, "latency_us", (int64_t)rec->latency_usec);
	json_buf_end(&b);
	if (b.oom) {
		json_buf_deinit(&b);
		return ca_error_set(err, CA_E_FAILED, "audit log cannot be written: out of memory");
	}
	b.data[b.len] = '\n'; /* replaces the NUL: written by length */

	pthread_mutex_lock(&a->lock);
	r = audit_prepare(a, b.len + 1);
	if (r == 0) {
		ssize_t w = write(a->fd, b.data, b.len + 1);

		if (w > 0)
			a->size += (uint64_t)w;
		if (w < 0)
			r = -errno;
		else if ((size_t)w != b.len + 1)
			r = -ENOSPC; /* a short append: the disk filled up under us */
	}
	if (r < 0) {
		ca_error_set(err, CA_E_FAILED, "audit log cannot be written: %s: %s", a->path,
			     strerror(-r));
		if (a->fd >= 0) {
			close(a->fd);
			a->fd = -1;
		}
		if (!a->warned || a->fail_closed)
			log_warning("%s%s", err ? err->message : "audit log cannot be written",
				    a->fail_closed ? "; refusing to sign (audit-fail-closed = yes)"
						   : "; signing anyway (audit-fail-closed = no)");
		a->warned = true;
		r = CA_E_FAILED;
	} else {
		a->warned = false;
	}
	pthread_mutex_unlock(&a->lock);
	json_buf_deinit(&b);
	return r;
}
