#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-handshakes.sh KEY-TYPE: one libcertagent client runs several mutual-TLS handshakes in a
# row with the same credentials, in TLS 1.2 and in TLS 1.3. The first handshake reads the
# identity's chain; the later ones present it from what the first one kept (credentials.c), so
# this is where a wrong public key, key usage or certificate in that copy would show: every
# handshake must be accepted by a server that verifies the client's chain against the CA, and
# each must have been signed by the agent (one audit line per handshake).
. "$CERTAGENT_SRC/tests/lib/harness.sh"
kt=${1:-p256}
n=5
load=$CERTAGENT_BUILD/tests/security/load-client
[ -x "$load" ] || h_fail "load-client not built: $load"

h_token demo
h_keygen demo "$kt" alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_agent
h_unlock demo
audit=$XDG_STATE_HOME/certagent/audit.jsonl

signed() { grep -c '"decision":"allowed"' "$audit" 2>/dev/null || true; }
for ver in 1.2 1.3; do
	before=$(signed)
	out=$("$load" 1 "$n" "$H_TMP/ca/root.pem" "$H_TMP/ca/server.pem" "$H_TMP/ca/server.key" \
		"$ver" 2>&1) || h_fail "$kt TLS $ver: handshakes failed: $out"
	grep -q "load: 1 clients x $n handshakes: $n ok, 0 failed" <<<"$out" ||
		h_fail "$kt TLS $ver: not every handshake was accepted: $out"
	after=$(signed)
	[ "$((after - before))" = "$n" ] ||
		h_fail "$kt TLS $ver: the agent signed $((after - before)) times for $n handshakes"
	echo "ok: $kt TLS $ver: $n handshakes in a row with one client, each verified by the server and signed by the agent"
done
