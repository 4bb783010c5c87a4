#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the test harness itself, without certagent: every key type the interop matrix uses is
# generated on a SoftHSM token, certified by the test CA and used in-process by gnutls-cli (the
# PKCS#11 key through GnuTLS's own PKCS#11 support) against gnutls-serv and openssl s_server
# with TLS 1.2 and 1.3. Each server must report the client certificate subject and the
# signature algorithm we expect. When this fails, the interop tests cannot be trusted either.
#
# Usage: harness-selftest.sh [KEYTYPE...]   (default: all)

. "${CERTAGENT_SRC:-$(dirname "$0")/../..}/tests/lib/harness.sh"

types=${*:-rsa2048 rsa3072 p256 p384 ed25519}

h_ca
h_token selftest
i=0
for t in $types; do
	i=$((i + 1))
	id=$(printf '%02x' "$i")
	h_keygen selftest "$t" "key-$t" "$id"
	h_client_cert selftest "key-$t" "$id" "CN=selftest $t,O=certagent tests"
done

# Refuses an unverified client: with the untrusted CA the handshake must fail.
h_gnutls_serv --cafile "$H_TMP/ca/other-root.pem"
export GNUTLS_PIN=$H_PIN
if echo x | gnutls-cli --provider="$H_SOFTHSM" --x509cafile "$H_TMP/ca/root.pem" \
	--x509keyfile "$(h_key_uri selftest key-p256)" \
	--x509certfile "$H_TMP/ca/key-p256-chain.pem" -p "$H_PORT" localhost \
	>"$H_TMP/cli.log" 2>&1; then
	h_fail "gnutls-serv accepted a client whose CA it does not trust"
fi
[ -z "$(h_server_subjects)" ] || h_fail "h_server_subjects reports a refused client"
h_serv_stop

expect_sig() { # SERVER KEYTYPE VERSION -> ERE for h_assert_server_sig
	case $1:$2:$3 in
	gnutls:rsa*:1.2) echo 'RSA-SHA(256|384|512)' ;;
	gnutls:rsa*:1.2pss) echo 'RSA-PSS-RSAE-SHA(256|384|512)' ;;
	gnutls:rsa*:1.3) echo 'RSA-PSS-RSAE-SHA(256|384|512)' ;;
	gnutls:p256:1.3) echo 'ECDSA-SECP256R1-SHA256' ;;
	gnutls:p384:1.3) echo 'ECDSA-SECP384R1-SHA384' ;;
	gnutls:p*:1.2) echo 'ECDSA-SHA(256|384|512)' ;;
	gnutls:ed25519:*) echo 'EdDSA-Ed25519' ;;
	openssl:rsa*:1.2) echo 'RSA\+SHA(256|384|512)' ;;
	openssl:rsa*:1.2pss) echo 'RSA-PSS\+SHA(256|384|512)' ;;
	openssl:rsa*:1.3) echo 'RSA-PSS\+SHA(256|384|512)' ;;
	openssl:p*:*) echo 'ECDSA\+SHA(256|384)' ;;
	openssl:ed25519:*) echo '[Ee]d25519\+UNDEF' ;;
	esac
}

for serv in gnutls openssl; do
	for v in 1.2 1.2pss 1.3; do
		for t in $types; do
			case $v in
			1.2) "h_${serv}_serv" --tls1.2 --client-rsa pkcs1 ;;
			1.2pss) [ "${t#rsa}" != "$t" ] || continue
				"h_${serv}_serv" --tls1.2 --client-rsa pss ;;
			1.3) "h_${serv}_serv" --tls1.3 ;;
			esac
			echo "hello $t" | gnutls-cli --provider="$H_SOFTHSM" \
				--x509cafile "$H_TMP/ca/root.pem" \
				--x509keyfile "$(h_key_uri selftest "key-$t")" \
				--x509certfile "$H_TMP/ca/key-$t-chain.pem" \
				-p "$H_PORT" localhost >"$H_TMP/cli.log" 2>&1 ||
				{ cat "$H_TMP/cli.log"; h_fail "gnutls-cli $t against $serv TLS $v"; }
			h_assert_server_saw "CN=selftest $t,O=certagent tests"
			h_assert_server_version "TLS${v%pss}"
			h_assert_server_sig "$(expect_sig "$serv" "$t" "$v")"
			echo "ok $serv TLS$v $t: $(h_server_sigs | head -n 1)"
			h_serv_stop
		done
	done
done

# The private bus answers, and nobody owns the agent's name on it.
h_bus
dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply --dest=org.freedesktop.DBus \
	/org/freedesktop/DBus org.freedesktop.DBus.GetId >/dev/null || h_fail "private bus does not answer"
! h_name_has_owner org.certagent.Agent1 || h_fail "org.certagent.Agent1 owned on a fresh bus"
echo "ok private bus $DBUS_SESSION_BUS_ADDRESS"
