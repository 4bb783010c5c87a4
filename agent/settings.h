/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * settings: the agent's INI configuration (docs/configuration.md describes every key).
 * Parsed with libinih; any unknown section or key, or a bad value, is an error naming
 * file:line, so a typo never silently changes what the agent does.
 */
#pragma once

#include <stdbool.h>

#include "error.h"
#include "log.h"
#include "policy-config.h"
#include "store.h"

#define SETTINGS_WORKERS_MAX 64
#define SETTINGS_WORKERS_DEFAULT 8
/* Microseconds a channel thread polls a quick client for its next request (docs/performance.md,
 * "Busy polling in the agent"). */
#define SETTINGS_BUSY_POLL_DEFAULT 100
#define SETTINGS_BUSY_POLL_MAX 1000
#define SETTINGS_PINENTRY_DEFAULT "pinentry"
#define SETTINGS_IDLE_TIMEOUT_MAX (7 * 24 * 3600) /* a week, in seconds */
#define SETTINGS_POLL_INTERVAL_DEFAULT 2
#define SETTINGS_POLL_INTERVAL_MAX 3600
/* Modules run in helper processes unless configured otherwise (docs/design.md, "Module
 * isolation", has the reasons and the cost measured by bench/). */
#define SETTINGS_ISOLATION_DEFAULT STORE_ISOLATION_PROCESS
#define SETTINGS_MODULE_TIMEOUT_DEFAULT 30 /* seconds per PKCS#11 call of an isolated module */
#define SETTINGS_MODULE_TIMEOUT_MAX 3600

typedef struct Settings {
	char *path;		 /* the file read, or NULL when none was */
	bool registered_modules; /* load p11-kit's registered modules */
	char **allow_registered; /* NULL: all registered modules */
	unsigned workers;	 /* signing threads */
	unsigned busy_poll;	 /* microseconds; 0: channel threads never poll */
	bool sign_ahead;	 /* module helpers begin a busy key's next signature */
	LogTarget log_target;
	LogLevel log_level;
	StoreModuleConfig *modules;
	size_t n_modules;
	StorePinSource *pin_sources;
	size_t n_pin_sources;
	char *pinentry;		     /* program that asks for PINs; NULL: never prompt ("none") */
	unsigned login_idle_timeout; /* seconds without a signature before logging out; 0: never */
	unsigned poll_interval;	     /* seconds between slot polls (hotplug); 0: no hotplug */
	unsigned idle_exit;	  /* seconds idle (no calls, no login) before exiting; 0: never */
	PolicyConfig policy;	  /* [policy NAME] sections and the audit-* keys */
	StoreIsolation isolation; /* [agent] isolation: registered modules and the default */
	unsigned module_timeout;  /* seconds; C_Login gets STORE_LOGIN_TIMEOUT_FACTOR times */
} Settings;

/*
 * The default path: $XDG_CONFIG_HOME/certagent/agent.conf, else ~/.config/certagent/agent.conf.
 * NULL when neither variable is set (or on OOM).
 */
char *settings_default_path(void);

/*
 * Reads path. When required is false a missing file yields the defaults.
 * Codes: CA_E_INVALID_ARGS (syntax or value error, err names file:line), CA_E_KEY_NOT_FOUND
 * (a required file is missing or unreadable).
 */
int settings_load(const char *path, bool required, Settings **ret, CaError *err);
Settings *settings_free(Settings *c);

/*
 * Reload (any thread): reads the file c was read from — or, when none was, the default path
 * again — with settings_load() and hands back its policy part ([policy] sections, audit-*
 * keys) in *ret (initialised by the caller; filled only on success). The rest of the file is
 * checked too but applies only at the next start. A file that was read at start must still be
 * readable. Codes: CA_E_INVALID_ARGS (err names file:line), CA_E_FAILED (unreadable), -ENOMEM.
 */
int settings_reload_policy(const Settings *c, PolicyConfig *ret, CaError *err);

/* Fills the store's options from c; the pointers stay owned by c. */
void settings_store_options(const Settings *c, StoreOptions *ret);
