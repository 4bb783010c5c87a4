#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The signing channel against the real agent (docs/design.md, "Signing channel"), with frames
# written by hand (channel-client.py), and the audit writer's bookkeeping. One case per run:
#   frames       a bad length, an unknown op, a frame of version 1, trailing bytes, serial 0:
#                each closes its channel (and is logged); the agent goes on serving channels
#                and the bus; an error reply leaves the channel open
#   opener       who signs on a channel is the program that opened it (read at OpenChannel):
#                a process that execs another program keeps the opener's identity
#   burst        requests written without waiting are all answered in order by the thread
#                that serves the channel; with one channel thread (workers = 1), a Sign on
#                another channel meanwhile is served after at most 64 of them, not after
#                the burst: a busy channel does not starve the others
#   audit-moved  the audit log keeps its size in memory, but a file moved away (logrotate)
#                is noticed within a second and a new one started
#   busy-poll    a client signing back to back has its next requests caught by the channel
#                thread's busy polling (counted in the debug log when the channel closes),
#                with the module isolated; once it stops, neither the agent nor the helper
#                uses CPU; busy-poll = 0 polls never; a bad value is refused
. "$CERTAGENT_SRC/tests/lib/harness.sh"
h_need_py

CLIENT=$CERTAGENT_SRC/tests/agent/channel-client.py
AUDIT=$XDG_STATE_HOME/certagent/audit.jsonl

setup() {
	h_token demo
	h_keygen demo p256 client 01
	h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	h_bus
	h_agent "isolation = none" "$@"
	h_unlock demo
	URI=$(h_key_uri demo client)
}

test_frames() {
	setup
	local out
	out=$("$H_PY" "$CLIENT" frames "$URI" 2>&1) || h_fail "channel frames: $out"
	[ "$out" = ok ] || h_fail "channel frames: $out"
	kill -0 "$H_AGENT_PID" || h_fail "certagentd died"
	[ "$(grep -c 'closing it' "$H_AGENT_LOG")" = 5 ] ||
		h_fail "expected 5 closed channels in the agent log: $(grep 'channel of' "$H_AGENT_LOG")"
	grep -q 'version 1; this side speaks version 2' "$H_AGENT_LOG" ||
		h_fail "the agent does not say which version it speaks"
	# Each signature has its audit line, the refused scheme too.
	[ "$(grep -c '"decision":"allowed"' "$AUDIT")" = 5 ] || h_fail "audit: $(cat "$AUDIT")"
	grep -q '"decision":"denied".*UnsupportedScheme' "$AUDIT" || h_fail "no audit line for the refusal"
}

test_opener() {
	setup
	local other=$H_TMP/other-program out
	cp "$(readlink -f "$H_PY")" "$other"
	out=$("$H_PY" "$CLIENT" exec "$URI" "$other" 2>&1) || h_fail "inherited channel: $out"
	[ "$out" = ok ] || h_fail "inherited channel: $out"
	"$H_PY" - "$AUDIT" "$(readlink -f "$H_PY")" <<'PY' || h_fail "audit: $(cat "$AUDIT")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 1 and lines[0]["decision"] == "allowed", lines
assert lines[0]["exe"] == sys.argv[2], lines[0]
PY
}

test_burst() {
	setup "workers = 1"
	local out at
	out=$("$H_PY" "$CLIENT" burst "$URI" 2>&1) || h_fail "burst: $out"
	[ "$out" = ok ] || h_fail "burst: $out"
	[ "$(grep -c '"decision":"allowed"' "$AUDIT")" = 301 ] ||
		h_fail "expected 301 audit lines, found $(grep -c '"decision":"allowed"' "$AUDIT")"
	# Sent while about 290 requests of the burst were waiting; the thread takes its turn with
	# the other channel after at most 64 of them (CHANNEL_BATCH_MAX), not after the burst.
	at=$(grep -n '"server":"other.example"' "$AUDIT" | cut -d: -f1)
	h_log "the other channel's Sign is audit line $at of 301"
	[ -n "$at" ] && [ "$at" -le 160 ] ||
		h_fail "the other channel's Sign waited behind the burst: audit line ${at:-none} of 301"
}

test_audit_moved() {
	setup
	local uri=$URI
	h_ctl sign "$uri" ecdsa_secp256r1_sha256 <(head -c 32 /dev/zero) "$H_TMP/sig" >/dev/null ||
		h_fail "first Sign"
	mv "$AUDIT" "$AUDIT.moved"
	sleep 1.2
	h_ctl sign "$uri" ecdsa_secp256r1_sha256 <(head -c 32 /dev/zero) "$H_TMP/sig" >/dev/null ||
		h_fail "second Sign"
	[ "$(wc -l <"$AUDIT.moved")" = 1 ] || h_fail "the moved file has $(wc -l <"$AUDIT.moved") lines"
	[ -s "$AUDIT" ] && [ "$(wc -l <"$AUDIT")" = 1 ] || h_fail "no new audit log after the move"
}

# Signs 500 times back to back; prints the agent's and its helper's CPU ticks in the idle
# second after; waits for the log line of the closed channel.
quick_client() {
	local helper out
	helper=$(pgrep -P "$H_AGENT_PID" -f certagent-pkcs11-helper | paste -sd,)
	[ -n "$helper" ] || h_fail "no module helper under the agent"
	out=$("$H_PY" "$CLIENT" quick "$URI" 500 "$H_AGENT_PID,$helper" 2>&1) ||
		h_fail "quick client: $out"
	h_wait_until 5 grep -q 'caught by busy polling' "$H_AGENT_LOG" ||
		h_fail "no log line for the closed channel"
	echo "$out"
}

test_busy_poll() {
	h_token demo
	h_keygen demo p256 client 01
	h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	h_bus
	URI=$(h_key_uri demo client)
	# 1000 µs, the most allowed: the gaps of a Python client qualify on any machine.
	h_agent "isolation = process" "busy-poll = 1000" "log-level = debug"
	h_unlock demo
	local ticks polled
	ticks=$(quick_client)
	polled=$(sed -n 's/.*(500 requests, \([0-9]*\) of them caught by busy polling).*/\1/p' \
		"$H_AGENT_LOG")
	h_log "busy-poll = 1000: ${polled:-no} requests of 500 caught by polling; $ticks ticks idle"
	[ -n "$polled" ] && [ "$polled" -gt 0 ] ||
		h_fail "no request was caught by busy polling: $(grep 'busy polling' "$H_AGENT_LOG")"
	# A poller that never stopped would use ~100 ticks a second (a whole CPU).
	[ "$ticks" -le 10 ] || h_fail "agent and helper used $ticks ticks of CPU in an idle second"
	h_agent_stop

	H_AGENT_LOG=$H_TMP/agent-no-poll.log
	h_agent "isolation = process" "busy-poll = 0" "log-level = debug"
	h_unlock demo
	quick_client >/dev/null
	grep -q '(500 requests, 0 of them caught by busy polling)' "$H_AGENT_LOG" ||
		h_fail "busy-poll = 0 polled: $(grep 'busy polling' "$H_AGENT_LOG")"

	local st=0 out
	printf '[agent]\nbusy-poll = 5000\n' >"$H_TMP/bad.conf"
	out=$("$H_CERTAGENTD" --config "$H_TMP/bad.conf" --foreground 2>&1) || st=$?
	case $st:$out in 1:*"bad.conf:2:"*"busy-poll must be microseconds from 0 (never) to 1000"*) ;;
	*) h_fail "busy-poll = 5000 was not refused: $st $out" ;;
	esac
}

"test_${1//-/_}"
