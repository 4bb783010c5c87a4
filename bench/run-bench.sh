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
# none) for the isolation rows. For the issue's cases also: `p11-kit server` exporting the
# token (P1: p11-kit-client.so in the bench), a token "slow" behind the fault module
# (tests/fault, mode=slow:500) served by a third agent (P4), and a fourth bus that starts
# certagentd by D-Bus activation with a PIN file (P5). All of it is removed on exit.
#
# Needs CERTAGENT_BUILD (build root) and CERTAGENT_SRC (source root); scripts/bench sets both.
# CERTAGENT_BENCH_BUSY_POLL=N sets busy-poll = N for the two measured agents (0: off), to
# compare with and without it (docs/performance.md); CERTAGENT_BENCH_WORKERS=N sets workers = N
# for them the same way; CERTAGENT_BENCH_SIGN_AHEAD=no sets sign-ahead = no for the agent measured
# (isolation = process; CERTAGENT_BENCH_ISOLATION=none runs it with its module in-process).
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
# P4's slow token: every token exists before any module is initialised (SoftHSM).
slow=slow
h_token "$slow"
h_keygen "$slow" p256 ec 01
h_ca
# First: it writes $H_TMP/ca/ec-chain.pem too, which the "bench" key's certificate replaces.
h_client_cert "$slow" ec 01 "CN=bench P-256 on the slow token,O=certagent bench"
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
H_AGENT_CONF=$H_TMP/agent-inproc.conf H_AGENT_LOG=$H_TMP/agent-inproc.log h_agent "isolation = none" ${CERTAGENT_BENCH_BUSY_POLL:+"busy-poll = $CERTAGENT_BENCH_BUSY_POLL"} \
	${CERTAGENT_BENCH_WORKERS:+"workers = $CERTAGENT_BENCH_WORKERS"}
h_unlock "$token"
inproc_address=$DBUS_SESSION_BUS_ADDRESS

# The agent measured: its module in certagent-pkcs11-helper.
unset DBUS_SESSION_BUS_ADDRESS
h_bus
h_agent "isolation = ${CERTAGENT_BENCH_ISOLATION:-process}" ${CERTAGENT_BENCH_BUSY_POLL:+"busy-poll = $CERTAGENT_BENCH_BUSY_POLL"} \
	${CERTAGENT_BENCH_WORKERS:+"workers = $CERTAGENT_BENCH_WORKERS"} \
	${CERTAGENT_BENCH_SIGN_AHEAD:+"sign-ahead = $CERTAGENT_BENCH_SIGN_AHEAD"}
h_unlock "$token"

agent_pid=$H_AGENT_PID
address=$DBUS_SESSION_BUS_ADDRESS

# The in-process baseline logs in itself, with the same PIN.
pin_file=$H_TMP/bench.pin
(umask 077 && printf '%s\n' "$H_PIN" >"$pin_file")

# bench_bus NAME LISTEN [XML-LINE...]: another private bus (h_bus) beside the measured agent's;
# its address is in $bench_bus_address, DBUS_SESSION_BUS_ADDRESS stays the measured agent's.
bench_bus() {
	local keep=$DBUS_SESSION_BUS_ADDRESS name=$1 listen=$2
	shift 2
	H_BUS_CONF=$H_TMP/$name.conf H_BUS_LISTEN=$listen h_bus "$@"
	bench_bus_address=$DBUS_SESSION_BUS_ADDRESS
	DBUS_SESSION_BUS_ADDRESS=$keep
}

# P1: p11-kit's own forwarding of the same token.
p11kit_args=()
p11kit_client=$(pkg-config --variable=p11_module_path p11-kit-1 2>/dev/null ||
	echo /usr/lib/x86_64-linux-gnu/pkcs11)/p11-kit-client.so
if [ -f "$p11kit_client" ] && command -v p11-kit >/dev/null; then
	p11-kit server -f --provider "$H_SOFTHSM" -n "$H_TMP/p11kit.sock" "pkcs11:token=$token" \
		</dev/null >>"$H_TMP/p11kit.log" 2>&1 &
	h_track $!
	h_wait_until 10 test -S "$H_TMP/p11kit.sock" || h_fail "p11-kit server did not start"
	export P11_KIT_SERVER_ADDRESS=unix:path=$H_TMP/p11kit.sock
	p11kit_args=(--p11kit-module "$p11kit_client")
else
	h_log "no p11-kit-client.so or p11-kit: the P1 p11-kit rows are left out"
fi

# P4: a third agent whose module is the fault module around SoftHSM; only "slow" is slow.
fault=$CERTAGENT_BUILD/tests/fault/certagent-fault-pkcs11.so
slow_args=()
if [ -f "$fault" ]; then
	printf 'mode=slow:500\ntoken=%s\n' "$slow" >"$H_TMP/fault.ctl"
	printf '[agent]\nregistered-modules = no\npinentry = none\n[module fault]\npath = %s\n' \
		"$fault" >"$H_TMP/agent-slow.conf"
	printf '[pin-source all]\ntoken = pkcs11:\nfile = %s\n' "$pin_file" >>"$H_TMP/agent-slow.conf"
	bench_bus bus-slow "unix:dir=$H_TMP"
	slow_address=$bench_bus_address
	CERTAGENT_FAULT_CTL=$H_TMP/fault.ctl "$H_CERTAGENTD" --config "$H_TMP/agent-slow.conf" \
		--address "$slow_address" --foreground </dev/null >>"$H_TMP/agent-slow.log" 2>&1 &
	h_track $!
	DBUS_SESSION_BUS_ADDRESS=$slow_address h_wait_until 10 h_name_has_owner org.certagent.Agent1 ||
		h_fail "the P4 agent did not start: $(tail -5 "$H_TMP/agent-slow.log")"
	slow_args=(--slow-address "$slow_address" --slow-token "$slow")
else
	h_log "no fault module ($fault): the P4 rows are left out"
fi

# P5: a bus that starts the agent by D-Bus activation, with the PIN in a file.
act_sock=$H_TMP/bus-act.sock
mkdir -p "$H_TMP/services"
printf '[agent]\nregistered-modules = no\npinentry = none\n[module softhsm]\npath = %s\n' \
	"$H_SOFTHSM" >"$H_TMP/agent-act.conf"
printf '[pin-source bench]\ntoken = pkcs11:token=%s\nfile = %s\n' "$token" "$pin_file" \
	>>"$H_TMP/agent-act.conf"
printf '[D-BUS Service]\nName=org.certagent.Agent1\nExec=%s --foreground --config %s --address unix:path=%s\n' \
	"$H_CERTAGENTD" "$H_TMP/agent-act.conf" "$act_sock" >"$H_TMP/services/org.certagent.Agent1.service"
bench_bus bus-act "unix:path=$act_sock" "<servicedir>$H_TMP/services</servicedir>"
act_address=$bench_bus_address

"$bench" --token "$token" --pin-file "$pin_file" --module "$H_SOFTHSM" \
	--ec-label ec --ec-chain "$ca/ec-chain.pem" \
	--rsa-label rsa --rsa-chain "$ca/rsa-chain.pem" \
	--pem-key "$ca/pem.key" --pem-chain "$ca/pem-chain.pem" \
	--ca "$ca/root.pem" --server-cert "$ca/server.pem" --server-key "$ca/server.key" \
	--address "$address" --compare-address "$inproc_address" --agent-pid "$agent_pid" \
	--activation-address "$act_address" "${p11kit_args[@]}" "${slow_args[@]}" "$@"
