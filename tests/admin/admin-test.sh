#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Tests of the token enrolment commands (docs/cli-admin.md), one case per run:
#   admin-test.sh CASE [ARGS...]
# Every case works on a throwaway SoftHSM token "demo" (tests/lib/harness.sh) through
# CERTAGENT_MODULE, and checks what a user cares about: the objects on the token (listed with
# p11tool, independently of certagent), exit codes and messages, parsed --json.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

export CERTAGENT_MODULE=$H_SOFTHSM
C=$H_CERTAGENT
[ -x "$C" ] || h_fail "certagent not built: $C"
PIN=$H_TMP/pin
BAD=$H_TMP/badpin
SO=$H_TMP/sopin
printf '1234\n' >"$PIN"
printf '9999\n' >"$BAD"
printf '123456\n' >"$SO"
OUT=$H_TMP/out
ERR=$H_TMP/err

# run RC CMD...: runs the CLI (no terminal, stdin closed), stdout in $OUT, stderr in $ERR,
# and fails unless the exit status is RC.
run() {
	local want=$1 rc=0
	shift
	setsid -w "$C" "$@" </dev/null >"$OUT" 2>"$ERR" || rc=$?
	if [ "$rc" != "$want" ]; then
		printf -- '--- stdout\n' >&2; cat "$OUT" >&2
		printf -- '--- stderr\n' >&2; cat "$ERR" >&2
		h_fail "certagent $* exited $rc, expected $want"
	fi
}
err_has() { grep -qF -- "$1" "$ERR" || { cat "$ERR" >&2; h_fail "stderr lacks: $1"; }; }
out_has() { grep -qF -- "$1" "$OUT" || { cat "$OUT" >&2; h_fail "stdout lacks: $1"; }; }

# The token's objects as p11tool sees them (logged in), one URL a line, sorted.
snapshot() {
	p11tool --provider="$H_SOFTHSM" --login --set-pin=1234 --list-all "pkcs11:token=${1:-demo}" \
		2>/dev/null | sed -n 's/^[[:space:]]*URL: //p' | sort
}
same_as() { # FILE: the token's objects are exactly those in FILE
	snapshot >"$H_TMP/now"
	diff -u "$1" "$H_TMP/now" >&2 || h_fail "the token's objects changed"
}
# py EXPR: evaluates a python3 assertion block with j = the JSON in $OUT.
py() { python3 -c "import json,sys; j=json.load(open('$OUT')); $1" || h_fail "JSON check failed: $1"; }

# The fault cases (pin-*, token-full) put tests/fault's module (certagent-fault-pkcs11, given as
# the case's argument) between certagent and SoftHSM: fault MODE... sets its command for token
# "demo"; its trace (one line per C_Login: "login demo user") tells whether a PIN was tried.
TRACE=$H_TMP/fault-trace.log
fault_setup() {
	[ -f "${1:-}" ] || h_fail "fault module not built: ${1:-}"
	export CERTAGENT_FAULT_REAL=$H_SOFTHSM CERTAGENT_FAULT_CTL=$H_TMP/fault.ctl \
		CERTAGENT_FAULT_LOG=$TRACE CERTAGENT_MODULE=$1
	fault mode=present
}
fault() {
	printf '%s\n' "$@" token=demo >"$H_TMP/fault.ctl.new"
	mv -f "$H_TMP/fault.ctl.new" "$H_TMP/fault.ctl"
	: >"$TRACE"
}
no_user_login() { # WHAT: nothing logged in as the user since the last `fault`
	if grep -q '^login demo user' "$TRACE"; then cat "$TRACE" >&2; h_fail "$1 tried a PIN (C_Login)"; fi
}
# The real agent on the private bus, loading the fault module, when it is built (else 1).
fault_agent() {
	[ -x "$H_CERTAGENTD" ] || { h_log "certagentd not built: agent checks skipped"; return 1; }
	local real=$H_SOFTHSM
	H_SOFTHSM=$CERTAGENT_MODULE
	h_agent
	H_SOFTHSM=$real
}
# agent_unlock_refused TEXT...: `certagent unlock` exits 4 with the agent's message saying TEXT,
# and the agent tries no PIN (it refuses on the token's flags, before C_Login); the same for
# the agent's Unlock over D-Bus directly.
agent_unlock_refused() {
	: >"$TRACE"
	run 4 unlock "pkcs11:token=demo" --pin-file "$PIN"
	for w; do err_has "$w"; done
	if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import dbus' 2>/dev/null; then
		out=$(/usr/bin/python3 "$CERTAGENT_SRC/tests/agent/agentctl.py" unlock \
			pkcs11:token=demo 1234 2>&1) && h_fail "the agent unlocked: $out"
		case $out in *PinLocked*) ;; *) h_fail "the agent's Unlock: $out" ;; esac
	fi
	no_user_login "unlock"
}

h_token demo

case $1 in
tokens)
	run 0 tokens --json
	py "t=[x for x in j['tokens'] if x['label']=='demo'][0]; \
assert t['initialized'] and t['flags']['login_required'] and t['flags']['user_pin_initialized']; \
assert not t['flags']['user_pin_locked'] and t['model']=='SoftHSM v2' and t['uri'].startswith('pkcs11:'); \
assert t['unfinished_enrollment_objects']==0; \
assert any(not x['initialized'] for x in j['tokens']); \
assert all(x['uri']=='pkcs11:slot-id=%d' % x['slot_id'] for x in j['tokens'] if not x['initialized'])"
	run 0 tokens
	out_has "demo"
	out_has "login required, user PIN set"
	out_has "pkcs11:slot-id="
	CERTAGENT_MODULE=/nonexistent/module.so run 5 tokens
	err_has "cannot read the module"
	run 0 tokens --module "$H_SOFTHSM" --json
	;;
token-init)
	run 0 tokens --json
	slot=$(python3 -c "import json; print([t['slot_id'] for t in json.load(open('$OUT'))['tokens'] if not t['initialized']][0])")
	run 0 token init "pkcs11:slot-id=$slot" --label fresh --so-pin-file "$SO" --pin-file "$PIN" --json
	py "assert j['label']=='fresh' and j['destroyed']==[]"
	run 0 tokens --json
	py "assert [t for t in j['tokens'] if t['label']=='fresh' and t['flags']['user_pin_initialized']]"
	run 0 key generate fresh --type p256 --label k --pin-file "$PIN"
	snapshot fresh >"$H_TMP/before"
	grep -q 'object=k;type=private' "$H_TMP/before" || h_fail "new key not on the new token"
	# Re-initialising a token with objects: refused, objects listed, nothing changed.
	run 6 token init fresh --label again --so-pin-file "$SO" --pin-file "$PIN"
	err_has "object=k;type=public"
	err_has "add --force"
	snapshot fresh | diff -u "$H_TMP/before" - >&2 || h_fail "refused re-init changed the token"
	# Wrong SO PIN with --force: refused by the token, objects still there.
	run 4 token init fresh --label again --force --so-pin-file "$BAD" --pin-file "$PIN"
	err_has "wrong SO PIN"
	snapshot fresh | diff -u "$H_TMP/before" - >&2 || h_fail "wrong SO PIN changed the token"
	run 0 token init fresh --label again --force --so-pin-file "$SO" --pin-file "$PIN" --json
	py "assert j['label']=='again' and any('object=k;type=public' in u for u in j['destroyed'])"
	[ -z "$(snapshot again)" ] || h_fail "objects survived --force"
	# A bad label and an absent token.
	run 2 token init again --force --label "$(printf 'x%.0s' $(seq 40))" --so-pin-file "$SO" --pin-file "$PIN"
	run 4 token init nosuch --label x --so-pin-file "$SO" --pin-file "$PIN"
	err_has 'no token matches "nosuch"'
	run 2 token init again --so-pin-file "$SO" --pin-file "$PIN"
	;;
pins)
	printf '5678\n' >"$H_TMP/new"
	run 4 key generate demo --type p256 --label k --pin-file "$BAD"
	err_has 'wrong user PIN for token "demo"'
	run 4 token set-pin demo --pin-file "$BAD" --new-pin-file "$H_TMP/new"
	err_has "wrong current PIN"
	run 0 token set-pin demo --pin-file "$PIN" --new-pin-file "$H_TMP/new"
	run 4 key generate demo --type p256 --label k --pin-file "$PIN"
	CERTAGENT_PIN=5678 run 0 key generate demo --type p256 --label k
	run 4 token unblock-pin demo --so-pin-file "$BAD" --pin-file "$PIN"
	err_has "wrong SO PIN"
	run 0 token unblock-pin demo --so-pin-file "$SO" --pin-file "$PIN"
	run 0 key generate demo --type p256 --label k2 --pin-file "$PIN"
	# No PIN source and no terminal: a usage error, not a hang; token absent: exit 4.
	run 2 key generate demo --type p256 --label k3
	err_has "no terminal"
	run 4 key generate nosuch --type p256 --label k3 --pin-file "$PIN"
	err_has 'no token matches "nosuch"'
	;;
keygen)
	for t in p256 p384 p521 ed25519 rsa2048 rsa3072 rsa4096; do
		run 0 key generate demo --type $t --label "k-$t" --pin-file "$PIN" --json
		py "assert j['type']=='$t' and j['label']=='k-$t' and len(j['id'])==16 and \
j['uri'].endswith(';object=k-$t;type=private') and 'id=%' in j['uri']"
	done
	run 0 key generate demo --type p256 --label withid --id 0a0b --pin-file "$PIN"
	out_has ";id=%0A%0B;object=withid;type=private"
	# On the token, as pkcs11-tool sees them: sign only, sensitive, never extractable.
	pkcs11-tool --module "$H_SOFTHSM" --token-label demo --login --pin 1234 -O >"$H_TMP/o" 2>/dev/null
	n=$(awk '/^Private Key Object/ { p = 1 } /^(Public Key|Certificate) Object/ { p = 0 }
		p && /Usage:/ { print }' "$H_TMP/o" | grep -cx '  Usage:      sign' || true)
	[ "$n" = 8 ] || { cat "$H_TMP/o" >&2; h_fail "private keys not sign-only ($n of 8)"; }
	n=$(awk '/^Private Key Object/ { p = 1 } /^(Public Key|Certificate) Object/ { p = 0 }
		p && /Access:/ { print }' "$H_TMP/o" | grep -c 'sensitive, always sensitive, never extractable' || true)
	[ "$n" = 8 ] || { cat "$H_TMP/o" >&2; h_fail "private keys extractable ($n of 8)"; }
	snapshot >"$H_TMP/before"
	run 6 key generate demo --type p256 --label withid --pin-file "$PIN"
	err_has 'already has an object labelled "withid"'
	run 6 key generate demo --type p256 --label other --id 0a0b --pin-file "$PIN"
	err_has "already has an object with ID 0a0b"
	run 2 key generate demo --type rsa1024 --label other --pin-file "$PIN"
	run 2 key generate demo --type p256 --label other --id xyz --pin-file "$PIN"
	run 2 key generate demo --type p256 --label certagent-enroll-tmp-01 --pin-file "$PIN"
	same_as "$H_TMP/before"
	;;
progress)
	# On a terminal, key generation shows what it waits for, then "done" (a slow token can
	# take minutes); into a file or pipe, no progress characters at all.
	command -v script >/dev/null || h_skip "script (util-linux) is not installed"
	TERM=dumb script -qec "$(printf '%q ' "$C" key generate demo --type rsa3072 --label on-tty \
		--pin-file "$PIN")" "$H_TMP/tty.log" </dev/null >/dev/null 2>&1 ||
		{ cat "$H_TMP/tty.log" >&2; h_fail "key generate on a terminal failed"; }
	grep -q $'\rgenerating the key pair on the token [-|/\\]' "$H_TMP/tty.log" ||
		{ cat -A "$H_TMP/tty.log" >&2; h_fail "no progress line on the terminal"; }
	grep -q $'\rgenerating the key pair on the token done' "$H_TMP/tty.log" ||
		{ cat -A "$H_TMP/tty.log" >&2; h_fail "the progress line does not end with done"; }
	grep -qF 'pkcs11:' "$H_TMP/tty.log" || h_fail "no key URI on the terminal"
	run 0 key generate demo --type p256 --label off-tty --pin-file "$PIN"
	! grep -q $'\r' "$ERR" || { cat -A "$ERR" >&2; h_fail "progress characters in redirected stderr"; }
	! grep -q 'generating' "$ERR" || h_fail "progress text in redirected stderr"
	;;
csr)
	for t in p256 ed25519 rsa2048; do
		run 0 key generate demo --type $t --label "k-$t" --pin-file "$PIN"
		run 0 csr "pkcs11:token=demo;object=k-$t" --subject "CN=k-$t,O=certagent tests" \
			--san dns:client.example --san email:a@example.org --san uri:https://x.example/ \
			--san ip:192.0.2.1 --pin-file "$PIN" --out "$H_TMP/$t.csr"
		certtool --crq-info --infile "$H_TMP/$t.csr" >"$H_TMP/info" 2>&1
		for w in "Self signature: verified" "Subject: CN=k-$t,O=certagent tests" \
			"TLS WWW Client." "DNSname: client.example" "RFC822Name: a@example.org" \
			"URI: https://x.example/" "IPAddress: 192.0.2.1" "Digital signature."; do
			grep -qF "$w" "$H_TMP/info" || { cat "$H_TMP/info" >&2; h_fail "$t CSR lacks $w"; }
		done
	done
	run 0 csr "pkcs11:token=demo;object=k-p256;type=private" --subject "CN=x" --pin-file "$PIN"
	out_has "BEGIN NEW CERTIFICATE REQUEST"
	run 2 csr "pkcs11:token=demo;object=k-p256" --subject "no equals sign" --pin-file "$PIN"
	err_has "bad subject"
	run 2 csr "pkcs11:token=demo;object=k-p256" --subject "BOGUS=x" --pin-file "$PIN"
	run 2 csr "pkcs11:token=demo;object=k-p256" --subject "CN=x" --san ftp:x --pin-file "$PIN"
	run 7 csr "pkcs11:token=demo;object=nosuch" --subject "CN=x" --pin-file "$PIN"
	run 4 csr "pkcs11:token=demo;object=k-p256" --subject "CN=x" --pin-file "$BAD"
	;;
cert-import | enroll-csr-out)
	h_ca
	if [ "$1" = cert-import ]; then
		run 0 key generate demo --type p256 --label alice --pin-file "$PIN"
		run 0 csr "pkcs11:token=demo;object=alice" --subject "CN=alice" --pin-file "$PIN" \
			--out "$H_TMP/alice.csr"
	else
		run 0 enroll demo --type p256 --subject "CN=alice,O=certagent tests" \
			--csr-out "$H_TMP/alice.csr" --pin-file "$PIN" --json
		py "assert j['label']=='alice' and j['certificate_uri'] is None and j['key_uri'].endswith('object=alice;type=private')"
		snapshot | grep -q 'object=alice;type=private' || h_fail "no key after enroll --csr-out"
		snapshot >"$H_TMP/before"
		run 6 enroll demo --type p256 --subject "CN=other" --csr-out "$H_TMP/alice.csr" --pin-file "$PIN"
		err_has "exists: not overwritten"
		same_as "$H_TMP/before"
	fi
	printf 'serial = 7\nexpiration_days = 30\ntls_www_client\nsigning_key\n' >"$H_TMP/c.tmpl"
	certtool --generate-certificate --load-request "$H_TMP/alice.csr" --load-ca-certificate \
		"$H_TMP/ca/inter.pem" --load-ca-privkey "$H_TMP/ca/inter.key" --template "$H_TMP/c.tmpl" \
		--outfile "$H_TMP/alice.pem" >/dev/null 2>&1 || h_fail "certtool could not sign the CSR"
	snapshot >"$H_TMP/before"
	# Bad files first: nothing stored.
	printf 'not a certificate\n' >"$H_TMP/junk.pem"
	run 5 cert import demo "$H_TMP/junk.pem" --pin-file "$PIN"
	err_has "holds no X.509 certificate"
	run 5 cert import demo "$H_TMP/ca/inter.key" --pin-file "$PIN"
	run 5 cert import demo "$H_TMP/nosuch.pem" --pin-file "$PIN"
	# A certificate for a key that is not on the token.
	run 7 cert import demo "$H_TMP/ca/server.pem" --pin-file "$PIN"
	err_has "no private key on token \"demo\" matches"
	same_as "$H_TMP/before"
	run 0 cert import demo "$H_TMP/alice.pem" "$H_TMP/ca/inter.pem" --pin-file "$PIN" --json
	py "c=j['certificates']; assert len(c)==2 and c[0]['leaf'] and c[0]['stored'] and \
c[0]['uri'].endswith('object=alice;type=cert') and not c[1]['leaf'] and c[1]['stored']"
	# The leaf took the key's ID and label, as p11tool sees it.
	keyid=$(snapshot | sed -n 's/.*;\(id=[^;]*\);object=alice;type=private/\1/p')
	[ -n "$keyid" ] || h_fail "no alice key"
	snapshot | grep -qF ";$keyid;object=alice;type=cert" || h_fail "certificate lacks the key's ID"
	p11tool --provider="$H_SOFTHSM" --list-all-trusted "pkcs11:token=demo" 2>/dev/null |
		grep -q "certagent test client CA" || true
	# Duplicates refused, nothing overwritten; a key that has a certificate keeps it.
	snapshot >"$H_TMP/before"
	run 6 cert import demo "$H_TMP/alice.pem" --pin-file "$PIN"
	err_has "already on token"
	printf 'serial = 8\nexpiration_days = 60\ntls_www_client\nsigning_key\n' >"$H_TMP/c2.tmpl"
	certtool --generate-certificate --load-request "$H_TMP/alice.csr" --load-ca-certificate \
		"$H_TMP/ca/inter.pem" --load-ca-privkey "$H_TMP/ca/inter.key" --template "$H_TMP/c2.tmpl" \
		--outfile "$H_TMP/alice2.pem" >/dev/null 2>&1
	run 6 cert import demo "$H_TMP/alice2.pem" --pin-file "$PIN"
	err_has "already has a certificate"
	run 2 cert import demo "$H_TMP/alice.pem" "$H_TMP/ca/server.pem" --pin-file "$PIN"
	same_as "$H_TMP/before"
	# --no-key with a label or ID already on the token: refused (URIs would name both).
	run 6 cert import demo "$H_TMP/ca/server.pem" --no-key --label alice --pin-file "$PIN"
	err_has "already has an object labelled \"alice\""
	run 6 cert import demo "$H_TMP/ca/server.pem" --no-key --label other \
		--id "$(printf '%s' "${keyid#id=}" | tr -d %)" --pin-file "$PIN"
	err_has "already has an object with ID"
	same_as "$H_TMP/before"
	# --no-key stores it anyway, with the label given; the CA already there is kept.
	run 0 cert import demo "$H_TMP/ca/server.pem" "$H_TMP/ca/inter.pem" --no-key --label srv \
		--pin-file "$PIN"
	out_has "kept   CA"
	snapshot | grep -q 'object=srv;type=cert' || h_fail "--no-key certificate not stored"
	# Someone else's certificate ("other entity"): never listed as an identity, not even
	# while the token is locked and private keys are inferred from what is visible.
	(unset DBUS_SESSION_BUS_ADDRESS; "$C" list --json) >"$H_TMP/ids.json" 2>/dev/null ||
		h_fail "list (tokens read directly) failed"
	python3 - "$H_TMP/ids.json" <<'PY' || h_fail "the --no-key certificate is listed as an identity"
import json, sys
uris = [i["uri"] for i in json.load(open(sys.argv[1]))["identities"]]
assert any("object=alice" in u for u in uris), uris
assert not any("object=srv" in u for u in uris), uris
PY
	run 4 cert import demo "$H_TMP/ca/root.pem" --pin-file "$BAD"
	;;
enroll-lab-ca)
	h_ca
	for t in p256 ed25519 rsa2048; do
		run 0 enroll demo --type $t --subject "CN=user-$t,O=certagent tests" --san email:u@example.org \
			--ca-cert "$H_TMP/ca/inter.pem" --ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN" --json
		py "assert j['label']=='user-$t' and j['key_uri'].endswith('object=user-$t;type=private') and \
j['certificate_uri'].endswith('object=user-$t;type=cert') and j['csr_file'] is None"
		[ $t = p256 ] && key_uri=$(python3 -c "import json; print(json.load(open('$OUT'))['key_uri'])")
		run 0 export-cert "pkcs11:token=demo;object=user-$t;type=private" --chain
		cat "$OUT" "$H_TMP/ca/root.pem" >"$H_TMP/chain.pem"
		certtool --verify-chain --infile "$H_TMP/chain.pem" >"$H_TMP/v" 2>&1 ||
			{ cat "$H_TMP/v" >&2; h_fail "$t chain does not verify"; }
		certtool --certificate-info --infile "$OUT" 2>/dev/null | grep -q "TLS WWW Client" ||
			h_fail "$t certificate lacks clientAuth"
	done
	snapshot >"$H_TMP/after"
	[ "$(grep -c ';type=cert' "$H_TMP/after")" = 4 ] || h_fail "expected 3 leaves + 1 CA"
	grep -q 'object=certagent%20test%20client%20CA;type=cert' "$H_TMP/after" || h_fail "CA label"
	if grep -q 'certagent-enroll-tmp' "$H_TMP/after"; then h_fail "temporary labels left"; fi
	# The identity works for TLS through the agent, when it is built.
	if [ -x "$H_CERTAGENTD" ]; then
		h_agent
		h_unlock demo
		h_gnutls_serv
		"$C" connect "localhost:$H_PORT" --cafile "$H_TMP/ca/root.pem" \
			-i "$key_uri" </dev/null >"$H_TMP/conn" 2>&1 ||
			{ cat "$H_TMP/conn" >&2; h_fail "TLS with the enrolled identity failed"; }
		h_assert_server_saw "CN=user-p256,O=certagent tests"
	fi
	;;
enroll-failure)
	h_ca
	snapshot >"$H_TMP/before"
	run 2 enroll demo --type p256 --subject "nonsense" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN"
	err_has "bad subject"
	run 5 enroll demo --type p256 --subject "CN=x" --ca-cert "$H_TMP/ca/server.pem" \
		--ca-key "$H_TMP/ca/server.key" --pin-file "$PIN"
	err_has "is not a CA certificate"
	run 5 enroll demo --type p256 --subject "CN=x" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.pem" --pin-file "$PIN"
	# Another CA's key: it would sign a certificate nobody can verify.
	run 5 enroll demo --type p256 --subject "CN=x" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/root.key" --pin-file "$PIN"
	err_has "is not the private key of the CA certificate in $H_TMP/ca/inter.pem"
	run 2 enroll demo --type p256 --subject "CN=x" --pin-file "$PIN"
	run 4 enroll demo --type p256 --subject "CN=x" --csr-out "$H_TMP/x.csr" --pin-file "$BAD"
	[ ! -e "$H_TMP/x.csr" ] || h_fail "CSR written despite a wrong PIN"
	same_as "$H_TMP/before"
	run 0 enroll demo --type p256 --subject "CN=taken" --csr-out "$H_TMP/t.csr" --pin-file "$PIN"
	snapshot >"$H_TMP/before"
	run 6 enroll demo --type p256 --subject "CN=taken" --csr-out "$H_TMP/t2.csr" --pin-file "$PIN"
	err_has 'already has an object labelled "taken"'
	[ ! -e "$H_TMP/t2.csr" ] || h_fail "CSR written for a refused enrollment"
	same_as "$H_TMP/before"
	;;
enroll-kill)
	step=$2 sig=$3 mode=${4:-lab}
	h_ca
	# Something that was there before, which must survive untouched.
	h_keygen demo p256 existing 01
	h_client_cert demo existing 01 "CN=existing"
	snapshot >"$H_TMP/before"
	if [ "$mode" = csr-out ]; then
		set -- --csr-out "$H_TMP/k.csr"
	else
		# root: a CA not on the token yet, so the run stores (and renames) it too.
		set -- --ca-cert "$H_TMP/ca/root.pem" --ca-key "$H_TMP/ca/root.key"
	fi
	CERTAGENT_TEST_STOP_AT=$step setsid "$C" enroll demo --type p256 --subject "CN=killed" \
		--pin-file "$PIN" "$@" </dev/null >"$OUT" 2>"$ERR" &
	pid=$!
	stopped() { [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = T ]; }
	h_wait_until 60 stopped || { cat "$ERR" >&2; h_fail "enroll never reached step $step"; }
	kill -"$sig" "$pid"
	[ "$sig" = KILL ] || kill -CONT "$pid"
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" != 0 ] || [ "$step" = committed ] || h_fail "a killed enrollment exited 0"
	if [ "$step" = committed ]; then
		# Past the commit nothing is undone: the identity stays (a TERM is ignored, the run
		# completes); after a KILL, cleanup gives the CA certificate its final label.
		[ "$sig" = TERM ] && [ "$rc" = 143 ] && h_fail "TERM after the commit was not ignored"
		run 0 token cleanup demo --pin-file "$PIN"
		snapshot >"$H_TMP/after"
		comm -23 "$H_TMP/before" "$H_TMP/after" | grep . && h_fail "objects from before are gone"
		grep -q 'object=killed;type=private' "$H_TMP/after" || h_fail "committed key removed"
		grep -q 'object=killed;type=cert' "$H_TMP/after" || h_fail "committed cert removed"
		grep -q 'object=certagent%20test%20root%20CA;type=cert' "$H_TMP/after" ||
			h_fail "CA certificate not labelled"
		if grep -q 'certagent-enroll-tmp' "$H_TMP/after"; then h_fail "temporary label left"; fi
		exit 0
	fi
	if [ "$sig" = TERM ]; then
		# Interrupted politely: it removed what it made before exiting.
		err_has "interrupted after step \"$step\""
		same_as "$H_TMP/before"
	else
		case $step in
		generated | csr | issued | cert-stored | chain-stored)
			run 0 tokens --json
			py "t=[x for x in j['tokens'] if x['label']=='demo'][0]; assert t['unfinished_enrollment_objects']>0"
			run 0 tokens
			out_has "left by an unfinished enrollment"
			;;
		esac
		run 0 token cleanup demo --pin-file "$PIN" --json
		same_as "$H_TMP/before"
		# And the next enrollment works (and would have cleaned up too).
		run 0 enroll demo --type p256 --subject "CN=killed" --pin-file "$PIN" \
			--ca-cert "$H_TMP/ca/inter.pem" --ca-key "$H_TMP/ca/inter.key"
	fi
	;;
delete)
	h_ca
	run 0 enroll demo --type p256 --subject "CN=withcert" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN"
	run 0 key generate demo --type p256 --label bare --pin-file "$PIN"
	snapshot >"$H_TMP/before"
	run 6 delete "pkcs11:token=demo;object=withcert" --pin-file "$PIN"
	out_has "would delete 3 object(s)"
	err_has "add --yes"
	run 6 delete "pkcs11:token=demo;object=withcert;type=private" --yes --pin-file "$PIN"
	err_has "its certificate"
	run 7 delete "pkcs11:token=demo;object=nosuch" --yes --pin-file "$PIN"
	run 2 delete "pkcs11:token=demo" --yes --pin-file "$PIN"
	run 2 delete "pkcs11:token=demo;type=private" --yes --pin-file "$PIN"
	run 4 delete "pkcs11:token=demo;object=bare" --yes --pin-file "$BAD"
	same_as "$H_TMP/before"
	run 6 delete "pkcs11:token=demo;object=withcert" --pin-file "$PIN" --json
	py "assert j['deleted'] is False and len(j['objects'])==3"
	run 0 delete "pkcs11:token=demo;object=withcert;type=private" \
		"pkcs11:token=demo;object=withcert;type=cert" --yes --pin-file "$PIN" --json
	py "assert j['deleted'] is True and sorted(o['class'] for o in j['objects'])==['cert','private']"
	run 0 delete "pkcs11:token=demo;object=bare;type=private" --yes --pin-file "$PIN"
	snapshot >"$H_TMP/after"
	grep -q 'object=withcert;type=private' "$H_TMP/after" && h_fail "private key not deleted"
	grep -q 'object=withcert;type=public' "$H_TMP/after" || h_fail "unnamed public key deleted"
	grep -q 'object=bare;type=public' "$H_TMP/after" || h_fail "unnamed public key deleted"
	grep -q 'client%20CA;type=cert' "$H_TMP/after" || h_fail "CA certificate deleted"
	;;
export-cert)
	h_ca
	run 0 enroll demo --type p256 --subject "CN=exp" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN"
	run 0 key generate demo --type p256 --label nocert --pin-file "$PIN"
	run 0 export-cert "pkcs11:token=demo;object=exp;type=cert"
	[ "$(grep -c 'BEGIN CERTIFICATE' "$OUT")" = 1 ] || h_fail "expected one certificate"
	p11tool --provider="$H_SOFTHSM" --export "pkcs11:token=demo;object=exp;type=cert" 2>/dev/null |
		grep -v '^$' | diff -u - "$OUT" >&2 || h_fail "export differs from p11tool's"
	run 0 export-cert "pkcs11:token=demo;object=exp" --chain --out "$H_TMP/chain.pem"
	[ "$(grep -c 'BEGIN CERTIFICATE' "$H_TMP/chain.pem")" = 2 ] || h_fail "expected leaf + CA"
	run 7 export-cert "pkcs11:token=demo;object=nocert;type=private"
	run 7 export-cert "pkcs11:token=demo;object=nosuch"
	run 4 export-cert "pkcs11:token=nosuch;object=exp"
	if grep -rq 'PRIVATE KEY' "$H_TMP/chain.pem" "$OUT"; then h_fail "a private key was exported"; fi
	;;
interop-out)
	# Objects made by certagent, as p11tool and pkcs11-tool list them.
	h_ca
	run 0 key generate demo --type rsa2048 --label rsakey --id 0102 --pin-file "$PIN"
	run 0 enroll demo --type p256 --subject "CN=ecuser" --id 0304 --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN"
	p11tool --provider="$H_SOFTHSM" --login --set-pin=1234 --list-all "pkcs11:token=demo" >"$H_TMP/p" 2>&1
	for w in "Type: Private key (RSA-2048)" "Label: rsakey" "ID: 01:02" \
		"Type: Private key (EC/ECDSA-SECP256R1)" "Type: X.509 Certificate (EC/ECDSA-SECP256R1)" \
		"Label: ecuser" "ID: 03:04" "Label: certagent test client CA"; do
		grep -qF "$w" "$H_TMP/p" || { cat "$H_TMP/p" >&2; h_fail "p11tool does not list: $w"; }
	done
	p11tool --provider="$H_SOFTHSM" --list-all-certs "pkcs11:token=demo" 2>/dev/null |
		grep -q "Label: ecuser" || h_fail "p11tool --list-all-certs misses the certificate"
	pkcs11-tool --module "$H_SOFTHSM" --token-label demo --login --pin 1234 -O >"$H_TMP/o" 2>&1
	for w in "label:      rsakey" "ID:         0102" "label:      ecuser" "ID:         0304" \
		"subject:    DN: CN=ecuser" "never extractable"; do
		grep -qF "$w" "$H_TMP/o" || { cat "$H_TMP/o" >&2; h_fail "pkcs11-tool does not list: $w"; }
	done
	# A signature with certagent's key, made by another tool, verifies.
	echo hello >"$H_TMP/msg"
	pkcs11-tool --module "$H_SOFTHSM" --token-label demo --login --pin 1234 --sign -m SHA256-RSA-PKCS \
		--id 0102 -i "$H_TMP/msg" -o "$H_TMP/sig" >/dev/null 2>&1 || h_fail "pkcs11-tool cannot sign with it"
	;;
interop-in)
	# Objects made by p11tool and pkcs11-tool, used by certagent.
	h_ca
	h_keygen demo p256 p11key 11
	h_keygen demo ed25519 edkey 12
	h_keygen demo rsa2048 rsakey 13
	h_client_cert demo p11key 11 "CN=p11user"
	run 0 csr "pkcs11:token=demo;object=edkey" --subject "CN=ed" --pin-file "$PIN" --out "$H_TMP/ed.csr"
	certtool --crq-info --infile "$H_TMP/ed.csr" 2>&1 | grep -q "Self signature: verified" ||
		h_fail "CSR from a pkcs11-tool key does not verify"
	run 0 csr "pkcs11:token=demo;id=%13" --subject "CN=rsa" --pin-file "$PIN" --out "$H_TMP/rsa.csr"
	printf 'serial = 9\nexpiration_days = 30\ntls_www_client\nsigning_key\n' >"$H_TMP/c.tmpl"
	certtool --generate-certificate --load-request "$H_TMP/ed.csr" --load-ca-certificate \
		"$H_TMP/ca/inter.pem" --load-ca-privkey "$H_TMP/ca/inter.key" --template "$H_TMP/c.tmpl" \
		--outfile "$H_TMP/ed.pem" >/dev/null 2>&1
	run 0 cert import demo "$H_TMP/ed.pem" --pin-file "$PIN"
	snapshot | grep -q 'id=%12;object=edkey;type=cert' || h_fail "certificate not paired with the pkcs11-tool key"
	run 0 export-cert "pkcs11:token=demo;object=p11key" --chain
	certtool --certificate-info --infile "$OUT" 2>/dev/null | grep -q "Subject: CN=p11user" ||
		h_fail "export of a p11tool-written certificate"
	run 6 delete "pkcs11:token=demo;id=%11" --pin-file "$PIN"
	out_has "would delete 3 object(s)"
	run 0 tokens --json
	py "t=[x for x in j['tokens'] if x['label']=='demo'][0]; assert t['public_objects']>=6"
	;;
pin-locked)
	fault_setup "${2:-}"
	run 0 key generate demo --type p256 --label before --pin-file "$PIN"
	grep -q '^login demo user' "$TRACE" || h_fail "the fault module traces no login"
	fault mode=pin-locked
	run 0 tokens --json
	py "f=[x for x in j['tokens'] if x['label']=='demo'][0]['flags']; assert f['user_pin_locked'] and not f['user_pin_final_try']"
	run 0 tokens
	out_has "USER PIN LOCKED"
	out_has "the user PIN is locked: certagent tries no PIN on it"
	snapshot >"$H_TMP/before"
	# Refused before any PIN is asked for (no PIN source and no terminal: still 4, not 2).
	run 4 key generate demo --type p256 --label k
	err_has 'the user PIN of token "demo" is locked'
	err_has "certagent token unblock-pin 'pkcs11:token=demo'"
	run 4 key generate demo --type p256 --label k --pin-file "$PIN"
	run 4 token set-pin demo --pin-file "$PIN" --new-pin-file "$PIN"
	err_has "is locked"
	h_ca
	run 4 enroll demo --type p256 --subject "CN=k" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN"
	run 4 cert import demo "$H_TMP/ca/inter.pem" --pin-file "$PIN"
	no_user_login "a command on a locked token"
	same_as "$H_TMP/before"
	# The SO can still reset the user PIN.
	run 0 token unblock-pin demo --so-pin-file "$SO" --pin-file "$PIN"
	grep -q '^login demo so' "$TRACE" || h_fail "unblock-pin did not log in as SO"
	if fault_agent; then
		fault mode=pin-locked
		agent_unlock_refused "is locked" "certagent token unblock-pin 'pkcs11:token=demo'"
	fi
	;;
pin-final-try)
	fault_setup "${2:-}"
	fault mode=pin-final-try
	run 0 tokens --json
	py "f=[x for x in j['tokens'] if x['label']=='demo'][0]['flags']; assert f['user_pin_final_try'] and f['user_pin_count_low'] and not f['user_pin_locked']"
	run 0 tokens
	out_has "USER PIN FINAL TRY"
	run 4 key generate demo --type p256 --label k --pin-file "$PIN"
	err_has "allows only one more user PIN try"
	err_has "nothing was tried"
	err_has "certagent token unblock-pin 'pkcs11:token=demo'"
	run 4 token set-pin demo --pin-file "$PIN" --new-pin-file "$PIN"
	err_has "only one more"
	run 4 delete "pkcs11:token=demo;object=x" --yes --pin-file "$PIN"
	no_user_login "a command on a token at its final PIN try"
	if fault_agent; then
		agent_unlock_refused "allows only one more PIN try"
	fi
	;;
pin-count-low)
	# A wrong PIN was entered before: shown, but the PIN is still tried (once).
	fault_setup "${2:-}"
	fault mode=pin-count-low
	run 0 tokens --json
	py "f=[x for x in j['tokens'] if x['label']=='demo'][0]['flags']; assert f['user_pin_count_low'] and not f['user_pin_final_try'] and not f['user_pin_locked']"
	run 0 tokens
	out_has "USER PIN COUNT LOW"
	run 0 key generate demo --type p256 --label k --pin-file "$PIN"
	[ "$(grep -c '^login demo user' "$TRACE")" = 1 ] || h_fail "expected exactly one login"
	;;
token-full)
	fault_setup "${2:-}"
	h_ca
	run 0 key generate demo --type p256 --label alice --pin-file "$PIN"
	run 0 csr "pkcs11:token=demo;object=alice" --subject "CN=alice" --pin-file "$PIN" \
		--out "$H_TMP/alice.csr"
	printf 'serial = 7\nexpiration_days = 30\ntls_www_client\nsigning_key\n' >"$H_TMP/c.tmpl"
	certtool --generate-certificate --load-request "$H_TMP/alice.csr" --load-ca-certificate \
		"$H_TMP/ca/inter.pem" --load-ca-privkey "$H_TMP/ca/inter.key" --template "$H_TMP/c.tmpl" \
		--outfile "$H_TMP/alice.pem" >/dev/null 2>&1 || h_fail "certtool could not sign the CSR"
	snapshot >"$H_TMP/before"
	fault mode=full
	run 3 key generate demo --type p256 --label k --pin-file "$PIN"
	err_has 'token "demo" is full'
	err_has "certagent delete"
	run 3 cert import demo "$H_TMP/alice.pem" "$H_TMP/ca/inter.pem" --pin-file "$PIN"
	err_has 'token "demo" is full'
	run 3 enroll demo --type p256 --subject "CN=bob" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN"
	err_has 'token "demo" is full'
	same_as "$H_TMP/before"
	# Full after the first object: the key pair is made, storing the certificate fails; what
	# was made is removed again, so no orphan stays.
	fault mode=full:1
	run 3 enroll demo --type p256 --subject "CN=bob" --ca-cert "$H_TMP/ca/inter.pem" \
		--ca-key "$H_TMP/ca/inter.key" --pin-file "$PIN" --json
	err_has 'token "demo" is full'
	err_has "enrollment failed: removed the 2 object(s) it had created"
	grep -q '^full demo C_CreateObject' "$TRACE" || h_fail "the certificate was not the one refused"
	[ ! -s "$OUT" ] || h_fail "a failed enroll printed JSON: $(cat "$OUT")"
	same_as "$H_TMP/before"
	fault mode=full
	run 3 enroll demo --type p256 --subject "CN=bob" --csr-out "$H_TMP/bob.csr" --pin-file "$PIN"
	[ ! -e "$H_TMP/bob.csr" ] || h_fail "a request was written for a key that could not be made"
	fault mode=full:1
	run 3 cert import demo "$H_TMP/alice.pem" "$H_TMP/ca/inter.pem" --pin-file "$PIN"
	err_has "removed \"CN=alice\" again"
	same_as "$H_TMP/before"
	fault mode=present
	run 0 tokens --json
	py "t=[x for x in j['tokens'] if x['label']=='demo'][0]; assert t['unfinished_enrollment_objects']==0"
	run 0 cert import demo "$H_TMP/alice.pem" "$H_TMP/ca/inter.pem" --pin-file "$PIN"
	;;
*)
	h_fail "unknown case $1"
	;;
esac
exit 0
