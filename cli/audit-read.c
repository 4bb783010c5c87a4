/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit-read: the line parser and the time parser of `certagent audit`. Bounded by
 * common/json.c's caps; every field is checked for its type before it is used.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit-read.h"

void audit_entry_clear(AuditEntry *e)
{
	json_object_clear(&e->obj);
	*e = (AuditEntry){.latency_us = -1};
}

/* n digits at s into *ret. */
static bool digits(const char *s, int n, int *ret)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*ret = v;
	return true;
}

static int rfc3339_parse(const char *s, int64_t *ret_usec)
{
	struct tm tm = {0};
	int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
	int64_t usec = 0, t;
	const char *p;

	if (strlen(s) < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d))
		return -EINVAL;
	p = s + 10;
	if (*p) {
		if ((*p != 'T' && *p != 't' && *p != ' ') || strlen(p) < 9 ||
		    !digits(p + 1, 2, &h) || p[3] != ':' || !digits(p + 4, 2, &mi) || p[6] != ':' ||
		    !digits(p + 7, 2, &sec))
			return -EINVAL;
		p += 9;
		if (*p == '.') {
			int64_t scale = 100000;

			p++;
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
			for (; isdigit((unsigned char)*p); p++) {
				usec += (*p - '0') * scale;
				scale /= 10;
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int oh, om;

			if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) ||
			    oh > 23 || om > 59)
				return -EINVAL;
			off = (oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
			p += 6;
		} else {
			return -EINVAL;
		}
		if (*p)
			return -EINVAL;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = (int64_t)timegm(&tm);
	*ret_usec = (t - off) * 1000000 + usec;
	return 0;
}

int audit_time_parse(const char *s, int64_t now_usec, int64_t *ret_usec)
{
	char *end;
	unsigned long long n;
	int64_t unit;

	if (!s || !*s)
		return -EINVAL;
	if (isdigit((unsigned char)s[0]) && strlen(s) <= 8) {
		errno = 0;
		n = strtoull(s, &end, 10);
		if (!errno && end != s && end[0] && !end[1] && n < 100000000ULL) {
			switch (end[0]) {
			case 's':
				unit = 1;
				break;
			case 'm':
				unit = 60;
				break;
			case 'h':
				unit = 3600;
				break;
			case 'd':
				unit = 86400;
				break;
			default:
				return -EINVAL;
			}
			*ret_usec = now_usec - (int64_t)n * unit * 1000000;
			return 0;
		}
	}
	return rfc3339_parse(s, ret_usec);
}

/* The string member key: NULL when absent or null; false when of another type. */
static bool get_str(const JsonObject *o, const char *key, const char **ret)
{
	const JsonField *f = json_object_get(o, key);

	*ret = NULL;
	if (!f || f->type == JSON_NULL)
		return true;
	if (f->type != JSON_STRING)
		return false;
	*ret = f->str;
	return true;
}

static bool get_int(const JsonObject *o, const char *key, int64_t *ret)
{
	const JsonField *f = json_object_get(o, key);

	if (!f || f->type == JSON_NULL)
		return true;
	if (f->type != JSON_INT || f->num < 0)
		return false;
	*ret = f->num;
	return true;
}

int audit_parse_line(const char *line, size_t len, AuditEntry *ret)
{
	AuditEntry e = {.latency_us = -1};
	int r;

	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	r = json_flat_parse(line, len, &e.obj);
	if (r < 0)
		return r;
	if (!get_str(&e.obj, "time", &e.time) || !get_str(&e.obj, "decision", &e.decision) ||
	    !get_str(&e.obj, "identity", &e.identity) || !get_str(&e.obj, "scheme", &e.scheme) ||
	    !get_str(&e.obj, "server", &e.server) || !get_str(&e.obj, "bus_name", &e.bus_name) ||
	    !get_str(&e.obj, "exe", &e.exe) || !get_str(&e.obj, "unit", &e.unit) ||
	    !get_str(&e.obj, "app_id", &e.app_id) || !get_str(&e.obj, "policy", &e.policy) ||
	    !get_str(&e.obj, "reason", &e.reason) || !get_int(&e.obj, "pid", &e.pid) ||
	    !get_int(&e.obj, "latency_us", &e.latency_us) || !e.time || !e.decision ||
	    !e.identity || rfc3339_parse(e.time, &e.time_usec) < 0 ||
	    (strcmp(e.decision, "allowed") != 0 && strcmp(e.decision, "denied") != 0 &&
	     strcmp(e.decision, "failed") != 0)) {
		json_object_clear(&e.obj);
		return -EINVAL;
	}
	*ret = e;
	return 0;
}
