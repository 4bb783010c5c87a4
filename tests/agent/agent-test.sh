#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Integration tests of certagentd: a private dbus-daemon, a throwaway SoftHSM token with keys
# generated on it, and the real agent. Usage: agent-test.sh CASE (one meson test per case).
# Clients: busctl and dbus-send for the wire, tests/agent/agentctl.py (python3-dbus) where the
# answer is structured; signatures are verified with openssl against the certificate.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

# PINs no other log text contains (a pid or a serial can hold "1234" or "9999").
H_PIN=Zq7-pin-4711
WRONG_PIN=Zq7-wrong-0815

AGENT=org.certagent.Agent1
OBJ=/org/certagent/Agent1
ERR=org.certagent.Error


bctl() { busctl --address="$DBUS_SESSION_BUS_ADDRESS" "$@"; }

# A dbus-send call that prints the error name (dbus-send has no a{sv} with variants, so Sign
# goes through agentctl.py or busctl; busctl prints only the message, hence this one).
dsend() {
	dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply --dest=$AGENT $OBJ "$@"
}

agent_alive() {
	kill -0 "$H_AGENT_PID" 2>/dev/null || h_fail "certagentd died"
	bctl call $AGENT $OBJ $AGENT ListIdentities >/dev/null || h_fail "certagentd stopped answering"
}

# The usual world: token demo with an ECDSA P-256 key "client" and its certificate.
setup() {
	h_token demo
	h_keygen demo p256 client 01
	h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	h_bus
	h_agent "$@"
	URI=$(h_key_uri demo client)
}

# hash FILE: writes the SHA-256 of the message file to FILE.hash.
hash_msg() { openssl dgst -sha256 -binary "$1" >"$1.hash"; }

# The public key of a certificate on disk, in PEM.
cert_pubkey() { openssl x509 -in "$1" -noout -pubkey >"$2"; }

test_introspect() {
	setup
	local out
	out=$(bctl introspect $AGENT $OBJ) || h_fail "busctl introspect failed"
	for m in ListIdentities ListTokens Sign Unlock Lock Reload Version IdentitiesChanged; do
		printf '%s\n' "$out" | grep -q "^\\.$m " || h_fail "introspection lacks $m: $out"
	done
	printf '%s\n' "$out" | grep -q '^\.Sign *method *ssaya{sv} *ay' ||
		h_fail "Sign has the wrong signature in: $out"
	# Served verbatim from the one XML file.
	dsend --print-reply=literal org.freedesktop.DBus.Introspectable.Introspect >"$H_TMP/xml" ||
		h_fail "Introspect failed"
	"${H_PY:-python3}" - "$H_TMP/xml" "$CERTAGENT_SRC/dbus/org.certagent.Agent1.xml" <<'PYEOF' ||
import sys
got = open(sys.argv[1]).read().strip()
want = open(sys.argv[2]).read().strip()
sys.exit(0 if got == want else 1)
PYEOF
		h_fail "Introspect does not return dbus/org.certagent.Agent1.xml verbatim"
	bctl tree $AGENT | grep -q /org/certagent/Agent1 || h_fail "busctl tree does not find the object"
	h_expect_error org.freedesktop.DBus.Error.UnknownMethod dsend $AGENT.NoSuchMethod
	h_expect_error org.freedesktop.DBus.Error.UnknownObject \
		dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply --dest=$AGENT /elsewhere \
		$AGENT.Lock
	agent_alive
}

test_version() {
	setup
	local want got
	want=$("$H_CERTAGENTD" --version | awk '{print $2}')
	[ -n "$want" ] || h_fail "certagentd --version printed nothing"
	got=$(bctl get-property $AGENT $OBJ $AGENT Version) || h_fail "Get Version failed"
	[ "$got" = "s \"$want\"" ] || h_fail "Version is $got, expected $want"
	bctl call $AGENT $OBJ org.freedesktop.DBus.Properties GetAll s $AGENT | grep -q "\"Version\" s \"$want\"" ||
		h_fail "GetAll lacks Version"
	h_expect_error org.freedesktop.DBus.Error.PropertyReadOnly \
		dsend org.freedesktop.DBus.Properties.Set string:$AGENT string:Version variant:string:9
	bctl call $AGENT $OBJ org.freedesktop.DBus.Peer Ping || h_fail "Peer.Ping failed"
}

test_list_identities() {
	h_need_py
	setup
	h_ctl identities >"$H_TMP/ids.json" || h_fail "ListIdentities failed: $(cat "$H_TMP/ids.json")"
	openssl x509 -in "$H_TMP/ca/client.pem" -outform DER | od -An -v -tx1 | tr -d ' \n' >"$H_TMP/leaf.hex"
	openssl x509 -in "$H_TMP/ca/inter.pem" -outform DER | od -An -v -tx1 | tr -d ' \n' >"$H_TMP/inter.hex"
	"$H_PY" - "$H_TMP/ids.json" "$(cat "$H_TMP/leaf.hex")" "$(cat "$H_TMP/inter.hex")" <<'PYEOF' ||
import json, sys
ids = json.load(open(sys.argv[1]))
leaf, inter = sys.argv[2], sys.argv[3]
assert len(ids) == 1, "expected one identity, got %d: %r" % (len(ids), ids)
i = ids[0]
for k in ('uri', 'label', 'token', 'token-label', 'module', 'key-type', 'bits', 'schemes',
          'certificates', 'logged-in'):
    assert k in i, "identity lacks %s: %r" % (k, i)
assert i['uri'].startswith('pkcs11:') and 'type=private' in i['uri'], i['uri']
assert i['label'] == 'client', i['label']
assert i['token-label'] == 'demo', i['token-label']
assert 'token=demo' in i['token'], i['token']
assert i['key-type'] == 'ec' and i['bits'] == 256, (i['key-type'], i['bits'])
assert i['schemes'] == ['ecdsa_secp256r1_sha256'], i['schemes']
assert i['certificates'][0] == leaf, "the first certificate is not the leaf"
assert inter in i['certificates'][1:], "the intermediate is not in the chain"
assert i['logged-in'] is False
PYEOF
		h_fail "ListIdentities answer is wrong (see above)"
	h_ctl tokens >"$H_TMP/tokens.json" || h_fail "ListTokens failed"
	"$H_PY" - "$H_TMP/tokens.json" <<'PYEOF' || h_fail "ListTokens answer is wrong"
import json, sys
toks = [t for t in json.load(open(sys.argv[1])) if t['label'] == 'demo']
assert len(toks) == 1, toks
t = toks[0]
for k in ('uri', 'label', 'serial', 'manufacturer', 'model', 'module', 'flags', 'logged-in'):
    assert k in t, "token lacks " + k
assert t['module'] == 'softhsm' and t['logged-in'] is False, t
PYEOF
}

# sign_verify SCHEME URI CERT: signs a message's hash (or the message, for ed25519) through the
# agent and verifies the signature with openssl against the certificate's public key.
sign_verify() {
	local scheme=$1 uri=$2 cert=$3 m=$H_TMP/msg
	printf 'TLS 1.3, client CertificateVerify %s\n' "$RANDOM" >"$m"
	hash_msg "$m"
	cert_pubkey "$cert" "$H_TMP/pub.pem"
	case $scheme in
	rsa_pkcs1_sha256)
		# DER DigestInfo(SHA-256) || hash
		{ printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'; cat "$m.hash"; } >"$m.in" ;;
	# Ed25519 signs the whole message, which must be framed as a TLS 1.3 CertificateVerify.
	ed25519) { printf '%64s' ''; printf 'TLS 1.3, client CertificateVerify\0'; cat "$m.hash"; } >"$m.in" ;;
	*) cp "$m.hash" "$m.in" ;;
	esac
	h_ctl sign "$uri" "$scheme" "$m.in" "$m.sig" server-name=s:localhost >"$H_TMP/out" ||
		h_fail "Sign $scheme failed: $(cat "$H_TMP/out")"
	case $scheme in
	rsa_pss_rsae_sha256)
		openssl dgst -sha256 -verify "$H_TMP/pub.pem" -sigopt rsa_padding_mode:pss \
			-sigopt rsa_pss_saltlen:32 -signature "$m.sig" "$m" ;;
	ed25519)
		openssl pkeyutl -verify -pubin -inkey "$H_TMP/pub.pem" -rawin -in "$m.in" -sigfile "$m.sig" ;;
	*)
		openssl dgst -sha256 -verify "$H_TMP/pub.pem" -signature "$m.sig" "$m" ;;
	esac >"$H_TMP/verify.out" 2>&1 ||
		h_fail "the $scheme signature does not verify: $(cat "$H_TMP/verify.out")"
	h_log "$scheme signature verified with the certificate's key"
}

test_sign_ecdsa() {
	h_need_py
	# The per-signature log line is at debug level (the audit log is the record).
	setup "log-level = debug"
	h_unlock_dbus demo
	sign_verify ecdsa_secp256r1_sha256 "$URI" "$H_TMP/ca/client.pem"
	# The demo line: which token, which mechanism, how long.
	grep -q 'signed with token "demo" using CKM_ECDSA in .* ms' "$H_AGENT_LOG" ||
		h_fail "the sign log line is missing"
	grep -q 'server localhost' "$H_AGENT_LOG" || h_fail "the sign log lacks the server name"
	! grep -qF -- "$H_PIN" "$H_AGENT_LOG" || h_fail "the PIN appears in the log"
}

test_sign_rsa_ed25519() {
	h_need_py
	h_token demo
	h_keygen demo rsa2048 rsa 02
	h_keygen demo ed25519 ed 03
	h_ca
	h_client_cert demo rsa 02 "CN=rsa"
	h_client_cert demo ed 03 "CN=ed"
	h_bus
	h_agent
	h_unlock_dbus demo
	sign_verify rsa_pkcs1_sha256 "$(h_key_uri demo rsa)" "$H_TMP/ca/rsa.pem"
	sign_verify rsa_pss_rsae_sha256 "$(h_key_uri demo rsa)" "$H_TMP/ca/rsa.pem"
	sign_verify ed25519 "$(h_key_uri demo ed)" "$H_TMP/ca/ed.pem"
}

# Unlock over D-Bus directly (the CLI is tested elsewhere).
h_unlock_dbus() {
	bctl call $AGENT $OBJ $AGENT Unlock ss "pkcs11:token=$1" "$H_PIN" || h_fail "Unlock failed"
}

test_pin_required() {
	h_need_py
	setup
	printf '0123456789abcdef0123456789abcdef' >"$H_TMP/h"
	h_expect_error $ERR.PinRequired h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s"
	h_expect_error $ERR.PinRequired dsend $AGENT.Unlock string:pkcs11:token=demo string:
	h_unlock_dbus demo
	h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s" || h_fail "Sign after Unlock failed"
	# Lock forgets the login: a PIN is needed again.
	bctl call $AGENT $OBJ $AGENT Lock || h_fail "Lock failed"
	h_expect_error $ERR.PinRequired h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s"
}

test_pin_incorrect() {
	h_need_py
	setup
	h_expect_error $ERR.PinIncorrect dsend $AGENT.Unlock string:pkcs11:token=demo string:$WRONG_PIN
	h_expect_error $ERR.TokenAbsent dsend $AGENT.Unlock string:pkcs11:token=nosuchtoken string:1234
	! grep -qF -- "$WRONG_PIN" "$H_AGENT_LOG" || h_fail "a PIN appears in the log"
	h_unlock_dbus demo
	h_ctl identities | grep -q '"logged-in": true' || h_fail "logged-in is not true after Unlock"
}

test_bad_args() {
	h_need_py
	setup
	local h=$H_TMP/h
	printf '0123456789abcdef0123456789abcdef' >"$h"
	# Wrong signature: refused by the dispatcher, naming the expected one.
	h_expect_error org.freedesktop.DBus.Error.InvalidArgs dsend $AGENT.Sign string:"$URI" string:x
	h_expect_error 'ssaya{sv}' dsend $AGENT.Sign string:"$URI" string:x
	h_expect_error org.freedesktop.DBus.Error.InvalidArgs dsend $AGENT.Unlock string:pkcs11:token=demo
	h_expect_error org.freedesktop.DBus.Error.InvalidArgs dsend $AGENT.ListIdentities string:x
	# Bad values: refused by the agent with its own error names.
	h_expect_error $ERR.InvalidArgs h_ctl sign "not-a-uri" ecdsa_secp256r1_sha256 "$h" "$H_TMP/s"
	h_expect_error $ERR.InvalidArgs dsend $AGENT.Unlock string:token=demo string:1234
	h_expect_error $ERR.UnsupportedScheme h_ctl sign "$URI" ecdsa_bogus "$h" "$H_TMP/s"
	# With the URI as listed, the error says what this identity can do.
	local listed
	listed=$(h_ctl identities | "$H_PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["uri"])')
	h_expect_error 'this identity can do: ecdsa_secp256r1_sha256' \
		h_ctl sign "$listed" ecdsa_bogus "$h" "$H_TMP/s"
	h_expect_error $ERR.InvalidArgs h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/agent.conf" "$H_TMP/s"
	h_expect_error $ERR.InvalidArgs h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$h" "$H_TMP/s" server-name=u:3
	head -c 65537 /dev/zero >"$H_TMP/big"
	h_expect_error $ERR.TooLarge h_ctl sign "$URI" ed25519 "$H_TMP/big" "$H_TMP/s"
	head -c 300 /dev/zero | tr '\0' a >"$H_TMP/longname"
	h_expect_error $ERR.TooLarge h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$h" "$H_TMP/s" \
		"server-name=s:$(cat "$H_TMP/longname")"
	h_expect_error $ERR.TooLarge dsend $AGENT.Unlock string:pkcs11:token=demo \
		string:"$(head -c 300 /dev/zero | tr '\0' 1)"
	h_expect_error $ERR.KeyNotFound h_ctl sign "pkcs11:token=demo;object=nothing" \
		ecdsa_secp256r1_sha256 "$h" "$H_TMP/s"
	# Unknown option keys are ignored.
	h_unlock_dbus demo
	h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$h" "$H_TMP/s" future-option=u:7 ||
		h_fail "an unknown option was not ignored"
	agent_alive
}

test_second_instance() {
	setup
	local out st=0
	out=$("$H_CERTAGENTD" --config "$H_AGENT_CONF" --address "$DBUS_SESSION_BUS_ADDRESS" \
		--foreground 2>&1) || st=$?
	[ "$st" = 1 ] || h_fail "a second certagentd exited with $st, not 1: $out"
	case $out in
	*"another certagentd already owns org.certagent.Agent1 on this bus (pid $H_AGENT_PID)"*) ;;
	*) h_fail "the second certagentd did not say who owns the name: $out" ;;
	esac
	agent_alive
}

test_sigterm() {
	setup
	local st=0
	kill -TERM "$H_AGENT_PID"
	wait "$H_AGENT_PID" || st=$?
	h_untrack "$H_AGENT_PID"
	H_AGENT_PID=
	[ "$st" = 0 ] || h_fail "certagentd exited with $st on SIGTERM"
	grep -q "stopped" "$H_AGENT_LOG" || h_fail "no clean shutdown in the log"
	! h_name_has_owner $AGENT || h_fail "the name is still owned after exit"
}

test_identities_changed() {
	h_need_py
	setup
	"$H_PY" "$CERTAGENT_SRC/tests/agent/agentctl.py" watch "$H_TMP/signals" 20 &
	local w=$!
	h_track "$w"
	h_wait_until 10 grep -q ready "$H_TMP/signals" || h_fail "the watcher did not start"
	h_unlock_dbus demo
	h_wait_until 10 grep -q IdentitiesChanged "$H_TMP/signals" ||
		h_fail "no IdentitiesChanged after Unlock"
	# A new key appears after Reload (SoftHSM shows new objects after re-initialising).
	: >"$H_TMP/signals"
	h_keygen demo p256 second 05
	bctl call $AGENT $OBJ $AGENT Reload || h_fail "Reload failed"
	h_wait_until 10 grep -q IdentitiesChanged "$H_TMP/signals" ||
		h_fail "no IdentitiesChanged after Reload with a new key"
	h_ctl identities | grep -q 'object=second' || h_fail "the new key is not listed after Reload"
	h_kill "$w"
}

test_config() {
	h_bus
	local out st
	printf '[agent]\nworkers = 4\nbogus-key = 1\n' >"$H_TMP/bad.conf"
	st=0
	out=$("$H_CERTAGENTD" --config "$H_TMP/bad.conf" --address "$DBUS_SESSION_BUS_ADDRESS" \
		--foreground 2>&1) || st=$?
	[ "$st" = 1 ] || h_fail "a bad config gave status $st"
	case $out in *"$H_TMP/bad.conf:3:"*"bogus-key"*) ;; *) h_fail "no file:line: $out" ;; esac
	printf '[agent]\nworkers = lots\n' >"$H_TMP/bad.conf"
	st=0
	out=$("$H_CERTAGENTD" --config "$H_TMP/bad.conf" --foreground 2>&1) || st=$?
	case $st:$out in 1:*"bad.conf:2:"*workers*) ;; *) h_fail "bad workers not refused: $st $out" ;; esac
	printf '[agnet]\n' >"$H_TMP/bad.conf"
	printf 'x = 1\n' >>"$H_TMP/bad.conf"
	st=0
	out=$("$H_CERTAGENTD" --config "$H_TMP/bad.conf" --foreground 2>&1) || st=$?
	case $st:$out in 1:*"bad.conf:2:"*"unknown section [agnet]"*) ;; *) h_fail "bad section: $st $out" ;; esac
	st=0
	out=$("$H_CERTAGENTD" --config "$H_TMP/missing.conf" --foreground 2>&1) || st=$?
	case $st:$out in 1:*missing.conf*) ;; *) h_fail "a missing --config file was not an error: $st $out" ;; esac
	# Inline comments as in the documentation, and a missing default file, are fine.
	h_token demo
	h_agent "workers = 2        # signing threads" "log-level = debug ; more"
	agent_alive
	grep -q "debug:" "$H_AGENT_LOG" || h_fail "log-level = debug was not applied"
	"$H_CERTAGENTD" --help | grep -q -- --foreground || h_fail "--help lacks --foreground"
}

test_pin_source() {
	h_need_py
	(umask 077 && printf '%s\n' "$H_PIN" >"$H_TMP/demo.pin")
	setup "[pin-source demo]" "token = pkcs11:token=demo" "file = $H_TMP/demo.pin"
	sign_verify ecdsa_secp256r1_sha256 "$URI" "$H_TMP/ca/client.pem"
	h_wait_until 5 sh -c "'$H_PY' '$CERTAGENT_SRC/tests/agent/agentctl.py' identities | grep -q '\"logged-in\": true'" ||
		h_fail "the snapshot does not show the pin-source login"
}

SLOW_MODULE=$CERTAGENT_BUILD/tests/agent/certagent-test-slow.so

# Tokens "slow" (key s1) and "fast" (key f1) behind the gated module; both unlocked.
setup_slow() {
	[ -f "$SLOW_MODULE" ] || h_fail "not built: $SLOW_MODULE"
	export CERTAGENT_TEST_GATE=$H_TMP/gate
	h_token slow
	h_token fast
	h_keygen slow p256 s1 01
	h_keygen fast p256 f1 02
	h_ca
	h_client_cert slow s1 01 "CN=slow"
	h_client_cert fast f1 02 "CN=fast"
	h_bus
	local real=$H_SOFTHSM
	H_SOFTHSM=$SLOW_MODULE
	h_agent "$@"
	H_SOFTHSM=$real
	h_unlock_dbus slow
	h_unlock_dbus fast
	openssl rand 32 >"$H_TMP/h"
}

entered() { [ -f "$CERTAGENT_TEST_GATE.entered" ] && wc -l <"$CERTAGENT_TEST_GATE.entered" || echo 0; }

test_slow_token() {
	h_need_py
	setup_slow "workers = 4"
	h_ctl sign "$(h_key_uri slow s1)" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/slow.sig" \
		>"$H_TMP/slow.out" 2>&1 &
	local slow=$!
	h_track "$slow"
	h_wait_until 10 sh -c "[ \$(wc -l <'$CERTAGENT_TEST_GATE.entered' 2>/dev/null || echo 0) -ge 1 ]" ||
		h_fail "the slow signature never reached the token"
	# While it is held inside the slow token, everything else is answered.
	h_ctl sign "$(h_key_uri fast f1)" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/fast.sig" ||
		h_fail "a signature on another token waited for the slow one"
	h_ctl identities >/dev/null || h_fail "ListIdentities waited for the slow token"
	h_ctl tokens >/dev/null || h_fail "ListTokens waited for the slow token"
	bctl get-property $AGENT $OBJ $AGENT Version >/dev/null || h_fail "Version waited"
	kill -0 "$slow" 2>/dev/null || h_fail "the slow signature finished before the gate opened"
	: >"$CERTAGENT_TEST_GATE"
	wait "$slow" || h_fail "the slow signature failed: $(cat "$H_TMP/slow.out")"
	h_untrack "$slow"
	[ -s "$H_TMP/slow.sig" ] || h_fail "no slow signature"

	# The per-caller cap: one connection sends 70 Signs while the gate is shut; 64 are taken
	# (4 inside the token, 60 queued) and the rest refused with TooLarge; all 64 then finish.
	rm -f "$CERTAGENT_TEST_GATE" "$CERTAGENT_TEST_GATE.entered"
	"$H_PY" - "$(h_key_uri slow s1)" "$H_TMP/h" "$CERTAGENT_TEST_GATE" <<'PYEOF' || h_fail "per-caller cap"
import os, sys, dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(os.environ['DBUS_SESSION_BUS_ADDRESS'])
agent = dbus.Interface(bus.get_object('org.certagent.Agent1', '/org/certagent/Agent1'),
                       'org.certagent.Agent1')
uri, data, gate = sys.argv[1], open(sys.argv[2], 'rb').read(), sys.argv[3]
ok, errors, loop = [], [], GLib.MainLoop()
def done():
    if len(ok) + len(errors) == 70:
        loop.quit()
def on_ok(sig):
    ok.append(sig); done()
def on_err(e):
    errors.append(e.get_dbus_name())
    if len(errors) == 6:
        open(gate, 'w').close()  # all refusals are in: let the 64 finish
    done()
for _ in range(70):
    agent.Sign(uri, 'ecdsa_secp256r1_sha256', dbus.ByteArray(data), dbus.Dictionary({}, signature='sv'),
               reply_handler=on_ok, error_handler=on_err, timeout=60)
GLib.timeout_add(60000, loop.quit)
loop.run()
print('ok=%d errors=%s' % (len(ok), errors))
assert len(ok) == 64, len(ok)
assert errors == ['org.certagent.Error.TooLarge'] * 6, errors
PYEOF
	agent_alive
}

test_stuck_shutdown() {
	h_need_py
	setup_slow
	h_ctl sign "$(h_key_uri slow s1)" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/slow.sig" \
		>"$H_TMP/slow.out" 2>&1 &
	local slow=$! st=0
	h_track "$slow"
	h_wait_until 10 sh -c "[ -s '$CERTAGENT_TEST_GATE.entered' ]" ||
		h_fail "the slow signature never reached the token"
	# SIGTERM while a token never answers: the agent still exits (after its 5 s grace).
	kill -TERM "$H_AGENT_PID"
	wait "$H_AGENT_PID" || st=$?
	h_untrack "$H_AGENT_PID"
	H_AGENT_PID=
	[ "$st" = 0 ] || h_fail "certagentd exited with $st"
	grep -q "did not answer" "$H_AGENT_LOG" || h_fail "the stuck token was not reported"
	# The client's own call may still wait out its timeout; it is not what this test checks.
	kill "$slow" 2>/dev/null || true
	wait "$slow" || true
	h_untrack "$slow"
}

test_daemon() {
	# Without --foreground the parent returns once the name is owned.
	h_token demo
	h_bus
	printf '[agent]\nregistered-modules = no\n[module softhsm]\npath = %s\n' "$H_SOFTHSM" >"$H_AGENT_CONF"
	"$H_CERTAGENTD" --config "$H_AGENT_CONF" --address "$DBUS_SESSION_BUS_ADDRESS" \
		</dev/null >>"$H_AGENT_LOG" 2>&1 || h_fail "certagentd (daemon) failed"
	h_name_has_owner $AGENT || h_fail "the name is not owned when the parent returned"
	H_AGENT_PID=$(bctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
		GetConnectionUnixProcessID s $AGENT | awk '{print $2}')
	h_track "$H_AGENT_PID"
	agent_alive
}

test_activation() {
	# D-Bus activation with the installed service file (Exec=... --foreground).
	h_token demo
	mkdir -p "$H_TMP/services" "$XDG_CONFIG_HOME/certagent"
	sed "s|@bindir@|$CERTAGENT_BUILD/agent|" "$CERTAGENT_SRC/dbus/org.certagent.Agent1.service.in" \
		>"$H_TMP/services/org.certagent.Agent1.service"
	printf '[agent]\nregistered-modules = no\n[module softhsm]\npath = %s\n' "$H_SOFTHSM" \
		>"$XDG_CONFIG_HOME/certagent/agent.conf"
	h_bus "<servicedir>$H_TMP/services</servicedir>"
	! h_name_has_owner $AGENT || h_fail "the agent runs before activation"
	bctl call $AGENT $OBJ $AGENT ListTokens >"$H_TMP/out" || h_fail "activation failed: $(cat "$H_TMP/bus.log")"
	grep -q '"demo"' "$H_TMP/out" || h_fail "the activated agent does not see the token: $(cat "$H_TMP/out")"
	H_AGENT_PID=$(bctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
		GetConnectionUnixProcessID s $AGENT | awk '{print $2}')
	h_track "$H_AGENT_PID"
	# --foreground: the process the bus started is the agent itself.
	grep -q -- --foreground "/proc/$H_AGENT_PID/cmdline" || h_fail "activation did not use --foreground"
}

case=${1:?usage: agent-test.sh CASE}
"test_${case//-/_}"
