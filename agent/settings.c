/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * settings: libinih calls us once per key; we keep the first error (with its line) and stop.
 * Sections: [agent], [module NAME] (any number), [pin-source NAME] (any number).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "settings.h"

#define SETTINGS_LINE_MAX 4096

typedef struct SettingsParser {
	Settings *config;
	const char *path;
	int line; /* of the first error, from the handler's count of calls */
	CaError *err;
	int r;
	char section[256]; /* the section of the last entry, to start a new module/pin-source */
} SettingsParser;

char *settings_default_path(void)
{
	const char *xdg = secure_getenv("XDG_CONFIG_HOME");
	const char *home = secure_getenv("HOME");
	char *p = NULL;

	if (xdg && xdg[0] == '/') {
		if (asprintf(&p, "%s/certagent/agent.conf", xdg) < 0)
			return NULL;
	} else if (home && home[0] == '/') {
		if (asprintf(&p, "%s/.config/certagent/agent.conf", home) < 0)
			return NULL;
	}
	return p;
}

Settings *settings_free(Settings *c)
{
	if (!c)
		return NULL;
	free(c->path);
	strv_free(c->allow_registered);
	for (size_t i = 0; i < c->n_modules; i++) {
		free(c->modules[i].name);
		free(c->modules[i].path);
	}
	free(c->modules);
	for (size_t i = 0; i < c->n_pin_sources; i++) {
		free(c->pin_sources[i].token_uri);
		free(c->pin_sources[i].path);
	}
	free(c->pin_sources);
	free(c->pinentry);
	policy_config_deinit(&c->policy);
	free(c);
	return NULL;
}

static void settings_freep(Settings **c)
{
	settings_free(*c);
}

static Settings *settings_new_default(void)
{
	Settings *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->registered_modules = true;
	c->workers = SETTINGS_WORKERS_DEFAULT;
	c->busy_poll = SETTINGS_BUSY_POLL_DEFAULT;
	c->sign_ahead = true;
	c->poll_interval = SETTINGS_POLL_INTERVAL_DEFAULT;
	c->isolation = SETTINGS_ISOLATION_DEFAULT;
	c->module_timeout = SETTINGS_MODULE_TIMEOUT_DEFAULT;
	c->log_target = LOG_TARGET_STDERR;
	c->log_level = LOG_LEVEL_INFO;
	policy_config_init(&c->policy);
	c->pinentry = strdup(SETTINGS_PINENTRY_DEFAULT);
	if (!c->pinentry)
		return settings_free(c);
	return c;
}

static int parse_bool(const char *v, bool *ret)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Splits a space-separated list into a NULL-terminated vector. */
static int parse_words(const char *v, char ***ret)
{
	_cleanup_strv_free_ char **words = NULL;
	size_t n = 0;

	words = calloc(1, sizeof(char *));
	if (!words)
		return -ENOMEM;
	while (*v) {
		size_t len;
		char **grown;

		v += strspn(v, " \t,");
		len = strcspn(v, " \t,");
		if (!len)
			break;
		grown = realloc(words, (n + 2) * sizeof(char *));
		if (!grown)
			return -ENOMEM;
		words = grown;
		words[n] = strndup(v, len);
		if (!words[n])
			return -ENOMEM;
		words[++n] = NULL;
		v += len;
	}
	*ret = TAKE_PTR(words);
	return 0;
}

/* Section "module NAME" or "pin-source NAME": the NAME, or NULL if section is not of kind. */
static const char *section_name(const char *section, const char *kind)
{
	size_t n = strlen(kind);

	if (strncmp(section, kind, n) != 0 || (section[n] != ' ' && section[n] != '\t'))
		return NULL;
	section += n;
	while (*section == ' ' || *section == '\t')
		section++;
	return *section ? section : NULL;
}

/* "process" or "none". */
static int parse_isolation(const char *v, StoreIsolation *ret)
{
	if (strcmp(v, "process") == 0)
		*ret = STORE_ISOLATION_PROCESS;
	else if (strcmp(v, "none") == 0)
		*ret = STORE_ISOLATION_NONE;
	else
		return -EINVAL;
	return 0;
}

/* A decimal number from min to max, nothing else (no sign, no unit). */
static int parse_number(const char *v, unsigned long min, unsigned long max, unsigned *ret)
{
	char *end;
	unsigned long n;

	if (!v[0] || v[0] == '-')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*ret = (unsigned)n;
	return 0;
}

static int handle_agent(SettingsParser *p, const char *key, const char *value)
{
	Settings *c = p->config;

	if (strcmp(key, "isolation") == 0) {
		if (parse_isolation(value, &c->isolation) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "isolation must be process or none, not \"%s\"", value);
		return 0;
	}
	if (strcmp(key, "module-timeout") == 0) {
		if (parse_number(value, 1, SETTINGS_MODULE_TIMEOUT_MAX, &c->module_timeout) < 0)
			return ca_error_set(
				p->err, CA_E_INVALID_ARGS,
				"module-timeout must be seconds from 1 to %d, not \"%s\"",
				SETTINGS_MODULE_TIMEOUT_MAX, value);
		return 0;
	}

	if (strcmp(key, "registered-modules") == 0) {
		if (parse_bool(value, &c->registered_modules) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "registered-modules must be yes or no, not \"%s\"",
					    value);
		return 0;
	}
	if (strcmp(key, "allow-registered") == 0) {
		strv_free(c->allow_registered);
		c->allow_registered = NULL;
		return parse_words(value, &c->allow_registered);
	}
	if (strcmp(key, "workers") == 0) {
		if (parse_number(value, 1, SETTINGS_WORKERS_MAX, &c->workers) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "workers must be a number from 1 to %d, not \"%s\"",
					    SETTINGS_WORKERS_MAX, value);
		return 0;
	}
	if (strcmp(key, "busy-poll") == 0) {
		if (parse_number(value, 0, SETTINGS_BUSY_POLL_MAX, &c->busy_poll) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "busy-poll must be microseconds from 0 (never) to %d, "
					    "not \"%s\"",
					    SETTINGS_BUSY_POLL_MAX, value);
		return 0;
	}
	if (strcmp(key, "sign-ahead") == 0) {
		if (parse_bool(value, &c->sign_ahead) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "sign-ahead must be yes or no, not \"%s\"", value);
		return 0;
	}
	if (strcmp(key, "log") == 0) {
		if (strcmp(value, "stderr") == 0)
			c->log_target = LOG_TARGET_STDERR;
		else if (strcmp(value, "syslog") == 0)
			c->log_target = LOG_TARGET_SYSLOG;
		else
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "log must be stderr or syslog, not \"%s\"", value);
		return 0;
	}
	if (strcmp(key, "log-level") == 0) {
		if (strcmp(value, "info") == 0)
			c->log_level = LOG_LEVEL_INFO;
		else if (strcmp(value, "debug") == 0)
			c->log_level = LOG_LEVEL_DEBUG;
		else
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "log-level must be info or debug, not \"%s\"", value);
		return 0;
	}
	if (strcmp(key, "pinentry") == 0) {
		if (!value[0])
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "pinentry must name a program (or be \"none\")");
		free(c->pinentry);
		c->pinentry = NULL;
		if (strcmp(value, "none") == 0)
			return 0;
		c->pinentry = strdup(value);
		return c->pinentry ? 0 : -ENOMEM;
	}
	if (strcmp(key, "login-idle-timeout") == 0) {
		if (parse_number(value, 0, SETTINGS_IDLE_TIMEOUT_MAX, &c->login_idle_timeout) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "login-idle-timeout must be seconds from 0 (never) to "
					    "%d, not \"%s\"",
					    SETTINGS_IDLE_TIMEOUT_MAX, value);
		return 0;
	}
	if (strcmp(key, "poll-interval") == 0 || strcmp(key, "idle-exit") == 0) {
		bool poll = key[0] == 'p';
		unsigned long max = poll ? SETTINGS_POLL_INTERVAL_MAX : SETTINGS_IDLE_TIMEOUT_MAX;

		if (parse_number(value, 0, max, poll ? &c->poll_interval : &c->idle_exit) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "%s must be seconds from 0 (%s) to %lu, not \"%s\"",
					    key, poll ? "no hotplug" : "never", max, value);
		return 0;
	}
	{
		bool known;
		int r = policy_config_agent_key(&c->policy, key, value, &known, p->err);

		if (known)
			return r;
	}
	return ca_error_set(p->err, CA_E_INVALID_ARGS,
			    "unknown key \"%s\" in [agent] (known: registered-modules, "
			    "allow-registered, workers, busy-poll, sign-ahead, log, log-level, "
			    "pinentry, "
			    "login-idle-timeout, poll-interval, idle-exit, isolation, "
			    "module-timeout, audit-log, "
			    "audit-max-size, audit-files, audit-fail-closed)",
			    key);
}

/* Finds or appends the entry for a named section; items are {name-ish, path} pairs. */
static int handle_module(SettingsParser *p, const char *name, bool new_section, const char *key,
			 const char *value)
{
	Settings *c = p->config;
	StoreModuleConfig *m;

	if (new_section) {
		StoreModuleConfig *grown;

		for (size_t i = 0; i < c->n_modules; i++)
			if (strcmp(c->modules[i].name, name) == 0)
				return ca_error_set(p->err, CA_E_INVALID_ARGS,
						    "[module %s] appears twice", name);
		grown = realloc(c->modules, (c->n_modules + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		c->modules = grown;
		m = &c->modules[c->n_modules];
		*m = (StoreModuleConfig){.name = strdup(name)};
		if (!m->name)
			return -ENOMEM;
		c->n_modules++;
	}
	m = &c->modules[c->n_modules - 1];
	if (strcmp(key, "isolation") == 0) {
		if (parse_isolation(value, &m->isolation) < 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "isolation of [module %s] must be process or none, not "
					    "\"%s\"",
					    name, value);
		return 0;
	}
	if (strcmp(key, "path") != 0)
		return ca_error_set(p->err, CA_E_INVALID_ARGS,
				    "unknown key \"%s\" in [module %s] (known: path, isolation)",
				    key, name);
	if (value[0] != '/')
		return ca_error_set(p->err, CA_E_INVALID_ARGS,
				    "path of [module %s] must be absolute, not \"%s\"", name,
				    value);
	free(m->path);
	m->path = strdup(value);
	return m->path ? 0 : -ENOMEM;
}

static int handle_pin_source(SettingsParser *p, const char *name, bool new_section, const char *key,
			     const char *value)
{
	Settings *c = p->config;
	StorePinSource *ps;
	char **field;

	if (new_section) {
		StorePinSource *grown =
			realloc(c->pin_sources, (c->n_pin_sources + 1) * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		c->pin_sources = grown;
		c->pin_sources[c->n_pin_sources++] = (StorePinSource){0};
	}
	ps = &c->pin_sources[c->n_pin_sources - 1];
	if (strcmp(key, "token") == 0) {
		if (strncmp(value, "pkcs11:", 7) != 0)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "token of [pin-source %s] must be a pkcs11: URI, not "
					    "\"%s\"",
					    name, value);
		field = &ps->token_uri;
	} else if (strcmp(key, "file") == 0) {
		if (value[0] != '/')
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "file of [pin-source %s] must be an absolute path, not "
					    "\"%s\"",
					    name, value);
		field = &ps->path;
	} else {
		return ca_error_set(p->err, CA_E_INVALID_ARGS,
				    "unknown key \"%s\" in [pin-source %s] (known: token, file)",
				    key, name);
	}
	free(*field);
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

/* libinih's callback: returns nonzero to go on, 0 to stop with an error at this line. */
static int settings_handler(void *user, const char *section, const char *key, const char *value)
{
	SettingsParser *p = user;
	bool new_section = strcmp(section, p->section) != 0;
	const char *name;
	char v[SETTINGS_LINE_MAX];
	size_t n;
	char *hash;

	if (p->r)
		return 0; /* libinih without stop-on-first-error goes on: keep the first error */
	/* Allow "key = value   # comment" as well as libinih's "; comment". */
	snprintf(v, sizeof(v), "%s", value);
	hash = v;
	while ((hash = strchr(hash, '#'))) {
		if (hash == v || hash[-1] == ' ' || hash[-1] == '\t') {
			*hash = 0;
			break;
		}
		hash++;
	}
	n = strlen(v);
	while (n && isspace((unsigned char)v[n - 1]))
		v[--n] = 0;

	snprintf(p->section, sizeof(p->section), "%s", section);
	if (strcmp(section, "agent") == 0)
		p->r = handle_agent(p, key, v);
	else if ((name = section_name(section, "module")))
		p->r = handle_module(p, name, new_section, key, v);
	else if ((name = section_name(section, "pin-source")))
		p->r = handle_pin_source(p, name, new_section, key, v);
	else if ((name = section_name(section, "policy")))
		p->r = policy_config_section_key(&p->config->policy, name, new_section, key, v,
						 p->err);
	else if (!*section)
		p->r = ca_error_set(p->err, CA_E_INVALID_ARGS,
				    "\"%s\" is outside any section; put it under [agent]", key);
	else
		p->r = ca_error_set(p->err, CA_E_INVALID_ARGS,
				    "unknown section [%s] (known: [agent], [module NAME], "
				    "[pin-source NAME], [policy NAME])",
				    section);
	if (p->r == -ENOMEM)
		ca_error_set(p->err, CA_E_FAILED, "out of memory");
	return p->r == 0;
}

static int settings_check(SettingsParser *p)
{
	const Settings *c = p->config;

	for (size_t i = 0; i < c->n_modules; i++)
		if (!c->modules[i].path)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "%s: [module %s] has no path", p->path,
					    c->modules[i].name);
	for (size_t i = 0; i < c->n_pin_sources; i++)
		if (!c->pin_sources[i].token_uri || !c->pin_sources[i].path)
			return ca_error_set(p->err, CA_E_INVALID_ARGS,
					    "%s: a [pin-source] section needs both token and file",
					    p->path);
	if (policy_config_check(&c->policy, p->path, p->err))
		return CA_E_INVALID_ARGS;
	return 0;
}

int settings_load(const char *path, bool required, Settings **ret, CaError *err)
{
	_cleanup_(settings_freep) Settings *c = settings_new_default();
	SettingsParser p = {.path = path, .err = err};
	FILE *f;
	int line;

	if (!c)
		return -ENOMEM;
	p.config = c;
	f = path ? fopen(path, "re") : NULL;
	if (!f) {
		if (path && (required || errno != ENOENT))
			return ca_error_set(err, CA_E_KEY_NOT_FOUND,
					    "cannot read the configuration %s: %m", path);
		*ret = TAKE_PTR(c);
		return 0;
	}
#ifdef HAVE_INI_RUNTIME_OPTIONS
	/* Debian's libinih lets us stop at the first error and take long lines (paths). */
	ini_stop_on_first_error = true;
	ini_allow_multiline = false;
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = SETTINGS_LINE_MAX;
#endif
	line = ini_parse_file(f, settings_handler, &p);
	fclose(f);
	if (line < 0)
		return ca_error_set(err, CA_E_FAILED, "cannot read the configuration %s", path);
	if (line > 0) {
		CaError inner = {0};

		if (p.r && err)
			inner = *err;
		else
			ca_error_set(&inner, CA_E_INVALID_ARGS,
				     "syntax error (expected [section] or key = value)");
		return ca_error_set(err, CA_E_INVALID_ARGS, "%s:%d: %s", path, line, inner.message);
	}
	c->path = strdup(path);
	if (!c->path)
		return -ENOMEM;
	if (settings_check(&p))
		return CA_E_INVALID_ARGS;
	*ret = TAKE_PTR(c);
	return 0;
}

int settings_reload_policy(const Settings *c, PolicyConfig *ret, CaError *err)
{
	_cleanup_free_ char *def = c->path ? NULL : settings_default_path();
	_cleanup_(settings_freep) Settings *fresh = NULL;
	CaError e = {0};
	int r;

	r = settings_load(c->path ? c->path : def, c->path != NULL, &fresh, &e);
	if (r == -ENOMEM)
		return r;
	if (r)
		return ca_error_set(err, r == CA_E_INVALID_ARGS ? r : CA_E_FAILED,
				    "%s; nothing was reloaded, the policy in force stays: fix the "
				    "file and reload again",
				    e.message[0] ? e.message : "the configuration cannot be read");
	*ret = fresh->policy;
	policy_config_init(&fresh->policy);
	return 0;
}

void settings_store_options(const Settings *c, StoreOptions *ret)
{
	*ret = (StoreOptions){
		.load_registered = c->registered_modules,
		.registered_allow = c->allow_registered,
		.modules = c->modules,
		.n_modules = c->n_modules,
		.pin_sources = c->pin_sources,
		.n_pin_sources = c->n_pin_sources,
		.sessions_per_token = c->workers,
		.prompting = c->pinentry != NULL,
		.login_idle_usec = (uint64_t)c->login_idle_timeout * 1000000u,
		.isolation = c->isolation,
		.module_timeout_ms = c->module_timeout * 1000u,
		.busy_poll_usec = c->busy_poll,
		.sign_ahead = c->sign_ahead,
	};
}
