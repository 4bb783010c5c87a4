#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `certagent policy list --json` gives lists as JSON arrays (one entry each, DNs with commas
# intact); a configuration that does not parse is the same file error (exit 5) for `policy`
# and for `audit`; a --config or --file that is not there is one too (5, and policy add writes
# no new file the agent would never read); `audit --json` re-reads the committed fuzz seeds of
# real agent lines.
# No agent needed: both commands read files.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

conf=$H_TMP/agent.conf
cat >"$conf" <<EOF2
[agent]
audit-log = $H_TMP/audit.jsonl

[policy web]
identity = pkcs11:token=demo;object=alice
servers = *.corp.example.com vpn.example.com
server-issuer = CN=Corp CA, O=Example
applications = /usr/bin/firefox-esr unit:openconnect@*.service
confirm = yes
remember = 30
rate-limit = 60/minute

[policy open]
identity = pkcs11:token=other
EOF2
h_certagent policy list --config "$conf" --json >"$H_TMP/policy.json" || h_fail "policy list --json failed"
python3 - "$H_TMP/policy.json" <<'PY' || h_fail "policy --json: $(cat "$H_TMP/policy.json")"
import json, sys
d = json.load(open(sys.argv[1]))
web, op = d["policies"]
assert web["servers"] == ["*.corp.example.com", "vpn.example.com"], web
assert web["applications"] == ["/usr/bin/firefox-esr", "unit:openconnect@*.service"], web
assert isinstance(web["server_issuer"], list) and len(web["server_issuer"]) == 1, web
assert "Corp CA" in web["server_issuer"][0] and "Example" in web["server_issuer"][0], web
assert "server_pin" not in web and "servers" not in op, (web, op)   # left out: any
assert web["confirm"] == "yes" and web["remember_minutes"] == 30, web
assert web["rate_limit"] == "60/minute" and web["deny"] == "no", web
assert d["settings"]["audit_log"].endswith("/audit.jsonl"), d
PY

# A configuration that does not parse: exit 5 for both commands, with file:line.
printf '[policy bad]\nidentity = pkcs11:token=x\nrate-limit = lots\n' >"$H_TMP/bad.conf"
for cmd in "policy list" audit; do
	st=0
	# shellcheck disable=SC2086 # "policy list" is two words
	h_certagent $cmd --config "$H_TMP/bad.conf" >/dev/null 2>"$H_TMP/err" || st=$?
	[ "$st" = 5 ] || h_fail "certagent $cmd with a bad configuration: exit $st, want 5"
	grep -q 'bad.conf:3' "$H_TMP/err" || h_fail "$cmd: no file:line in: $(cat "$H_TMP/err")"
done

# The committed seeds: the real lines are read back, the malformed ones counted.
seeds=$CERTAGENT_SRC/tests/fuzz/corpus/audit
for f in allowed denied-policy failed-pin denied-escapes; do cat "$seeds/$f"; done >"$H_TMP/audit.jsonl"
cat "$seeds/bad-time" "$seeds/bad-duplicate" "$seeds/bad-nested" >>"$H_TMP/audit.jsonl"
h_certagent audit --config "$conf" --json >"$H_TMP/audit.json" 2>"$H_TMP/err" || h_fail "audit --json failed"
grep -q "skipped 3 malformed lines" "$H_TMP/err" || h_fail "malformed lines not counted: $(cat "$H_TMP/err")"
python3 - "$H_TMP/audit.json" <<'PY' || h_fail "audit --json: $(cat "$H_TMP/audit.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["malformed"] == 3, d
assert [e["decision"] for e in d["entries"]] == ["allowed", "denied", "failed", "denied"], d
assert d["entries"][0]["pid"] == 4242 and d["entries"][0]["latency_us"] == 1234, d
assert d["entries"][1]["policy"] == "work", d
assert d["entries"][2]["app_id"] == "org.example.Client", d
PY

# A mistyped --config or --file: exit 5 naming the file, nothing created, nothing listed.
exit5() { # WHAT COMMAND...
	local what=$1 st=0
	shift
	h_certagent "$@" >"$H_TMP/out" 2>"$H_TMP/err" || st=$?
	[ "$st" = 5 ] || h_fail "$what: exit $st, want 5: $(cat "$H_TMP/out" "$H_TMP/err")"
	[ ! -s "$H_TMP/out" ] || h_fail "$what printed as if it had read something: $(cat "$H_TMP/out")"
	grep -q "$H_TMP/typo" "$H_TMP/err" || h_fail "$what: the error does not name the file: $(cat "$H_TMP/err")"
}
exit5 "policy add --config MISSING" policy add block --identity pkcs11: --deny --config "$H_TMP/typo.conf"
[ ! -e "$H_TMP/typo.conf" ] || h_fail "policy add created a configuration no agent reads"
exit5 "policy list --config MISSING" policy list --config "$H_TMP/typo.conf"
exit5 "policy remove --config MISSING" policy remove web --yes --config "$H_TMP/typo.conf"
exit5 "audit --config MISSING" audit --config "$H_TMP/typo.conf"
exit5 "audit --file MISSING" audit --file "$H_TMP/typo.jsonl"
mkdir "$H_TMP/typo.d"
exit5 "audit --file FOLDER" audit --file "$H_TMP/typo.d"
echo "ok: policy --json arrays, exit 5 for a bad or missing configuration or log, audit reads the seeds"
