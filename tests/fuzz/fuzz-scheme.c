/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-scheme: the agent's check of what a Sign caller asks it to sign (common/scheme.c).
 * Input: one byte choosing a scheme of the table, then the data. Besides "no crash", it checks
 * the promises the agent relies on: an accepted RSA PKCS#1 input is exactly the DigestInfo of
 * the scheme's hash (re-encoding it gives the same bytes); an accepted PSS/ECDSA input is
 * exactly hash_len bytes; an accepted EdDSA input is not empty.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "scheme.h"
#include "util.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n_schemes = 0, off = 0;
	const CaScheme *table = ca_scheme_table(&n_schemes), *s, *by_di;
	gnutls_digest_algorithm_t dig;
	CaError err = {0};
	int r;

	if (size < 1 || n_schemes == 0)
		return 0;
	s = &table[data[0] % n_schemes];
	data++;
	size--;

	/* The name round-trips through the table, as the agent looks schemes up by name. */
	check(ca_scheme_by_name(s->name) == s);

	r = ca_scheme_check_input(s, data, size, &err);
	check(r == 0 || r == CA_E_INVALID_ARGS);
	check(r == 0 || err.message[0]);

	dig = ca_digest_info_parse(data, size, &off);
	by_di = ca_scheme_for_digest_info(data, size);
	check((dig == GNUTLS_DIG_UNKNOWN) == (by_di == NULL));
	if (dig != GNUTLS_DIG_UNKNOWN) {
		_cleanup_free_ uint8_t *again = NULL;
		size_t again_len = 0;

		check(off < size);
		check(by_di->kind == CA_SIG_RSA_PKCS1 && by_di->digest == dig);
		check(size - off == by_di->hash_len);
		check(ca_digest_info_encode(dig, data + off, size - off, &again, &again_len) == 0);
		check(again_len == size && memcmp(again, data, size) == 0);
	}

	if (r == 0) {
		switch (s->kind) {
		case CA_SIG_RSA_PKCS1:
			check(dig == s->digest);
			break;
		case CA_SIG_RSA_PSS:
		case CA_SIG_ECDSA:
			check(size == s->hash_len);
			break;
		case CA_SIG_EDDSA:
			check(size > 0);
			break;
		}
	}
	return 0;
}
