/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * scheme: the TLS SignatureScheme table and the checks that the agent signs only what a TLS
 * client handshake needs (DigestInfo shape, hash lengths, the Ed25519 framing).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheme.h"

static const CaScheme schemes[] = {
	{ "rsa_pkcs1_sha256", 0x0401, CA_KEY_RSA, CA_SIG_RSA_PKCS1, GNUTLS_DIG_SHA256, 32, 0,
	  GNUTLS_SIGN_RSA_SHA256, 0 },
	{ "rsa_pkcs1_sha384", 0x0501, CA_KEY_RSA, CA_SIG_RSA_PKCS1, GNUTLS_DIG_SHA384, 48, 0,
	  GNUTLS_SIGN_RSA_SHA384, 0 },
	{ "rsa_pkcs1_sha512", 0x0601, CA_KEY_RSA, CA_SIG_RSA_PKCS1, GNUTLS_DIG_SHA512, 64, 0,
	  GNUTLS_SIGN_RSA_SHA512, 0 },
	{ "rsa_pss_rsae_sha256", 0x0804, CA_KEY_RSA, CA_SIG_RSA_PSS, GNUTLS_DIG_SHA256, 32, 0,
	  GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, 0 },
	{ "rsa_pss_rsae_sha384", 0x0805, CA_KEY_RSA, CA_SIG_RSA_PSS, GNUTLS_DIG_SHA384, 48, 0,
	  GNUTLS_SIGN_RSA_PSS_RSAE_SHA384, 0 },
	{ "rsa_pss_rsae_sha512", 0x0806, CA_KEY_RSA, CA_SIG_RSA_PSS, GNUTLS_DIG_SHA512, 64, 0,
	  GNUTLS_SIGN_RSA_PSS_RSAE_SHA512, 0 },
	{ "ecdsa_secp256r1_sha256", 0x0403, CA_KEY_EC, CA_SIG_ECDSA, GNUTLS_DIG_SHA256, 32, 256,
	  GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, GNUTLS_SIGN_ECDSA_SHA256 },
	{ "ecdsa_secp384r1_sha384", 0x0503, CA_KEY_EC, CA_SIG_ECDSA, GNUTLS_DIG_SHA384, 48, 384,
	  GNUTLS_SIGN_ECDSA_SECP384R1_SHA384, GNUTLS_SIGN_ECDSA_SHA384 },
	{ "ecdsa_secp521r1_sha512", 0x0603, CA_KEY_EC, CA_SIG_ECDSA, GNUTLS_DIG_SHA512, 64, 521,
	  GNUTLS_SIGN_ECDSA_SECP521R1_SHA512, GNUTLS_SIGN_ECDSA_SHA512 },
	{ "ed25519", 0x0807, CA_KEY_ED25519, CA_SIG_EDDSA, GNUTLS_DIG_UNKNOWN, 0, 0,
	  GNUTLS_SIGN_EDDSA_ED25519, 0 },
};

/* DER DigestInfo prefixes (RFC 8017 §9.2 note 1), followed by the hash. */
static const struct {
	gnutls_digest_algorithm_t dig;
	unsigned hash_len;
	uint8_t prefix[19];
} digest_infos[] = {
	{ GNUTLS_DIG_SHA256, 32,
	  { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	    0x01, 0x05, 0x00, 0x04, 0x20 } },
	{ GNUTLS_DIG_SHA384, 48,
	  { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	    0x02, 0x05, 0x00, 0x04, 0x30 } },
	{ GNUTLS_DIG_SHA512, 64,
	  { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	    0x03, 0x05, 0x00, 0x04, 0x40 } },
};

/* DigestInfo(SHA-1): recognised only to refuse it with a clear message. */
static const uint8_t sha1_digest_info[15] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
					     0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};

const CaScheme *ca_scheme_table(size_t *ret_n)
{
	*ret_n = ELEMENTSOF(schemes);
	return schemes;
}

const CaScheme *ca_scheme_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(schemes); i++)
		if (strcmp(schemes[i].name, name) == 0)
			return &schemes[i];
	return NULL;
}

const CaScheme *ca_scheme_by_gnutls(gnutls_sign_algorithm_t algo)
{
	for (size_t i = 0; i < ELEMENTSOF(schemes); i++)
		if (schemes[i].sign13 == algo || (schemes[i].sign12 && schemes[i].sign12 == algo))
			return &schemes[i];
	return NULL;
}

const char *ca_key_type_name(CaKeyType t)
{
	switch (t) {
	case CA_KEY_RSA:
		return "rsa";
	case CA_KEY_EC:
		return "ec";
	case CA_KEY_ED25519:
		return "ed25519";
	default:
		return "unknown";
	}
}

CaKeyType ca_key_type_from_name(const char *s)
{
	if (!s)
		return CA_KEY_UNKNOWN;
	if (strcmp(s, "rsa") == 0)
		return CA_KEY_RSA;
	if (strcmp(s, "ec") == 0)
		return CA_KEY_EC;
	if (strcmp(s, "ed25519") == 0)
		return CA_KEY_ED25519;
	return CA_KEY_UNKNOWN;
}

bool ca_scheme_fits_key(const CaScheme *s, CaKeyType type, unsigned bits)
{
	if (s->key_type != type)
		return false;
	switch (s->kind) {
	case CA_SIG_ECDSA:
		return bits == s->curve_bits;
	case CA_SIG_RSA_PSS:
		/* EMSA-PSS needs emLen >= hLen + sLen + 2 with sLen = hLen. */
		return bits >= 2 * s->hash_len * 8 + 16;
	case CA_SIG_RSA_PKCS1:
		return bits >= 19 * 8 + s->hash_len * 8 + 11 * 8;
	default:
		return true;
	}
}

gnutls_digest_algorithm_t ca_digest_info_parse(const uint8_t *data, size_t len,
					       size_t *ret_hash_off)
{
	for (size_t i = 0; i < ELEMENTSOF(digest_infos); i++) {
		size_t plen = sizeof(digest_infos[i].prefix);

		if (len != plen + digest_infos[i].hash_len)
			continue;
		if (memcmp(data, digest_infos[i].prefix, plen) != 0)
			continue;
		if (ret_hash_off)
			*ret_hash_off = plen;
		return digest_infos[i].dig;
	}
	return GNUTLS_DIG_UNKNOWN;
}

const CaScheme *ca_scheme_for_digest_info(const uint8_t *data, size_t len)
{
	gnutls_digest_algorithm_t dig = ca_digest_info_parse(data, len, NULL);

	if (dig == GNUTLS_DIG_UNKNOWN)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(schemes); i++)
		if (schemes[i].kind == CA_SIG_RSA_PKCS1 && schemes[i].digest == dig)
			return &schemes[i];
	return NULL;
}

int ca_digest_info_encode(gnutls_digest_algorithm_t dig, const uint8_t *hash, size_t hash_len,
			  uint8_t **ret, size_t *ret_len)
{
	for (size_t i = 0; i < ELEMENTSOF(digest_infos); i++) {
		size_t plen = sizeof(digest_infos[i].prefix);
		uint8_t *buf;

		if (digest_infos[i].dig != dig)
			continue;
		if (hash_len != digest_infos[i].hash_len)
			return -EINVAL;
		buf = malloc(plen + hash_len);
		if (!buf)
			return -ENOMEM;
		memcpy(buf, digest_infos[i].prefix, plen);
		memcpy(buf + plen, hash, hash_len);
		*ret = buf;
		*ret_len = plen + hash_len;
		return 0;
	}
	return -EINVAL;
}

int ca_scheme_check_input(const CaScheme *s, const uint8_t *data, size_t len, CaError *err)
{
	switch (s->kind) {
	case CA_SIG_RSA_PKCS1:
		if (len == sizeof(sha1_digest_info) + 20 &&
		    memcmp(data, sha1_digest_info, sizeof(sha1_digest_info)) == 0)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "data for %s is a SHA-1 DigestInfo: certagent never "
					    "signs SHA-1 (TLS 1.3 forbids it, and no TLS 1.2 peer "
					    "worth talking to needs it)",
					    s->name);
		if (ca_digest_info_parse(data, len, NULL) != s->digest)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "data for %s must be a DER DigestInfo of a %u-byte %s "
					    "hash (%zu bytes were given)",
					    s->name, s->hash_len, gnutls_digest_get_name(s->digest),
					    len);
		return 0;
	case CA_SIG_RSA_PSS:
	case CA_SIG_ECDSA:
		if (len != s->hash_len)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "data for %s must be a %u-byte %s hash, not %zu bytes",
					    s->name, s->hash_len, gnutls_digest_get_name(s->digest),
					    len);
		return 0;
	case CA_SIG_EDDSA:
		if (len == 0)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "data for %s must be the message to sign, not empty",
					    s->name);
		if (ca_tls_framing_check(data, len) == CA_TLS_FRAMING_NONE)
			return ca_error_set(err, CA_E_INVALID_ARGS,
					    "data for %s must be what a TLS client signs: a TLS 1.3 "
					    "client CertificateVerify (64 spaces, the context string, "
					    "0, a 32- or 48-byte transcript hash) or the TLS 1.2 "
					    "handshake messages from ClientHello on; %zu bytes of "
					    "something else were given",
					    s->name, len);
		return 0;
	}
	return ca_error_set(err, CA_E_UNSUPPORTED_SCHEME, "unknown scheme kind");
}

/* RFC 8446 §4.4.3: what a TLS 1.3 client's CertificateVerify signs, before the hash. */
#define TLS13_PAD 64
static const char tls13_client_context[] = "TLS 1.3, client CertificateVerify";

CaTlsFraming ca_tls_framing_check(const uint8_t *data, size_t len)
{
	size_t ctx_len = sizeof(tls13_client_context); /* with its 0 separator */
	size_t off = 0;

	if (!data)
		return CA_TLS_FRAMING_NONE;
	/* TLS 1.3: 64 × 0x20 ‖ context ‖ 0x00 ‖ Transcript-Hash (SHA-256 or SHA-384). */
	if ((len == TLS13_PAD + ctx_len + 32 || len == TLS13_PAD + ctx_len + 48) &&
	    memcmp(data + TLS13_PAD, tls13_client_context, ctx_len) == 0) {
		size_t i = 0;

		while (i < TLS13_PAD && data[i] == 0x20)
			i++;
		if (i == TLS13_PAD)
			return CA_TLS_FRAMING_TLS13;
	}
	/*
	 * TLS 1.2 (RFC 8422 §5.8 with RFC 5246 §7.4.8): the handshake messages so far, each
	 * type(1) ‖ length(3) ‖ body, back to back, the first a ClientHello. At least a
	 * ClientHello, ServerHello and the client's Certificate: three messages.
	 */
	if (len < 4 || data[0] != 1)
		return CA_TLS_FRAMING_NONE;
	for (unsigned n = 0;; n++) {
		size_t body;

		if (off == len)
			return n >= 3 ? CA_TLS_FRAMING_TLS12 : CA_TLS_FRAMING_NONE;
		if (len - off < 4)
			return CA_TLS_FRAMING_NONE;
		/* HelloRequest (0) is never part of the transcript; types above 24 do not exist. */
		if (data[off] == 0 || data[off] > 24)
			return CA_TLS_FRAMING_NONE;
		body = (size_t)data[off + 1] << 16 | (size_t)data[off + 2] << 8 | data[off + 3];
		if (body > len - off - 4)
			return CA_TLS_FRAMING_NONE;
		off += 4 + body;
	}
}
