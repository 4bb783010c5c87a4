/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * With a bus but no agent on it (and no activatable service), certagent_client_new() fails
 * with CERTAGENT_E_AGENT_NOT_RUNNING and a message that says what to do. With a bus address
 * nobody listens on, the same code, saying the bus is not there. Run by test-no-agent.sh,
 * which starts the private dbus-daemon.
 */
#include <stdio.h>
#include <string.h>

#include "certagent.h"
#include "check.h"

int main(int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	int r;

	/* The session bus from the environment: it runs, but nobody owns org.certagent.Agent1. */
	r = certagent_client_new(NULL, &c, &err);
	CHECK(r == -CERTAGENT_E_AGENT_NOT_RUNNING, "r=%d (%s)", r, err.message);
	CHECK(c == NULL, "client set on failure");
	CHECK(err.code == CERTAGENT_E_AGENT_NOT_RUNNING, "code=%d", (int)err.code);
	CHECK(strstr(err.message, "certagentd is not running") != NULL, "message: %s", err.message);
	CHECK(strstr(err.message, "org.certagent.Agent1") != NULL, "message: %s", err.message);
	CHECK(strstr(err.message, "start it with `certagentd`") != NULL, "message: %s",
	      err.message);
	/* Said once: the bus's reason inside, the hint after it. */
	CHECK(strstr(strstr(err.message, "certagentd is not running") + 1,
		     "certagentd is not running") == NULL &&
		      strstr(strstr(err.message, "start it with") + 1, "start it with") == NULL,
	      "message says it twice: %s", err.message);
	CHECK(strcmp(err.dbus_name, "org.freedesktop.DBus.Error.ServiceUnknown") == 0,
	      "dbus_name: %s", err.dbus_name);
	printf("no agent: %s\n", err.message);

	/* A bus address nobody listens on. */
	err = (certagent_error)CERTAGENT_ERROR_INIT;
	if (argc > 1) {
		r = certagent_client_new(argv[1], &c, &err);
		CHECK(r == -CERTAGENT_E_AGENT_NOT_RUNNING, "r=%d (%s)", r, err.message);
		CHECK(strstr(err.message, "cannot connect to the session bus") != NULL,
		      "message: %s", err.message);
		printf("no bus: %s\n", err.message);
	}

	CHECK(strcmp(certagent_strerror(CERTAGENT_E_AGENT_NOT_RUNNING), "agent-not-running") == 0,
	      "strerror");
	CHECK(strcmp(certagent_strerror(9999), "unknown") == 0, "strerror out of range");
	/* Destructors and accessors accept NULL. */
	certagent_client_free(NULL);
	certagent_identity_list_free(NULL);
	CHECK(certagent_client_last_error(NULL) == NULL, "last_error(NULL)");
	CHECK(certagent_client_last_identity(NULL) == NULL, "last_identity(NULL)");
	return failures ? 1 : 0;
}
