#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# lanes-test.sh CASE FAULT-MODULE: the lanes between certagentd and an isolated module's
# certagent-pkcs11-helper (pkcs11/remote.c): each concurrent call has a socket and a helper
# thread of its own, so calls on one module run in parallel in its helper, and one that is
# stuck holds only its own lane until the timeout ends the helper.
#
# The module is tests/fault's module over SoftHSM (faults commanded through its control file),
# with tokens A and B in the same token folder, so both are served by the same helper process.
#
# Cases (one meson test each):
#   parallel  with mode=slow:500 on A, two Signs on A at once: both enter C_Sign before the
#             first leaves it (the fault module's trace shows the order), both verify, and the
#             helper holds a lane socket for each
#   hang      C_Sign on A never returns: a Sign on B, in the same helper, still signs meanwhile;
#             after module-timeout the hung Sign gets TokenAbsent, the helper is restarted and
#             B signs again after Unlock
. "$CERTAGENT_SRC/tests/lib/harness.sh"

[ $# = 2 ] || h_fail "usage: lanes-test.sh CASE FAULT-MODULE"
CASE=$1
FAULT_MODULE=$2
[ -f "$FAULT_MODULE" ] || h_fail "fault module not built: $FAULT_MODULE"
[ -x "${CERTAGENT_PKCS11_HELPER:-}" ] || h_fail "CERTAGENT_PKCS11_HELPER is not the built helper"
h_need_py

CTL=$H_TMP/fault.ctl
TRACE=$H_TMP/fault-trace.log
export CERTAGENT_FAULT_CTL=$CTL CERTAGENT_FAULT_LOG=$TRACE CERTAGENT_FAULT_REAL=$H_SOFTHSM
SCHEME=ecdsa_secp256r1_sha256
ERR=org.certagent.Error

# l_ctl LINE...: a new command for the fault module, written whole (rename).
l_ctl() {
	printf '%s\n' "$@" >"$CTL.new"
	mv -f "$CTL.new" "$CTL"
}

l_traced() { grep -qxF -- "$1" "$TRACE" 2>/dev/null; }

# l_sign TOKEN OUT: Sign the 32-byte hash with key k<TOKEN>; "ERROR name: message", status 3
# on a D-Bus error.
l_sign() { h_ctl sign "$(h_key_uri "$1" "k$1")" "$SCHEME" "$H_TMP/hash" "$2"; }

l_expect_sign_ok() { # TOKEN [OUT]
	local out sig=${2:-$H_TMP/sig-$1}
	out=$(l_sign "$1" "$sig") || h_fail "Sign on token $1 failed: $out"
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/$1.pub" -in "$H_TMP/hash" -sigfile "$sig" \
		>"$H_TMP/verify.log" 2>&1 ||
		{ cat "$H_TMP/verify.log" >&2; h_fail "signature by token $1 does not verify"; }
}

l_unlock() {
	local out
	out=$(h_ctl unlock "pkcs11:token=$1" "$H_PIN") || h_fail "Unlock of token $1 failed: $out"
}

# l_helper_pid: the pid of the agent's helper for module softhsm (empty if none).
l_helper_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(awk '{ print $4 }' "$p/stat" 2>/dev/null)" = "$H_AGENT_PID" ] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "certagent-pkcs11-helper .*--name softhsm *$" &&
			{ echo "${p#/proc/}"; return 0; }
	done
	return 0
}

l_helper_changed() { # OLD-PID: a helper runs and it is not OLD-PID
	local now
	now=$(l_helper_pid)
	[ -n "$now" ] && [ "$now" != "$1" ]
}

l_has_identity() {
	h_ctl identities | "$H_PY" -c 'import json, sys
sys.exit(0 if any(";object=k%s;" % sys.argv[1] in i["uri"] for i in json.load(sys.stdin)) else 1)' "$1"
}

# Tokens A and B (P-256 keys kA, kB) behind the fault module, isolated; both unlocked.
l_setup() {
	local real=$H_SOFTHSM t
	for t in A B; do
		h_token "$t"
		h_keygen "$t" p256 "k$t" 01
		cp "$H_TMP/keygen.pub" "$H_TMP/$t.pub"
	done
	head -c 32 /dev/urandom >"$H_TMP/hash"
	l_ctl mode=present
	H_SOFTHSM=$FAULT_MODULE
	h_agent "isolation = process" "poll-interval = 1" "$@"
	H_SOFTHSM=$real
	HELPER_PID=$(l_helper_pid)
	[ -n "$HELPER_PID" ] || h_fail "the fault module does not run in a helper"
	for t in A B; do
		l_has_identity "$t" || h_fail "the agent does not list token $t's key: $(h_ctl identities)"
		l_unlock "$t"
		l_expect_sign_ok "$t"
	done
}

case_parallel() {
	local p1 p2 st1=0 st2=0 order lanes
	l_setup
	l_ctl mode=slow:500 token=A
	: >"$TRACE"
	l_sign A "$H_TMP/sig-1" >"$H_TMP/s1.out" 2>&1 &
	p1=$!
	h_track "$p1"
	l_sign A "$H_TMP/sig-2" >"$H_TMP/s2.out" 2>&1 &
	p2=$!
	h_track "$p2"
	wait "$p1" || st1=$?
	h_untrack "$p1"
	wait "$p2" || st2=$?
	h_untrack "$p2"
	[ "$st1" = 0 ] && [ "$st2" = 0 ] ||
		h_fail "parallel Signs failed ($st1, $st2): $(cat "$H_TMP/s1.out" "$H_TMP/s2.out")"
	for s in 1 2; do
		openssl pkeyutl -verify -pubin -inkey "$H_TMP/A.pub" -in "$H_TMP/hash" \
			-sigfile "$H_TMP/sig-$s" >/dev/null 2>&1 || h_fail "signature $s does not verify"
	done
	# Overlap: the second C_Sign started before the first one ended (each takes 500 ms).
	order=$(grep -E '^sign-slow(-end)? A' "$TRACE" | sed 's/ [0-9]*$//' | tr '\n' ,)
	h_log "fault module trace: $order"
	[ "$order" = "sign-slow A,sign-slow A,sign-slow-end A,sign-slow-end A," ] ||
		h_fail "the two Signs on A did not overlap in the helper: $order"
	# Both ran in the same helper, each on a lane of its own (sockets besides fd 3).
	[ "$(l_helper_pid)" = "$HELPER_PID" ] || h_fail "the helper changed"
	lanes=$(find "/proc/$HELPER_PID/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' | wc -l)
	[ "$lanes" -ge 3 ] || h_fail "the helper has $lanes sockets: expected fd 3 and two lanes at least"
	l_expect_sign_ok B
}

case_hang() {
	local hung st=0 out
	l_setup "module-timeout = 3"
	l_ctl mode=hang token=A
	l_sign A "$H_TMP/sig-hung" >"$H_TMP/hung.out" 2>&1 &
	hung=$!
	h_track "$hung"
	h_wait_until 10 l_traced "sign-hang A" || h_fail "the Sign on A never reached C_Sign"
	# A's call holds one lane of the helper; B, same module, same helper, signs on another.
	l_expect_sign_ok B
	[ "$(l_helper_pid)" = "$HELPER_PID" ] || h_fail "the helper changed while A hangs"
	kill -0 "$hung" 2>/dev/null || h_fail "the hung Sign returned early: $(cat "$H_TMP/hung.out")"
	wait "$hung" || st=$?
	h_untrack "$hung"
	[ "$st" = 3 ] && grep -q "^ERROR $ERR.TokenAbsent: " "$H_TMP/hung.out" ||
		h_fail "the hung Sign on A: expected TokenAbsent, got $st: $(cat "$H_TMP/hung.out")"
	grep -q 'module softhsm: helper process [0-9]* did not answer within 3000 ms' "$H_AGENT_LOG" ||
		h_fail "the agent's log does not name the timeout"
	l_traced "sign-hang-end A" && h_fail "A's C_Sign returned: the helper was not killed"
	l_ctl mode=present
	h_wait_until 15 l_helper_changed "$HELPER_PID" || h_fail "the helper was not restarted"
	h_wait_until 15 l_has_identity B || h_fail "B's identity did not come back"
	out=$(l_sign B "$H_TMP/sig-B") && h_fail "B signed without a new Unlock: $out"
	l_unlock B
	l_expect_sign_ok B
}

case "$CASE" in
parallel) case_parallel ;;
hang) case_hang ;;
*) h_fail "unknown case $CASE" ;;
esac
h_log "lanes $CASE: ok"
