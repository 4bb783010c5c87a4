#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Policy per identity, "sign only what TLS needs" and the audit log, against the real agent
# (private dbus-daemon, SoftHSM token, real TLS servers). Usage: policy-test.sh CASE.
# Direct Sign calls go through tests/agent/agentctl.py (python3-dbus) or busctl; handshakes
# through `certagent connect` (libcertagent), which sends the server name and chain.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

ERR=org.certagent.Error
h_need_py
AUDIT=$XDG_STATE_HOME/certagent/audit.jsonl

# expect_error NAME TEXT COMMAND...: COMMAND fails with the D-Bus error NAME and TEXT in it.
expect_error() {
	local name=$1 text=$2 out
	shift 2
	out=$("$@" 2>&1) && h_fail "expected $name, but it succeeded: $*"
	case $out in
	*"$name"*"$text"*) h_log "refused as expected: ${out#*: }" ;;
	*) h_fail "expected $name ($text) from: $* -- got: $out" ;;
	esac
}

# world [CONFIG-LINE...]: token demo, keys client (01) and second (02) with certificates,
# the agent with CONFIG-LINEs, unlocked. URI and URI2 name the two identities.
world() {
	h_token demo
	h_keygen demo p256 client 01
	h_keygen demo p256 second 02
	[ -f "$H_TMP/ca/root.pem" ] || h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	h_client_cert demo second 02 "CN=bob,O=certagent tests"
	h_bus
	h_agent "$@"
	h_unlock demo
	FULL=$(full_uri client)
	FULL2=$(full_uri second)
}
# full_uri LABEL: the identity's URI as ListIdentities gives it (what libcertagent matches).
full_uri() {
	h_ctl identities | "$H_PY" -c 'import json, sys
print([i["uri"] for i in json.load(sys.stdin) if i["label"] == sys.argv[1]][0])' "$1"
}
URI=$(h_key_uri demo client)
URI2=$(h_key_uri demo second)
head -c 32 /dev/urandom >"$H_TMP/hash"

# sign URI [KEY=TYPE:VALUE...]: an ECDSA P-256 signature of a random hash.
sign() {
	local uri=$1
	shift
	h_ctl sign "$uri" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig" "$@"
}
sign_ok() { sign "$@" >"$H_TMP/out" || h_fail "Sign failed: $(cat "$H_TMP/out")"; }

# connect [ARG...]: `certagent connect` to the last server, as localhost; output in $H_TMP/c.*
connect() {
	local rc=0
	printf 'hello\n' | timeout 60 "$H_CERTAGENT" connect "127.0.0.1:$H_PORT" \
		--cafile "$H_TMP/ca/root.pem" --servername localhost "$@" \
		>"$H_TMP/c.out" 2>"$H_TMP/c.err" || rc=$?
	return "$rc"
}
connect_ok() { connect "$@" || { cat "$H_TMP/c.err" >&2; h_fail "certagent connect $* failed"; }; }
connect_denied() { # TEXT ARG...
	local text=$1
	shift
	connect "$@" && h_fail "certagent connect $* succeeded, but the policy forbids it"
	grep -q "$text" "$H_TMP/c.err" || { cat "$H_TMP/c.err" >&2; h_fail "no \"$text\" in the error"; }
	h_log "handshake refused as expected: $(grep -m1 "$text" "$H_TMP/c.err")"
}

# audit_py PYTHON-EXPR-LINES: runs python with `lines` = the parsed audit lines.
audit_py() {
	"$H_PY" - "$AUDIT" <<PYEOF || h_fail "audit check failed"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
$1
PYEOF
}

# Through real handshakes: libcertagent passes the name given with
# certagent_session_set_server_name() (`certagent connect --servername`) to the agent, which
# holds it to each identity's servers = rule.
test_server_name_handshake() {
	world "[policy local]" "identity = $URI" "servers = localhost *.example.com" \
		"[policy other]" "identity = $URI2" "servers = *.example.com"
	for v in 1.3 1.2; do
		h_gnutls_serv --tls$v
		connect_ok --identity "$FULL"
		h_assert_server_saw "CN=alice,O=certagent tests"
		connect_denied 'policy "other"' --identity "$FULL2"
		h_serv_stop
	done
	audit_py '
d = [l for l in lines if l["decision"] == "denied"]
a = [l for l in lines if l["decision"] == "allowed"]
assert len(a) == 2 and len(d) == 2, lines
assert all(l.get("server") == "localhost" for l in a + d), lines
assert all(l["policy"] == "other" and "PolicyDenied" in l["reason"] for l in d), d
assert all(l["policy"] == "local" for l in a), a'
}

test_server_name_sign() {
	world "[policy web]" "identity = pkcs11:token=demo;object=client" \
		"servers = *.example.com api.example.org"
	sign_ok "$URI" server-name=s:www.example.com
	sign_ok "$URI" server-name=s:API.Example.ORG
	expect_error $ERR.PolicyDenied 'server evil.org' sign "$URI" server-name=s:evil.org
	expect_error $ERR.PolicyDenied 'named none' sign "$URI"
	# Another spelling of the same key is held to the same rule.
	expect_error $ERR.PolicyDenied 'server evil.org' sign "pkcs11:token=demo;id=%01;type=private" \
		server-name=s:evil.org
	expect_error $ERR.PolicyDenied 'names no identity' sign "pkcs11:token=demo" \
		server-name=s:www.example.com
	# The other identity has no policy: allowed as before.
	sign_ok "$URI2"
}

test_applications() {
	world "[policy apps]" "identity = $URI" "applications = /usr/bin/python3* unit:none.service"
	local exe
	exe=$(readlink -f "$H_PY")
	h_log "python3 caller: $exe"
	sign_ok "$URI"
	# busctl is another program: refused, with its path in the reason.
	# shellcheck disable=SC2046 # the hash bytes are separate arguments
	expect_error "" 'does not allow /usr/bin/busctl' \
		busctl --address="$DBUS_SESSION_BUS_ADDRESS" call org.certagent.Agent1 \
		/org/certagent/Agent1 org.certagent.Agent1 Sign 'ssaya{sv}' "$URI" \
		ecdsa_secp256r1_sha256 32 $(od -An -tu1 -v "$H_TMP/hash") 0
	audit_py '
assert lines[0]["decision"] == "allowed" and lines[0]["exe"].startswith("/usr/bin/python3"), lines
assert lines[1]["decision"] == "denied" and lines[1]["exe"] == "/usr/bin/busctl", lines
assert isinstance(lines[1]["pid"], int) and lines[1]["pid"] > 1, lines'
}

test_rate_limit() {
	world "[policy slow]" "identity = $URI" "rate-limit = 3/minute"
	sign_ok "$URI"
	sign_ok "$URI"
	sign_ok "$URI"
	expect_error $ERR.PolicyDenied 'limit is reached' sign "$URI"
	sign_ok "$URI2" # another identity: not limited
	audit_py '
assert [l["decision"] for l in lines] == ["allowed"] * 3 + ["denied", "allowed"], lines'
}

test_server_pin() {
	local pin wrong ossl
	h_ca
	pin=$("$H_CERTAGENT" policy pin "$H_TMP/ca/server.pem") || h_fail "policy pin failed"
	ossl=sha256:$(openssl x509 -in "$H_TMP/ca/server.pem" -pubkey -noout |
		openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
	[ "$pin" = "$ossl" ] || h_fail "policy pin says $pin, openssl $ossl"
	wrong=$("$H_CERTAGENT" policy pin "$H_TMP/ca/other-root.pem")
	world "[policy pinned]" "identity = $URI" "server-pin = $wrong $pin" \
		"[policy mispinned]" "identity = $URI2" "server-pin = $wrong"
	h_gnutls_serv --tls1.3
	connect_ok --identity "$FULL"
	connect_denied 'not among the server-pin' --identity "$FULL2"
	# A client that sends no server certificate cannot satisfy a pin.
	expect_error $ERR.PolicyDenied 'no server certificate' sign "$URI" server-name=s:localhost
}

test_server_issuer() {
	world "[policy ca]" "identity = $URI" "server-issuer = CN=certagent test root CA,O=certagent tests" \
		"[policy elsewhere]" "identity = $URI2" "server-issuer = CN=somebody else"
	h_gnutls_serv --tls1.2
	connect_ok --identity "$FULL"
	connect_denied 'was issued by' --identity "$FULL2"
}

test_ed25519_framing() {
	h_token demo
	h_keygen demo ed25519 ed 03
	h_ca
	h_client_cert demo ed 03 "CN=ed,O=certagent tests"
	h_bus
	h_agent
	h_unlock demo
	local uri
	uri=$(h_key_uri demo ed)
	printf 'any message at all' >"$H_TMP/raw"
	expect_error $ERR.InvalidArgs 'TLS' h_ctl sign "$uri" ed25519 "$H_TMP/raw" "$H_TMP/sig"
	{ printf '%64s' ''; printf 'TLS 1.3, server CertificateVerify\0'; cat "$H_TMP/hash"; } >"$H_TMP/srv"
	expect_error $ERR.InvalidArgs 'TLS' h_ctl sign "$uri" ed25519 "$H_TMP/srv" "$H_TMP/sig"
	{ printf '%64s' ''; printf 'TLS 1.3, client CertificateVerify\0'; cat "$H_TMP/hash"; } >"$H_TMP/cv"
	h_ctl sign "$uri" ed25519 "$H_TMP/cv" "$H_TMP/sig" >"$H_TMP/out" || h_fail "framed: $(cat "$H_TMP/out")"
	# Real handshakes still work: TLS 1.3 (framed transcript hash), TLS 1.2 (messages).
	for v in 1.3 1.2; do
		h_gnutls_serv --tls$v
		connect_ok
		h_assert_server_saw "CN=ed,O=certagent tests"
		h_assert_server_sig 'EdDSA-Ed25519'
		h_serv_stop
	done
}

test_sha1_refused() {
	h_token demo
	h_keygen demo rsa2048 rsa 04
	h_ca
	h_client_cert demo rsa 04 "CN=rsa,O=certagent tests"
	h_bus
	h_agent
	h_unlock demo
	local uri
	uri=$(h_key_uri demo rsa)
	{ printf '\x30\x21\x30\x09\x06\x05\x2b\x0e\x03\x02\x1a\x05\x00\x04\x14'; head -c 20 /dev/urandom; } >"$H_TMP/di1"
	expect_error $ERR.InvalidArgs 'SHA-1' h_ctl sign "$uri" rsa_pkcs1_sha256 "$H_TMP/di1" "$H_TMP/sig"
	expect_error $ERR.UnsupportedScheme 'unknown scheme' h_ctl sign "$uri" rsa_pkcs1_sha1 "$H_TMP/di1" "$H_TMP/sig"
	# Raw RSA is never offered: no scheme without a hash in ListIdentities.
	h_ctl identities | grep -q '"rsa_pkcs1_sha256"' || h_fail "rsa_pkcs1_sha256 not listed"
	! h_ctl identities | grep -qiE '"(rsa_raw|rsa_pkcs1_sha1|rsa_pkcs1_md5)"' || h_fail "a raw or SHA-1 RSA scheme is listed"
}

test_audit_fields() {
	world "[policy web]" "identity = $URI" "servers = *.example.com"
	sign_ok "$URI" server-name=s:www.example.com
	expect_error $ERR.PolicyDenied 'server evil.org' sign "$URI" server-name=s:evil.org
	# A name no DNS name can be: refused, and written to the log safely escaped.
	expect_error $ERR.InvalidArgs 'not a host name' sign "$URI" server-name=s:"evil\"name
x"
	[ "$(stat -c %a "$AUDIT")" = 600 ] || h_fail "the audit log is not mode 0600"
	audit_py '
import re
a, d = lines[0], lines[1]
for l in lines:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", l["time"]), l
assert a["decision"] == "allowed" and a["identity"] == "'"$FULL"'", a
assert a["server"] == "www.example.com" and a["scheme"] == "ecdsa_secp256r1_sha256", a
assert a["exe"].startswith("/usr/bin/python3") and a["pid"] > 1 and a["latency_us"] > 0, a
assert a["policy"] == "web" and "reason" not in a, a
assert d["decision"] == "denied" and d["server"] == "evil.org", d
assert d["reason"].startswith("PolicyDenied: ") and d["policy"] == "web", d
e = lines[2]
assert e["decision"] == "denied" and e["server"] == "evil\"name\nx", e
assert e["reason"].startswith("InvalidArgs: "), e'
}

test_audit_rotation() {
	world "audit-max-size = 1024" "audit-files = 2"
	for _ in $(seq 1 20); do sign_ok "$URI"; done
	[ -s "$AUDIT.1" ] && [ -s "$AUDIT.2" ] || h_fail "no rotated files: $(ls "$(dirname "$AUDIT")")"
	[ ! -e "$AUDIT.3" ] || h_fail "more rotated files than audit-files = 2"
	for f in "$AUDIT" "$AUDIT.1" "$AUDIT.2"; do
		[ "$(stat -c %s "$f")" -le 1024 ] || h_fail "$f is over audit-max-size"
	done
	# Whole lines only, and `certagent audit` reads the rotated files too, oldest first.
	local total shown
	total=$(cat "$AUDIT.2" "$AUDIT.1" "$AUDIT" | wc -l)
	shown=$(h_certagent audit --config "$H_AGENT_CONF" | wc -l)
	[ "$total" = "$shown" ] || h_fail "certagent audit shows $shown lines of $total"
	h_certagent audit --config "$H_AGENT_CONF" --json | "$H_PY" -c '
import json, sys
d = json.load(sys.stdin)
t = [e["time"] for e in d["entries"]]
assert t == sorted(t) and d["malformed"] == 0, d'
}

# A path whose parent is a regular file cannot be created, even by root.
unwritable_world() {
	h_ca
	: >"$H_TMP/notadir"
	world "audit-log = $H_TMP/notadir/audit.jsonl" "$@"
}

test_audit_fail_closed() {
	unwritable_world "audit-fail-closed = yes"
	expect_error $ERR.Failed 'audit log cannot be written' sign "$URI"
	grep -q 'refusing to sign' "$H_AGENT_LOG" || h_fail "the agent did not log why"
}

test_audit_fail_open() {
	unwritable_world "audit-fail-closed = no"
	sign_ok "$URI"
	sign_ok "$URI"
	[ "$(grep -c 'audit log cannot be written' "$H_AGENT_LOG")" = 1 ] ||
		h_fail "expected one warning in the agent log"
}

test_audit_cli() {
	world "[policy web]" "identity = $URI" "servers = *.example.com"
	sign_ok "$URI" server-name=s:a.example.com
	sign_ok "$URI2"
	expect_error $ERR.PolicyDenied '' sign "$URI" server-name=s:b.example.net
	printf '{"time": "garbage"}\nnot json\n' >>"$AUDIT"
	local a="h_certagent audit --config $H_AGENT_CONF"
	[ "$($a 2>/dev/null | grep -c '^20')" = 3 ] || h_fail "audit does not show 3 decisions"
	$a 2>&1 >/dev/null | grep -q 'skipped 2 malformed lines' || h_fail "malformed lines not counted"
	[ "$($a --decision denied 2>/dev/null | grep -c '^20')" = 1 ] || h_fail "--decision denied"
	$a --decision denied 2>/dev/null | grep -q 'b.example.net' || h_fail "--decision shows the wrong line"
	[ "$($a --identity "$FULL2" 2>/dev/null | grep -c '^20')" = 1 ] || h_fail "--identity"
	[ "$($a --limit 2 2>/dev/null | grep -c '^20')" = 2 ] || h_fail "--limit 2"
	[ "$($a --since 2999-01-01 2>/dev/null | grep -c '^20')" = 0 ] || h_fail "--since future"
	[ "$($a --since 1h 2>/dev/null | grep -c '^20')" = 3 ] || h_fail "--since 1h"
	$a --json --limit 2 2>/dev/null | "$H_PY" -c '
import json, sys
d = json.load(sys.stdin)
assert len(d["entries"]) == 2 and d["malformed"] == 2, d
assert d["entries"][-1]["decision"] == "denied", d'
	$a --since yesterday >/dev/null 2>&1 && h_fail "--since yesterday accepted"
	true
}

test_policy_cli() {
	world "[policy web]" "identity = $URI" "servers = *.example.com" "confirm = yes" \
		"remember = 5" "rate-limit = 10/minute" "server-issuer = CN=x, O=y"
	local out
	out=$(h_certagent policy list --config "$H_AGENT_CONF") || h_fail "policy list failed"
	printf '%s\n' "$out"
	for want in '\[policy web\]' '\*.example.com' 'remembered 5 min' '10/minute' 'CN=x, O=y'; do
		grep -q "$want" <<<"$out" || h_fail "policy list lacks $want"
	done
	h_certagent policy list --config "$H_AGENT_CONF" --json | "$H_PY" -c '
import json, sys
d = json.load(sys.stdin)
p = d["policies"][0]
assert p["name"] == "web" and p["rate_limit"] == "10/minute" and p["remember_minutes"] == 5, d
assert d["settings"]["audit_fail_closed"] == "no", d'
	printf '[policy bad]\nidentity = pkcs11:token=x\nrate-limit = lots\n' >"$H_TMP/bad.conf"
	h_certagent policy list --config "$H_TMP/bad.conf" 2>"$H_TMP/bad.err" && h_fail "a bad rate-limit was accepted"
	grep -q 'bad.conf:3: rate-limit' "$H_TMP/bad.err" || h_fail "no file:line in: $(cat "$H_TMP/bad.err")"
}

# A pinentry stand-in: answers OK to everything; CONFIRM is counted, refused while
# $H_TMP/deny exists, else answered with the third button ("Allow for N minutes", NOTOK)
# when it was offered. (tests/policy/confirm-test.sh tests each button.)
fake_pinentry() {
	cat >"$H_TMP/pinentry" <<EOF2
#!/bin/bash
echo "OK Pleased to meet you"
while read -r cmd rest; do
	case \$cmd in
	SETDESC) printf '%s\n' "\$rest" >>"$H_TMP/confirm.desc"; echo OK ;;
	SETNOTOK) notok=1; echo OK ;;
	CONFIRM) echo x >>"$H_TMP/confirm.count"
		if [ -e "$H_TMP/deny" ]; then echo "ERR 83886179 Operation cancelled"
		elif [ -n "\${notok:-}" ]; then echo "ERR 83886194 Not confirmed"; else echo OK; fi ;;
	BYE) echo OK; exit 0 ;;
	*) echo OK ;;
	esac
done
EOF2
	chmod +x "$H_TMP/pinentry"
}

test_confirm() {
	h_ca
	fake_pinentry
	world "pinentry = $H_TMP/pinentry" "[policy ask]" "identity = $URI" "confirm = yes" \
		"remember = 5" "[policy always]" "identity = $URI2" "confirm = yes"
	sign_ok "$URI" server-name=s:www.example.com
	sign_ok "$URI" server-name=s:www.example.com
	[ "$(wc -l <"$H_TMP/confirm.count")" = 1 ] || h_fail "the confirmation was not remembered"
	grep -q 'python3.*www.example.com' "$H_TMP/confirm.desc" ||
		h_fail "the dialog does not name the program and server: $(cat "$H_TMP/confirm.desc")"
	sign_ok "$URI" server-name=s:other.example.com # another server: asked again
	[ "$(wc -l <"$H_TMP/confirm.count")" = 2 ] || h_fail "another server was not asked"
	touch "$H_TMP/deny"
	expect_error $ERR.PolicyDenied 'refused' sign "$URI2"
	rm "$H_TMP/deny"
	sign_ok "$URI2"
	sign_ok "$URI2"
	[ "$(wc -l <"$H_TMP/confirm.count")" = 5 ] || h_fail "confirm without remember must ask each time"
}

test_deny() {
	world "[policy off]" "identity = pkcs11:object=second" "deny = yes"
	expect_error $ERR.PolicyDenied 'forbids' sign "$URI2"
	sign_ok "$URI"
}

# ---- certagent policy add/remove, and Reload reading the [policy] sections again ----------

# pol ARG...: `certagent policy ARG... --config` the agent's file (the one it reloads).
pol() { h_certagent policy "$@" --config "$H_AGENT_CONF"; }
# pol_rc RC ARG...: pol must exit with RC; its stderr is left in $H_TMP/pol.err.
pol_rc() {
	local want=$1 rc=0
	shift
	pol "$@" >"$H_TMP/pol.out" 2>"$H_TMP/pol.err" || rc=$?
	[ "$rc" = "$want" ] || h_fail "policy $* exited $rc, not $want: $(cat "$H_TMP/pol.err")"
	h_log "policy $1 $2: exit $rc: $(head -n1 "$H_TMP/pol.err")"
}
# same FILE: the agent's configuration is byte for byte FILE.
same() { cmp "$1" "$H_AGENT_CONF" || { diff -u "$1" "$H_AGENT_CONF" >&2; h_fail "the configuration changed"; }; }

# A policy added while the agent runs holds at once (Sign and handshakes); removed, it is gone;
# the rest of the file (comments, inline comments, other sections) is untouched.
test_edit_add_remove() {
	world "# about the policies: bob only for example.net" "[policy other]" \
		"; a comment inside a section" "identity = $URI2" \
		"servers = *.example.net  # inline comment"
	h_gnutls_serv --tls1.3
	connect_ok --identity "$FULL"
	cp "$H_AGENT_CONF" "$H_TMP/before.conf"

	pol add web --identity "$URI" --servers '*.example.com' --servers api.example.org \
		--json >"$H_TMP/add.json" 2>"$H_TMP/add.err" ||
		h_fail "policy add failed: $(cat "$H_TMP/add.err")"
	"$H_PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["policy"] == "web" and d["change"] == "added" and d["agent"] == "reloaded", d
assert d["agent_error"] is None, d' "$H_TMP/add.json" || h_fail "add --json: $(cat "$H_TMP/add.json")"
	grep -q 'applies now' "$H_TMP/add.err" || h_fail "add does not say the agent took it"
	# The old file is a prefix of the new one, which ends with the section.
	head -c "$(stat -c %s "$H_TMP/before.conf")" "$H_AGENT_CONF" | cmp - "$H_TMP/before.conf" ||
		h_fail "policy add changed the lines before its section"
	tail -n 4 "$H_AGENT_CONF" | diff - <(printf '[policy web]\nidentity = %s\nservers = *.example.com\nservers = api.example.org\n' "$URI") >&2 ||
		h_fail "the section written is not the one asked for"
	grep -q 'reload-policy: .*: done' "$H_AGENT_LOG" || h_fail "the agent log shows no policy reload"

	# Only the policies were read again: the token is still logged in (no unlock here).
	sign_ok "$URI" server-name=s:www.example.com
	sign_ok "$URI" server-name=s:api.example.org
	expect_error $ERR.PolicyDenied 'policy "web" does not allow' sign "$URI" server-name=s:evil.org
	connect_denied 'policy "web"' --identity "$FULL"
	sign_ok "$URI2" server-name=s:www.example.net # the other policy is as it was
	expect_error $ERR.PolicyDenied 'policy "other"' sign "$URI2" server-name=s:evil.org

	pol_rc 0 remove web --yes
	grep -q 'applies now' "$H_TMP/pol.err" || h_fail "remove does not say the agent took it"
	same "$H_TMP/before.conf"
	sign_ok "$URI" server-name=s:evil.org
	connect_ok --identity "$FULL"
	h_serv_stop

	# Without an agent: the file changes, and the output says when it applies.
	h_agent_stop
	pol_rc 0 add web --identity "$URI" --deny
	grep -q 'no agent is running: the change applies when it starts' "$H_TMP/pol.err" ||
		h_fail "no word on the missing agent: $(cat "$H_TMP/pol.err")"
	pol_rc 0 remove web --yes --json
	grep -q '"agent": "not-running"' "$H_TMP/pol.out" || h_fail "remove --json: $(cat "$H_TMP/pol.out")"
	same "$H_TMP/before.conf"
	# A section in the middle goes with the blank line after it; the comment above stays.
	pol_rc 0 remove other --yes
	diff "$H_TMP/before.conf" "$H_AGENT_CONF" | grep '^[<>]' >"$H_TMP/removed" || true
	diff "$H_TMP/removed" <(printf '< [policy other]\n< ; a comment inside a section\n< identity = %s\n< servers = *.example.net  # inline comment\n< \n' "$URI2") >&2 ||
		h_fail "remove took other lines than its section's"
}

# add of a name that is there refuses and changes nothing; --force replaces it in its place;
# a bad value or an unknown name changes nothing either.
test_edit_refusals() {
	world "[policy web]" "identity = $URI" "servers = *.example.com" "" \
		"[policy catchall]" "identity = pkcs11:token=demo" "servers = *.example.net"
	cp "$H_AGENT_CONF" "$H_TMP/before.conf"
	pol_rc 6 add web --identity "$URI" --servers localhost
	grep -q 'already has a \[policy web\].*--force' "$H_TMP/pol.err" || h_fail "no reason: $(cat "$H_TMP/pol.err")"
	same "$H_TMP/before.conf"
	pol_rc 2 add web2 --identity "$URI" --rate-limit lots
	grep -q 'rate-limit of \[policy web2\] must be' "$H_TMP/pol.err" || h_fail "no reason: $(cat "$H_TMP/pol.err")"
	pol_rc 2 add web2 --identity "$URI" --remember 5
	pol_rc 2 add web2 --servers localhost
	pol_rc 2 add 'bad name' --identity "$URI"
	pol_rc 2 add web2 --identity "$URI" --servers 'a.example.com # b'
	pol_rc 7 remove nosuch --yes
	pol_rc 6 remove web </dev/null # no --yes and no terminal to ask on
	pol_rc 2 list --identity "$URI"
	same "$H_TMP/before.conf"
	sign_ok "$URI" server-name=s:www.example.com

	pol_rc 0 add web --force --identity "$URI" --servers localhost
	grep -q 'replaced \[policy web\]' "$H_TMP/pol.err" || h_fail "no word on the replacement"
	# In its place: still before [policy catchall], so it still applies first.
	[ "$(grep -n '^\[policy' "$H_AGENT_CONF" | cut -d: -f2 | tr '\n' ' ')" = "[policy web] [policy catchall] " ] ||
		h_fail "the replaced section moved: $(cat "$H_AGENT_CONF")"
	h_unlock demo
	sign_ok "$URI" server-name=s:localhost
	expect_error $ERR.PolicyDenied 'server www.example.com' sign "$URI" server-name=s:www.example.com
}

# A configuration that does not load: Reload (and SIGHUP) say where, keep the policy in force
# and the logins, and the agent goes on serving. Fixed, the next Reload applies it.
test_reload_broken() {
	world "[policy web]" "identity = $URI" "servers = *.example.com"
	sign_ok "$URI" server-name=s:www.example.com
	printf '\n[policy web2]\nidentity = %s\nrate-limit = lots\n' "$URI2" >>"$H_AGENT_CONF"
	local line
	line=$(grep -n 'rate-limit = lots' "$H_AGENT_CONF" | cut -d: -f1)
	expect_error $ERR.InvalidArgs "agent.conf:$line: rate-limit of [policy web2]" h_ctl reload
	grep -q 'the policy in force stays' <<<"$(h_ctl reload)" || h_fail "the error does not say what stays"
	local rc=0
	h_certagent reload 2>"$H_TMP/reload.err" || rc=$?
	[ "$rc" = 5 ] || h_fail "certagent reload exited $rc: $(cat "$H_TMP/reload.err")"
	grep -q "agent.conf:$line:" "$H_TMP/reload.err" || h_fail "certagent reload: $(cat "$H_TMP/reload.err")"
	kill -HUP "$H_AGENT_PID"
	h_wait_until 10 grep -q 'reload: SIGHUP: InvalidArgs' "$H_AGENT_LOG" || h_fail "no SIGHUP reload error in the log"
	# Still serving, still logged in (nothing was reloaded), the old policy in force.
	sign_ok "$URI" server-name=s:www.example.com
	expect_error $ERR.PolicyDenied 'policy "web"' sign "$URI" server-name=s:evil.org
	sign_ok "$URI2" server-name=s:evil.org
	# The CLI does not edit a file that does not load.
	cp "$H_AGENT_CONF" "$H_TMP/broken.conf"
	pol_rc 5 remove web2 --yes
	grep -q "agent.conf:$line: .*fix the file first" "$H_TMP/pol.err" || h_fail "no reason: $(cat "$H_TMP/pol.err")"
	same "$H_TMP/broken.conf"
	# Fixed by hand: the next reload applies it.
	sed -i 's|rate-limit = lots|rate-limit = 1/hour|' "$H_AGENT_CONF"
	h_ctl reload >/dev/null || h_fail "reload of the fixed file failed: $(h_ctl reload)"
	h_unlock demo
	sign_ok "$URI2" server-name=s:evil.org
	expect_error $ERR.PolicyDenied 'limit is reached' sign "$URI2" server-name=s:evil.org
}

# Remembered confirmations and rate counters survive a reload for sections that did not
# change, and start afresh for a section that did.
test_reload_keeps_state() {
	fake_pinentry
	world "pinentry = $H_TMP/pinentry" "[policy ask]" "identity = $URI" "confirm = yes" \
		"remember = 5" "[policy slow]" "identity = $URI2" "rate-limit = 1/hour"
	sign_ok "$URI" server-name=s:www.example.com
	sign_ok "$URI2"
	[ "$(wc -l <"$H_TMP/confirm.count")" = 1 ] || h_fail "expected one confirmation"
	pol_rc 0 add third --identity 'pkcs11:token=other' --deny
	h_unlock demo
	sign_ok "$URI" server-name=s:www.example.com
	[ "$(wc -l <"$H_TMP/confirm.count")" = 1 ] || h_fail "an unchanged policy forgot its confirmation"
	expect_error $ERR.PolicyDenied 'limit is reached' sign "$URI2"
	grep -q 'kept 1 of 1 rate counters and 1 of 1 remembered' "$H_AGENT_LOG" || h_fail "no carry-over in the log"
	pol_rc 0 add ask --force --identity "$URI" --confirm --remember 10
	h_unlock demo
	sign_ok "$URI" server-name=s:www.example.com
	[ "$(wc -l <"$H_TMP/confirm.count")" = 2 ] || h_fail "a changed policy kept its confirmation"
}

# Reloads while signatures run (threads on the bus, handshakes through libcertagent): every
# Sign is decided by one policy or the other, none is lost, the agent stays up. A pin-source
# logs the token in again after each reload.
test_reload_under_load() {
	(umask 077 && printf '%s\n' "$H_PIN" >"$H_TMP/pin-demo")
	world "[pin-source demo]" "token = pkcs11:token=demo" "file = $H_TMP/pin-demo" \
		"[policy web]" "identity = $URI" "servers = *.example.com localhost"
	"$H_PY" - "$URI" "$H_TMP/hash" "$H_TMP/stop" >"$H_TMP/load.out" 2>&1 <<'PYEOF' &
import dbus, os, sys, threading
uri, data, stop = sys.argv[1], open(sys.argv[2], 'rb').read(), sys.argv[3]
counts = {"ok": 0, "denied": 0}
errors = []
def run():
    bus = dbus.bus.BusConnection(os.environ['DBUS_SESSION_BUS_ADDRESS'])
    a = dbus.Interface(bus.get_object('org.certagent.Agent1', '/org/certagent/Agent1'),
                       'org.certagent.Agent1')
    i = 0
    while not os.path.exists(stop):
        i += 1
        name = 'www.example.com' if i % 2 else 'evil.org'
        try:
            a.Sign(uri, 'ecdsa_secp256r1_sha256', dbus.ByteArray(data),
                   dbus.Dictionary({'server-name': name}, signature='sv'), timeout=60)
            counts["ok"] += 1
            if name == 'evil.org':
                errors.append('evil.org was allowed')
        except dbus.exceptions.DBusException as e:
            if e.get_dbus_name() == 'org.certagent.Error.PolicyDenied' and name == 'evil.org':
                counts["denied"] += 1
            else:
                errors.append('%s: %s' % (e.get_dbus_name(), e.get_dbus_message()))
ts = [threading.Thread(target=run) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print(counts, errors[:5])
sys.exit(1 if errors or counts["ok"] < 10 or counts["denied"] < 10 else 0)
PYEOF
	local load=$! i
	h_gnutls_serv --tls1.3
	for i in 1 2 3 4 5 6 7 8; do
		pol add "extra$i" --identity 'pkcs11:token=elsewhere' --deny 2>/dev/null ||
			h_fail "policy add extra$i failed"
		connect_ok --identity "$FULL"
		h_ctl reload >/dev/null || h_fail "reload failed"
	done
	touch "$H_TMP/stop"
	wait "$load" || h_fail "signing during reloads: $(cat "$H_TMP/load.out")"
	h_log "signing during reloads: $(cat "$H_TMP/load.out")"
	h__agent_up || h_fail "the agent is gone"
	[ "$(grep -c '^\[policy extra' "$H_AGENT_CONF")" = 8 ] || h_fail "lost an edit"
	sign_ok "$URI" server-name=s:www.example.com
	expect_error $ERR.PolicyDenied 'policy "web"' sign "$URI" server-name=s:evil.org
}

case ${1:-} in
'') h_fail "usage: policy-test.sh CASE" ;;
*) fn=test_$(printf '%s' "$1" | tr - _) ;;
esac
declare -f "$fn" >/dev/null || h_fail "no such case: $1"
"$fn"
h_log "policy $1: ok"
