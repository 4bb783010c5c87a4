#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# valgrind-test.sh: issue 5 §7, valgrind memcheck on a real integration scenario.
#   1. certagentd under memcheck with isolation = none (SoftHSM loaded into the agent, so the
#      module paths of pkcs11/ are checked too): ListIdentities, wrong-PIN Unlock, Unlock,
#      Sign P-256 / RSA-PSS / Ed25519 (TLS 1.3 framing), `certagent connect` handshakes to
#      gnutls-serv with TLS 1.2 and 1.3 (the first one with the CLI itself under memcheck),
#      `certagent list` under memcheck, Lock, Reload, SIGTERM.
#   2. certagentd (not under valgrind) with isolation = process whose certagent-pkcs11-helper
#      runs under memcheck (CERTAGENT_PKCS11_HELPER points to a wrapper script): Unlock, Sign.
# Fails on any memcheck error (invalid read/write, uninitialised value, ...) and on any
# definitely lost block not suppressed by valgrind.supp (which covers third-party libraries
# only). Prints each process's LEAK SUMMARY. Skips (77) without valgrind or python3-dbus.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

command -v valgrind >/dev/null || h_skip "valgrind is not installed"
# An ASan build cannot run under valgrind (both replace malloc); the sanitizer run of the suite
# checks memory its own way, and the plain build runs this test.
if h_sanitized; then
	h_skip "certagentd is built with AddressSanitizer, which cannot run under valgrind"
fi
h_need_py

SUPP=$CERTAGENT_SRC/tests/security/valgrind.supp
VG="valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
	--error-exitcode=99 --track-fds=no --num-callers=30 --suppressions=$SUPP ${VG_EXTRA:-}"
# VG_EXTRA: more valgrind options, e.g. VG_EXTRA=--show-leak-kinds=definite,possible
# libstdc++ (SoftHSM) without its allocation pools, so memcheck sees each block.
export GLIBCXX_FORCE_NEW=1

# vg_check LOG NAME: the memcheck log has an ERROR SUMMARY of 0 errors (after suppressions).
vg_check() {
	local log=$1 name=$2 n
	[ -s "$log" ] || h_fail "$name: no valgrind log $log"
	sed -n '/LEAK SUMMARY:/,/suppressed:/p' "$log" | sed "s/^==[0-9]*==/$name:/"
	grep -q 'ERROR SUMMARY:' "$log" || { tail -n 40 "$log" >&2; h_fail "$name: valgrind did not finish"; }
	n=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -n 1 | tr -d ,)
	if [ "$n" != 0 ]; then
		cat "$log" >&2
		h_fail "$name: valgrind reports $n error(s), see above"
	fi
	echo "ok: $name: valgrind memcheck clean"
}

# sign SCHEME URI: a Sign call of the agent on a TLS-shaped input.
sign() {
	local scheme=$1 uri=$2 m=$H_TMP/msg
	openssl rand 32 >"$m.hash"
	case $scheme in
	ed25519) { printf '%64s' ''; printf 'TLS 1.3, client CertificateVerify\0'; cat "$m.hash"; } >"$m.in" ;;
	*) cp "$m.hash" "$m.in" ;;
	esac
	rm -f "$m.sig"
	h_ctl sign "$uri" "$scheme" "$m.in" "$m.sig" server-name=s:localhost >"$H_TMP/out" ||
		h_fail "Sign $scheme failed: $(cat "$H_TMP/out")"
	[ -s "$m.sig" ] || h_fail "Sign $scheme gave no signature"
	h_log "Sign $scheme: $(wc -c <"$m.sig") bytes"
}

# stop_vg_agent: SIGTERM, then up to 180 s for the agent to exit and valgrind to check leaks.
stop_vg_agent() {
	local pid=$H_AGENT_PID st=0
	kill -TERM "$pid"
	for _ in $(seq 1800); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && h_fail "certagentd under valgrind did not exit within 180 s of SIGTERM"
	wait "$pid" || st=$?
	h_untrack "$pid"
	H_AGENT_PID=
	echo "certagentd under valgrind exited with status $st"
	[ "$st" = 0 ] || [ "$st" = 99 ] || { tail -n 30 "$H_AGENT_LOG" >&2; h_fail "certagentd exited with $st"; }
}

h_token demo
h_keygen demo p256 ec 01
h_keygen demo rsa2048 rsa 02
h_keygen demo ed25519 ed 03
h_ca
h_client_cert demo ec 01 "CN=ec,O=certagent tests"
h_client_cert demo rsa 02 "CN=rsa,O=certagent tests"
h_client_cert demo ed 03 "CN=ed,O=certagent tests"
h_bus

# --- 1. the agent under memcheck, module in its process ----------------------------------------
# shellcheck disable=SC2086 # $VG is a list of words
H_AGENT_WRAPPER="$VG --log-file=$H_TMP/vg-agent.log" H_AGENT_WAIT=120 \
	h_agent "isolation = none" "module-timeout = 300"
h_ctl identities >"$H_TMP/ids.json" || h_fail "ListIdentities failed: $(cat "$H_TMP/ids.json")"
h_log "ListIdentities: $(grep -c '"uri"' "$H_TMP/ids.json") identities"
out=$(h_ctl unlock pkcs11:token=demo 9999) && h_fail "a wrong PIN was accepted"
h_log "wrong PIN: $out"
h_ctl unlock pkcs11:token=demo "$H_PIN" >"$H_TMP/out" || h_fail "Unlock failed: $(cat "$H_TMP/out")"
sign ecdsa_secp256r1_sha256 "$(h_key_uri demo ec)"
sign rsa_pss_rsae_sha256 "$(h_key_uri demo rsa)"
sign ed25519 "$(h_key_uri demo ed)"

# The CLI under memcheck: one TLS 1.3 handshake and `certagent list`.
h_gnutls_serv --tls1.3
# shellcheck disable=SC2086
printf 'ping from valgrind\n' | timeout 300 $VG --log-file="$H_TMP/vg-connect.log" \
	"$H_CERTAGENT" connect --cafile "$H_TMP/ca/root.pem" "localhost:$H_PORT" \
	>"$H_TMP/connect.out" 2>"$H_TMP/connect.err" || st=$?
[ "${st:-0}" = 0 ] || [ "${st:-0}" = 99 ] || { cat "$H_TMP/connect.err" >&2; h_fail "certagent connect (TLS 1.3) failed: ${st:-0}"; }
grep -qx 'ping from valgrind' "$H_TMP/connect.out" ||
	{ cat "$H_TMP/connect.err" >&2; h_fail "no echo over TLS 1.3 through the agent"; }
h_assert_server_version TLS1.3
h_serv_stop
st=0
# shellcheck disable=SC2086
timeout 300 $VG --log-file="$H_TMP/vg-list.log" "$H_CERTAGENT" list >"$H_TMP/list.out" 2>&1 || st=$?
[ "$st" = 0 ] || [ "$st" = 99 ] || { cat "$H_TMP/list.out" >&2; h_fail "certagent list failed: $st"; }

# A TLS 1.2 handshake (CLI natively, agent still under memcheck).
h_gnutls_serv --tls1.2
printf 'ping 1.2\n' | timeout 120 "$H_CERTAGENT" connect --cafile "$H_TMP/ca/root.pem" \
	"localhost:$H_PORT" >"$H_TMP/connect12.out" 2>"$H_TMP/connect12.err" ||
	{ cat "$H_TMP/connect12.err" >&2; h_fail "certagent connect (TLS 1.2) failed"; }
grep -qx 'ping 1.2' "$H_TMP/connect12.out" || h_fail "no echo over TLS 1.2 through the agent"
h_assert_server_version TLS1.2
h_serv_stop

h_ctl lock >"$H_TMP/out" || h_fail "Lock failed: $(cat "$H_TMP/out")"
h_ctl reload >"$H_TMP/out" || h_fail "Reload failed: $(cat "$H_TMP/out")"
h_ctl identities >/dev/null || h_fail "ListIdentities after Reload failed"
stop_vg_agent

vg_check "$H_TMP/vg-agent.log" certagentd
vg_check "$H_TMP/vg-connect.log" "certagent connect"
vg_check "$H_TMP/vg-list.log" "certagent list"

# --- 2. the PKCS#11 helper under memcheck (isolation = process) --------------------------------
helper=${CERTAGENT_PKCS11_HELPER:-$CERTAGENT_BUILD/pkcs11/certagent-pkcs11-helper}
if [ -x "$helper" ]; then
	cat >"$H_TMP/helper-wrapper" <<EOF
#!/bin/sh
exec $(printf '%s' "$VG" | tr -s '\t\n' '  ') --log-file=$H_TMP/vg-helper.%p.log "$helper" "\$@"
EOF
	chmod +x "$H_TMP/helper-wrapper"
	CERTAGENT_PKCS11_HELPER=$H_TMP/helper-wrapper H_AGENT_WAIT=120 \
		h_agent "isolation = process" "module-timeout = 300"
	h_ctl unlock pkcs11:token=demo "$H_PIN" >"$H_TMP/out" || h_fail "Unlock (helper) failed: $(cat "$H_TMP/out")"
	sign ecdsa_secp256r1_sha256 "$(h_key_uri demo ec)"
	sign ed25519 "$(h_key_uri demo ed)"
	h_agent_stop
	found=0
	for log in "$H_TMP"/vg-helper.*.log; do
		[ -f "$log" ] || continue
		found=1
		# The agent gives a stopping helper 2 s (REMOTE_STOP_GRACE_MS) before SIGKILL; under
		# valgrind its exit may not make it, then only the errors logged so far are checked.
		if grep -q 'ERROR SUMMARY:' "$log"; then
			vg_check "$log" certagent-pkcs11-helper
		elif grep -qE '^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination)' "$log"; then
			cat "$log" >&2
			h_fail "certagent-pkcs11-helper: valgrind reports errors"
		else
			echo "ok: certagent-pkcs11-helper: no memcheck errors (stopped before its leak check)"
		fi
	done
	[ "$found" = 1 ] || h_fail "the helper never ran under valgrind"
fi
echo "ok: valgrind memcheck found nothing in certagent's code"
