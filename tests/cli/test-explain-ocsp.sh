#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-explain-ocsp.sh: `certagent connect --explain` against gnutls-serv stapling an OCSP
# response for its certificate (issue 3). The responses are made offline with `openssl ocsp`
# from an index file, signed by the root CA that issued the server's certificate. A "good"
# staple is reported as an ok `ocsp` check with its this/next update, and the client is
# accepted; a "revoked" staple fails the `ocsp` check and GnuTLS's own verification, and the
# client refuses the server ("server-not-trusted", exit 1) without signing anything.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

command -v openssl >/dev/null || h_skip "openssl is needed to make OCSP responses"

h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "CN=alice,O=certagent tests"
h_agent
h_unlock demo
d=$H_TMP/ca
ca=$d/root.pem
out=$H_TMP/explain.txt

# ocsp_response STATUS OUT: a DER OCSP response for server.pem saying STATUS (V good, R
# revoked an hour ago), signed by the root CA, valid from now for one day.
serial=$(openssl x509 -noout -serial -in "$d/server.pem") || h_fail "cannot read the serial"
serial=${serial#serial=}
ocsp_response() {
	local st=$1 resp=$2 exp rev=""
	exp=$(date -u -d '+30 days' +%y%m%d%H%M%SZ)
	[ "$st" = R ] && rev=$(date -u -d '-1 hour' +%y%m%d%H%M%SZ)
	printf '%s\t%s\t%s\t%s\tunknown\t/CN=localhost\n' "$st" "$exp" "$rev" "$serial" \
		>"$d/index-$st.txt"
	openssl ocsp -index "$d/index-$st.txt" -rsigner "$ca" -rkey "$d/root.key" -CA "$ca" \
		-issuer "$ca" -serial "0x$serial" -no_nonce -ndays 1 -respout "$resp" \
		>"$d/ocsp-$st.log" 2>&1 || { cat "$d/ocsp-$st.log" >&2; h_fail "openssl ocsp failed"; }
	[ -s "$resp" ] || h_fail "openssl ocsp wrote no response"
}

. "$CERTAGENT_SRC/tests/cli/explain-lib.sh"
when='[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC'

# --- a "good" staple ---------------------------------------------------------------------------
ocsp_response V "$d/good.der"
h_gnutls_serv --ocsp-response "$d/good.der"
explain 0 "$out" --explain
has "^      ok +\[0\] +ocsp +the server stapled an OCSP response saying \"good\""
# The detail wraps; join the ocsp check's lines before looking for the dates.
ocsp_text=$(awk '/^ +(ok|FAILED|note) / { f = / ocsp / } f' "$out" | tr -s ' \n' '  ')
printf '%s\n' "$ocsp_text" | grep -qE "this update $when, next update $when" ||
	{ cat "$out" >&2; h_fail "the ocsp check lacks this/next update: $ocsp_text"; }
has '^      ok +gnutls +'
has '^    result +accepted$'
h_assert_server_saw "CN=alice,O=certagent tests"
explain 0 "$H_TMP/good.json" --json
python3 - "$H_TMP/good.json" <<'PY' || h_fail "--json with a good staple"
import json, re, sys
d = json.load(open(sys.argv[1]))
o = [c for c in d["checks"] if c["check"] == "ocsp"]
assert len(o) == 1 and o[0]["link"] == 0 and o[0]["status"] == "ok", o
when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
assert re.search(r'"good" \(this update %s, next update %s\)' % (when, when), o[0]["detail"]), o
assert d["result"] == "accepted", d["result"]
PY
h_serv_stop

# --- a "revoked" staple ------------------------------------------------------------------------
ocsp_response R "$d/revoked.der"
h_gnutls_serv --ocsp-response "$d/revoked.der"
explain 1 "$out" --explain
has "^      FAILED \[0\] +ocsp +the server stapled an OCSP response saying REVOKED"
has '^      FAILED +gnutls +'
has '^    result +server-not-trusted$'
grep -q "the server's certificate is not trusted" "$H_TMP/explain.err" ||
	h_fail "no clear error on stderr: $(cat "$H_TMP/explain.err")"
explain 1 "$H_TMP/revoked.json" --json
python3 - "$H_TMP/revoked.json" <<'PY' || h_fail "--json with a revoked staple"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "server-not-trusted", d["result"]
assert any(c["check"] == "ocsp" and c["link"] == 0 and c["status"] == "failed"
           and "REVOKED" in c["detail"] for c in d["checks"]), d["checks"]
assert any(c["check"] == "gnutls" and c["status"] == "failed" and "revoked" in c["detail"]
           for c in d["checks"]), d["checks"]
assert d["signatures"] == [], "signed for an untrusted server"
PY
[ "$(h_server_subjects | wc -l)" = 0 ] || h_fail "the server saw a client certificate"
echo "ok: --explain with OCSP staples"
