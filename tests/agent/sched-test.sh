#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sched-test.sh SCHED-SLICE: the agent's scheduler-slice key (agent/main.c,
# sched_short_slice()). By default every thread of certagentd and of its module helper runs with
# a 100 us time slice (so a request preempts a busy CPU instead of waiting behind it), and
# signatures work; scheduler-slice = 2000 gives 2 ms; 0 leaves the slice the agent was started
# with (its parent's); values outside 100 to 100000 are refused with the key's name and range.
# Skipped on kernels without custom slices (before Linux 6.12).
. "$CERTAGENT_SRC/tests/lib/harness.sh"
h_need_py

[ $# = 1 ] || h_fail "usage: sched-test.sh SCHED-SLICE"
slice=$1
[ -x "$slice" ] || h_fail "sched-slice not built: $slice"

probe=$("$slice" probe) || h_fail "sched-slice probe failed"
[ "$probe" = 100000 ] ||
	h_skip "this kernel keeps its own time slices (reported $probe ns; custom slices need Linux 6.12)"
own=$("$slice" $$ | awk -v t=$$ '$1 == t {print $3}')

h_token demo
h_keygen demo p256 client 01
h_ca
h_client_cert demo client 01 "CN=alice,O=certagent tests"
URI=$(h_key_uri demo client)
openssl x509 -in "$H_TMP/ca/client.pem" -pubkey -noout >"$H_TMP/pub.pem" ||
	h_fail "no public key in $H_TMP/ca/client.pem"

# s_check NAME NS: every thread of the agent and of its helper has a slice of NS; a signature
# through the helper verifies.
s_check() {
	local name=$1 want=$2 m=$H_TMP/msg-$1 helper out bad n
	h_unlock demo
	printf 'TLS 1.3, client CertificateVerify %s\n' "$name" >"$m"
	openssl dgst -sha256 -binary "$m" >"$m.hash"
	h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$m.hash" "$m.sig" >"$H_TMP/out" ||
		h_fail "$name: the agent did not sign: $(cat "$H_TMP/out")"
	openssl dgst -sha256 -verify "$H_TMP/pub.pem" -signature "$m.sig" "$m" >"$H_TMP/out" 2>&1 ||
		h_fail "$name: the signature does not verify: $(cat "$H_TMP/out")"
	helper=$(pgrep -P "$H_AGENT_PID" -f certagent-pkcs11-helper | tr '\n' ' ')
	[ -n "$helper" ] || h_fail "$name: no module helper under the agent"
	# shellcheck disable=SC2086 # a list of pids
	out=$("$slice" "$H_AGENT_PID" $helper) || h_fail "$name: cannot read the threads' slices"
	n=$(wc -l <<<"$out")
	bad=$(awk -v w="$want" '$3 != w' <<<"$out")
	[ -z "$bad" ] || h_fail "$name: threads without a $want ns slice: $(tr '\n' ';' <<<"$bad")"
	[ "$n" -ge 4 ] || h_fail "$name: only $n threads found: $out"
	h_log "$name: $n threads of the agent and its helper at $want ns"
}

H_AGENT_LOG=$H_TMP/agent-default.log
h_agent "isolation = process" "log-level = debug"
s_check default 100000
grep -q 'scheduler-slice: 100 us' "$H_AGENT_LOG" || h_fail "no debug line for the slice"
h_agent_stop
echo "ok: by default the agent's and its helper's threads run in 100 us slices, and sign"

h_agent "isolation = process" "scheduler-slice = 2000"
s_check 2000 2000000
h_agent_stop
echo "ok: scheduler-slice = 2000 gives 2 ms"

if [ -n "$own" ] && [ "$own" != 100000 ] && [ "$own" != 2000000 ]; then
	h_agent "isolation = process" "scheduler-slice = 0"
	s_check off "$own"
	h_agent_stop
	echo "ok: scheduler-slice = 0 leaves the slice the agent started with ($own ns)"
else
	h_log "the test's own slice is ${own:-unknown} ns: scheduler-slice = 0 not told apart"
fi

for v in 50 100001 -1 1ms; do
	st=0
	printf '[agent]\nscheduler-slice = %s\n' "$v" >"$H_TMP/bad.conf"
	out=$("$H_CERTAGENTD" --config "$H_TMP/bad.conf" --foreground 2>&1) || st=$?
	case $st:$out in
	1:*"bad.conf:2:"*"scheduler-slice must be microseconds from 100 to 100000, or 0"*) ;;
	*) h_fail "scheduler-slice = $v was not refused clearly: $st $out" ;;
	esac
done
echo "ok: scheduler-slice values outside 100 to 100000 (or 0) are refused, naming the key"
