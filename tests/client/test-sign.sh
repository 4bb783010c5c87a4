#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The agent's signatures for RSA (PKCS#1 v1.5 and PSS), ECDSA P-256 and Ed25519 keys verify,
# and the deterministic ones equal GnuTLS signing in-process with the same token key.
. "$CERTAGENT_SRC/tests/lib/harness.sh"
h_token demo
h_keygen demo rsa2048 rsa 01
h_keygen demo p256 ec 02
h_keygen demo ed25519 ed 03
h_ca
h_client_cert demo rsa 01 "CN=alice-rsa,O=certagent tests"
h_client_cert demo ec 02 "CN=alice-ec,O=certagent tests"
h_client_cert demo ed 03 "CN=alice-ed,O=certagent tests"
h_agent
h_unlock demo
"$CERTAGENT_BUILD/tests/client/test-sign" "$H_SOFTHSM" "$H_PIN" >"$H_TMP/test-sign.log" 2>&1 ||
	{ cat "$H_TMP/test-sign.log" >&2; h_fail "test-sign failed"; }
cat "$H_TMP/test-sign.log"
for t in rsa_pkcs1_sha256 ed25519; do
	grep -q "^ok .* $t: agent signature == GnuTLS in-process" "$H_TMP/test-sign.log" ||
		h_fail "no determinism check for $t"
done
grep -q "ecdsa_secp256r1_sha256: verifies" "$H_TMP/test-sign.log" || h_fail "ECDSA not checked"
