#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-explain.sh TLS-VERSION SERVER: `certagent connect --explain` against a real server that
# requires client certificates. The explanation names the server's chain, the CAs the server
# accepts, the identity chosen and why, the token and PKCS#11 mechanism, version and cipher,
# and says "accepted"; --json says the same and parses; an identity from a CA the server does
# not trust is "rejected" (exit 1); a CRL revoking the server's certificate fails the CRL check
# and the handshake ("server-not-trusted", exit 1).
. "$CERTAGENT_SRC/tests/lib/harness.sh"
ver=${1:-1.3} serv=${2:-gnutls}

h_token demo
h_keygen demo p256 alice 01
h_keygen demo p256 mallory 02
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_client_cert demo mallory 02 "CN=mallory,O=elsewhere" other-root
h_agent
h_unlock demo
case $serv in
gnutls) h_gnutls_serv "--tls$ver" ;;
openssl) h_openssl_serv "--tls$ver" ;;
esac
ca=$H_TMP/ca/root.pem
out=$H_TMP/explain.txt

. "$CERTAGENT_SRC/tests/cli/explain-lib.sh"

# --- accepted, as text -----------------------------------------------------------------------
explain 0 "$out" --explain
has '^    \[0\] CN=localhost +\(sent by the server\)'
# gnutls-serv sends the leaf only (the root comes from our trust store); s_server sends both.
has '^    \[1\] CN=certagent test root CA,O=certagent tests +\((from the trust store|sent by the server)\)'
has '^      ok +\[0\] +signature +signed by \[1\] CN=certagent test root CA'
has '^      ok +\[0\] +validity '
has '^      ok +\[1\] +trust-anchor '
has '^      ok +\[0\] +hostname +.*"localhost"'
has '^    acceptable CAs +CN=certagent test root CA,O=certagent tests'
has '^    identity +alice$'
has '^    subject +CN=alice,O=certagent tests$'
has '^    token +demo \(ec key\)$'
has '^    why +the first of the agent.s 2 identities that fits'
has '^    mechanism +CKM_ECDSA, on token demo$'
has '^    time +[0-9.]+ ms$'
has "^    version +TLS$ver\$"
has '^    cipher +[A-Z0-9-]+$'
has '^    result +accepted$'
h_assert_server_saw "CN=alice,O=certagent tests"

# --- accepted, as JSON -------------------------------------------------------------------------
explain 0 "$H_TMP/explain.json" --json
python3 - "$H_TMP/explain.json" "$ver" <<'PY' || h_fail "--json is not what it should be"
import json, sys
d = json.load(open(sys.argv[1])); ver = sys.argv[2]
def check(cond, what):
    if not cond:
        print("json:", what, json.dumps(d, indent=1), file=sys.stderr); sys.exit(1)
check(d["result"] == "accepted" and d["accepted"] is True, "result")
check([c["subject"] for c in d["server_chain"]] ==
      ["CN=localhost", "CN=certagent test root CA,O=certagent tests"], "server_chain")
check(d["server_chain"][0]["source"] == "server", "leaf source")
kinds = {(c["check"], c["link"]): c["status"] for c in d["checks"]}
for k in [("signature", 0), ("validity", 0), ("trust-anchor", 1), ("hostname", 0), ("gnutls", None)]:
    check(kinds.get(k) == "ok", "check %s" % (k,))
check("CN=certagent test root CA,O=certagent tests" in d["certificate_request"]["acceptable_cas"], "CAs")
check(len(d["certificate_request"]["signature_algorithms"]) > 0, "request sigs")
check(d["identity"]["label"] == "alice" and d["identity"]["token_label"] == "demo", "identity")
check("issued by a CA the server named" in d["identity"]["reason"], "reason")
s = d["signatures"]
check(len(s) == 1 and s[0]["scheme"] == "ecdsa_secp256r1_sha256" and s[0]["mechanism"] == "CKM_ECDSA"
      and s[0]["token_label"] == "demo" and s[0]["elapsed_us"] > 0 and s[0]["error"] is None, "signatures")
check(d["negotiated"]["version"] == "TLS" + ver and d["negotiated"]["cipher"], "negotiated")
check("TLS" + ver in d["offered"]["versions"] and d["offered"]["groups"], "offered")
PY

# --- rejected: an identity from a CA the server does not trust -------------------------------
# --identity takes the URI exactly as the agent lists it.
mallory=$("$H_CERTAGENT" list --json | python3 -c '
import json, sys
print([i["uri"] for i in json.load(sys.stdin)["identities"] if i["label"] == "mallory"][0])')
explain 1 "$out" --explain --identity "$mallory"
has '^    identity +mallory$'
has '^    why +the application named this identity'
has '^    result +rejected$'
explain 1 "$H_TMP/rejected.json" --json --identity "$mallory"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "rejected" and d["accepted"] is False and "alert" in d["detail"], d["result"]
assert d["identity"]["label"] == "mallory"
' "$H_TMP/rejected.json" || h_fail "--json for a rejected client"

# --- a CRL revoking the server's certificate -------------------------------------------------
cat >"$H_TMP/ca/crl.tmpl" <<EOT
crl_next_update = 30
crl_number = 1
EOT
certtool --generate-crl --load-ca-privkey "$H_TMP/ca/root.key" --load-ca-certificate "$ca" \
	--load-certificate "$H_TMP/ca/server.pem" --template "$H_TMP/ca/crl.tmpl" \
	--outfile "$H_TMP/ca/revoked.crl" >"$H_TMP/ca/crl.log" 2>&1 ||
	{ cat "$H_TMP/ca/crl.log" >&2; h_fail "certtool --generate-crl failed"; }
explain 1 "$out" --explain --crl "$H_TMP/ca/revoked.crl"
has '^      FAILED \[0\] +crl +REVOKED'
has '^      FAILED +gnutls +'
has '^    result +server-not-trusted$'
grep -q "the server's certificate is not trusted" "$H_TMP/explain.err" ||
	h_fail "no clear error on stderr: $(cat "$H_TMP/explain.err")"
explain 1 "$H_TMP/crl.json" --json --crl "$H_TMP/ca/revoked.crl"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "server-not-trusted", d["result"]
assert any(c["check"] == "crl" and c["link"] == 0 and c["status"] == "failed" for c in d["checks"])
assert d["signatures"] == [], "signed for an untrusted server"
' "$H_TMP/crl.json" || h_fail "--json with a revoking CRL"

# An empty CRL (nothing revoked) passes the check.
certtool --generate-crl --load-ca-privkey "$H_TMP/ca/root.key" --load-ca-certificate "$ca" \
	--template "$H_TMP/ca/crl.tmpl" --outfile "$H_TMP/ca/empty.crl" >"$H_TMP/ca/crl.log" 2>&1 ||
	h_fail "certtool --generate-crl (empty) failed"
explain 0 "$out" --explain --crl "$H_TMP/ca/empty.crl"
has '^      ok +\[0\] +crl +not revoked'
echo "ok: --explain TLS$ver $serv"
