#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `certagent list` (issue 3): subject, issuer, serial, validity, days left with a warning
# under 30 days and once expired, chain complete or not (and what is missing), key type, URI;
# with the agent (source "agent") and without it (source "tokens", read through pkcs11/).
# Certificates made here with certtool for keys generated on SoftHSM tokens:
#   demo/good      365 days, issued by inter (inter on the token, root in --cafile)
#   demo/soon      10 days  -> "expiring"
#   demo/old       2020-2021 -> "expired"
#   bare/lonely    issued by inter, but inter is NOT on token "bare" -> incomplete
#   demo/self      self-signed leaf -> complete (self-signed)
. "$CERTAGENT_SRC/tests/lib/harness.sh"

h_token demo
h_token bare
h_keygen demo p256 good 01
h_keygen demo p256 soon 02
h_keygen demo rsa2048 old 03
h_keygen demo p256 self 04
h_keygen bare p256 lonely 01
h_ca
d=$H_TMP/ca
root_dn="CN=certagent test root CA,O=certagent tests"
inter_dn="CN=certagent test client CA,O=certagent tests"

# issue TOKEN LABEL ID SUBJECT CA|self TEMPLATE-LINE...: a certificate for the token key,
# written to the token with the key's label and ID.
serial=500
issue() {
	local tok=$1 label=$2 id=$3 subject=$4 ca=$5 pub
	shift 5
	serial=$((serial + 1))
	{
		printf 'dn = "%s"\nserial = %d\ntls_www_client\nsigning_key\n' "$subject" "$serial"
		printf '%s\n' "$@"
	} >"$d/$label.tmpl"
	pub="pkcs11:token=$tok;id=$(printf '%s' "$id" | sed 's/\(..\)/%\1/g');type=public"
	if [ "$ca" = self ]; then
		# A self-signed leaf needs the private key: certtool signs with it on the token.
		GNUTLS_PIN=$H_PIN certtool --generate-self-signed --provider="$H_SOFTHSM" \
			--load-privkey "pkcs11:token=$tok;object=$label;type=private" \
			--template "$d/$label.tmpl" --outfile "$d/$label.pem" >>"$d/certtool.log" 2>&1 ||
			{ tail "$d/certtool.log" >&2; h_fail "certtool could not self-sign $label"; }
	else
		certtool --generate-certificate --provider="$H_SOFTHSM" --load-pubkey "$pub" \
			--load-ca-certificate "$d/$ca.pem" --load-ca-privkey "$d/$ca.key" \
			--template "$d/$label.tmpl" --outfile "$d/$label.pem" >>"$d/certtool.log" 2>&1 ||
			{ tail "$d/certtool.log" >&2; h_fail "certtool could not issue $label"; }
	fi
	p11tool --provider="$H_SOFTHSM" --login --set-pin="$H_PIN" --write \
		--load-certificate "$d/$label.pem" --label "$label" --id "$id" "pkcs11:token=$tok" \
		>"$H_TMP/p11write.log" 2>&1 ||
		{ cat "$H_TMP/p11write.log" >&2; h_fail "p11tool could not store $label on $tok"; }
}
issue demo good 01 "CN=good,O=certagent tests" inter "expiration_days = 365"
issue demo soon 02 "CN=soon,O=certagent tests" inter "expiration_days = 10"
issue demo old 03 "CN=old,O=certagent tests" inter \
	'activation_date = "2020-01-01 00:00:00"' 'expiration_date = "2021-01-01 00:00:00"'
issue demo self 04 "CN=self,O=certagent tests" self "expiration_days = 365"
issue bare lonely 01 "CN=lonely,O=certagent tests" inter "expiration_days = 365"
# The intermediate goes on "demo" only.
p11tool --provider="$H_SOFTHSM" --login --set-pin="$H_PIN" --write --mark-ca \
	--load-certificate "$d/inter.pem" --label "client CA" "pkcs11:token=demo" \
	>"$H_TMP/p11write.log" 2>&1 || h_fail "p11tool could not store the CA on demo"

# check FILE SOURCE LOGGED-IN-TYPE: the JSON of `list` against what was issued above.
check() {
	python3 - "$@" <<'PY'
import json, sys
path, source, root_dn, inter_dn = sys.argv[1:5]
d = json.load(open(path))
def fail(msg):
    sys.exit("list --json: %s\n%s" % (msg, json.dumps(d, indent=1)))
if d["source"] != source:
    fail("source %r, want %r" % (d["source"], source))
if d["trust_store"] is None:
    fail("no trust_store")
by = {i["label"]: i for i in d["identities"]}
for label in ("good", "soon", "old", "self", "lonely"):
    if label not in by:
        fail("no identity " + label)
for i in by.values():
    if not i["uri"].startswith("pkcs11:") or "type=private" not in i["uri"]:
        fail("uri " + i["uri"])
    for k in ("subject", "issuer", "serial", "not_before", "not_after", "days_left",
              "expiry", "warning", "chain_complete", "chain_anchor", "chain_missing",
              "chain", "key_type", "bits", "token_label", "schemes"):
        if k not in i:
            fail("%s has no %s" % (i["label"], k))
    if source == "tokens" and i["logged_in"] is not None:
        fail("tokens view: logged_in should be null")
    if source == "agent" and not isinstance(i["logged_in"], bool):
        fail("agent view: logged_in should be a bool")
g, s, o, sf, ln = (by[k] for k in ("good", "soon", "old", "self", "lonely"))
# good: a year left, no warning, chain leaf + inter up to the root of --cafile.
if g["subject"] != "CN=good,O=certagent tests" or g["issuer"] != inter_dn:
    fail("good: subject/issuer")
if g["key_type"] != "ec" or g["bits"] != 256 or g["token_label"] != "demo":
    fail("good: key")
if not (360 <= g["days_left"] <= 365) or g["expiry"] != "ok" or g["warning"] is not None:
    fail("good: expiry")
if len(g["serial"]) < 2 or not g["not_before"].endswith("Z") or not g["not_after"].endswith("Z"):
    fail("good: serial/validity")
if [c["subject"] for c in g["chain"]] != ["CN=good,O=certagent tests", inter_dn]:
    fail("good: chain " + repr(g["chain"]))
if g["chain_complete"] is not True or g["chain_anchor"] != root_dn or \
   g["chain_anchor_source"] != "trust store" or g["chain_missing"] is not None:
    fail("good: chain should be complete up to the root")
# soon: 10 days -> warning.
if not (8 <= s["days_left"] <= 10) or s["expiry"] != "expiring" or "expires in" not in s["warning"]:
    fail("soon: expiry")
# old: expired in 2021.
if s["chain_complete"] is not True:
    fail("soon: chain")
if o["expiry"] != "expired" or o["days_left"] >= -365 or "EXPIRED" not in o["warning"]:
    fail("old: expiry")
if o["not_after"] != "2021-01-01T00:00:00Z" or o["key_type"] != "rsa" or o["bits"] != 2048:
    fail("old: not_after/key")
# self: self-signed leaf.
if sf["chain_complete"] is not True or sf["chain_anchor_source"] != "self-signed" or \
   len(sf["chain"]) != 1:
    fail("self: chain")
# lonely: the intermediate is not on its token -> incomplete, inter missing.
if ln["chain_complete"] is not False or ln["chain_missing"] != inter_dn or len(ln["chain"]) != 1:
    fail("lonely: chain should be incomplete, missing the intermediate")
if ln["token_label"] != "bare":
    fail("lonely: token")
PY
}

h_bus
# --- without the agent: the tokens, read directly -----------------------------------------
st=0
h_certagent list --agent >"$H_TMP/out" 2>"$H_TMP/err" || st=$?
[ "$st" = 3 ] || h_fail "list --agent without agent: exit $st, want 3"
st=0
h_certagent list --json --cafile "$d/root.pem" --module "$H_SOFTHSM" >"$H_TMP/tokens.json" \
	2>"$H_TMP/err" || st=$?
[ "$st" = 0 ] || h_fail "list without agent: exit $st: $(cat "$H_TMP/err")"
grep -q "not running" "$H_TMP/err" || h_fail "list without agent does not say so: $(cat "$H_TMP/err")"
check "$H_TMP/tokens.json" tokens "$root_dn" "$inter_dn" || h_fail "tokens view"

CERTAGENT_MODULE=$H_SOFTHSM h_certagent list --cafile "$d/root.pem" >"$H_TMP/tokens.txt" \
	2>"$H_TMP/err" || h_fail "list (text) without agent failed: $(cat "$H_TMP/err")"
cat "$H_TMP/tokens.txt"
grep -q "^certagentd is not running: identities read from the tokens directly" "$H_TMP/tokens.txt" ||
	h_fail "text: no header saying the tokens are read directly"
grep -q "(source: tokens" "$H_TMP/tokens.txt" || h_fail "text: no source"
grep -q "certagent: warning: 1 certificate expires within 30 days, 1 expired, 1 incomplete chain" \
	"$H_TMP/err" || h_fail "no warning summary on stderr: $(cat "$H_TMP/err")"

# --- with the agent: its view --------------------------------------------------------------
h_agent
h_certagent list --json --cafile "$d/root.pem" >"$H_TMP/agent.json" ||
	h_fail "list --json with the agent failed"
check "$H_TMP/agent.json" agent "$root_dn" "$inter_dn" || h_fail "agent view"
h_certagent list --json --tokens --module "$H_SOFTHSM" --cafile "$d/root.pem" \
	>"$H_TMP/forced.json" 2>/dev/null || h_fail "list --tokens with the agent running failed"
check "$H_TMP/forced.json" tokens "$root_dn" "$inter_dn" || h_fail "--tokens view"

h_certagent list --cafile "$d/root.pem" >"$H_TMP/agent.txt" 2>"$H_TMP/err" ||
	h_fail "list (text) with the agent failed"
cat "$H_TMP/agent.txt"
grep -q "^Identities as certagentd sees them (source: agent)" "$H_TMP/agent.txt" ||
	h_fail "text: no agent header"
# Blocks: the line after "soon" up to the next blank line.
block() { sed -n "/^$1\$/,/^\$/p" "$H_TMP/agent.txt"; }
block good | grep -q "^  chain:    complete: leaf + 1 intermediate" || h_fail "text: good chain"
block good | grep -q "^            root: $root_dn (trust store)" || h_fail "text: good root"
! block good | grep -q WARNING || h_fail "text: warning for good"
block good | grep -qE "^  validity: [0-9-]+ [0-9:]+ UTC to [0-9-]+ [0-9:]+ UTC \(36[0-9] days left\)" ||
	h_fail "text: good validity"
block good | grep -qE "^  serial:   [0-9a-f]+$" || h_fail "text: serial"
block soon | grep -qE "^  WARNING:  the certificate expires in [0-9]+ days \(under 30\)" ||
	h_fail "text: no warning for soon"
block old | grep -qE "^  WARNING:  the certificate EXPIRED [0-9]+ days ago" ||
	h_fail "text: no warning for old"
block old | grep -q "2021-01-01 00:00:00 UTC (expired" || h_fail "text: old validity"
block lonely | grep -q "^  chain:    INCOMPLETE: leaf + 0 intermediates" || h_fail "text: lonely chain"
block lonely | grep -q "^            missing: $inter_dn" || h_fail "text: lonely missing"

# Without --cafile the test root is in no system store: the chain stops at inter's issuer.
h_certagent list --json >"$H_TMP/system.json" || h_fail "list --json (system trust) failed"
python3 - "$H_TMP/system.json" "$root_dn" <<'PY' || h_fail "system trust: $(cat "$H_TMP/system.json")"
import json, sys
d = json.load(open(sys.argv[1]))
g = [i for i in d["identities"] if i["label"] == "good"][0]
assert d["trust_store"] == "the system trust store", d["trust_store"]
assert g["chain_complete"] is False and g["chain_missing"] == sys.argv[2], g
PY

st=0
h_certagent list --cafile "$H_TMP/nothing.pem" >/dev/null 2>&1 || st=$?
[ "$st" = 5 ] || h_fail "list --cafile of a missing file: exit $st, want 5"
st=0
h_certagent list --agent --tokens >/dev/null 2>&1 || st=$?
[ "$st" = 2 ] || h_fail "list --agent --tokens: exit $st, want 2"
echo "ok: list"
