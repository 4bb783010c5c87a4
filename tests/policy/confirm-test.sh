#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# confirm = yes dialogs (agent/confirm.c), against the real agent, a private dbus-daemon and a
# SoftHSM token, with tests/agent/fake-pinentry.py as the user's pinentry: it speaks the
# pinentry Assuan protocol, presses the button a case asks for (FAKE_PINENTRY_ANSWERS) and
# writes down every line it received (FAKE_PINENTRY_TRANSCRIPT, one "# started" line per
# dialog). The buttons: OK "Allow once", NOTOK "Allow for N minutes" (only with remember),
# Cancel "Deny". Usage: confirm-test.sh CASE (one meson test per case).
. "$CERTAGENT_SRC/tests/lib/harness.sh"

ERR=org.certagent.Error
h_need_py
[ -x /usr/bin/python3 ] || h_skip "fake-pinentry.py needs /usr/bin/python3"
PINENTRY=$CERTAGENT_SRC/tests/agent/fake-pinentry.py
export FAKE_PINENTRY_TRANSCRIPT=$H_TMP/pinentry.log
export FAKE_PINENTRY_ANSWERS=$H_TMP/pinentry.answers
: >"$FAKE_PINENTRY_TRANSCRIPT"
: >"$FAKE_PINENTRY_ANSWERS"
AUDIT=$XDG_STATE_HOME/certagent/audit.jsonl

# press BUTTON...: the buttons pressed in the next dialogs (ok, notok, cancel, close, timeout).
press() { printf '%s\n' "$@" >"$FAKE_PINENTRY_ANSWERS"; }
dialogs() { grep -c '^# started' "$FAKE_PINENTRY_TRANSCRIPT" || true; }
expect_dialogs() {
	[ "$(dialogs)" = "$1" ] ||
		h_fail "expected $1 dialog(s), the pinentry was started $(dialogs) time(s): $(cat "$FAKE_PINENTRY_TRANSCRIPT")"
}
seen() { grep -qx -- "$1" "$FAKE_PINENTRY_TRANSCRIPT"; }
show_transcript() { h_log "pinentry transcript:"; sed 's/^/#   /' "$FAKE_PINENTRY_TRANSCRIPT" >&2; }

# world [CONFIG-LINE...]: token demo with key "client" and its certificate, the agent with the
# fake pinentry and CONFIG-LINEs, unlocked. URI names the identity.
world() {
	[ -x "$PINENTRY" ] || chmod +x "$PINENTRY" 2>/dev/null || h_fail "$PINENTRY is not executable"
	h_token demo
	h_keygen demo p256 client 01
	h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	h_bus
	h_agent "pinentry = $PINENTRY" "$@"
	h_unlock demo
	: >"$FAKE_PINENTRY_TRANSCRIPT"
}
URI=$(h_key_uri demo client)
head -c 32 /dev/urandom >"$H_TMP/hash"

# sign [KEY=TYPE:VALUE...]: an ECDSA P-256 signature of a random hash with URI.
sign() { h_ctl sign "$URI" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig" "$@"; }
sign_ok() { sign "$@" >"$H_TMP/out" 2>&1 || h_fail "Sign failed: $(cat "$H_TMP/out")"; }
# denied TEXT [KEY=TYPE:VALUE...]: the Sign is refused with PolicyDenied and TEXT.
denied() {
	local text=$1
	shift
	h_expect_error $ERR.PolicyDenied sign "$@"
	case $H_LAST_ERROR in
	*"$text"*) ;;
	*) h_fail "the refusal does not say \"$text\": $H_LAST_ERROR" ;;
	esac
}

# "Allow for 5 minutes": signs, and the same program, server and identity are not asked again
# until then; another server is.
test_confirm_remember() {
	world "[policy ask]" "identity = $URI" "confirm = yes" "remember = 5"
	press notok
	sign_ok server-name=s:www.example.com
	show_transcript
	expect_dialogs 1
	seen 'SETOK Allow once' || h_fail "no SETOK \"Allow once\""
	seen 'SETNOTOK Allow for 5 minutes' || h_fail "no SETNOTOK \"Allow for 5 minutes\""
	seen 'SETCANCEL Deny' || h_fail "no SETCANCEL \"Deny\""
	seen '-> notok' || h_fail "the NOTOK button was not pressed"
	# The dialog names the program (executable, pid), the server and the identity.
	local desc
	desc=$(grep '^SETDESC ' "$FAKE_PINENTRY_TRANSCRIPT")
	for want in 'python3' 'pid [0-9]' 'www.example.com' 'token=demo' 'object=client'; do
		grep -q -- "$want" <<<"$desc" || h_fail "the dialog does not name $want: $desc"
	done
	# Buttons before the question, in this order.
	grep -E '^(SETOK|SETNOTOK|SETCANCEL|CONFIRM)' "$FAKE_PINENTRY_TRANSCRIPT" | cut -d' ' -f1 |
		tr '\n' ' ' | grep -qx 'SETOK SETNOTOK SETCANCEL CONFIRM ' ||
		h_fail "the buttons are not set before CONFIRM"
	sign_ok server-name=s:www.example.com
	sign_ok server-name=s:www.example.com
	expect_dialogs 1
	press ok
	sign_ok server-name=s:other.example.com # another server: asked again
	expect_dialogs 2
}

# "Allow once": signs, and the next Sign asks again.
test_confirm_once() {
	world "[policy ask]" "identity = $URI" "confirm = yes" "remember = 5"
	press ok ok
	sign_ok server-name=s:www.example.com
	expect_dialogs 1
	sign_ok server-name=s:www.example.com
	expect_dialogs 2
	[ "$(grep -cx -- '-> ok' "$FAKE_PINENTRY_TRANSCRIPT")" = 2 ] || h_fail "expected two OK presses"
	show_transcript
}

# "Deny", the window's close button and no answer all refuse with PolicyDenied, remember
# nothing, and are audited as denied.
test_confirm_deny() {
	world "[policy ask]" "identity = $URI" "confirm = yes" "remember = 5"
	press cancel close timeout
	denied 'the user refused the signature (chose "Deny")' server-name=s:www.example.com
	denied 'the user refused the signature (closed' server-name=s:www.example.com
	denied 'nobody answered the confirmation within 60 s' server-name=s:www.example.com
	expect_dialogs 3
	show_transcript
	press ok
	sign_ok server-name=s:www.example.com
	expect_dialogs 4
	"$H_PY" - "$AUDIT" <<'PYEOF' || h_fail "audit check failed: $(cat "$AUDIT")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
d = [l for l in lines if l["decision"] == "denied"]
assert len(d) == 3 and all("PolicyDenied" in l["reason"] and "refused" in l["reason"] for l in d), d
assert [l["decision"] for l in lines][-1] == "allowed", lines
PYEOF
}

# Without remember there is no third button, and a NOT_CONFIRMED answer (which a two-button
# pinentry may send) refuses.
test_confirm_no_remember() {
	world "[policy ask]" "identity = $URI" "confirm = yes"
	press ok notok
	sign_ok server-name=s:www.example.com
	denied 'the user refused the signature' server-name=s:www.example.com
	show_transcript
	expect_dialogs 2
	! grep -q '^SETNOTOK' "$FAKE_PINENTRY_TRANSCRIPT" || h_fail "SETNOTOK sent for a policy without remember"
	seen 'SETOK Allow once' || h_fail "no SETOK \"Allow once\""
	seen 'SETCANCEL Deny' || h_fail "no SETCANCEL \"Deny\""
}

# A pinentry without the third button (it refuses SETNOTOK): two buttons, "Allow once"
# signs and remembers nothing, NOT_CONFIRMED refuses.
test_confirm_old_pinentry() {
	export FAKE_PINENTRY_REJECT=SETNOTOK
	world "[policy ask]" "identity = $URI" "confirm = yes" "remember = 5"
	press ok ok notok
	sign_ok server-name=s:www.example.com
	sign_ok server-name=s:www.example.com
	expect_dialogs 2
	denied 'the user refused the signature' server-name=s:www.example.com
	expect_dialogs 3
	show_transcript
	seen 'SETNOTOK Allow for 5 minutes' || h_fail "the third button was not offered"
	[ "$(grep -c '^CONFIRM' "$FAKE_PINENTRY_TRANSCRIPT")" = 3 ] || h_fail "expected three CONFIRMs"
}

case ${1:-} in
'') h_fail "usage: confirm-test.sh CASE" ;;
*) fn=test_$(printf '%s' "$1" | tr - _) ;;
esac
declare -f "$fn" >/dev/null || h_fail "no such case: $1"
"$fn"
h_log "policy $1: ok"
