/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli: what the certagent commands share: the command tables, how an agent error becomes a
 * message and an exit code, and certificate name helpers.
 */
#pragma once

#include <stdbool.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "certagent.h"
#include "options.h"

extern const CliCommand cli_cmd_list;
extern const CliCommand cli_cmd_unlock;
extern const CliCommand cli_cmd_connect;
extern const CliCommand cli_cmd_status;
extern const CliCommand cli_cmd_lock;
extern const CliCommand cli_cmd_reload;
/* Policy and audit log (cmd-policy.c, cmd-audit.c; docs/configuration.md). */
extern const CliCommand cli_cmd_policy;
extern const CliCommand cli_cmd_audit;

/*
 * Reads the agent's configuration at path with the agent's own parser (cmd-policy.c). A file
 * that cannot be read or does not parse is printed and gives 5. Exit code or 0.
 */
struct Settings;
int cli_settings_load(const char *path, struct Settings **ret);
/* 0 when path, a file the user named, is a regular file; else says why and what_to_do, and
 * returns CLI_EXIT_IO. */
int cli_named_file_exists(const char *path, const char *what_to_do);
/* The same for a configuration named with --config (the agent reads only its own). */
int cli_config_exists(const char *config);

/* Token enrolment (cmd-token.c, cmd-key.c, ...; docs/cli-admin.md). */
extern const CliCommand cli_cmd_tokens;
extern const CliCommand cli_cmd_token;
extern const CliCommand cli_cmd_key;
extern const CliCommand cli_cmd_csr;
extern const CliCommand cli_cmd_cert;
extern const CliCommand cli_cmd_enroll;
extern const CliCommand cli_cmd_delete;
extern const CliCommand cli_cmd_export_cert;

/* Prints "certagent: MESSAGE" for an agent error and returns the exit code for it. */
int cli_agent_error(const certagent_error *err);
int cli_exit_code_for(certagent_code code);

/* The subject (or issuer) DN of a certificate in RFC 4514 form; malloc'd, or NULL. */
char *cli_crt_dn(gnutls_x509_crt_t crt, bool issuer);
char *cli_cert_dn(const gnutls_datum_t *der, bool issuer); /* the same from DER */
