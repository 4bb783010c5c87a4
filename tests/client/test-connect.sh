#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-connect.sh KEY-TYPE TLS-VERSION SERVER: `certagent connect` presents the agent's
# identity (chosen automatically from the server's CA list) to a real server that requires and
# verifies client certificates; the server saw our subject, data flows both ways, exit 0.
. "$CERTAGENT_SRC/tests/lib/harness.sh"
kt=${1:-p256} ver=${2:-1.3} serv=${3:-gnutls}

h_token demo
h_keygen demo "$kt" alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_agent
h_unlock demo
case $serv in
gnutls) h_gnutls_serv "--tls$ver" ;;
openssl) h_openssl_serv "--tls$ver" ;;
esac

st=0
printf 'hello certagent\n' | timeout 30 "$H_CERTAGENT" connect --verbose \
	--cafile "$H_TMP/ca/root.pem" "localhost:$H_PORT" >"$H_TMP/out" 2>"$H_TMP/err" || st=$?
cat "$H_TMP/err" >&2
[ "$st" = 0 ] || h_fail "certagent connect exited $st"
case $serv in
gnutls) grep -qx 'hello certagent' "$H_TMP/out" || h_fail "no echo: $(cat "$H_TMP/out")" ;;
openssl) grep -qx 'tnegatrec olleh' "$H_TMP/out" || h_fail "no answer: $(cat "$H_TMP/out")" ;;
esac
h_assert_server_saw "CN=alice,O=certagent tests"
h_assert_server_version "TLS$ver"
grep -q '^- identity offered: pkcs11:.*(CN=alice,O=certagent tests)' "$H_TMP/err" ||
	h_fail "--verbose did not name the identity"
grep -q '^- the agent signed the handshake' "$H_TMP/err" || h_fail "--verbose did not say the agent signed"
grep -q "^- negotiated (TLS$ver)" "$H_TMP/err" || h_fail "--verbose did not give the version"
grep -q '^- server certificate: CN=localhost' "$H_TMP/err" || h_fail "--verbose did not name the server"
echo "ok: $kt TLS$ver $serv: $(h_server_sigs | head -n 1)"
