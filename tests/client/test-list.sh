#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `certagent list` (text and --json) shows what is on the token; `certagent unlock` says
# clearly when the PIN is wrong (exit 4) and works with --pin-file and CERTAGENT_PIN.
. "$CERTAGENT_SRC/tests/lib/harness.sh"
h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_agent

h_certagent list >"$H_TMP/list.txt" || h_fail "certagent list failed"
cat "$H_TMP/list.txt"
grep -q "subject:  CN=alice,O=certagent tests" "$H_TMP/list.txt" || h_fail "no subject in list"
grep -q "issuer:   CN=certagent test client CA,O=certagent tests" "$H_TMP/list.txt" ||
	h_fail "no issuer in list"
grep -q "key:      ec 256" "$H_TMP/list.txt" || h_fail "no key type in list"

h_certagent list --json >"$H_TMP/list.json" || h_fail "certagent list --json failed"
python3 - "$H_TMP/list.json" <<'PY' || h_fail "bad JSON: $(cat "$H_TMP/list.json")"
import json, sys
d = json.load(open(sys.argv[1]))
ids = [i for i in d["identities"] if i["label"] == "alice"]
assert len(ids) == 1, d
i = ids[0]
assert i["uri"].startswith("pkcs11:"), i
assert i["key_type"] == "ec" and i["bits"] == 256, i
assert i["token_label"] == "demo", i
assert "ecdsa_secp256r1_sha256" in i["schemes"], i
assert i["chain"][0]["subject"] == "CN=alice,O=certagent tests", i
assert i["chain"][0]["issuer"] == "CN=certagent test client CA,O=certagent tests", i
assert isinstance(i["logged_in"], bool)
PY

# A wrong PIN: exit 4, a clear message, and the PIN itself never printed.
printf 'Zq7-wrong-0815\n' >"$H_TMP/wrong-pin"
st=0
h_certagent unlock --pin-file "$H_TMP/wrong-pin" pkcs11:token=demo 2>"$H_TMP/err" || st=$?
cat "$H_TMP/err"
[ "$st" = 4 ] || h_fail "wrong PIN: exit $st, want 4"
grep -qi "pin" "$H_TMP/err" || h_fail "message does not mention the PIN"
! grep -qF Zq7-wrong-0815 "$H_TMP/err" || h_fail "the PIN was printed"

# No terminal, no file, no variable: a usage error that says what to do.
st=0
setsid "$H_CERTAGENT" unlock pkcs11:token=demo </dev/null 2>"$H_TMP/err" || st=$?
[ "$st" = 2 ] || h_fail "no PIN source: exit $st, want 2 ($(cat "$H_TMP/err"))"
grep -q "pin-file" "$H_TMP/err" || h_fail "no hint about --pin-file: $(cat "$H_TMP/err")"

CERTAGENT_PIN=$H_PIN h_certagent unlock pkcs11:token=demo || h_fail "unlock via CERTAGENT_PIN failed"
h_certagent list --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert all(i["logged_in"] for i in d["identities"] if i["label"] == "alice"), d
' || h_fail "identity not logged in after unlock"

st=0
h_certagent unlock "not-a-uri" 2>/dev/null || st=$?
[ "$st" = 2 ] || h_fail "bad URI: exit $st, want 2"
echo ok
