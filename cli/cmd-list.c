/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent list: the identities (key + certificate chain), as text for people or as JSON for
 * scripts (schema in docs/cli.md). Two sources give the same entries: the running agent
 * (ListIdentities through libcertagent: what TLS clients will get), or, when the agent is not
 * running, the tokens read directly through pkcs11/ (no login; the modules as the token
 * commands load them). Each entry is then checked here, the same way for both: the leaf's
 * validity window and days to expiry (a warning under LIST_EXPIRY_WARN_DAYS and once expired),
 * and whether the chain the agent sends ends at a trusted root or a self-signed certificate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cert-info.h"
#include "cli.h"
#include "json-print.h"
#include "p11cli.h"
#include "util.h"

/* A certificate that expires within this many days gets a warning. */
#define LIST_EXPIRY_WARN_DAYS 30
/* Longest chain looked at (the store sends at most a few). */
#define LIST_CHAIN_MAX 16

enum { OPT_JSON = 1, OPT_ADDRESS, OPT_CAFILE, OPT_MODULE, OPT_AGENT, OPT_TOKENS };

static const CliOption options[] = {
	{OPT_JSON, "json", 0, NULL, "Print JSON (schema in docs/cli.md) instead of text"},
	{OPT_ADDRESS, "address", 0, "ADDR",
	 "D-Bus address of the bus the agent is on "
	 "(default: the session bus)"},
	{OPT_CAFILE, "cafile", 0, "FILE",
	 "Trust the CAs in FILE (PEM) instead of the system trust store when checking whether "
	 "each chain is complete"},
	{OPT_AGENT, "agent", 0, NULL,
	 "Only the agent's view: exit 3 when the agent is not running instead of reading the "
	 "tokens"},
	{OPT_TOKENS, "tokens", 0, NULL, "Read the tokens directly even when the agent is running"},
	{OPT_MODULE, "module", 0, "PATH", "With the tokens view: " P11CLI_OPT_MODULE_HELP},
};

/* One identity, from either source; every pointer is borrowed from the source's list. */
typedef struct ListEntry {
	const char *uri, *label, *token_uri, *token_label, *key_type;
	unsigned bits;
	int logged_in; /* -1: not known (tokens view) */
	const char **schemes;
	size_t n_schemes;
	const gnutls_datum_t *certs; /* DER, leaf first */
	size_t n_certs;
} ListEntry;

typedef enum ListSource {
	LIST_SOURCE_AGENT,
	LIST_SOURCE_TOKENS,
} ListSource;

typedef struct List {
	ListSource source;
	bool tokens_asked; /* --tokens: read directly because the user said so */
	ListEntry *items;
	size_t n;
	certagent_identity_list *agent_ids;
	Store *store;
	StoreIdentityList *store_ids;
	const char *trust_name; /* "the system trust store" or the --cafile path */
	gnutls_x509_trust_list_t trust;
	time_t now;
} List;

/* The checks of one identity. */
typedef struct ListCheck {
	CertInfo *chain; /* n_certs entries */
	size_t n_chain;
	long long days_left; /* whole days until not_after (negative: since) */
	const char *expiry;  /* "ok", "expiring", "expired", "not-yet-valid"; NULL: no cert */
	char warning[160];   /* "" when none */
	bool chain_complete;
	char *anchor;		   /* DN of the root the chain ends at, or NULL */
	const char *anchor_source; /* "trust store", "self-signed", or NULL */
	char *missing;		   /* DN of the certificate that is missing, or NULL */
	char detail[512];
} ListCheck;

static void list_check_clear(ListCheck *k)
{
	for (size_t i = 0; i < k->n_chain; i++)
		cert_info_deinit(&k->chain[i]);
	free(k->chain);
	free(k->anchor);
	free(k->missing);
	*k = (ListCheck){0};
}

/* Days to expiry and the warning, from the leaf. */
static void check_expiry(const CertInfo *leaf, time_t now, ListCheck *k)
{
	long long secs;

	if (leaf->not_after == (time_t)-1) {
		k->expiry = NULL;
		snprintf(k->warning, sizeof(k->warning),
			 "the certificate's validity cannot be read");
		return;
	}
	secs = (long long)leaf->not_after - (long long)now;
	/* Whole days, rounded towards the past: 23 hours left is 0 days, 1 hour ago is -1. */
	k->days_left = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	if (secs < 0) {
		k->expiry = "expired";
		snprintf(k->warning, sizeof(k->warning),
			 "the certificate EXPIRED %lld day%s ago: servers will refuse it; renew "
			 "it (certagent enroll, or certagent csr + cert import)",
			 -k->days_left, k->days_left == -1 ? "" : "s");
	} else if (leaf->not_before != (time_t)-1 && now < leaf->not_before) {
		k->expiry = "not-yet-valid";
		snprintf(k->warning, sizeof(k->warning),
			 "the certificate is not valid yet (check the clock or the certificate)");
	} else if (k->days_left < LIST_EXPIRY_WARN_DAYS) {
		k->expiry = "expiring";
		snprintf(k->warning, sizeof(k->warning),
			 "the certificate expires in %lld day%s (under %d): renew it soon",
			 k->days_left, k->days_left == 1 ? "" : "s", LIST_EXPIRY_WARN_DAYS);
	} else {
		k->expiry = "ok";
	}
}

/*
 * "Complete": the chain sent (leaf + intermediates from the token) ends at a certificate that
 * is self-signed, or whose issuer is a root in the trust store and the chain verifies up to it
 * (signatures and CA constraints; validity windows are the expiry check's business).
 */
static void check_chain(const List *l, gnutls_x509_crt_t *crts, size_t n, ListCheck *k)
{
	gnutls_x509_crt_t top = crts[n - 1], root = NULL;
	unsigned status = 0;
	int r;

	if (gnutls_x509_crt_check_issuer(top, top)) {
		k->chain_complete = true;
		k->anchor = cli_crt_dn(top, false);
		k->anchor_source = "self-signed";
		snprintf(k->detail, sizeof(k->detail), "ends at a self-signed certificate%s",
			 n == 1 ? " (the leaf itself)" : "");
		return;
	}
	r = gnutls_x509_trust_list_get_issuer(l->trust, top, &root, GNUTLS_TL_GET_COPY);
	if (r < 0 || !root) {
		k->missing = cli_crt_dn(top, true);
		snprintf(k->detail, sizeof(k->detail),
			 "the issuer of the %s is neither an intermediate on the token nor in %s: "
			 "import it (certagent cert import), or pass its root with --cafile (a "
			 "root on the token is not sent: the server must trust it)",
			 n == 1 ? "leaf" : "last intermediate", l->trust_name);
		return;
	}
	k->anchor = cli_crt_dn(root, false);
	k->anchor_source = "trust store";
	r = gnutls_x509_trust_list_verify_crt2(l->trust, crts, n, NULL, 0,
					       GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
						       GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
					       &status, NULL);
	if (r == 0 && status == 0) {
		k->chain_complete = true;
		snprintf(k->detail, sizeof(k->detail), "up to a root in %s", l->trust_name);
	} else {
		gnutls_datum_t why = {NULL, 0};

		if (r == 0)
			gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why,
								     0);
		snprintf(k->detail, sizeof(k->detail),
			 "reaches a root in %s but does not verify against it: %s", l->trust_name,
			 why.data ? (const char *)why.data : gnutls_strerror(r));
		gnutls_free(why.data);
	}
	gnutls_x509_crt_deinit(root);
}

static int list_check(const List *l, const ListEntry *e, ListCheck *k)
{
	gnutls_x509_crt_t crts[LIST_CHAIN_MAX] = {NULL};
	size_t n = e->n_certs < LIST_CHAIN_MAX ? e->n_certs : LIST_CHAIN_MAX;
	bool parsed = true;

	*k = (ListCheck){0};
	if (n == 0) {
		snprintf(k->detail, sizeof(k->detail), "no certificate for this key on the token");
		return 0;
	}
	k->chain = calloc(n, sizeof(*k->chain));
	if (!k->chain)
		return -ENOMEM;
	k->n_chain = n;
	for (size_t i = 0; i < n; i++) {
		if (gnutls_x509_crt_init(&crts[i]) < 0 ||
		    gnutls_x509_crt_import(crts[i], &e->certs[i], GNUTLS_X509_FMT_DER) < 0) {
			gnutls_x509_crt_deinit(crts[i]);
			crts[i] = NULL;
			parsed = false;
		}
		cert_info_init(&k->chain[i], crts[i]);
	}
	check_expiry(&k->chain[0], l->now, k);
	if (parsed)
		check_chain(l, crts, n, k);
	else
		snprintf(k->detail, sizeof(k->detail),
			 "a certificate of the chain cannot be parsed");
	for (size_t i = 0; i < n; i++)
		if (crts[i])
			gnutls_x509_crt_deinit(crts[i]);
	return 0;
}

/* ---- sources ---- */

static void list_clear(List *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i].schemes);
	free(l->items);
	certagent_identity_list_free(l->agent_ids);
	store_identity_list_free(l->store_ids);
	store_free(l->store);
	if (l->trust)
		gnutls_x509_trust_list_deinit(l->trust, 1);
	*l = (List){0};
}

static int list_from_agent(List *l, certagent_identity_list *ids)
{
	size_t n = certagent_identity_list_count(ids);

	l->source = LIST_SOURCE_AGENT;
	l->agent_ids = ids;
	l->items = calloc(n ? n : 1, sizeof(*l->items));
	if (!l->items)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const certagent_identity *id = certagent_identity_list_get(ids, i);
		ListEntry *e = &l->items[l->n++];

		*e = (ListEntry){
			.uri = certagent_identity_uri(id),
			.label = certagent_identity_label(id),
			.token_uri = certagent_identity_token(id),
			.token_label = certagent_identity_token_label(id),
			.key_type = certagent_identity_key_type(id),
			.bits = certagent_identity_bits(id),
			.logged_in = certagent_identity_logged_in(id) ? 1 : 0,
			.n_schemes = certagent_identity_scheme_count(id),
			.n_certs = certagent_identity_cert_count(id),
		};
		e->schemes = calloc(e->n_schemes ? e->n_schemes : 1, sizeof(*e->schemes));
		e->certs = e->n_certs ? certagent_identity_cert(id, 0) : NULL;
		if (!e->schemes)
			return -ENOMEM;
		for (size_t j = 0; j < e->n_schemes; j++)
			e->schemes[j] = certagent_identity_scheme(id, j);
	}
	return 0;
}

/* Exit code or 0. */
static int list_from_tokens(List *l, const char *module)
{
	CaError err = {0};
	int rc, r;

	l->source = LIST_SOURCE_TOKENS;
	rc = p11cli_store_open(module, &l->store);
	if (rc)
		return rc;
	r = store_list_identities(l->store, &l->store_ids, &err);
	if (r)
		return p11cli_fail(r, &err);
	l->items = calloc(l->store_ids->n ? l->store_ids->n : 1, sizeof(*l->items));
	if (!l->items)
		return CLI_EXIT_FAILED;
	for (size_t i = 0; i < l->store_ids->n; i++) {
		const StoreIdentity *id = &l->store_ids->items[i];
		ListEntry *e = &l->items[l->n++];

		*e = (ListEntry){
			.uri = id->uri,
			.label = id->label ? id->label : "",
			.token_uri = id->token_uri,
			.token_label = id->token_label,
			.key_type = ca_key_type_name(id->key_type),
			.bits = id->bits,
			.logged_in = -1,
			.n_schemes = id->n_schemes,
			.certs = id->certs,
			.n_certs = id->n_certs,
		};
		e->schemes = calloc(e->n_schemes ? e->n_schemes : 1, sizeof(*e->schemes));
		if (!e->schemes)
			return CLI_EXIT_FAILED;
		for (size_t j = 0; j < e->n_schemes; j++)
			e->schemes[j] = id->schemes[j]->name;
	}
	return 0;
}

/* Exit code or 0. */
static int list_trust(List *l, const char *cafile)
{
	int r = gnutls_x509_trust_list_init(&l->trust, 0);

	if (r < 0)
		return CLI_EXIT_FAILED;
	if (cafile) {
		r = gnutls_x509_trust_list_add_trust_file(l->trust, cafile, NULL,
							  GNUTLS_X509_FMT_PEM, 0, 0);
		if (r <= 0) {
			fprintf(stderr, "certagent: no CA certificate could be read from %s%s%s\n",
				cafile, r < 0 ? ": " : "", r < 0 ? gnutls_strerror(r) : "");
			return CLI_EXIT_IO;
		}
		l->trust_name = cafile;
	} else {
		/* Without a system store every chain that is not self-signed is incomplete:
		 * that is what a server with no CAs would conclude too. */
		(void)gnutls_x509_trust_list_add_system_trust(l->trust, 0, 0);
		l->trust_name = "the system trust store";
	}
	return 0;
}

/* ---- output ---- */

static void print_json_entry(const ListEntry *e, const ListCheck *k, FILE *f)
{
	static const CertInfo no_cert = {.not_before = (time_t)-1, .not_after = (time_t)-1};
	const CertInfo *leaf = k->n_chain ? &k->chain[0] : NULL;

	fputs("{\"uri\": ", f);
	json_print_string(f, e->uri);
	fputs(", \"label\": ", f);
	json_print_string(f, e->label);
	fputs(", \"key_type\": ", f);
	json_print_string(f, e->key_type);
	fprintf(f, ", \"bits\": %u", e->bits);
	fputs(", \"token\": ", f);
	json_print_string(f, e->token_uri);
	fputs(", \"token_label\": ", f);
	json_print_string(f, e->token_label);
	fputs(", \"logged_in\": ", f);
	fputs(e->logged_in < 0 ? "null" : e->logged_in ? "true" : "false", f);
	fputs(", \"schemes\": ", f);
	json_print_strings(f, e->schemes, e->n_schemes);
	fputs(",\n   ", f);
	/* No certificate: the same members, all null. */
	cert_info_print_json(leaf ? leaf : &no_cert, f);
	if (k->expiry)
		fprintf(f, ", \"days_left\": %lld", k->days_left);
	else
		fputs(", \"days_left\": null", f);
	fputs(", \"expiry\": ", f);
	json_print_string(f, k->expiry);
	fputs(", \"warning\": ", f);
	json_print_string(f, k->warning[0] ? k->warning : NULL);
	fputs(",\n   \"chain_complete\": ", f);
	json_print_bool(f, k->chain_complete);
	fputs(", \"chain_anchor\": ", f);
	json_print_string(f, k->anchor);
	fputs(", \"chain_anchor_source\": ", f);
	json_print_string(f, k->anchor_source);
	fputs(", \"chain_missing\": ", f);
	json_print_string(f, k->missing);
	fputs(", \"chain_detail\": ", f);
	json_print_string(f, k->detail);
	fputs(",\n   \"chain\": [", f);
	for (size_t j = 0; j < k->n_chain; j++) {
		const CertInfo *c = &k->chain[j];

		fputs(j ? ",\n     {" : "\n     {", f);
		cert_info_print_json(c, f);
		fputc('}', f);
	}
	fputs("]}", f);
}

static void print_text_entry(const ListEntry *e, const ListCheck *k, FILE *f)
{
	const CertInfo *leaf = k->n_chain ? &k->chain[0] : NULL;
	char b1[40], b2[40];

	fprintf(f, "%s\n", e->label && *e->label ? e->label : "(no label)");
	fprintf(f, "  uri:      %s\n", e->uri);
	fprintf(f, "  key:      %s %u\n", e->key_type, e->bits);
	if (e->logged_in < 0)
		fprintf(f, "  token:    %s\n", e->token_label);
	else
		fprintf(f, "  token:    %s (%s)\n", e->token_label,
			e->logged_in ? "unlocked" : "locked");
	fputs("  schemes: ", f);
	for (size_t j = 0; j < e->n_schemes; j++)
		fprintf(f, " %s", e->schemes[j]);
	fputc('\n', f);
	if (!leaf) {
		fputs("  subject:  (no certificate)\n", f);
		return;
	}
	fprintf(f, "  subject:  %s\n", leaf->subject ? leaf->subject : "(unreadable)");
	fprintf(f, "  issuer:   %s\n", leaf->issuer ? leaf->issuer : "(unreadable)");
	fprintf(f, "  serial:   %s\n", leaf->serial ? leaf->serial : "?");
	fprintf(f, "  validity: %s to %s", cert_info_time_str(leaf->not_before, b1, sizeof(b1)),
		cert_info_time_str(leaf->not_after, b2, sizeof(b2)));
	if (k->expiry && strcmp(k->expiry, "expired") == 0)
		fprintf(f, " (expired %lld day%s ago)\n", -k->days_left,
			k->days_left == -1 ? "" : "s");
	else if (k->expiry)
		fprintf(f, " (%lld day%s left)\n", k->days_left, k->days_left == 1 ? "" : "s");
	else
		fputc('\n', f);
	if (k->warning[0])
		fprintf(f, "  WARNING:  %s\n", k->warning);
	fprintf(f, "  chain:    %s: leaf + %zu intermediate%s, %s",
		k->chain_complete ? "complete" : "INCOMPLETE", k->n_chain - 1,
		k->n_chain == 2 ? "" : "s", k->detail);
	if (k->anchor)
		fprintf(f, "\n            root: %s (%s)", k->anchor, k->anchor_source);
	if (k->missing)
		fprintf(f, "\n            missing: %s", k->missing);
	fputc('\n', f);
}

static int list_print(const List *l, bool json, FILE *f)
{
	size_t expiring = 0, expired = 0, incomplete = 0;

	if (json) {
		fprintf(f, "{\"source\": \"%s\", \"trust_store\": ",
			l->source == LIST_SOURCE_AGENT ? "agent" : "tokens");
		json_print_string(f, l->trust_name);
		fputs(",\n \"identities\": [", f);
	} else if (l->source == LIST_SOURCE_AGENT) {
		fputs("Identities as certagentd sees them (source: agent)\n", f);
	} else {
		fprintf(f,
			"%s: identities read from the tokens directly, without logging in\n"
			"(source: tokens; the agent may see them differently)\n",
			l->tokens_asked ? "--tokens" : "certagentd is not running");
	}
	if (!json && l->n == 0)
		fputs("\nNo identities. Is the token inserted, and does it hold a certificate with "
		      "the same ID as the key?\n",
		      f);
	for (size_t i = 0; i < l->n; i++) {
		ListCheck k;

		if (list_check(l, &l->items[i], &k) < 0)
			return CLI_EXIT_FAILED;
		if (json) {
			fputs(i ? ",\n  " : "\n  ", f);
			print_json_entry(&l->items[i], &k, f);
		} else {
			fputc('\n', f);
			print_text_entry(&l->items[i], &k, f);
		}
		if (k.expiry && strcmp(k.expiry, "expiring") == 0)
			expiring++;
		else if (k.expiry && strcmp(k.expiry, "expired") == 0)
			expired++;
		if (k.n_chain && !k.chain_complete)
			incomplete++;
		list_check_clear(&k);
	}
	if (json)
		fputs(l->n ? "\n]}\n" : "]}\n", f);
	else if (expiring || expired || incomplete)
		fprintf(stderr,
			"certagent: warning: %zu certificate%s expire%s within %d days, %zu "
			"expired, %zu incomplete chain%s (see WARNING and chain above)\n",
			expiring, expiring == 1 ? "" : "s", expiring == 1 ? "s" : "",
			LIST_EXPIRY_WARN_DAYS, expired, incomplete, incomplete == 1 ? "" : "s");
	return 0;
}

static int run(const CliCommand *cmd, int argc, char **argv)
{
	certagent_error err = CERTAGENT_ERROR_INIT;
	certagent_client *c = NULL;
	certagent_identity_list *ids = NULL;
	const char *address = NULL, *cafile = NULL, *module = NULL, *arg;
	bool json = false, agent_only = false, tokens_only = false;
	List l = {0};
	CliParser p;
	int o, rc;

	if (cli_parser_init(&p, cmd, argc, argv) < 0)
		return CLI_EXIT_FAILED;
	while ((o = cli_options_next(&p, &arg)) > 0) {
		if (o == OPT_JSON)
			json = true;
		else if (o == OPT_ADDRESS)
			address = arg;
		else if (o == OPT_CAFILE)
			cafile = arg;
		else if (o == OPT_MODULE)
			module = arg;
		else if (o == OPT_AGENT)
			agent_only = true;
		else if (o == OPT_TOKENS)
			tokens_only = true;
	}
	if (o == 0 && p.n_positional > 0)
		o = cli_usage_error(cmd, "list takes no arguments");
	if (o == 0 && agent_only && tokens_only)
		o = cli_usage_error(cmd, "--agent and --tokens exclude each other");
	if (o == 0 && agent_only && module)
		o = cli_usage_error(cmd, "--module is for the tokens view, not with --agent");
	rc = cli_parser_done(&p, o);
	if (rc >= 0)
		return rc;

	l.now = time(NULL);
	rc = list_trust(&l, cafile);
	if (rc)
		goto out;
	if (!tokens_only) {
		if (certagent_client_new(address, &c, &err) == 0 &&
		    certagent_list_identities(c, &ids, &err) == 0) {
			rc = list_from_agent(&l, ids) < 0 ? CLI_EXIT_FAILED : 0;
			goto print;
		}
		if (agent_only || err.code != CERTAGENT_E_AGENT_NOT_RUNNING) {
			rc = cli_agent_error(&err);
			goto out;
		}
		/* The agent's view is what clients get; without it, the tokens are next best. */
		fprintf(stderr, "certagent: %s; reading the tokens directly\n",
			err.message[0] ? err.message : "certagentd is not running");
	}
	l.tokens_asked = tokens_only;
	rc = list_from_tokens(&l, module);
print:
	if (rc == 0)
		rc = list_print(&l, json, stdout);
	if (rc == 0)
		rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IO;
out:
	list_clear(&l);
	certagent_client_free(c);
	return rc;
}

const CliCommand cli_cmd_list = {
	.name = "list",
	.synopsis = "",
	.summary = "List the identities (key + certificate), with expiry and chain checks",
	.description =
		"Lists every identity (a private key and its certificate chain): label, URI, key "
		"type and size, token, the TLS signature schemes the token can make with the key, "
		"and the certificate's subject, issuer, serial and validity, with the days left "
		"(a WARNING under 30 days and once expired) and whether the chain sent is complete "
		"(it ends at a self-signed certificate or at a root in the trust store: the "
		"system's, or --cafile), else which issuer is missing. With a running agent it "
		"shows the agent's view; when the agent is not running it reads the tokens "
		"directly (without logging in) and says so.",
	.options = options,
	.n_options = ELEMENTSOF(options),
	.run = run,
};
