#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# hotplug-test.sh CASE FAULT-MODULE: tokens coming and going under the real certagentd, and
# the agent's lifecycle (issue 4 §3, §4). Two SoftHSM tokens "A" and "B" sit behind the
# fault-injecting module (tests/fault), which makes A vanish and return on command; B is the
# healthy token beside it. The agent polls the slots every second (SoftHSM has no
# C_WaitForSlotEvent). Signals are recorded by watch-signals.py (python3-dbus).
#
# Cases (one meson test each):
#   remove-return   A removed: TokenRemoved, Sign -> TokenAbsent, A's identity gone, B fine;
#                   A back: TokenAdded, identity back, Sign -> PinRequired until Unlock
#   mid-sign        CKR_DEVICE_REMOVED inside C_Sign: TokenAbsent, TokenRemoved at once, back
#                   and usable after a new login, without a restart
#   replaced        A removed, a new token labelled A (other serial, other key) appears: a new
#                   token, not logged in with the old PIN, its own key signs
#   rekeyed         A returns with the same serial but another key: a new token, PIN again
#   sessions-lost   sessions closed behind the agent's back: Sign recovers, no TokenRemoved
#   unit            systemd-analyze verify on certagentd.service (skip without systemd-analyze)
#   options         certagentd --version / --help / --foreground / --debug
#   idle-exit       exits after idle-exit seconds with nobody logged in; not while logged in;
#                   D-Bus activation starts it again
. "$CERTAGENT_SRC/tests/lib/harness.sh"

[ $# = 2 ] || h_fail "usage: hotplug-test.sh CASE FAULT-MODULE"
CASE=$1
FAULT_MODULE=$2

CTL=$H_TMP/fault.ctl
SIGNALS=$H_TMP/signals.log
export CERTAGENT_FAULT_CTL=$CTL CERTAGENT_FAULT_LOG=$H_TMP/fault-trace.log \
	CERTAGENT_FAULT_REAL=$H_SOFTHSM
PY=/usr/bin/python3 # python3-dbus lives there; a pyenv python3 first in PATH lacks it
AGENTCTL=$CERTAGENT_SRC/tests/agent/agentctl.py
SCHEME=ecdsa_secp256r1_sha256
ERR=org.certagent.Error

"$PY" -c 'import dbus, gi' 2>/dev/null || h_skip "python3-dbus / python3-gi are not installed"

t_ctl() {
	printf '%s\n' "$@" >"$CTL.new"
	mv -f "$CTL.new" "$CTL"
}

t_py() { "$PY" "$AGENTCTL" "$@"; }
t_uri() { h_key_uri "$1" "k$1"; }
t_sign() { t_py sign "$(t_uri "$1")" "$SCHEME" "$H_TMP/hash" "$2"; }

t_verify() { # PUBFILE SIGFILE
	openssl pkeyutl -verify -pubin -inkey "$1" -in "$H_TMP/hash" -sigfile "$2" \
		>"$H_TMP/verify.log" 2>&1 ||
		{ cat "$H_TMP/verify.log" >&2; h_fail "signature does not verify with $1"; }
}

t_sign_ok() { # TOKEN [PUBFILE]
	local out
	out=$(t_sign "$1" "$H_TMP/sig-$1") || h_fail "Sign on token $1 failed: $out"
	t_verify "${2:-$H_TMP/$1.pub}" "$H_TMP/sig-$1"
}

t_sign_error() { # TOKEN ERROR-NAME
	local out st=0
	out=$(t_sign "$1" "$H_TMP/sig-$1") || st=$?
	case $st:$out in
	"3:ERROR $ERR.$2: "*) h_log "token $1: $out" ;;
	*) h_fail "Sign on token $1: expected $ERR.$2, got status $st: $out" ;;
	esac
}

t_unlock() {
	local out
	out=$(t_py unlock "pkcs11:token=$1" "$H_PIN") || h_fail "Unlock of token $1 failed: $out"
}

t_has_identity() { t_py identities | grep -q "object=k$1;"; }
t_no_identity() { ! t_has_identity "$1"; }
t_serial() { # TOKEN: its serial as ListTokens gives it
	t_py tokens | "$PY" -c 'import json, sys
for t in json.load(sys.stdin):
    if t["label"] == sys.argv[1]: print(t["serial"])' "$1"
}

# t_signal_count NAME LABEL: how many NAME signals for a token labelled LABEL were seen.
t_signal_count() { grep -c "^$1 pkcs11:[^ ]* $2\$" "$SIGNALS" || true; }
t_signal_seen() { [ "$(t_signal_count "$1" "$2")" -ge "${3:-1}" ]; }

t_watch() {
	: >"$SIGNALS"
	"$PY" "$CERTAGENT_SRC/tests/hotplug/watch-signals.py" "$SIGNALS" 2>>"$H_TMP/watch.err" &
	h_track $!
	h_wait_until 10 grep -qx ready "$SIGNALS" || h_fail "the signal watcher did not start"
}

t_token() { # LABEL ID: a token with one P-256 key "kLABEL"; its public key in $H_TMP/LABEL.pub
	h_token "$1"
	h_keygen "$1" p256 "k$1" "$2"
	cp "$H_TMP/keygen.pub" "$H_TMP/$1.pub"
}

# Tokens A and B behind the fault module, the agent polling every second, both unlocked.
t_setup() {
	local real=$H_SOFTHSM
	t_token A 01
	t_token B 02
	head -c 32 /dev/urandom >"$H_TMP/hash"
	t_ctl mode=present
	H_SOFTHSM=$FAULT_MODULE
	h_agent "poll-interval = 1" "pinentry = none" "$@"
	H_SOFTHSM=$real
	{ t_has_identity A && t_has_identity B; } || h_fail "the agent does not list both tokens"
	t_watch
	t_unlock A
	t_unlock B
	t_sign_ok A
	t_sign_ok B
}

case_remove_return() {
	local serial
	t_setup
	serial=$(t_serial A)
	t_ctl mode=remove token=A
	h_wait_until 10 t_signal_seen TokenRemoved A || h_fail "no TokenRemoved for A: $(cat "$SIGNALS")"
	grep -q "^TokenRemoved pkcs11:.*serial=$serial.* A\$" "$SIGNALS" ||
		h_fail "TokenRemoved does not carry A's token URI: $(cat "$SIGNALS")"
	h_wait_until 5 grep -qx IdentitiesChanged "$SIGNALS" || h_fail "no IdentitiesChanged"
	t_no_identity A || h_fail "A's identity is still listed after removal"
	t_has_identity B || h_fail "B's identity went away with A"
	t_sign_error A TokenAbsent
	t_sign_ok B
	t_signal_seen TokenRemoved B && h_fail "B was reported removed"

	t_ctl mode=present
	h_wait_until 10 t_signal_seen TokenAdded A || h_fail "no TokenAdded for A: $(cat "$SIGNALS")"
	h_wait_until 5 t_has_identity A || h_fail "A's identity did not come back"
	[ "$(t_serial A)" = "$serial" ] || h_fail "A came back with another serial"
	grep -q "token \"A\" (serial $serial) is the same token as before (same keys)" "$H_AGENT_LOG" ||
		h_fail "the agent did not check that A is the same token"
	# The card was pulled: its login is gone, and the agent does not log in again by itself.
	t_sign_error A PinRequired
	t_unlock A
	t_sign_ok A
	t_sign_ok B # B kept its login all along
	kill -0 "$H_AGENT_PID" || h_fail "the agent died"
}

case_mid_sign() {
	t_setup
	t_ctl mode=device-removed-mid-sign token=A
	t_sign_error A TokenAbsent
	grep -qx "sign-removed A" "$H_TMP/fault-trace.log" || h_fail "the error did not come from C_Sign"
	# The failed Sign woke the watcher: no need to wait for the next poll.
	h_wait_until 5 t_signal_seen TokenRemoved A || h_fail "no TokenRemoved after CKR_DEVICE_REMOVED"
	t_sign_error A TokenAbsent
	t_sign_ok B
	t_ctl mode=present
	h_wait_until 10 t_signal_seen TokenAdded A || h_fail "no TokenAdded for A"
	h_wait_until 5 t_has_identity A || h_fail "A's identity did not come back"
	t_sign_error A PinRequired
	t_unlock A
	t_sign_ok A
}

case_replaced() {
	local old new
	t_setup
	old=$(t_serial A)
	t_ctl mode=remove token=A
	h_wait_until 10 t_signal_seen TokenRemoved A || h_fail "no TokenRemoved for A"
	# Re-create "A": same label, new serial, new key with the same ID and label.
	softhsm2-util --delete-token --serial "$old" >"$H_TMP/delete.log" 2>&1 ||
		{ cat "$H_TMP/delete.log" >&2; h_fail "cannot delete token A"; }
	t_token A 01
	t_ctl mode=present
	# SoftHSM lists tokens made after C_Initialize only once re-initialised: Reload.
	t_py reload >/dev/null || h_fail "Reload failed"
	h_wait_until 5 t_has_identity A || h_fail "the new A is not listed"
	new=$(t_serial A)
	[ -n "$new" ] && [ "$new" != "$old" ] || h_fail "the new A has serial '$new' (old '$old')"
	grep -q "token \"A\" (serial $new) is not the token \"A\" that was removed (serial $old)" \
		"$H_AGENT_LOG" || h_fail "the agent did not notice that A is another token"
	# Not trusted with the old login: PIN required, then its own key signs.
	t_sign_error A PinRequired
	t_unlock A
	t_sign_ok A "$H_TMP/A.pub"
}

# Same serial, other keys: while A is out, a key is added to it (as if the card had been
# re-personalised elsewhere). On return the fingerprint differs: a new token, PIN again.
case_rekeyed() {
	local serial
	t_setup
	serial=$(t_serial A)
	t_ctl mode=remove token=A
	h_wait_until 10 t_signal_seen TokenRemoved A || h_fail "no TokenRemoved for A"
	h_keygen A p256 kA2 03
	t_ctl mode=present
	h_wait_until 10 t_signal_seen TokenAdded A || h_fail "no TokenAdded for A"
	[ "$(t_serial A)" = "$serial" ] || h_fail "A has another serial"
	grep -q "token \"A\" (serial $serial) came back with other keys or certificates" \
		"$H_AGENT_LOG" || h_fail "the agent did not notice A's keys changed"
	grep -q "different token than the one removed" "$H_AGENT_LOG" ||
		h_fail "TokenAdded was not logged as a different token"
	t_sign_error A PinRequired
	t_unlock A
	t_sign_ok A
}

case_sessions_lost() {
	t_setup
	t_ctl mode=invalidate-sessions token=A round=1
	t_sign_ok A
	t_ctl mode=invalidate-sessions token=A round=2
	t_sign_ok A
	t_sign_ok B
	sleep 2.5 # two polls: a lost session is not a removed token
	t_signal_seen TokenRemoved A && h_fail "lost sessions were reported as a removal"
	t_has_identity A || h_fail "A's identity went away"
	return 0
}

case_unit() {
	command -v systemd-analyze >/dev/null || h_skip "systemd-analyze is not installed"
	mkdir -p "$H_TMP/units"
	sed "s|@bindir@|$CERTAGENT_BUILD/agent|" "$CERTAGENT_SRC/dbus/certagentd.service.in" \
		>"$H_TMP/units/certagentd.service"
	# --man=no: the unit names no man pages; verify checks every key, section and path.
	SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$H_TMP/units/certagentd.service" \
		>"$H_TMP/verify.out" 2>&1 || true
	if grep -v -e 'Failed to connect to bus' -e '^$' "$H_TMP/verify.out" | grep -q .; then
		cat "$H_TMP/verify.out" >&2
		h_fail "systemd-analyze verify complained about certagentd.service"
	fi
	grep -qx 'Type=dbus' "$H_TMP/units/certagentd.service" || h_fail "not Type=dbus"
	grep -qx 'BusName=org.certagent.Agent1' "$H_TMP/units/certagentd.service" || h_fail "no BusName"
	# Every hardening line of the unit is documented in docs/lifecycle.md.
	local key
	for key in $(sed -n 's/^\([A-Z][A-Za-z]*\)=.*/\1/p' "$CERTAGENT_SRC/dbus/certagentd.service.in"); do
		grep -q "\`$key=" "$CERTAGENT_SRC/docs/lifecycle.md" ||
			h_fail "$key= is not explained in docs/lifecycle.md"
	done
}

case_options() {
	local v
	v=$("$H_CERTAGENTD" --version) || h_fail "--version failed"
	printf '%s\n' "$v" | grep -qE '^certagentd [0-9]+\.[0-9]+' || h_fail "--version said: $v"
	"$H_CERTAGENTD" --help >"$H_TMP/help" || h_fail "--help failed"
	grep -q -- '--foreground' "$H_TMP/help" && grep -q -- '--debug' "$H_TMP/help" ||
		h_fail "--help lacks --foreground or --debug"
	t_token A 01
	H_AGENT_ARGS=--debug h_agent "poll-interval = 1"
	h_wait_until 5 grep -q 'debug' "$H_AGENT_LOG" || h_fail "--debug logged nothing at debug level"
	# SoftHSM has no C_WaitForSlotEvent: polled. (Through p11-kit the CKF_DONT_BLOCK probe may
	# pass; the first blocking call then says CKR_FUNCTION_NOT_SUPPORTED and we poll.)
	h_wait_until 5 grep -qE "softhsm: (no slot events|C_WaitForSlotEvent failed).*polling" \
		"$H_AGENT_LOG" || h_fail "the agent did not say it polls SoftHSM"
	# --foreground: the process we started is the agent (it did not fork away).
	h_name_has_owner org.certagent.Agent1 && kill -0 "$H_AGENT_PID" ||
		h_fail "--foreground did not keep the agent in the started process"
}

t_agent_gone() { ! kill -0 "$1" 2>/dev/null; }
t_owner_pid() {
	busctl --address="$DBUS_SESSION_BUS_ADDRESS" call org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus GetConnectionUnixProcessID s org.certagent.Agent1 2>/dev/null |
		awk '{print $2}'
}

case_idle_exit() {
	local st=0 pid1 pid2
	t_token A 01
	mkdir -p "$H_TMP/services" "$XDG_CONFIG_HOME/certagent"
	sed "s|@bindir@|$CERTAGENT_BUILD/agent|" \
		"$CERTAGENT_SRC/dbus/org.certagent.Agent1.service.in" \
		>"$H_TMP/services/org.certagent.Agent1.service"
	h_bus "<servicedir>$H_TMP/services</servicedir>"

	# 1. Nobody logged in, no calls: it exits by itself, status 0.
	h_agent "idle-exit = 2" "pinentry = none"
	h_wait_until 10 t_agent_gone "$H_AGENT_PID" || h_fail "the agent did not exit when idle"
	wait "$H_AGENT_PID" || st=$?
	h_untrack "$H_AGENT_PID"
	[ "$st" = 0 ] || h_fail "idle exit with status $st"
	grep -q "idle for 2 s" "$H_AGENT_LOG" || h_fail "the agent did not say why it exited"

	# 2. Logged in: it stays; after Lock it goes.
	h_agent "idle-exit = 2" "pinentry = none"
	t_unlock A
	sleep 4
	kill -0 "$H_AGENT_PID" 2>/dev/null || h_fail "the agent exited while a token was logged in"
	t_py lock >/dev/null || h_fail "Lock failed"
	h_wait_until 10 t_agent_gone "$H_AGENT_PID" || h_fail "the agent did not exit after Lock"
	h_untrack "$H_AGENT_PID"

	# 3. Started by D-Bus activation, exits when idle, and the next call starts it again.
	printf '[agent]\nregistered-modules = no\nidle-exit = 2\npinentry = none\n[module softhsm]\npath = %s\n' \
		"$H_SOFTHSM" >"$XDG_CONFIG_HOME/certagent/agent.conf"
	t_py tokens | grep -q '"A"' || h_fail "activation failed"
	pid1=$(t_owner_pid)
	h_track "$pid1"
	h_wait_until 10 t_agent_gone "$pid1" || h_fail "the activated agent did not exit when idle"
	t_py tokens | grep -q '"A"' || h_fail "activation after idle exit failed"
	pid2=$(t_owner_pid)
	h_track "$pid2"
	[ -n "$pid2" ] && [ "$pid2" != "$pid1" ] || h_fail "no new agent after idle exit ($pid1/$pid2)"
}

case $CASE in
remove-return) case_remove_return ;;
mid-sign) case_mid_sign ;;
replaced) case_replaced ;;
rekeyed) case_rekeyed ;;
sessions-lost) case_sessions_lost ;;
unit) case_unit ;;
options) case_options ;;
idle-exit) case_idle_exit ;;
*) h_fail "unknown case $CASE" ;;
esac
printf 'ok %s\n' "$CASE"
