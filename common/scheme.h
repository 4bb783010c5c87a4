/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * scheme: the TLS SignatureSchemes certagent signs, named as in RFC 8446 §4.2.3.
 *
 * One table, shared by the agent (what a token can do, what input to expect) and the client
 * library (what GnuTLS asks for). What goes over D-Bus as `data` for each kind:
 *   CA_SIG_RSA_PKCS1: the DER DigestInfo of the hash (validated by the agent);
 *   CA_SIG_RSA_PSS, CA_SIG_ECDSA: the bare hash, of exactly hash_len bytes;
 *   CA_SIG_EDDSA: the whole message.
 * What comes back is the signature as it goes on the wire (ECDSA: DER SEQUENCE{r,s}).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "error.h"

typedef enum CaKeyType {
	CA_KEY_UNKNOWN = 0,
	CA_KEY_RSA,
	CA_KEY_EC,
	CA_KEY_ED25519,
} CaKeyType;

typedef enum CaSigKind {
	CA_SIG_RSA_PKCS1 = 1,
	CA_SIG_RSA_PSS,
	CA_SIG_ECDSA,
	CA_SIG_EDDSA,
} CaSigKind;

typedef struct CaScheme {
	const char *name;                 /* "rsa_pss_rsae_sha256" */
	uint16_t tls_code;                /* 0x0804 */
	CaKeyType key_type;
	CaSigKind kind;
	gnutls_digest_algorithm_t digest; /* GNUTLS_DIG_UNKNOWN for EdDSA */
	unsigned hash_len;                /* 0 for EdDSA */
	unsigned curve_bits;              /* ECDSA: 256/384/521; else 0 */
	gnutls_sign_algorithm_t sign13;   /* the GnuTLS algorithm naming this scheme */
	gnutls_sign_algorithm_t sign12;   /* TLS 1.2 alias (curve-free ECDSA), or 0 */
} CaScheme;

const CaScheme *ca_scheme_table(size_t *ret_n);
const CaScheme *ca_scheme_by_name(const char *name);
const CaScheme *ca_scheme_by_gnutls(gnutls_sign_algorithm_t algo);
const char *ca_key_type_name(CaKeyType t); /* "rsa", "ec", "ed25519" */
CaKeyType ca_key_type_from_name(const char *s);

/*
 * Whether a key of this type/size can use the scheme (ECDSA: curve must match; RSA: PSS needs
 * bits >= 2*hash_len*8+16). Token capability (mechanisms) is checked by the caller.
 */
bool ca_scheme_fits_key(const CaScheme *s, CaKeyType type, unsigned bits);

typedef enum CaTlsFraming {
	CA_TLS_FRAMING_NONE = 0,
	CA_TLS_FRAMING_TLS13, /* 64 spaces ‖ "TLS 1.3, client CertificateVerify" ‖ 0 ‖ hash */
	CA_TLS_FRAMING_TLS12, /* ClientHello ‖ … : whole handshake messages, lengths consistent */
} CaTlsFraming;

/* Which TLS client CertificateVerify input data is, if any (for the Ed25519 check). */
CaTlsFraming ca_tls_framing_check(const uint8_t *data, size_t len);

/*
 * Checks that data is what the scheme signs: a well-formed DigestInfo of the scheme's hash for
 * RSA PKCS#1 (SHA-256/384/512 only: there is no SHA-1 scheme), a hash of exactly the right
 * length for PSS/ECDSA, and for EdDSA a message with the framing of a TLS client
 * CertificateVerify (ca_tls_framing_check). Returns 0 or CA_E_INVALID_ARGS (err says what
 * was wrong).
 */
int ca_scheme_check_input(const CaScheme *s, const uint8_t *data, size_t len, CaError *err);

/*
 * For RSA PKCS#1: the digest named by a DER DigestInfo (SHA-256/384/512), or GNUTLS_DIG_UNKNOWN.
 * Also returns the offset of the bare hash in ret_hash_off when not NULL.
 */
gnutls_digest_algorithm_t ca_digest_info_parse(const uint8_t *data, size_t len,
					       size_t *ret_hash_off);

/* The scheme rsa_pkcs1_<hash> for a DigestInfo, or NULL. */
const CaScheme *ca_scheme_for_digest_info(const uint8_t *data, size_t len);

/* Writes DigestInfo(hash) into a new buffer; 0 or -ENOMEM/-EINVAL. */
int ca_digest_info_encode(gnutls_digest_algorithm_t dig, const uint8_t *hash, size_t hash_len,
			  uint8_t **ret, size_t *ret_len);
