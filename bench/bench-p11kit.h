/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-p11kit: the alternative the agent is measured against in P1 — p11-kit's own
 * forwarding, `p11-kit server` exporting the token and p11-kit-client.so in this process
 * ($P11_KIT_SERVER_ADDRESS says where the server listens). Signs with plain PKCS#11 calls
 * (C_SignInit + C_Sign with CKM_ECDSA), as an application using the forwarded token would.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct BenchP11Kit BenchP11Kit;

/*
 * Loads module (p11-kit-client.so), logs in to the token labelled token with pin and finds
 * the private key labelled key_label. Codes: CA_E_FAILED, CA_E_KEY_NOT_FOUND (err says).
 */
int bench_p11kit_new(const char *module, const char *token, const char *key_label, const char *pin,
		     BenchP11Kit **ret, CaError *err);
BenchP11Kit *bench_p11kit_free(BenchP11Kit *p);

/* One ECDSA signature of hash; r||s into sig (at most *sig_len bytes, updated). */
int bench_p11kit_sign(BenchP11Kit *p, const uint8_t *hash, size_t hash_len, uint8_t *sig,
		      size_t *sig_len, CaError *err);
