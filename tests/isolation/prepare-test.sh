#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# prepare-test.sh LOAD-CLIENT: handshakes that come alone (1.2 s apart, longer than a helper
# keeps a signature begun ahead by itself) still sign with what was begun ahead: libcertagent
# sends a PREPARE on its channel when the server's CertificateRequest arrives
# (dbus/ipc-channel.h), and the module's helper begins the key's signature then
# (pkcs11/helper-prime.h). Checked with the helper's own count at exit: of four handshakes,
# the last three can use what was begun (the first has nothing to go by: the key had not
# signed yet); at least two must have, and none without PREPARE. Every handshake must be
# accepted by a server that verifies the client's chain, and signed by the agent (audit).
# A policy rule that counts signatures (or looks at the server, or asks the user) begins
# nothing ahead: its checks come with the Sign. A rule on the applications alone does, for a
# program it allows, and nothing for one it refuses.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

[ $# = 1 ] || h_fail "usage: prepare-test.sh LOAD-CLIENT"
load=$1
[ -x "$load" ] || h_fail "load-client not built: $load"
[ -x "${CERTAGENT_PKCS11_HELPER:-}" ] || h_fail "CERTAGENT_PKCS11_HELPER is not the built helper"

h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
uri=$(h_key_uri demo alice)
n=4

# p_run NAME ok|refused [CONFIG...]: an agent with CONFIG, n handshakes 1.2 s apart, which
# must all be accepted (ok: and each signed by the agent, one audit line each) or all fail
# (refused); sets begun and used (the helper's count at exit: signatures begun ahead, and
# those of them that signed).
p_run() {
	local name=$1 want=$2 out line before rc=0
	shift 2
	unset DBUS_SESSION_BUS_ADDRESS
	h_bus
	H_AGENT_LOG=$H_TMP/agent-$name.log h_agent "isolation = process" "$@"
	h_unlock demo
	before=$(grep -c '"decision":"allowed"' "$XDG_STATE_HOME/certagent/audit.jsonl" 2>/dev/null || true)
	out=$(CERTAGENT_LOAD_GAP_MS=1200 "$load" 1 "$n" "$H_TMP/ca/root.pem" \
		"$H_TMP/ca/server.pem" "$H_TMP/ca/server.key" 1.3 2>&1) || rc=$?
	if [ "$want" = ok ]; then
		[ "$rc" = 0 ] && grep -q "load: 1 clients x $n handshakes: $n ok, 0 failed" <<<"$out" ||
			h_fail "$name: not every handshake was accepted: $out"
		[ "$(($(grep -c '"decision":"allowed"' "$XDG_STATE_HOME/certagent/audit.jsonl") - ${before:-0}))" = "$n" ] ||
			h_fail "$name: the agent did not sign each of the $n handshakes"
	else
		[ "$rc" != 0 ] && grep -q "load: 1 clients x $n handshakes: 0 ok" <<<"$out" ||
			h_fail "$name: handshakes went through that the policy refuses: $out"
	fi
	h_agent_stop
	line=$(grep -o '[0-9]* signatures begun ahead, [0-9]* of them used' \
		"$H_TMP/agent-$name.log" | tail -1)
	begun=$(printf '%s\n' "$line" | sed -n 's/^\([0-9]*\) signatures.*/\1/p')
	used=$(printf '%s\n' "$line" | sed -n 's/.*, \([0-9]*\) of them used/\1/p')
	begun=${begun:-0} used=${used:-0}
	h_log "$name: helper: ${line:-nothing begun ahead}"
}

p_run plain ok
[ "$used" -ge 2 ] ||
	h_fail "handshakes 1.2 s apart: $used of the last $((n - 1)) signatures used what was begun ahead (PREPARE)"
echo "ok: $n handshakes 1.2 s apart, each verified and signed: $used signatures were begun ahead at the CertificateRequest"

p_run sign-ahead-off ok "sign-ahead = no"
[ "$begun" = 0 ] || h_fail "sign-ahead = no, but $begun signatures were begun ahead"
echo "ok: with sign-ahead = no nothing is begun ahead, and the handshakes still work"

p_run counted ok "[policy counted]" "identity = $uri" "rate-limit = 100/minute"
[ "$begun" = 0 ] ||
	h_fail "a rule that counts signatures is checked with the Sign, but $begun signatures were begun ahead for it"
echo "ok: a rule with a rate limit: the handshakes work, nothing is begun ahead"

p_run apps ok "[policy apps]" "identity = $uri" "applications = $(readlink -f "$load")"
[ "$used" -ge 2 ] ||
	h_fail "a rule allowing the client program: $used signatures used what was begun ahead (want at least 2)"
echo "ok: a rule on the applications that allows the client: $used signatures begun ahead"

p_run other-app refused "[policy apps]" "identity = $uri" "applications = /usr/bin/true"
[ "$begun" = 0 ] ||
	h_fail "a rule that refuses the client program, but $begun signatures were begun ahead for it"
echo "ok: a rule that refuses the client: its handshakes fail and nothing is begun ahead"
