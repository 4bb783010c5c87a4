#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `certagent lock` logs the agent out of every token (status shows it locked again, a Sign
# needs the PIN); `certagent reload` makes a token created after the agent started appear
# (SoftHSM shows new tokens only after re-initialising) and forgets logins. Both fail clearly
# (exit 3) without an agent, and refuse arguments (exit 2).
. "$CERTAGENT_SRC/tests/lib/harness.sh"

h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_bus

for c in lock reload; do
	st=0
	"$H_CERTAGENT" "$c" 2>"$H_TMP/err" || st=$?
	[ "$st" = 3 ] || h_fail "$c without agent exited $st, not 3"
	grep -q "not running" "$H_TMP/err" || h_fail "$c without agent: $(cat "$H_TMP/err")"
	st=0
	"$H_CERTAGENT" "$c" extra 2>/dev/null || st=$?
	[ "$st" = 2 ] || h_fail "$c with an argument exited $st, not 2"
done

h_agent
h_unlock demo
"$H_CERTAGENT" status >"$H_TMP/out" || h_fail "status failed"
grep -qE '^  demo +unlocked' "$H_TMP/out" || h_fail "demo not unlocked: $(cat "$H_TMP/out")"
"$H_CERTAGENT" lock 2>"$H_TMP/err" || h_fail "lock failed: $(cat "$H_TMP/err")"
"$H_CERTAGENT" status >"$H_TMP/out" || true
grep -qE '^  demo +locked' "$H_TMP/out" || h_fail "demo not locked after lock: $(cat "$H_TMP/out")"

# A token made while the agent runs: not listed until reload.
h_token later
h_keygen later p256 bob 02
h_client_cert later bob 02 "CN=bob,O=certagent tests"
"$H_CERTAGENT" list --agent --json >"$H_TMP/before.json" || h_fail "list failed"
grep -q 'CN=bob' "$H_TMP/before.json" && h_fail "the new token is listed before reload"
h_unlock demo
"$H_CERTAGENT" reload 2>"$H_TMP/err" || h_fail "reload failed: $(cat "$H_TMP/err")"
"$H_CERTAGENT" list --agent --json >"$H_TMP/after.json" || h_fail "list after reload failed"
grep -q 'CN=bob' "$H_TMP/after.json" || h_fail "the new token is not listed after reload"
"$H_CERTAGENT" status >"$H_TMP/out" || true
grep -qE '^  demo +locked' "$H_TMP/out" || h_fail "reload did not forget the login: $(cat "$H_TMP/out")"
h_log "lock and reload work"
