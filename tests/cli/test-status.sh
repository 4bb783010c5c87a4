#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `certagent status` with no agent on the bus (says so, exit 3, JSON running=false), then with
# the real agent: running, version, the token locked, then unlocked after `certagent unlock`,
# its identity counted; --json parsed.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_bus

st=0
"$H_CERTAGENT" status >"$H_TMP/out" 2>"$H_TMP/err" || st=$?
[ "$st" = 3 ] || h_fail "status without agent exited $st, not 3"
grep -q '^agent: *not running (bus unix:' "$H_TMP/out" || h_fail "no 'not running': $(cat "$H_TMP/out")"
st=0
"$H_CERTAGENT" status --json >"$H_TMP/out.json" || st=$?
[ "$st" = 3 ] || h_fail "status --json without agent exited $st, not 3"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["agent"]["running"] is False and d["agent"]["version"] is None, d
assert d["error"]["code"] == "agent-not-running" and d["error"]["message"], d
assert d["tokens"] == [] and d["identities"] == 0, d
' "$H_TMP/out.json" || h_fail "status --json without agent"

h_agent
"$H_CERTAGENT" status >"$H_TMP/out" || h_fail "status with the agent failed"
cat "$H_TMP/out" >&2
grep -qE '^agent: +running, certagentd [0-9]' "$H_TMP/out" || h_fail "status: not running?"
grep -qE '^  demo +locked +1 identity' "$H_TMP/out" || h_fail "status: token demo not locked"
grep -q "^hint: .*certagent unlock" "$H_TMP/out" || h_fail "status: no unlock hint"
h_unlock demo
"$H_CERTAGENT" status --json >"$H_TMP/out.json" || h_fail "status --json with the agent failed"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["agent"]["running"] is True and d["agent"]["version"], d
assert d["error"] is None, d
t = [t for t in d["tokens"] if t["label"] == "demo"]
assert len(t) == 1 and t[0]["logged_in"] is True and t[0]["identities"] == 1, d
assert t[0]["uri"].startswith("pkcs11:") and t[0]["pin_locked"] is False, d
assert d["identities"] == 1, d
' "$H_TMP/out.json" || h_fail "status --json with the agent: $(cat "$H_TMP/out.json")"
"$H_CERTAGENT" status | grep -qE '^  demo +unlocked' || h_fail "status: demo not unlocked"

st=0
"$H_CERTAGENT" status extra 2>/dev/null || st=$?
[ "$st" = 2 ] || h_fail "status with an argument exited $st, not 2"
echo "ok: status"
