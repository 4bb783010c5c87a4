#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# PIN prompts and login policy of certagentd: the real agent, a private dbus-daemon, a SoftHSM
# token, and tests/agent/fake-pinentry.py as the user's pinentry (it speaks the real Assuan
# pinentry protocol; its answers and a transcript of what it was asked come from files set
# here). Usage: prompt-test.sh CASE (one meson test per case).
. "$CERTAGENT_SRC/tests/lib/harness.sh"

# PINs no other log text contains (a pid or a serial can hold "1234" or "9999").
H_PIN=Zq7-pin-4711
WRONG_PIN=Zq7-wrong-0815

AGENT=org.certagent.Agent1
OBJ=/org/certagent/Agent1
ERR=org.certagent.Error

h_need_py
[ -x /usr/bin/python3 ] || h_skip "fake-pinentry.py needs /usr/bin/python3"
bctl() { busctl --address="$DBUS_SESSION_BUS_ADDRESS" "$@"; }

export FAKE_PINENTRY_TRANSCRIPT=$H_TMP/pinentry.log
export FAKE_PINENTRY_ANSWERS=$H_TMP/pinentry.answers
PINENTRY=$CERTAGENT_SRC/tests/agent/fake-pinentry.py
: >"$FAKE_PINENTRY_TRANSCRIPT"
: >"$FAKE_PINENTRY_ANSWERS"

# answers LINE...: what the pinentry answers to its next prompts ("pin 1234", "cancel").
answers() { printf '%s\n' "$@" >"$FAKE_PINENTRY_ANSWERS"; }
getpins() { grep -c '^GETPIN' "$FAKE_PINENTRY_TRANSCRIPT" || true; }
expect_getpins() {
	local n
	n=$(getpins)
	[ "$n" = "$1" ] || h_fail "expected $1 PIN prompt(s), the pinentry saw $n: $(cat "$FAKE_PINENTRY_TRANSCRIPT")"
}

# tests/fault's module (built in the same tree; tests/fault comes after tests/agent in
# meson, so it is found by path, like the slow module): fault_module_on MODE makes the agent
# load SoftHSM through it (see setup), with its control file and trace.
FAULT_TRACE=$H_TMP/fault-trace.log
AGENT_MODULE=
fault_module_on() {
	local m=$CERTAGENT_BUILD/tests/fault/certagent-fault-pkcs11.so
	[ -f "$m" ] || h_fail "fault module not built: $m"
	export CERTAGENT_FAULT_CTL=$H_TMP/fault.ctl CERTAGENT_FAULT_LOG=$FAULT_TRACE
	export CERTAGENT_FAULT_REAL=$H_SOFTHSM
	printf 'mode=%s\ntoken=demo\n' "$1" >"$CERTAGENT_FAULT_CTL"
	AGENT_MODULE=$m
}
traced() { grep -cxF -- "$1" "$FAULT_TRACE" 2>/dev/null || true; }

# keygen_demo: the demo key "client" (id 01); KEYGEN_ALWAYS_AUTH=1: with CKA_ALWAYS_AUTHENTICATE
# (as tests/pkcs11/setup-token.sh makes one).
keygen_demo() {
	if [ "${KEYGEN_ALWAYS_AUTH:-0}" = 1 ]; then
		pkcs11-tool --module "$H_SOFTHSM" --token-label demo --login --pin "$H_PIN" \
			--keypairgen --key-type EC:prime256v1 --always-auth --label client --id 01 \
			>"$H_TMP/keygen.log" 2>&1 ||
			{ cat "$H_TMP/keygen.log" >&2; h_fail "pkcs11-tool could not make an always-auth key"; }
	else
		h_keygen demo p256 client 01
	fi
}

# Token demo with key "client" and its certificate; the agent prompts with the fake pinentry
# (through the fault module after fault_module_on).
setup() {
	local real=$H_SOFTHSM
	[ -x "$PINENTRY" ] || chmod +x "$PINENTRY" 2>/dev/null || h_fail "$PINENTRY is not executable"
	h_token demo
	keygen_demo
	h_ca
	h_client_cert demo client 01 "CN=alice"
	h_bus
	H_SOFTHSM=${AGENT_MODULE:-$real}
	h_agent "pinentry = $PINENTRY" "$@"
	H_SOFTHSM=$real
	URI=$(h_key_uri demo client)
	openssl rand 32 >"$H_TMP/h"
	openssl x509 -in "$H_TMP/ca/client.pem" -noout -pubkey >"$H_TMP/pub.pem"
}

# sign [OUT] [OPTIONS...]: signs $H_TMP/h with the demo key; fails the test on error.
sign() {
	local out=${1:-$H_TMP/s}
	shift || true
	h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$out" "$@" >"$H_TMP/sign.out" ||
		h_fail "Sign failed: $(cat "$H_TMP/sign.out")"
}

verify() {
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/pub.pem" -in "$H_TMP/h" -sigfile "$1" \
		>/dev/null 2>&1 || h_fail "the signature in $1 does not verify"
}

token_field() { # FIELD: of token demo in ListTokens
	h_ctl tokens | "$H_PY" -c "import json,sys; print([t for t in json.load(sys.stdin) if t['label']=='demo'][0]['$1'])"
}

no_pin_in_log() {
	! grep -qF -- "$H_PIN" "$H_AGENT_LOG" || h_fail "the PIN appears in the agent log"
}

test_sign_prompts_once() {
	setup
	answers "pin $H_PIN"
	sign "$H_TMP/s1" server-name=s:www.example.test
	verify "$H_TMP/s1"
	expect_getpins 1
	local desc serial exe
	desc=$(grep '^SETDESC' "$FAKE_PINENTRY_TRANSCRIPT")
	serial=$(token_field serial)
	exe=$(basename "$(readlink -f "$H_PY")")
	h_log "prompt: $desc"
	case $desc in *'token "demo"'*) ;; *) h_fail "the prompt does not name the token: $desc" ;; esac
	case $desc in *"serial $serial"*) ;; *) h_fail "the prompt lacks the serial $serial: $desc" ;; esac
	case $desc in *"$exe ("*"pid "*) ;; *) h_fail "the prompt does not name $exe: $desc" ;; esac
	case $desc in *'"www.example.test"'*) ;; *) h_fail "the prompt lacks the server name: $desc" ;; esac
	grep -q '^SETTITLE .*demo' "$FAKE_PINENTRY_TRANSCRIPT" || h_fail "no SETTITLE naming the token"
	grep -q '^SETPROMPT PIN:' "$FAKE_PINENTRY_TRANSCRIPT" || h_fail "no SETPROMPT"
	# Logged in now: no second prompt.
	sign "$H_TMP/s2"
	verify "$H_TMP/s2"
	expect_getpins 1
	[ "$(token_field logged-in)" = True ] || h_fail "the token is not shown logged in"
	no_pin_in_log
}

test_cancel() {
	setup
	answers cancel
	h_expect_error $ERR.Cancelled h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s"
	case $H_LAST_ERROR in *cancelled*) ;; *) h_fail "the Cancelled message is unclear: $H_LAST_ERROR" ;; esac
	expect_getpins 1
	[ "$(token_field logged-in)" = False ] || h_fail "logged in after a cancelled prompt"
	# The next Sign asks again.
	answers "pin $H_PIN"
	sign
	expect_getpins 2
}

test_wrong_pin() {
	setup
	local flags
	flags=$(token_field flags)
	[ $((flags & 0x10000)) = 0 ] || h_fail "CKF_USER_PIN_COUNT_LOW set before any try"
	answers "pin $WRONG_PIN" "pin $H_PIN"
	h_expect_error $ERR.PinIncorrect h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s"
	# One prompt, one failed try: never retried by itself.
	expect_getpins 1
	flags=$(token_field flags)
	[ $((flags & 0x10000)) != 0 ] || h_fail "the token did not count the wrong PIN (flags $flags)"
	grep -c 'prompt: token "demo": the PIN entered .* is wrong' "$H_AGENT_LOG" | grep -qx 1 ||
		h_fail "expected exactly one failed login in the log: $(grep prompt: "$H_AGENT_LOG")"
	# The next prompt warns: few tries left.
	sign
	expect_getpins 2
	grep -q '^SETERROR .*Few tries left' "$FAKE_PINENTRY_TRANSCRIPT" ||
		h_fail "no few-tries warning in the second prompt: $(cat "$FAKE_PINENTRY_TRANSCRIPT")"
	! grep -qF -- "$WRONG_PIN" "$H_AGENT_LOG" || h_fail "the wrong PIN appears in the log"
	no_pin_in_log
}

test_concurrent() {
	setup "workers = 4"
	answers "pin $H_PIN"
	export FAKE_PINENTRY_DELAY=1
	# One connection, 5 Signs at once; a ListTokens while the prompt is open must not wait.
	"$H_PY" - "$URI" "$H_TMP/h" <<'PYEOF' || h_fail "concurrent Signs"
import os, sys, time, dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(os.environ['DBUS_SESSION_BUS_ADDRESS'])
agent = dbus.Interface(bus.get_object('org.certagent.Agent1', '/org/certagent/Agent1'),
                       'org.certagent.Agent1')
uri, data = sys.argv[1], open(sys.argv[2], 'rb').read()
ok, errors, loop = [], [], GLib.MainLoop()
def done():
    if len(ok) + len(errors) == 5:
        loop.quit()
def on_ok(sig):
    ok.append(sig); done()
def on_err(e):
    errors.append(e.get_dbus_name() + ': ' + e.get_dbus_message()); done()
for _ in range(5):
    agent.Sign(uri, 'ecdsa_secp256r1_sha256', dbus.ByteArray(data),
               dbus.Dictionary({'server-name': 'concurrent.test'}, signature='sv'),
               reply_handler=on_ok, error_handler=on_err, timeout=60)
def list_while_prompting():
    agent.ListTokens(timeout=5)  # answered from the snapshot, not held by the prompt
    return False
GLib.timeout_add(300, list_while_prompting)
GLib.timeout_add(60000, loop.quit)
loop.run()
print('ok=%d errors=%s' % (len(ok), errors))
assert len(ok) == 5 and not errors, errors
PYEOF
	expect_getpins 1
}

test_unlock_prompts() {
	setup
	answers "pin $H_PIN"
	bctl call $AGENT $OBJ $AGENT Unlock ss "pkcs11:token=demo" "" || h_fail "Unlock with an empty PIN failed"
	expect_getpins 1
	grep -q '^SETDESC .*asks to unlock token "demo"' "$FAKE_PINENTRY_TRANSCRIPT" ||
		h_fail "the Unlock prompt says something else: $(grep SETDESC "$FAKE_PINENTRY_TRANSCRIPT")"
	h_wait_until 5 sh -c "'$H_PY' '$CERTAGENT_SRC/tests/agent/agentctl.py' tokens | grep -q '\"logged-in\": true'" ||
		h_fail "not logged in after the Unlock prompt"
	sign
	expect_getpins 1
	# Cancel on Unlock: Cancelled.
	bctl call $AGENT $OBJ $AGENT Lock || h_fail "Lock failed"
	answers cancel
	h_expect_error $ERR.Cancelled dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply \
		--dest=$AGENT $OBJ $AGENT.Unlock string:pkcs11:token=demo string:
	no_pin_in_log
}

test_idle_logout() {
	setup "login-idle-timeout = 1"
	answers "pin $H_PIN" "pin $H_PIN"
	sign
	expect_getpins 1
	# After a second without signatures the agent logs out (checked every second).
	h_wait_until 10 sh -c "'$H_PY' '$CERTAGENT_SRC/tests/agent/agentctl.py' tokens | grep -q '\"logged-in\": false'" ||
		h_fail "still logged in long after login-idle-timeout"
	grep -q 'logged out of 1 token after 1 s without a signature' "$H_AGENT_LOG" ||
		h_fail "the idle logout is not logged"
	sign
	expect_getpins 2
}

test_no_pinentry() {
	# pinentry = none: no prompt, PinRequired as before; a pinentry that is missing: the same,
	# saying why.
	h_token demo
	h_keygen demo p256 client 01
	h_bus
	h_agent "pinentry = none"
	URI=$(h_key_uri demo client)
	openssl rand 32 >"$H_TMP/h"
	h_expect_error $ERR.PinRequired h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s"
	h_expect_error $ERR.PinRequired h_ctl unlock pkcs11:token=demo ""
	h_agent_stop
	h_agent "pinentry = /nonexistent/pinentry"
	h_expect_error $ERR.PinRequired h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/h" "$H_TMP/s"
	case $H_LAST_ERROR in *"/nonexistent/pinentry"*) ;; *) h_fail "the error does not say which pinentry failed: $H_LAST_ERROR" ;; esac
}

# A pinpad reader (CKF_PROTECTED_AUTHENTICATION_PATH, through the fault module's mode=pinpad):
# the dialog tells the user to use the keypad and asks for no PIN (CONFIRM, no GETPIN); the
# agent logs in with a NULL PIN (the module "types" the PIN on the keypad) and signs.
test_pinpad() {
	export CERTAGENT_FAULT_PINPAD_PIN=$H_PIN
	fault_module_on pinpad
	setup
	[ $(($(token_field flags) & 0x100)) != 0 ] ||
		h_fail "the agent does not see CKF_PROTECTED_AUTHENTICATION_PATH (flags $(token_field flags))"
	answers ok
	sign "$H_TMP/s1" server-name=s:pinpad.example.test
	verify "$H_TMP/s1"
	h_log "pinentry transcript: $(tr '\n' '|' <"$FAKE_PINENTRY_TRANSCRIPT")"
	expect_getpins 0
	grep -qx 'CONFIRM' "$FAKE_PINENTRY_TRANSCRIPT" || grep -q '^MESSAGE' "$FAKE_PINENTRY_TRANSCRIPT" ||
		h_fail "no CONFIRM/MESSAGE dialog: $(cat "$FAKE_PINENTRY_TRANSCRIPT")"
	! grep -q '^SETPROMPT' "$FAKE_PINENTRY_TRANSCRIPT" || h_fail "a PIN field (SETPROMPT) for a pinpad"
	grep -q '^SETDESC .*keypad' "$FAKE_PINENTRY_TRANSCRIPT" ||
		h_fail "the dialog does not say to use the keypad: $(grep SETDESC "$FAKE_PINENTRY_TRANSCRIPT")"
	[ "$(traced 'login demo user pinpad')" = 1 ] ||
		h_fail "expected one C_Login with a NULL PIN: $(cat "$FAULT_TRACE")"
	[ "$(traced 'login-pin-given demo')" = 0 ] || h_fail "the agent sent a PIN to a pinpad token"
	[ "$(token_field logged-in)" = True ] || h_fail "the token is not shown logged in"
	# Logged in: the next Sign asks nothing and logs in no more.
	sign "$H_TMP/s2"
	verify "$H_TMP/s2"
	[ "$(grep -cx CONFIRM "$FAKE_PINENTRY_TRANSCRIPT")" = 1 ] || h_fail "a second dialog"
	[ "$(grep -c '^login demo' "$FAULT_TRACE")" = 1 ] || h_fail "more logins: $(cat "$FAULT_TRACE")"
	expect_getpins 0
}

# A CKA_ALWAYS_AUTHENTICATE key: the first Sign asks for the token's PIN (login) and then for
# the PIN of this one signature (context-specific login); every later Sign asks again for its
# signature, never reusing the remembered PIN. Through the fault module (mode=present) to count
# the context-specific logins. User logins are logged, not counted: when the per-signature PIN
# is missing the agent gives up the C_SignInit'ed session by closing it, which (being the token's
# only session) logs the token out, so each signature's retry logs in as CKU_USER again with the
# PIN given for the signature before its CKU_CONTEXT_SPECIFIC login.
test_always_auth() {
	KEYGEN_ALWAYS_AUTH=1
	fault_module_on present
	setup
	answers "pin $H_PIN" "pin $H_PIN" "pin $H_PIN" "pin $H_PIN"
	sign "$H_TMP/s1"
	verify "$H_TMP/s1"
	expect_getpins 2
	h_log "C_Logins after the first Sign: $(grep '^login' "$FAULT_TRACE" | tr '\n' '|')"
	[ "$(traced 'login demo context')" = 1 ] ||
		h_fail "expected one context-specific login: $(cat "$FAULT_TRACE")"
	grep -q '^SETDESC .*needs the PIN for every signature' "$FAKE_PINENTRY_TRANSCRIPT" ||
		h_fail "the per-signature prompt does not say why: $(grep SETDESC "$FAKE_PINENTRY_TRANSCRIPT")"
	sign "$H_TMP/s2"
	verify "$H_TMP/s2"
	expect_getpins 3
	h_log "C_Logins after the second Sign: $(grep '^login' "$FAULT_TRACE" | tr '\n' '|')"
	[ "$(traced 'login demo context')" = 2 ] ||
		h_fail "expected a context-specific login per signature: $(cat "$FAULT_TRACE")"
	[ "$(grep -c '^SETDESC .*needs the PIN for every signature' "$FAKE_PINENTRY_TRANSCRIPT")" = 2 ] ||
		h_fail "expected two per-signature prompts: $(grep SETDESC "$FAKE_PINENTRY_TRANSCRIPT")"
	# Unlocked with a PIN: still one prompt per signature (the Unlock PIN is not reused).
	h_ctl unlock pkcs11:token=demo "$H_PIN" >/dev/null || h_fail "Unlock failed"
	sign "$H_TMP/s3"
	verify "$H_TMP/s3"
	expect_getpins 4
	h_log "C_Logins after the third Sign: $(grep '^login' "$FAULT_TRACE" | tr '\n' '|')"
	[ "$(traced 'login demo context')" = 3 ] ||
		h_fail "expected a context-specific login per signature: $(cat "$FAULT_TRACE")"
	no_pin_in_log
}

case=${1:?usage: prompt-test.sh CASE}
"test_${case//-/_}"
