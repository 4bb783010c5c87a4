/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client-internal: what the files of libcertagent share and nobody else sees.
 *
 * client.c owns the bus connection, the error table, the calls and the aa{sv} list reader;
 * identity.c decodes ListIdentities; privkey.c is the gnutls_privkey_t whose signatures go to
 * the agent; credentials.c is the retrieve function that picks an identity per handshake;
 * tokens.c decodes ListTokens and the Version property.
 * Nothing here is exported: the version script keeps only certagent_*.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <dbus/dbus.h>

#include "certagent.h"
#include "ipc-channel.h"
#include "reply-wait.h"
#include "scheme.h"
#include "util.h"

#define CA_BUS_NAME "org.certagent.Agent1"
#define CA_OBJECT_PATH "/org/certagent/Agent1"
#define CA_INTERFACE "org.certagent.Agent1"

/* Caps on what the agent sends back: a confused agent must not make us allocate without end. */
#define CA_MAX_IDENTITIES 1024
#define CA_MAX_SCHEMES 32
#define CA_MAX_CERTS 16
#define CA_MAX_CERT_SIZE (64 * 1024)
#define CA_MAX_STRING 4096
#define CA_MAX_SIGN_DATA 65536

#define CA_SERVER_NAMES_MAX 16
#define CA_DEFAULT_TIMEOUT_MS 120000 /* the agent's PIN prompt waits up to 90 s */

typedef struct CredContext CredContext;

/*
 * What the retrieve function needs of a certificate besides its DER, read from it once per
 * identity list (a certificate takes ~25 µs to parse, and a handshake would otherwise parse
 * the chain twice): the public key as GnuTLS wants it in a gnutls_pcert_st (DER
 * SubjectPublicKeyInfo and key usage; a handshake's copy of it takes ~3 µs) and the raw issuer
 * and subject names, matched against the CAs the server names. spki.data NULL: not read yet.
 */
typedef struct CertKeyCache {
	gnutls_datum_t spki, issuer, subject;
	unsigned usage;
} CertKeyCache;

struct certagent_identity {
	char *uri;
	char *label;
	char *token;
	char *token_label;
	char *module;
	char *key_type;
	unsigned bits;
	bool logged_in;
	char **schemes; /* NULL-terminated */
	size_t n_schemes;
	gnutls_datum_t *certs; /* DER, leaf first */
	size_t n_certs;
	/* Per certs[i], filled by the first handshake that needs it (credentials.c); allocated
	 * with certs. */
	CertKeyCache *cert_cache;
};

struct certagent_identity_list {
	certagent_identity *items;
	size_t n;
};

struct certagent_client {
	DBusConnection *conn;
	int timeout_ms;
	/* ListIdentities, kept for the retrieve function; dropped on IdentitiesChanged. */
	certagent_identity_list *cache;
	char *last_identity;
	certagent_error last_error;
	bool has_last_error;
	CredContext *creds; /* every credential set up with this client, freed with it */
	/* certagent_session_set_server_name(): names for the next handshake of these sessions,
	 * taken (and forgotten) by the retrieve function; the oldest is dropped when full. */
	struct {
		gnutls_session_t session;
		char name[256];
	} server_names[CA_SERVER_NAMES_MAX];
	size_t next_server_name;
	certagent_observer_fn observer; /* certagent_client_set_observer(), or NULL */
	void *observer_data;
	/* The signing channel (channel.c). */
	int channel_fd;		  /* -1: not open */
	pid_t channel_pid;	  /* the process that opened it */
	uint32_t channel_serial;  /* of the last request sent on it */
	bool channel_unsupported; /* the agent or the bus cannot: use the bus */
	bool channel_answered;	  /* the agent answered a request on this channel */
	unsigned channel_opened;  /* channels opened so far */
	bool channel_prepared;	  /* a PREPARE went out on it since the last Sign */
	bool prepare_known;	  /* this agent answered a Sign sent after a PREPARE */
	bool prepare_unsupported; /* this agent closed the channel on a PREPARE */
	int channel_timeout_ms;	  /* SO_RCVTIMEO of the channel, -1: not set yet */
	uint8_t *channel_buf;	  /* IPC_CHANNEL_FRAME_MAX + 1 bytes, for frames */
	ReplyWait reply_wait;	  /* how to wait for the channel's replies (reply-wait.h) */
};

/* credentials.c: the name certagent_session_set_server_name() gave session, taken out of c
 * (writes "" when there is none). */
void cred_take_server_name(certagent_client *c, gnutls_session_t session, char ret[256]);

/* client.c */
int client_error_set(certagent_error *err, certagent_code code, const char *fmt, ...)
	_printf_(3, 4);
void client_record_error(certagent_client *c, const certagent_error *err);
void client_clear_error(certagent_client *c);
/* Hands ev to the observer, if there is one (version filled in here). */
void client_notify(certagent_client *c, certagent_event *ev);
int client_call(certagent_client *c, DBusMessage *msg, DBusMessage **ret_reply,
		certagent_error *err);
/* Drops the identity cache if the agent said IdentitiesChanged since we last looked. */
void client_dispatch_signals(certagent_client *c);
/* The cached identity list, fetched when missing or when refresh is set. */
int client_identities(certagent_client *c, bool refresh, const certagent_identity_list **ret,
		      certagent_error *err);
const certagent_identity *client_find_identity(const certagent_identity_list *l, const char *uri);

/* "certagentd sent a malformed <list> (<what>): …"; returns -CERTAGENT_E_FAILED. */
int client_malformed(certagent_error *err, const char *list, const char *what);

/* One kind of aa{sv} list the agent sends (ListIdentities, ListTokens). */
typedef struct ClientDictList {
	const char *name;     /* "identity list", for client_malformed() */
	const char *too_many; /* what client_malformed() says past max items */
	size_t item_size;
	size_t max;
	/* One entry of an item's a{sv}; unknown keys return 0. 0, or -code with err. */
	int (*read_entry)(void *item, const char *key, DBusMessageIter *var, certagent_error *err);
	/* After the item's last entry: checks it and fills what an older agent left out. */
	int (*finish)(void *item, certagent_error *err);
} ClientDictList;

/*
 * Decodes reply (aa{sv}) into an array of kind->item_size items, each zeroed and then read.
 * *items and *n grow as items are read, also when it fails: the caller frees them either way
 * (the item being read when it failed included). 0, or -code with err: CERTAGENT_E_FAILED
 * (malformed), CERTAGENT_E_NO_MEMORY.
 */
int client_read_dict_list(DBusMessage *reply, const ClientDictList *kind, void **items, size_t *n,
			  certagent_error *err);

/* Fills err from an error reply (as client_call() does for the bus); returns -code. */
int client_error_from_reply(DBusMessage *reply, certagent_error *err);
/* The same from an error's D-Bus name and message (a signing channel's error frame). */
int client_error_from_name(certagent_error *err, const char *name, const char *message);

/* channel.c */
/*
 * Sends the Sign call on the signing channel (opening it first when needed). 0 with *ret_sig
 * (gnutls_malloc'd); -code with err filled (the agent's error, or a timeout); 1: no channel
 * for this request, send it on the bus.
 */
int client_channel_sign(certagent_client *c, const IpcSignCall *call, gnutls_datum_t *ret_sig,
			certagent_error *err);
/*
 * Tells the agent on the channel (opened if need be) that a Sign with uri is coming, so that
 * its token can begin one ahead (dbus/ipc-channel.h, PREPARE). No reply, no wait, no error:
 * whatever goes wrong, the Sign itself sorts out.
 */
void client_channel_prepare(certagent_client *c, const char *uri);
void client_channel_close(certagent_client *c);
/* The agent restarted: close the channel and try OpenChannel again next time. */
void client_channel_reset(certagent_client *c);
void client_channel_free(certagent_client *c);

/* identity.c */
int identity_list_from_reply(DBusMessage *reply, certagent_identity_list **ret,
			     certagent_error *err);
bool identity_has_scheme(const certagent_identity *id, const CaScheme *s);
gnutls_pk_algorithm_t identity_pk_algorithm(const certagent_identity *id);

/*
 * certagent_sign() with the server's certificate chain as the server-certificates option
 * (DER, leaf first; at most CA_MAX_CERTS are sent), for the agent's per-identity policy.
 */
int client_sign(certagent_client *c, const char *identity_uri, const char *scheme, const void *data,
		size_t len, const char *server_name, const gnutls_datum_t *server_certs,
		size_t n_server_certs, gnutls_datum_t *ret_sig, certagent_error *err);

/* privkey.c; session (may be NULL): the handshake whose server certificates go with Sign. */
int privkey_new_for(certagent_client *c, const certagent_identity *id, const char *server_name,
		    gnutls_session_t session, gnutls_privkey_t *ret, certagent_error *err);

/* credentials.c */
CredContext *cred_context_free_all(CredContext *head);
void cert_cache_free(CertKeyCache *kc, size_t n);
