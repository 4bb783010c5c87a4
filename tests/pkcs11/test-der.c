/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-der: pkcs11/sign.c's own ECDSA-Sig-Value encoder against GnuTLS's
 * gnutls_encode_rs_value(), byte for byte: the halves a token returns for P-256, P-384 and
 * P-521 and the largest the encoder takes (124 bytes), random and at the edges (leading zero
 * bytes, the high bit set, all zero, all 0xff), and the DER must decode back to the same r
 * and s; larger, odd or empty input is refused. A wrong byte here is a signature a TLS server
 * rejects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "internal.h"

static unsigned failures, checked;

/* The big-endian unsigned v without its leading zero bytes (one kept). */
static gnutls_datum_t strip(const uint8_t *v, size_t n)
{
	while (n > 1 && v[0] == 0)
		v++, n--;
	return (gnutls_datum_t){(unsigned char *)v, (unsigned)n};
}

static void check(const char *what, const uint8_t *raw, size_t n)
{
	gnutls_datum_t r = {(unsigned char *)raw, (unsigned)(n / 2)};
	gnutls_datum_t s = {(unsigned char *)raw + n / 2, (unsigned)(n / 2)};
	gnutls_datum_t want = {NULL, 0}, der, r2 = {NULL, 0}, s2 = {NULL, 0};
	uint8_t *got = NULL;
	size_t got_len = 0;
	int rc = sign_ecdsa_to_der(raw, n, &got, &got_len);

	checked++;
	if (rc < 0 || gnutls_encode_rs_value(&want, &r, &s) < 0) {
		fprintf(stderr, "%s (%zu bytes): encoding failed (%d)\n", what, n, rc);
		failures++;
		goto out;
	}
	if (got_len != want.size || memcmp(got, want.data, got_len) != 0) {
		fprintf(stderr,
			"%s (%zu bytes): %zu bytes, GnuTLS wrote %u; first byte %02x/%02x\n", what,
			n, got_len, want.size, got_len ? got[0] : 0, want.data[0]);
		failures++;
		goto out;
	}
	der = (gnutls_datum_t){got, (unsigned)got_len};
	if (gnutls_decode_rs_value(&der, &r2, &s2) < 0) {
		fprintf(stderr, "%s (%zu bytes): GnuTLS cannot decode it\n", what, n);
		failures++;
		goto out;
	}
	gnutls_datum_t rs = strip(r.data, r.size), ss = strip(s.data, s.size);
	gnutls_datum_t r2s = strip(r2.data, r2.size), s2s = strip(s2.data, s2.size);
	if (r2s.size != rs.size || memcmp(r2s.data, rs.data, rs.size) != 0 || s2s.size != ss.size ||
	    memcmp(s2s.data, ss.data, ss.size) != 0) {
		fprintf(stderr, "%s (%zu bytes): decodes to other values\n", what, n);
		failures++;
	}
out:
	free(got);
	gnutls_free(want.data);
	gnutls_free(r2.data);
	gnutls_free(s2.data);
}

int main(void)
{
	/* P-256, P-384, P-521, and the largest it takes (the SEQUENCE's length then needs two
	 * bytes: 0x81 and one) */
	static const size_t sizes[] = {64, 96, 132, 248};
	uint8_t raw[254], *bad = NULL;
	size_t bad_len = 0;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i], h = n / 2;

		for (unsigned k = 0; k < 2000; k++) {
			if (gnutls_rnd(GNUTLS_RND_NONCE, raw, n) < 0)
				return 2;
			/* Every fourth: leading zero bytes in r or s, or the high bit set. */
			switch (k % 8) {
			case 1:
				memset(raw, 0, 1 + k % 3);
				break;
			case 3:
				memset(raw + h, 0, 1 + k % 5);
				break;
			case 5:
				raw[0] |= 0x80, raw[h] |= 0x80;
				break;
			case 7:
				memset(raw, 0, 2), raw[2] |= 0x80;
				break;
			}
			check("random", raw, n);
		}
		memset(raw, 0, n);
		check("all zero", raw, n);
		memset(raw, 0xff, n);
		check("all 0xff", raw, n);
		memset(raw, 0, n);
		raw[h - 1] = 1, raw[n - 1] = 0x80;
		check("r = 1, s = 0x80", raw, n);
	}
	/* What no token returns is refused, not encoded. */
	if (sign_ecdsa_to_der(raw, 0, &bad, &bad_len) != -EINVAL ||
	    sign_ecdsa_to_der(raw, 63, &bad, &bad_len) != -EINVAL ||
	    sign_ecdsa_to_der(raw, 250, &bad, &bad_len) != -EINVAL) {
		fprintf(stderr, "an empty, odd or oversized r||s was encoded\n");
		failures++;
	}
	printf("%u of %u encodings as GnuTLS writes them\n", checked - failures, checked);
	return failures ? 1 : 0;
}
