/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent audit: the agent's audit log (one JSON line per signing decision), oldest first,
 * across the rotated files, filtered by identity, time and decision. Lines that are not audit
 * lines are skipped and counted (stderr says how many), never trusted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit-read.h"
#include "cli.h"
#include "json.h"
#include "settings.h"
#include "util.h"

enum { OPT_JSON = 1, OPT_IDENTITY, OPT_SINCE, OPT_DECISION, OPT_LIMIT, OPT_FILE, OPT_CONFIG };

static const CliOption options[] = {
	{OPT_JSON, "json", 0, NULL, "Print JSON ({\"entries\": [...], \"malformed\": N})"},
	{OPT_IDENTITY, "identity", 'i', "URI", "Only decisions about this identity URI"},
	{OPT_SINCE, "since", 0, "TIME",
	 "Only decisions at or after TIME (RFC 3339, YYYY-MM-DD, or an age: 30m, 2h, 7d)"},
	{OPT_DECISION, "decision", 0, "WHAT", "Only allowed, denied or failed decisions"},
	{OPT_LIMIT, "limit", 'n', "N", "Only the last N decisions that match"},
	{OPT_FILE, "file", 0, "PATH", "Read this log instead of the agent's (audit-log)"},
	{OPT_CONFIG, "config", 0, "FILE", "The agent configuration that names the log"},
};

typedef struct Filter {
	const char *identity, *decision;
	int64_t since_usec;
	bool has_since;
} Filter;

typedef struct Entries {
	AuditEntry *items;
	size_t n, cap;
	size_t malformed;
} Entries;

static bool filter_match(const Filter *f, const AuditEntry *e)
{
	return (!f->identity || strcmp(f->identity, e->identity) == 0) &&
	       (!f->decision || strcmp(f->decision, e->decision) == 0) &&
	       (!f->has_since || e->time_usec >= f->since_usec);
}

/* Reads one file (a missing one is no error); -errno when it cannot be read. */
static int read_file(const char *path, const Filter *f, Entries *out)
{
	FILE *fp = fopen(path, "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!fp)
		return errno == ENOENT ? 0 : -errno;
	while ((n = getline(&line, &cap, fp)) >= 0) {
		AuditEntry e;

		if (n == 0 || (n == 1 && line[0] == '\n'))
			continue;
		if (audit_parse_line(line, (size_t)n, &e) < 0) {
			out->malformed++;
			continue;
		}
		if (!filter_match(f, &e)) {
			audit_entry_clear(&e);
			continue;
		}
		if (out->n == out->cap) {
			size_t ncap = out->cap ? out->cap * 2 : 64;
			AuditEntry *grown = realloc(out->items, ncap * sizeof(*grown));

			if (!grown) {
				audit_entry_clear(&e);
				fclose(fp);
				return -ENOMEM;
			}
			out->items = grown;
			out->cap = ncap;
		}
		out->items[out->n++] = e;
	}
	fclose(fp);
	return 0;
}

static void print_text(const AuditEntry *e, FILE *fp)
{
	const char *app = e->app_id ? e->app_id : e->unit ? e->unit : e->exe;

	fprintf(fp, "%s %-7s %s", e->time, e->decision, e->identity);
	if (e->server)
		fprintf(fp, " server=%s", e->server);
	if (e->scheme)
		fprintf(fp, " scheme=%s", e->scheme);
	if (app || e->pid)
		fprintf(fp, " app=%s[%lld]", app ? app : "?", (long long)e->pid);
	if (e->policy)
		fprintf(fp, " policy=%s", e->policy);
	if (e->latency_us >= 0)
		fprintf(fp, " %.1fms", (double)e->latency_us / 1000.0);
	if (e->reason)
		fprintf(fp, "\n    %s", e->reason);
	fputc('\n', fp);
}

static void print_json(const AuditEntry *e, bool first, FILE *fp)
{
	JsonBuf b;

	/* Re-encoded from the parsed fields: only what the parser accepted comes out. */
	json_buf_begin(&b);
	for (size_t i = 0; i < e->obj.n; i++) {
		const JsonField *f = &e->obj.fields[i];

		if (f->type == JSON_STRING)
			json_buf_string(&b, f->key, f->str);
		else if (f->type == JSON_INT)
			json_buf_int(&b, f->key, f->num);
	}
	json_buf_end(&b);
	if (!b.oom)
		fprintf(fp, "%s\n  %s", first ? "" : ",", b.data);
	json_buf_deinit(&b);
}

/* The log the agent writes: audit-log of its configuration, else the XDG default. */
static char *log_path(const char *config, const char *file, int *ret_rc)
{
	_cleanup_free_ char *default_conf = NULL;
	Settings *s = NULL;
	char *path = NULL;

	*ret_rc = CLI_EXIT_OK;
	if (file) {
		/* Named by the user: it must be there (the agent's own log may not be yet). */
		*ret_rc =
			cli_named_file_exists(file, "name the agent's audit log (audit-log in its "
						    "configuration), or leave out --file");
		return *ret_rc ? NULL : strdup(file);
	}
	if (config) {
		*ret_rc = cli_config_exists(config);
		if (*ret_rc)
			return NULL;
	} else {
		config = default_conf = settings_default_path();
	}
	*ret_rc = cli_settings_load(config, &s);
	if (*ret_rc)
		return NULL;
	if (s->policy.audit_off) {
		fprintf(stderr,
			"certagent: the agent keeps no audit log (audit-log = none in %s)\n",
			config);
		*ret_rc = CLI_EXIT_IO;
	} else {
		path = s->policy.audit_path ? strdup(s->policy.audit_path)
					    : policy_audit_default_path();
		if (!path) {
			fprintf(stderr,
				"certagent: no audit log path: set XDG_STATE_HOME or HOME, or "
				"pass --file\n");
			*ret_rc = CLI_EXIT_IO;
		}
	}
	settings_free(s);
	return path;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	CliParser p;
	const char *arg, *config = NULL, *file = NULL;
	_cleanup_free_ char *path = NULL;
	Filter f = {0};
	Entries out = {0};
	unsigned long limit = 0;
	bool json = false;
	struct timespec now;
	int o, rc = CLI_EXIT_OK;

	clock_gettime(CLOCK_REALTIME, &now);
	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_USAGE;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		char *end;

		switch (o) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_IDENTITY:
			f.identity = arg;
			break;
		case OPT_SINCE:
			if (audit_time_parse(arg,
					     (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000,
					     &f.since_usec) < 0)
				o = cli_usage_error(
					cmd,
					"--since wants RFC 3339 (2024-05-01T12:00:00Z), "
					"a date or an age (30m, 2h, 7d), not \"%s\"",
					arg);
			f.has_since = true;
			break;
		case OPT_DECISION:
			if (strcmp(arg, "allowed") && strcmp(arg, "denied") &&
			    strcmp(arg, "failed"))
				o = cli_usage_error(cmd,
						    "--decision is allowed, denied or failed, not "
						    "\"%s\"",
						    arg);
			f.decision = arg;
			break;
		case OPT_LIMIT:
			errno = 0;
			limit = strtoul(arg, &end, 10);
			if (errno || *end || end == arg || arg[0] == '-' || limit == 0)
				o = cli_usage_error(cmd, "--limit wants a number > 0, not \"%s\"",
						    arg);
			break;
		case OPT_FILE:
			file = arg;
			break;
		case OPT_CONFIG:
			config = arg;
			break;
		}
		if (o < 0)
			break;
	}
	if (o == 0 && p.n_positional > 0)
		o = cli_usage_error(cmd, "audit takes no arguments");
	cli_parser_deinit(&p);
	if (o == CLI_OPT_HELP)
		return CLI_EXIT_OK;
	if (o < 0)
		return CLI_EXIT_USAGE;

	path = log_path(config, file, &rc);
	if (!path)
		return rc;
	/* Oldest first: audit.jsonl.N … audit.jsonl.1, then audit.jsonl. */
	for (unsigned i = AUDIT_FILES_MAX; i >= 1 && rc == CLI_EXIT_OK; i--) {
		_cleanup_free_ char *rotated = NULL;
		int r;

		if (asprintf(&rotated, "%s.%u", path, i) < 0)
			return CLI_EXIT_IO;
		r = read_file(rotated, &f, &out);
		if (r < 0) {
			fprintf(stderr, "certagent: cannot read %s: %s\n", rotated, strerror(-r));
			rc = CLI_EXIT_IO;
		}
	}
	if (rc == CLI_EXIT_OK) {
		int r = read_file(path, &f, &out);

		if (r < 0) {
			fprintf(stderr, "certagent: cannot read %s: %s\n", path, strerror(-r));
			rc = CLI_EXIT_IO;
		}
	}
	if (rc == CLI_EXIT_OK) {
		size_t first = limit && out.n > limit ? out.n - limit : 0;

		if (json)
			fputs("{\"entries\": [", stdout);
		for (size_t i = first; i < out.n; i++) {
			if (json)
				print_json(&out.items[i], i == first, stdout);
			else
				print_text(&out.items[i], stdout);
		}
		if (json)
			printf("%s], \"malformed\": %zu}\n", out.n > first ? "\n" : "",
			       out.malformed);
		if (out.malformed)
			fprintf(stderr,
				"certagent: skipped %zu malformed line%s in %s or its rotated "
				"files\n",
				out.malformed, out.malformed == 1 ? "" : "s", path);
		if (fflush(stdout) != 0)
			rc = CLI_EXIT_IO;
	}
	for (size_t i = 0; i < out.n; i++)
		audit_entry_clear(&out.items[i]);
	free(out.items);
	return rc;
}

const CliCommand cli_cmd_audit = {
	.name = "audit",
	.synopsis = "",
	.summary = "Show the agent's audit log of signing decisions",
	.description = "Prints the decisions certagentd recorded (allowed, denied, failed: time, "
		       "identity, calling program, server, scheme, policy, reason, latency), "
		       "oldest first, from the log and its rotated files. The log is audit-log of "
		       "the agent's configuration, else $XDG_STATE_HOME/certagent/audit.jsonl. "
		       "Lines that are not audit lines are skipped and counted.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
