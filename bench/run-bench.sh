#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-bench.sh [CERTAGENT-BENCH-OPTION...]: sets up what certagent-bench measures and runs it.
# Everything is real and throwaway, made by tests/lib/harness.sh exactly as the tests make it:
# a SoftHSM token "bench" with a P-256 key "ec" (id 01) and an RSA-2048 key "rsa" (id 02)
# generated on it, their certificates (issued by the test intermediate, stored on the token),
# a software P-256 key + certificate in PEM files from the same CA (the file baseline), a
# private dbus-daemon and certagentd with the token unlocked (its module in a helper process,
# isolation = process), and a second bus + certagentd with the module inside it (isolation =
# none) for the isolation row. All of it is removed on exit.
#
# Needs CERTAGENT_BUILD (build root) and CERTAGENT_SRC (source root); scripts/bench sets both.
# The table goes to stdout, progress and failures to stderr.

: "${CERTAGENT_BUILD:?set CERTAGENT_BUILD to the build directory (or use scripts/bench)}"
: "${CERTAGENT_SRC:?set CERTAGENT_SRC to the source directory (or use scripts/bench)}"

# shellcheck source=SCRIPTDIR/../tests/lib/harness.sh
. "$CERTAGENT_SRC/tests/lib/harness.sh"

bench=$CERTAGENT_BUILD/bench/certagent-bench
# The uninstalled helper that runs isolated modules (pkcs11/remote.c).
export CERTAGENT_PKCS11_HELPER=${CERTAGENT_PKCS11_HELPER:-$CERTAGENT_BUILD/pkcs11/certagent-pkcs11-helper}
[ -x "$bench" ] || h_fail "certagent-bench not built: $bench"

token=bench
h_token "$token"
h_keygen "$token" p256 ec 01
h_keygen "$token" rsa2048 rsa 02
h_ca
h_client_cert "$token" ec 01 "CN=bench P-256 on token,O=certagent bench"
h_client_cert "$token" rsa 02 "CN=bench RSA-2048 on token,O=certagent bench"

# The file baseline: a software key, issued by the same intermediate as the token keys.
ca=$H_TMP/ca
bench_certtool() {
	certtool "$@" >>"$ca/bench-certtool.log" 2>&1 ||
		{ cat "$ca/bench-certtool.log" >&2; h_fail "certtool $1 failed"; }
}
bench_certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$ca/pem.key"
printf '%s\n' 'dn = "CN=bench P-256 in a file,O=certagent bench"' 'serial = 9001' \
	'expiration_days = 30' tls_www_client signing_key >"$ca/pem.tmpl"
bench_certtool --generate-certificate --load-privkey "$ca/pem.key" \
	--load-ca-certificate "$ca/inter.pem" --load-ca-privkey "$ca/inter.key" \
	--template "$ca/pem.tmpl" --outfile "$ca/pem.pem"
cat "$ca/pem.pem" "$ca/inter.pem" >"$ca/pem-chain.pem"

# The agent compared with: its module in-process, on a bus of its own.
h_bus
H_AGENT_CONF=$H_TMP/agent-inproc.conf H_AGENT_LOG=$H_TMP/agent-inproc.log h_agent "isolation = none"
h_unlock "$token"
inproc_address=$DBUS_SESSION_BUS_ADDRESS

# The agent measured: its module in certagent-pkcs11-helper.
unset DBUS_SESSION_BUS_ADDRESS
h_bus
h_agent "isolation = process"
h_unlock "$token"

# The in-process baseline logs in itself, with the same PIN.
pin_file=$H_TMP/bench.pin
(umask 077 && printf '%s\n' "$H_PIN" >"$pin_file")

"$bench" --token "$token" --pin-file "$pin_file" --module "$H_SOFTHSM" \
	--ec-label ec --ec-chain "$ca/ec-chain.pem" \
	--rsa-label rsa --rsa-chain "$ca/rsa-chain.pem" \
	--pem-key "$ca/pem.key" --pem-chain "$ca/pem-chain.pem" \
	--ca "$ca/root.pem" --server-cert "$ca/server.pem" --server-key "$ca/server.key" \
	--address "$DBUS_SESSION_BUS_ADDRESS" --compare-address "$inproc_address" "$@"
