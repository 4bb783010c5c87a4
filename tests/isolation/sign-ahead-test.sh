#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sign-ahead-test.sh SIGN-AHEAD-PROGRAM: the module helper begins a key's next signature ahead
# of the request (pkcs11/helper-prime.h, sign-ahead = yes, the default). Signatures a few ms
# apart (as handshakes come) all verify, also when the RSA key switches mechanisms between
# them; after a Lock the next Sign needs the PIN again (the agent asks before the helper is
# reached; the helper also ends what was begun when it logs out); a key deleted by another
# program does not sign with what was begun before (the helper checks the key first when what
# it began is older than 5 ms, as it is here; this fails without that check); and the helper
# reports that it did sign ahead (its line at exit). In a signing loop (signatures back to
# back) the helper begins each next one at once and the loop uses them (this fails without
# that). With sign-ahead = no the same signatures verify and nothing is begun ahead.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

[ $# = 1 ] || h_fail "usage: sign-ahead-test.sh SIGN-AHEAD-PROGRAM"
PROG=$1
[ -x "$PROG" ] || h_fail "not built: $PROG"
[ -x "${CERTAGENT_PKCS11_HELPER:-}" ] || h_fail "CERTAGENT_PKCS11_HELPER is not the built helper"

h_token demo
h_keygen demo p256 ec 01
h_keygen demo rsa2048 rsa 02
h_ca
h_client_cert demo ec 01 "CN=ahead-ec,O=certagent tests"
h_client_cert demo rsa 02 "CN=ahead-rsa,O=certagent tests"

# s_run CHECK [ARG...]: the program's check must pass.
s_run() {
	"$PROG" "$@" >"$H_TMP/out" 2>&1 || h_fail "sign-ahead $1: $(cat "$H_TMP/out")"
	cat "$H_TMP/out"
}

# With sign-ahead = no first: the same signatures, nothing begun ahead.
H_AGENT_LOG=$H_TMP/agent-off.log h_agent "isolation = process" "sign-ahead = no"
h_unlock demo
s_run verify
h_agent_stop
! grep -q 'begun ahead' "$H_TMP/agent-off.log" ||
	h_fail "sign-ahead = no, but the helper began signatures ahead: $(grep 'begun ahead' "$H_TMP/agent-off.log")"

# A signing loop: the helper begins each next signature at once, while the reply travels (the
# lane busy-polls for such a caller: only with more than one CPU). All of them verify.
unset DBUS_SESSION_BUS_ADDRESS
h_bus
H_AGENT_LOG=$H_TMP/agent-loop.log h_agent "isolation = process"
h_unlock demo
s_run loop
h_agent_stop
line=$(grep -o '[0-9]* signatures begun ahead, [0-9]* of them used' "$H_TMP/agent-loop.log" |
	tail -1) || line=
used=$(printf '%s\n' "$line" | sed -n 's/.*, \([0-9]*\) of them used/\1/p')
h_log "loop: helper: ${line:-nothing begun ahead}"
# 335-390 of the 400 here, also with both CPUs busy. Under ASan most steps take longer than
# the busy-poll limit (9-65 here): there the path is only exercised.
want=100
! h_sanitized || want=1
if [ "$(nproc)" -ge 2 ]; then
	[ "${used:-0}" -ge "$want" ] ||
		h_fail "a signing loop of 400: ${used:-0} signatures used what was begun ahead (want $want or more)"
	echo "ok: a signing loop of 400, all verified: $used used what the helper began while the reply travelled"
else
	echo "ok: a signing loop of 400, all verified (one CPU: nothing is busy-polled or begun at once)"
fi

unset DBUS_SESSION_BUS_ADDRESS
h_bus
h_agent "isolation = process"
h_unlock demo
s_run verify
s_run lock
h_unlock demo
s_run delete "$H_SOFTHSM" "$H_PIN" "$(h_key_uri demo ec)"
h_agent_stop
# The helper's line when the agent stopped: signatures were begun ahead and used.
line=$(grep -o '[0-9]* signatures begun ahead, [0-9]* of them used' "$H_AGENT_LOG") ||
	h_fail "the helper reported no signature begun ahead: $(tail -20 "$H_AGENT_LOG")"
used=$(printf '%s\n' "$line" | sed -n 's/.*, \([0-9]*\) of them used/\1/p' | tail -1)
[ "${used:-0}" -ge 10 ] || h_fail "too few signatures used what was begun ahead: $line"
h_log "helper: $line"
