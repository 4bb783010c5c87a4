#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# examples/mtls-client works as its comment says: the server verifies the agent's identity
# and echoes the line back.
. "$CERTAGENT_SRC/tests/lib/harness.sh"
h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_agent
h_unlock demo
h_gnutls_serv
out=$(timeout 30 "$CERTAGENT_BUILD/examples/mtls-client" localhost "$H_PORT" "hello example" \
	"$H_TMP/ca/root.pem") || h_fail "mtls-client failed"
[ "$out" = "hello example" ] || h_fail "unexpected answer: $out"
h_assert_server_saw "CN=alice,O=certagent tests"
echo ok
