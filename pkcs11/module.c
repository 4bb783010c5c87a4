/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * module: loading and unloading PKCS#11 modules, always through p11-kit.
 *
 * Registered modules come from p11-kit's configuration (trust-policy modules and those not in
 * the allow list are dropped before they are initialised); configured ones are loaded by
 * absolute path. p11-kit initialises every module with CKF_OS_LOCKING_OK and its own mutex
 * callbacks. A module loaded both ways is kept once (same file after realpath()).
 *
 * An isolated module (StoreIsolation PROCESS) is never loaded here: call_module_initialize()
 * starts a certagent-pkcs11-helper for its path (remote.c). With isolation = process even the
 * registered modules' names and paths come from a helper process (`--list-registered`,
 * helper-list.c), so no registered module's code ever runs in the agent.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "helper-list.h"
#include "internal.h"

static Module *module_free(Module *m)
{
	if (!m)
		return NULL;
	if (m->fl)
		p11_kit_module_release(m->fl);
	m->remote = remote_free(m->remote); /* stopped by call_module_finalize() */
	free(m->name);
	free(m->path);
	free(m);
	return NULL;
}

static bool strv_contains(char **v, const char *s)
{
	for (; v && *v; v++)
		if (strcmp(*v, s) == 0)
			return true;
	return false;
}

static bool module_same_file(Store *s, const char *path)
{
	char a[PATH_MAX], b[PATH_MAX];

	if (!realpath(path, a))
		return false;
	for (size_t i = 0; i < s->n_modules; i++)
		if (s->modules[i]->path && realpath(s->modules[i]->path, b) && strcmp(a, b) == 0)
			return true;
	return false;
}

/* Takes m; initialises it and appends it to the store (0), or frees it: 1 when it failed to
 * initialise (logged), -ENOMEM. */
static int module_add(Store *s, Module *m)
{
	Module **p;
	CK_RV rv;

	/* What the store says for every module, before a helper is started for it. */
	m->timeout_ms = s->module_timeout_ms;
	m->busy_poll_usec = s->busy_poll_usec;
	m->sign_ahead = s->sign_ahead;
	rv = call_module_initialize(m);
	if (rv != CKR_OK) {
		call_log(LOG_WARNING, "module %s (%s) failed to initialise: %s: skipped", m->name,
			 m->path, p11_kit_strerror(rv));
		module_free(m);
		return 1;
	}
	if (call_get_info(m, &m->info) != CKR_OK)
		memset(&m->info, 0, sizeof(m->info));
	p = reallocarray(s->modules, s->n_modules + 1, sizeof(*p));
	if (!p) {
		call_module_finalize(m);
		module_free(m);
		return -ENOMEM;
	}
	s->modules = p;
	s->modules[s->n_modules++] = m;
	call_log(LOG_INFO, "loaded PKCS#11 module %s (%s)", m->name, m->path);
	return 0;
}

/* Whether a registered module is served: never a trust-policy one (p11-kit-trust holds CA
 * anchors, never client keys), and only those in allow-registered when it is set. */
static bool module_registered_wanted(Store *s, const char *name, bool trust_policy)
{
	if (trust_policy) {
		call_log(LOG_DEBUG, "registered module %s is a trust-policy module: skipped", name);
		return false;
	}
	if (s->registered_allow && !strv_contains(s->registered_allow, name)) {
		call_log(LOG_DEBUG, "registered module %s not in allow list: skipped", name);
		return false;
	}
	return true;
}

/*
 * isolation = process: the registered modules are listed by a helper process (helper-list.c)
 * and each runs in a helper of its own; none is ever mapped here. p11-kit applied
 * enable-in/disable-in for "certagentd" while listing.
 */
static int module_load_registered_isolated(Store *s)
{
	ListedModule *v = NULL;
	size_t n = 0;
	int r;

	r = helper_list_registered(s->module_timeout_ms, &v, &n);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		call_log(LOG_WARNING, "could not list the modules registered with p11-kit: none of "
				      "them is served (modules of [module] sections still are)");
		return 0;
	}
	for (size_t i = 0; i < n && r >= 0; i++) {
		Module *m;

		if (!module_registered_wanted(s, v[i].name, v[i].trust_policy))
			continue;
		m = calloc(1, sizeof(*m));
		if (!m) {
			r = -ENOMEM;
			break;
		}
		m->name = strdup(v[i].name);
		m->path = strdup(v[i].path);
		if (!m->name || !m->path) {
			module_free(m);
			r = -ENOMEM;
			break;
		}
		m->isolated = true;
		r = module_add(s, m);
		if (r == 1 && v[i].critical)
			call_log(LOG_ERR,
				 "module %s is marked critical in its p11-kit registration "
				 "and could not be started: its tokens are not served",
				 v[i].name);
	}
	helper_list_free(v, n);
	return r < 0 ? r : 0;
}

/* isolation = none: p11-kit loads the registered modules into this process (enable-in and
 * disable-in against our own program name). */
static int module_load_registered_inproc(Store *s)
{
	CK_FUNCTION_LIST **list = p11_kit_modules_load(NULL, 0);
	int r = 0;

	if (!list) {
		call_log(LOG_WARNING, "could not load the modules registered with p11-kit: %s",
			 p11_kit_message() ? p11_kit_message() : "unknown error");
		return 0;
	}
	for (size_t i = 0; list[i]; i++) {
		_cleanup_free_ char *trust = p11_kit_config_option(list[i], "trust-policy");
		Module *m;

		m = calloc(1, sizeof(*m));
		if (!m) {
			p11_kit_module_release(list[i]);
			r = -ENOMEM;
			continue;
		}
		m->fl = list[i];
		m->name = p11_kit_module_get_name(list[i]);
		m->path = p11_kit_module_get_filename(list[i]);
		if (!m->name)
			m->name = strdup("unnamed");
		if (!m->name || !m->path || r < 0) {
			module_free(m);
			r = r < 0 ? r : -ENOMEM;
			continue;
		}
		if (!module_registered_wanted(s, m->name, trust && strcmp(trust, "yes") == 0)) {
			module_free(m);
			continue;
		}
		if (module_add(s, m) < 0)
			r = -ENOMEM;
	}
	free(list); /* the modules are ours now, one by one */
	return r;
}

static int module_load_configured(Store *s, const StoreModuleConfig *cfg)
{
	Module *m;

	if (!cfg->path || cfg->path[0] != '/') {
		call_log(LOG_WARNING, "module %s: path \"%s\" is not absolute: skipped",
			 cfg->name ? cfg->name : "?", cfg->path ? cfg->path : "");
		return 0;
	}
	if (module_same_file(s, cfg->path)) {
		call_log(LOG_DEBUG, "module %s: %s is already loaded as a registered module",
			 cfg->name ? cfg->name : "?", cfg->path);
		return 0;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->name = strdup(cfg->name ? cfg->name : cfg->path);
	m->path = strdup(cfg->path);
	if (!m->name || !m->path) {
		module_free(m);
		return -ENOMEM;
	}
	m->isolated = (cfg->isolation == STORE_ISOLATION_DEFAULT ? s->isolation : cfg->isolation) ==
		      STORE_ISOLATION_PROCESS;
	if (m->isolated)
		return module_add(s, m);
	m->fl = p11_kit_module_load(cfg->path, 0);
	if (!m->fl) {
		call_log(LOG_WARNING, "module %s: cannot load %s: %s: skipped", m->name, m->path,
			 p11_kit_message() ? p11_kit_message() : "unknown error");
		module_free(m);
		return 0;
	}
	return module_add(s, m);
}

/* Loads all modules into s->modules. Returns 0 or -ENOMEM; failing modules are skipped. */
int module_load_all(Store *s, CaError *err)
{
	int r;

	if (s->load_registered) {
		r = s->isolation == STORE_ISOLATION_PROCESS ? module_load_registered_isolated(s)
							    : module_load_registered_inproc(s);
		if (r < 0)
			return ca_error_set(err, r, "out of memory loading modules");
	}
	for (size_t i = 0; i < s->n_modules_cfg; i++) {
		r = module_load_configured(s, &s->modules_cfg[i]);
		if (r < 0)
			return ca_error_set(err, r, "out of memory loading modules");
	}
	return 0;
}

void module_unload_all(Store *s)
{
	for (size_t i = 0; i < s->n_modules; i++) {
		if (s->modules[i]->pinned) {
			/* A thread is still inside it (hotplug.c): leaked on purpose. */
			call_log(LOG_DEBUG, "%s: left loaded and initialised", s->modules[i]->name);
			call_abandon(s->modules[i]);
			continue;
		}
		call_module_finalize(s->modules[i]);
		module_free(s->modules[i]);
	}
	free(s->modules);
	s->modules = NULL;
	s->n_modules = 0;
}
