#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# isolation-test.sh CASE FAULT-MODULE SHIM-MODULE: the real certagentd on a private bus with its
# PKCS#11 modules in certagent-pkcs11-helper processes (isolation = process).
#
# Two modules, two helpers: [module fault] is tests/fault's module over SoftHSM with token "A"
# (faults commanded through its control file, token=A), and [module other] is SoftHSM behind
# softhsm-shim with a token folder of its own and token "C". So A's module can crash or hang
# while C's module, in another process, is the healthy neighbour.
#
# Cases (one meson test each):
#   crash    abort() inside C_Sign on A: that Sign gets TokenAbsent, the agent stays up, C
#            keeps signing from the same helper process as before, A's helper is restarted
#            and A comes back (TokenAdded) needing a new Unlock, then signs again
#   hang     C_Sign on A never returns: after module-timeout the Sign gets TokenAbsent, the
#            helper is killed and restarted; C signed meanwhile and A works again after Unlock
#   schemes  ECDSA P-256, RSA-PSS and Ed25519 signatures through a helper verify with openssl
#   interop  certagent connect to gnutls-serv (TLS 1.3, client cert verified) with the key in
#            an isolated module
#   process  the module is mapped in the helper, not in certagentd; the helper keeps only fds
#            0-3 (3: its control socket) and the lane sockets the agent hands it, and is a
#            child of the agent
#   registered  a module registered with p11-kit (~/.config/pkcs11/modules/softhsm-test.module,
#            the shim with a token folder of its own) is listed by a helper process and served
#            from a helper of its own: its token is listed and signs, and neither it nor any
#            other registered module is ever mapped in certagentd; p11-kit's enable-in and
#            disable-in count for "certagentd"; allow-registered without it: not served;
#            isolation = none: it is back in the agent. p11-kit reads no per-user modules as
#            root, so as root the agent (and its clients) run as nobody.
#   registered-bad  a helper whose --list-registered prints garbage, a list cut short, a
#            relative path, too much, or hangs: the agent says so, serves no registered
#            module and still serves its [module] (killed after module-timeout when it hangs);
#            a registered module marked critical that cannot start is logged as an error
. "$CERTAGENT_SRC/tests/lib/harness.sh"

[ $# = 3 ] || h_fail "usage: isolation-test.sh CASE FAULT-MODULE SHIM-MODULE"
CASE=$1
FAULT_MODULE=$2
SHIM_MODULE=$3
[ -f "$FAULT_MODULE" ] || h_fail "fault module not built: $FAULT_MODULE"
[ -f "$SHIM_MODULE" ] || h_fail "shim module not built: $SHIM_MODULE"
[ -x "${CERTAGENT_PKCS11_HELPER:-}" ] || h_fail "CERTAGENT_PKCS11_HELPER is not the built helper"

CTL=$H_TMP/fault.ctl
TRACE=$H_TMP/fault-trace.log
export CERTAGENT_FAULT_CTL=$CTL CERTAGENT_FAULT_LOG=$TRACE CERTAGENT_FAULT_REAL=$H_SOFTHSM
OTHER_CONF=$H_TMP/softhsm2-other.conf
export CERTAGENT_SHIM_SOFTHSM2_CONF=$OTHER_CONF
AGENTCTL=$CERTAGENT_SRC/tests/agent/agentctl.py
SCHEME=ecdsa_secp256r1_sha256
ERR=org.certagent.Error

h_need_py

# i_ctl LINE...: a new command for the fault module, written whole (rename).
i_ctl() {
	printf '%s\n' "$@" >"$CTL.new"
	mv -f "$CTL.new" "$CTL"
}

i_traced() { grep -qxF -- "$1" "$TRACE" 2>/dev/null; }

i_uri() { h_key_uri "$1" "k$1"; }

# i_sign TOKEN OUT: Sign the 32-byte hash; "ERROR name: message" and status 3 on a D-Bus error.
i_sign() { h_ctl sign "$(i_uri "$1")" "$SCHEME" "$H_TMP/hash" "$2"; }

i_verify() { # TOKEN SIGFILE
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/$1.pub" -in "$H_TMP/hash" -sigfile "$2" \
		>"$H_TMP/verify.log" 2>&1 ||
		{ cat "$H_TMP/verify.log" >&2; h_fail "signature by token $1 does not verify"; }
}

i_expect_sign_ok() {
	local out
	out=$(i_sign "$1" "$H_TMP/sig-$1") || h_fail "Sign on token $1 failed: $out"
	i_verify "$1" "$H_TMP/sig-$1"
}

i_expect_sign_error() { # TOKEN ERROR-NAME
	local out st=0
	out=$(i_sign "$1" "$H_TMP/sig-$1") || st=$?
	[ "$st" = 3 ] || h_fail "Sign on token $1: expected $ERR.$2, got status $st: $out"
	case $out in
	"ERROR $ERR.$2: "*) h_log "token $1: $out" ;;
	*) h_fail "Sign on token $1: expected $ERR.$2, got: $out" ;;
	esac
}

i_unlock() {
	local out
	out=$(h_ctl unlock "pkcs11:token=$1" "$H_PIN") || h_fail "Unlock of token $1 failed: $out"
}

i_has_identity() {
	h_ctl identities | "$H_PY" -c 'import json, sys
sys.exit(0 if any(";object=k%s;" % sys.argv[1] in i["uri"] for i in json.load(sys.stdin)) else 1)' "$1"
}

i_agent_alive() { kill -0 "$H_AGENT_PID" 2>/dev/null; }

# i_helper_pid NAME: the pid of the agent's helper running module NAME (empty if none).
i_helper_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(awk '{ print $4 }' "$p/stat" 2>/dev/null)" = "$H_AGENT_PID" ] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "certagent-pkcs11-helper .*--name $1 *$" &&
			{ echo "${p#/proc/}"; return 0; }
	done
	return 0
}

i_helper_changed() { # NAME OLD-PID: a helper runs for NAME and it is not OLD-PID
	local now
	now=$(i_helper_pid "$1")
	[ -n "$now" ] && [ "$now" != "$2" ]
}

# Token A (P-256 "kA") behind the fault module, token C (P-256 "kC") behind the shim in its own
# token folder; the agent with both modules isolated; both unlocked and signing.
i_setup() {
	local real=$H_SOFTHSM
	h_token A
	h_keygen A p256 kA 01
	cp "$H_TMP/keygen.pub" "$H_TMP/A.pub"
	mkdir -p "$H_TMP/tokens-other"
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$H_TMP/tokens-other" >"$OTHER_CONF"
	SOFTHSM2_CONF=$OTHER_CONF h_token C
	SOFTHSM2_CONF=$OTHER_CONF h_keygen C p256 kC 03
	cp "$H_TMP/keygen.pub" "$H_TMP/C.pub"
	head -c 32 /dev/urandom >"$H_TMP/hash"
	i_ctl mode=present
	H_SOFTHSM=$FAULT_MODULE
	h_agent "isolation = process" "poll-interval = 1" "$@" "[module other]" "path = $SHIM_MODULE"
	H_SOFTHSM=$real
	{ i_has_identity A && i_has_identity C; } ||
		h_fail "the agent does not list A's and C's keys: $(h_ctl identities)"
	i_traced "command present token=*" || h_fail "the agent did not load the fault module"
	FAULT_PID=$(i_helper_pid softhsm)
	OTHER_PID=$(i_helper_pid other)
	[ -n "$FAULT_PID" ] && [ -n "$OTHER_PID" ] && [ "$FAULT_PID" != "$OTHER_PID" ] ||
		h_fail "expected two helper processes, got \"$FAULT_PID\" and \"$OTHER_PID\""
	i_unlock A
	i_unlock C
	i_expect_sign_ok A
	i_expect_sign_ok C
}

# After A's helper died: a new helper, A listed again, logged out; C's helper never moved.
i_expect_back() {
	h_wait_until 15 i_helper_changed softhsm "$FAULT_PID" ||
		h_fail "the fault module's helper was not restarted (still \"$(i_helper_pid softhsm)\")"
	kill -0 "$FAULT_PID" 2>/dev/null && h_fail "the old helper $FAULT_PID still runs"
	h_wait_until 15 i_has_identity A || h_fail "A's identity did not come back"
	[ "$(i_helper_pid other)" = "$OTHER_PID" ] || h_fail "C's helper was restarted too"
	i_expect_sign_error A PinRequired
	i_unlock A
	i_expect_sign_ok A
	i_expect_sign_ok C
}

case_crash() {
	local out st=0
	i_setup
	i_ctl mode=crash token=A
	i_expect_sign_error A TokenAbsent
	i_traced "sign-crash A" || h_fail "the Sign on A never reached C_Sign"
	i_agent_alive || h_fail "certagentd died with the module"
	i_expect_sign_ok C
	[ "$(i_helper_pid other)" = "$OTHER_PID" ] || h_fail "C's helper changed after A's crash"
	grep -q 'module softhsm: helper process [0-9]* exited' "$H_AGENT_LOG" ||
		h_fail "the agent's log does not say the helper exited"
	i_ctl mode=present
	i_expect_back
}

case_hang() {
	local hung st=0 t0
	i_setup "module-timeout = 3"
	i_ctl mode=hang token=A
	t0=$(date +%s)
	i_sign A "$H_TMP/sig-hung" >"$H_TMP/hung.out" 2>&1 &
	hung=$!
	h_track "$hung"
	h_wait_until 10 i_traced "sign-hang A" || h_fail "the Sign on A never reached C_Sign"
	# While A's helper is stuck: C (another process) signs, the agent lists.
	i_expect_sign_ok C
	h_ctl tokens >/dev/null || h_fail "ListTokens failed while A hangs"
	kill -0 "$hung" 2>/dev/null || h_fail "the hung Sign returned early: $(cat "$H_TMP/hung.out")"
	wait "$hung" || st=$?
	h_untrack "$hung"
	[ "$st" = 3 ] && grep -q "^ERROR $ERR.TokenAbsent: " "$H_TMP/hung.out" ||
		h_fail "the hung Sign on A: expected TokenAbsent, got $st: $(cat "$H_TMP/hung.out")"
	[ $(($(date +%s) - t0)) -lt 30 ] || h_fail "the hung Sign took longer than the timeout allows"
	grep -q 'module softhsm: helper process [0-9]* did not answer within 3000 ms' "$H_AGENT_LOG" ||
		h_fail "the agent's log does not name the timeout"
	i_agent_alive || h_fail "certagentd died"
	i_traced "sign-hang-end A" && h_fail "A's C_Sign returned: the helper was not killed"
	i_ctl mode=present
	i_expect_back
}

# Signatures made in a helper, checked with openssl against the token's public keys.
case_schemes() {
	local tbs
	h_token S
	h_keygen S p256 kec 01
	cp "$H_TMP/keygen.pub" "$H_TMP/ec.pub"
	h_keygen S rsa2048 krsa 02
	cp "$H_TMP/keygen.pub" "$H_TMP/rsa.pub"
	h_keygen S ed25519 ked 03
	pkcs11-tool --module "$H_SOFTHSM" --token-label S --read-object --type pubkey --label ked \
		-o "$H_TMP/ed.pub" >"$H_TMP/p11.log" 2>&1 || { cat "$H_TMP/p11.log" >&2; h_fail "no Ed25519 public key"; }
	h_agent "isolation = process"
	[ -n "$(i_helper_pid softhsm)" ] || h_fail "SoftHSM does not run in a helper"
	i_unlock S
	head -c 32 /dev/urandom >"$H_TMP/hash"
	out=$(h_ctl sign "$(h_key_uri S kec)" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig-ec") ||
		h_fail "ECDSA Sign failed: $out"
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/ec.pub" -in "$H_TMP/hash" \
		-sigfile "$H_TMP/sig-ec" >/dev/null || h_fail "the ECDSA signature does not verify"
	out=$(h_ctl sign "$(h_key_uri S krsa)" rsa_pss_rsae_sha256 "$H_TMP/hash" "$H_TMP/sig-rsa") ||
		h_fail "RSA-PSS Sign failed: $out"
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/rsa.pub" -in "$H_TMP/hash" \
		-sigfile "$H_TMP/sig-rsa" -pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 \
		-pkeyopt rsa_pss_saltlen:32 >/dev/null || h_fail "the RSA-PSS signature does not verify"
	# Ed25519 signs a TLS 1.3 client CertificateVerify: 64 spaces, the context, 0, a hash.
	tbs=$H_TMP/tbs
	{ printf '%64s' ''; printf 'TLS 1.3, client CertificateVerify\0'; cat "$H_TMP/hash"; } >"$tbs"
	out=$(h_ctl sign "$(h_key_uri S ked)" ed25519 "$tbs" "$H_TMP/sig-ed") ||
		h_fail "Ed25519 Sign failed: $out"
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/ed.pub" -rawin -in "$tbs" \
		-sigfile "$H_TMP/sig-ed" >/dev/null || h_fail "the Ed25519 signature does not verify"
	grep -q "module softhsm: running in helper process" "$H_AGENT_LOG" ||
		h_fail "the agent's log does not show the helper"
}

case_interop() {
	local subject="CN=isolated client,O=certagent tests" line="hello through a helper"
	h_ca
	h_token iso
	h_keygen iso p256 client 01
	h_client_cert iso client 01 "$subject"
	h_agent "isolation = process"
	[ -n "$(i_helper_pid softhsm)" ] || h_fail "SoftHSM does not run in a helper"
	h_unlock iso
	h_gnutls_serv --tls1.3
	printf '%s\n' "$line" | timeout 60 "$H_CERTAGENT" connect "127.0.0.1:$H_PORT" \
		--cafile "$H_TMP/ca/root.pem" --servername localhost >"$H_TMP/c.out" 2>"$H_TMP/c.err" ||
		{ cat "$H_TMP/c.out" "$H_TMP/c.err" >&2; h_fail "certagent connect failed"; }
	grep -qF -- "$line" "$H_TMP/c.out" || h_fail "the server's echo is not in the client's output"
	h_assert_server_saw "$subject"
	h_assert_server_version TLS1.3
	h_assert_server_sig 'ECDSA-SECP256R1-SHA256'
	# The audit log is the per-signature record (the log line is debug level).
	grep -q '"decision":"allowed","identity":"pkcs11:[^"]*token=iso;' \
		"$XDG_STATE_HOME/certagent/audit.jsonl" || h_fail "the agent did not sign with token iso"
}

case_process() {
	local pid fds
	h_token P
	h_keygen P p256 kP 01
	h_agent "isolation = process"
	pid=$(i_helper_pid softhsm)
	[ -n "$pid" ] || h_fail "no helper process for module softhsm"
	grep -q 'libsofthsm2' "/proc/$pid/maps" || h_fail "the helper has not mapped libsofthsm2"
	grep -q 'libsofthsm2' "/proc/$H_AGENT_PID/maps" && h_fail "certagentd has libsofthsm2 mapped"
	# 0-2, fd 3 (its control socket) and the lanes the agent handed it: sockets only.
	fds=$(cd "/proc/$pid/fd" && echo *)
	case "$fds " in
	"0 1 2 3 "*) ;;
	*) h_fail "the helper has fds \"$fds\", expected 0 1 2 3 and lanes" ;;
	esac
	for fd in $fds; do
		[ "$fd" -le 2 ] && continue
		readlink "/proc/$pid/fd/$fd" | grep -q '^socket:' ||
			h_fail "fd $fd of the helper is not a socket: $(readlink "/proc/$pid/fd/$fd")"
	done
	i_unlock P
	head -c 32 /dev/urandom >"$H_TMP/hash"
	out=$(h_ctl sign "$(h_key_uri P kP)" "$SCHEME" "$H_TMP/hash" "$H_TMP/sig") ||
		h_fail "Sign failed: $out"
	# The same configuration with isolation = none: the module is back inside the agent.
	h_agent_stop
	h_wait_until 5 eval '! kill -0 '"$pid"' 2>/dev/null' || h_fail "the helper outlived the agent"
	h_agent "isolation = none"
	grep -q 'libsofthsm2' "/proc/$H_AGENT_PID/maps" ||
		h_fail "with isolation = none certagentd should have libsofthsm2 mapped"
	[ -z "$(i_helper_pid softhsm)" ] || h_fail "a helper runs with isolation = none"
}

# --- registered: p11-kit's modules without mapping them in the agent ---------------------------

# r_user_env: R_RUN, the command prefix that runs a command as the user the agent runs as
# (nobody when we are root) with only the environment the agent needs. An array, so that
# "${R_RUN[@]}" CMD & gives $! = the pid CMD ends up with (setpriv and env exec).
r_user_env() {
	R_RUN=()
	[ "$(id -u)" = 0 ] && R_RUN=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	R_RUN+=(env -i PATH=/usr/bin:/bin HOME="$R_HOME" XDG_CONFIG_HOME="$R_HOME/.config"
		XDG_STATE_HOME="$R_HOME/state" XDG_RUNTIME_DIR="$R_HOME/run"
		SOFTHSM2_CONF="$R_PUB/softhsm2.conf" CERTAGENT_SHIM_SOFTHSM2_CONF="$R_PUB/softhsm-r.conf"
		CERTAGENT_PKCS11_HELPER="$CERTAGENT_PKCS11_HELPER"
		DBUS_SESSION_BUS_ADDRESS="${DBUS_SESSION_BUS_ADDRESS:-}")
}

r_as_user() { "${R_RUN[@]}" "$@"; }

r_ctl() { r_as_user "$H_PY" "$R_PUB/agentctl.py" "$@"; }

# r_agent CONFIG-LINE...: certagentd as that user, registered modules on, no [module] at all.
r_agent() {
	printf '[agent]\nregistered-modules = yes\npinentry = none\npoll-interval = 0\n%s\n' \
		"$(printf '%s\n' "$@")" >"$R_PUB/agent.conf"
	chmod 644 "$R_PUB/agent.conf"
	"${R_RUN[@]}" "$H_CERTAGENTD" --config "$R_PUB/agent.conf" \
		--address "$DBUS_SESSION_BUS_ADDRESS" --foreground --debug </dev/null >>"$H_AGENT_LOG" 2>&1 &
	H_AGENT_PID=$!
	h_track "$H_AGENT_PID"
	h_wait_until 15 h__agent_up || h_fail "certagentd did not come up on the bus; see agent.log"
}

# r_tokens: ListTokens (as the agent's user) into R_TOKENS; a D-Bus error fails the test.
r_tokens() { R_TOKENS=$(r_ctl tokens) || h_fail "ListTokens failed: $R_TOKENS"; }

# r_token_module LABEL: the module serving token LABEL in R_TOKENS, or nothing.
r_token_module() {
	"$H_PY" -c 'import json, sys
for t in json.loads(sys.argv[2]):
    if t.get("label") == sys.argv[1]:
        print(t.get("module", "?"))' "$1" "$R_TOKENS"
}

# r_mapped PID: the module files mapped in process PID, one per line.
r_mapped() { awk '$6 ~ /\.so/ { print $6 }' "/proc/$1/maps" | sort -u; }

case_registered() {
	local out pid mapped
	if [ "$(id -u)" = 0 ]; then
		command -v setpriv >/dev/null || h_skip "setpriv (util-linux) is not installed"
		id nobody >/dev/null 2>&1 || h_skip "no user nobody"
		getent group nogroup >/dev/null || h_skip "no group nogroup"
	fi
	# Everything the agent's user needs, in a folder it may enter ($H_TMP stays closed).
	chmod 711 "$H_TMP"
	R_PUB=$H_TMP/pub
	R_HOME=$R_PUB/home
	mkdir -p "$R_PUB/tokens-r" "$R_PUB/tokens-none" "$R_PUB/out" \
		"$R_HOME/.config/pkcs11/modules" "$R_HOME/state" "$R_HOME/run"
	chmod 700 "$R_HOME/run"
	r_user_env
	if ! r_as_user sh -c "test -x '$H_CERTAGENTD' && test -x '$CERTAGENT_PKCS11_HELPER' &&
		test -r '$SHIM_MODULE'" 2>/dev/null; then
		# A build folder closed to that user (a clone in a private temporary folder, as
		# CI's may be): the three files it runs are copied into the test's open folder.
		mkdir -p "$R_PUB/bin"
		cp "$H_CERTAGENTD" "$CERTAGENT_PKCS11_HELPER" "$SHIM_MODULE" "$R_PUB/bin/"
		H_CERTAGENTD=$R_PUB/bin/${H_CERTAGENTD##*/}
		CERTAGENT_PKCS11_HELPER=$R_PUB/bin/${CERTAGENT_PKCS11_HELPER##*/}
		SHIM_MODULE=$R_PUB/bin/${SHIM_MODULE##*/}
		h_log "the build folder is closed to the agent's user: running copies from $R_PUB/bin"
	fi
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$R_PUB/tokens-r" >"$R_PUB/softhsm-r.conf"
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$R_PUB/tokens-none" >"$R_PUB/softhsm2.conf"
	SOFTHSM2_CONF=$R_PUB/softhsm-r.conf h_token R
	SOFTHSM2_CONF=$R_PUB/softhsm-r.conf h_keygen R p256 kR 01
	cp "$H_TMP/keygen.pub" "$H_TMP/R.pub"
	# The registration: ours, for certagentd only (enable-in), and the system's SoftHSM and
	# OpenSC switched off for certagentd (a user file adds keys to the system's one of the
	# same name): their tokens would be this test's too.
	printf 'module: %s\nenable-in: certagentd\n' "$SHIM_MODULE" \
		>"$R_HOME/.config/pkcs11/modules/softhsm-test.module"
	printf 'disable-in: certagentd\n' >"$R_HOME/.config/pkcs11/modules/softhsm2.module"
	printf 'disable-in: certagentd\n' >"$R_HOME/.config/pkcs11/modules/opensc-pkcs11.module"
	cp "$AGENTCTL" "$R_PUB/agentctl.py"
	head -c 32 /dev/urandom >"$R_PUB/hash"
	chmod -R a+rX "$R_PUB"
	[ "$(id -u)" = 0 ] && chown -R nobody:nogroup "$R_HOME" "$R_PUB/tokens-r" \
		"$R_PUB/tokens-none" "$R_PUB/out"
	H_BUS_LISTEN=unix:path=$R_PUB/bus h_bus '<policy context="default"><allow user="*"/></policy>'
	chmod 777 "$R_PUB/bus"
	r_user_env
	r_as_user sh -c "test -x '$H_CERTAGENTD' && test -x '$CERTAGENT_PKCS11_HELPER' &&
		test -r '$SHIM_MODULE'" || h_skip "the build folder is closed to the agent's user"
	out=$(r_as_user "$CERTAGENT_PKCS11_HELPER" --list-registered) ||
		h_fail "certagent-pkcs11-helper --list-registered failed"
	h_log "the helper lists: $(printf '%s' "$out" | tr '\t\n' ' |')"

	# isolation = process (the default): served from a helper; nothing registered is mapped here.
	r_agent
	r_tokens
	[ "$(r_token_module R)" = softhsm-test ] ||
		h_fail "token R of the registered module is not listed: $R_TOKENS"
	pid=$(i_helper_pid softhsm-test)
	[ -n "$pid" ] || h_fail "no helper process for the registered module softhsm-test"
	grep -q libsofthsm2 "/proc/$pid/maps" || h_fail "the helper has not mapped libsofthsm2"
	mapped=$(r_mapped "$H_AGENT_PID" | grep -E 'libsofthsm2|softhsm-shim|opensc-pkcs11|p11-kit-trust' || :)
	[ -z "$mapped" ] || h_fail "certagentd has registered modules mapped: $(tr '\n' ' ' <<<"$mapped")"
	[ -z "$(i_helper_pid softhsm2)" ] && [ -z "$(i_helper_pid opensc-pkcs11)" ] ||
		h_fail "a module with disable-in: certagentd was started"
	[ -z "$(i_helper_pid p11-kit-trust)" ] || h_fail "the trust-policy module was started"
	out=$(r_ctl unlock pkcs11:token=R "$H_PIN") || h_fail "Unlock of token R failed: $out"
	out=$(r_ctl sign "$(h_key_uri R kR)" "$SCHEME" "$R_PUB/hash" "$R_PUB/out/sig") ||
		h_fail "Sign with the registered module's key failed: $out"
	openssl pkeyutl -verify -pubin -inkey "$H_TMP/R.pub" -in "$R_PUB/hash" \
		-sigfile "$R_PUB/out/sig" >/dev/null || h_fail "the signature does not verify"
	grep -q libsofthsm2 "/proc/$H_AGENT_PID/maps" && h_fail "certagentd mapped libsofthsm2 by signing"
	h_agent_stop
	h_wait_until 5 eval '! kill -0 '"$pid"' 2>/dev/null' || h_fail "the helper outlived the agent"

	# allow-registered without it: not served, no helper.
	r_agent "allow-registered = opensc-pkcs11"
	r_tokens
	[ -z "$(r_token_module R)" ] || h_fail "token R is served although allow-registered leaves it out"
	[ -z "$(i_helper_pid softhsm-test)" ] || h_fail "a helper runs for a module not allowed"
	grep -q 'registered module softhsm-test not in allow list' "$H_AGENT_LOG" ||
		h_fail "the agent's log does not say softhsm-test was left out"
	h_agent_stop

	# isolation = none: p11-kit loads it into the agent (the maps check above can fail).
	r_agent "isolation = none" "allow-registered = softhsm-test"
	r_tokens
	[ "$(r_token_module R)" = softhsm-test ] ||
		h_fail "with isolation = none token R is not listed: $R_TOKENS"
	grep -q libsofthsm2 "/proc/$H_AGENT_PID/maps" ||
		h_fail "with isolation = none certagentd should have libsofthsm2 mapped"
	[ -z "$(i_helper_pid softhsm-test)" ] || h_fail "a helper runs with isolation = none"
}

# A stand-in for the helper: its --list-registered misbehaves as $R_FAKE_MODE says; everything
# else is the real helper (exec keeps fd 3).
case_registered_bad() {
	local fake=$H_TMP/fake-helper mode t0 want
	# shellcheck disable=SC2016 # the stand-in's own code: expanded when it runs
	{
		printf '#!/bin/bash\n'
		printf '[ "${1:-}" = --list-registered ] || exec %q "$@"\n' "$CERTAGENT_PKCS11_HELPER"
		printf 'M=certagent-registered-modules\n'
		printf 'case $R_FAKE_MODE in\n'
		printf 'garbage) echo hello ;;\n'
		printf 'cut) printf "$M 1\\nmodule\\tx\\t%%s\\t-\\n" %q ;;\n' "$H_SOFTHSM"
		printf 'relative) printf "$M 1\\nmodule\\tx\\tlibsofthsm2.so\\t-\\nend\\n" ;;\n'
		printf 'flood) echo "$M 1"; head -c 200000 /dev/zero | tr "\\0" a ;;\n'
		printf 'hang) echo "$M 1"; exec sleep 600 ;;\n'
		printf 'critical) printf "$M 1\nmodule\tgone\t/nonexistent/gone.so\tcritical\nend\n" ;;\n'
		printf 'esac\n'
	} >"$fake"
	chmod 755 "$fake"
	h_token B
	h_keygen B p256 kB 01
	cp "$H_TMP/keygen.pub" "$H_TMP/B.pub"
	head -c 32 /dev/urandom >"$H_TMP/hash"
	for mode in garbage cut relative flood hang critical; do
		case $mode in
		flood) want='printed too much: killed' ;;
		hang) want='did not finish in time: killed' ;;
		critical) want='module gone is marked critical in its p11-kit registration' ;;
		*) want='printed a malformed list' ;;
		esac
		: >"$H_AGENT_LOG"
		t0=$(date +%s)
		R_FAKE_MODE=$mode CERTAGENT_PKCS11_HELPER=$fake \
			h_agent "registered-modules = yes" "isolation = process" "module-timeout = 2"
		# The store may still be loading when the agent has its name: wait for the verdict.
		h_wait_until 10 grep -qF -- "$want" "$H_AGENT_LOG" ||
			h_fail "$mode: the agent's log does not say \"$want\""
		[ $(($(date +%s) - t0)) -lt 8 ] || h_fail "$mode: the agent took too long to give up"
		[ "$mode" = critical ] ||
			grep -q 'could not list the modules registered with p11-kit' "$H_AGENT_LOG" ||
			h_fail "$mode: the agent's log does not say the registered modules are not served"
		i_unlock B
		i_expect_sign_ok B
		h_log "$mode: $(grep -F -e '--list-registered' -e critical "$H_AGENT_LOG")"
		h_agent_stop
	done
}

case $CASE in
crash) case_crash ;;
hang) case_hang ;;
schemes) case_schemes ;;
interop) case_interop ;;
process) case_process ;;
registered) case_registered ;;
registered-bad) case_registered_bad ;;
*) h_fail "unknown case $CASE" ;;
esac
printf 'ok %s\n' "$CASE"
