#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# security-test.sh CASE: what docs/threat-model.md promises, checked against the real agent
# (private dbus-daemon, SoftHSM token, certagentd, TLS peers; all from tests/lib/harness.sh).
#   key-memory  a key with known bytes on the token; after a handshake through libcertagent the
#               client's memory holds none of its secret numbers (but does hold the leaf cert)
#   other-uid   another uid on a bus that lets it in is refused by the agent, which keeps
#               serving its own uid
#   load        CERTAGENT_LOAD_CLIENTS (32) clients x CERTAGENT_LOAD_HANDSHAKES (20 here; 500
#               for the full run) handshakes at once, twice: no failure, no fd growth beyond
#               one lane per worker, bounded RSS
#   pin-log     a distinctive PIN never appears in the agent's log (debug level)
#   bus-fuzz    tests/fuzz/bus-fuzz.py against the agent: it never dies and still answers
. "$CERTAGENT_SRC/tests/lib/harness.sh"

AGENT=org.certagent.Agent1
OBJ=/org/certagent/Agent1
SEC=$CERTAGENT_BUILD/tests/security


# The URI the agent lists for the identity labelled $1.
identity_uri() {
	h_ctl identities | "$H_PY" -c 'import json, sys
print([i["uri"] for i in json.load(sys.stdin) if i["label"] == sys.argv[1]][0])' "$1"
}

# The usual world: token demo, a P-256 key "client" generated on it, its certificate, the agent.
setup_world() {
	h_token demo
	h_keygen demo p256 client 01
	h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	h_agent
}

agent_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$H_AGENT_PID/status"; }
agent_fds() { find "/proc/$H_AGENT_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

test_key_memory() {
	h_need_py
	# A key whose bytes we know, imported (PKCS#8) instead of generated on the token.
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$H_TMP/known.key" \
		2>/dev/null || h_fail "openssl could not generate the RSA key"
	h_token demo
	softhsm2-util --import "$H_TMP/known.key" --token demo --label client --id 01 \
		--pin "$H_PIN" >"$H_TMP/import.log" 2>&1 ||
		{ cat "$H_TMP/import.log" >&2; h_fail "softhsm2-util --import failed"; }
	h_ca
	h_client_cert demo client 01 "CN=known key,O=certagent tests"
	openssl x509 -in "$H_TMP/ca/client.pem" -outform DER -out "$H_TMP/client.der"
	h_agent
	h_unlock demo
	h_gnutls_serv --tls1.3

	# The client stays connected (stdin is a FIFO we hold open) while we read its memory.
	mkfifo "$H_TMP/in"
	"$H_CERTAGENT" connect --cafile "$H_TMP/ca/root.pem" "localhost:$H_PORT" \
		<"$H_TMP/in" >"$H_TMP/out" 2>"$H_TMP/err" &
	local pid=$!
	h_track "$pid"
	exec 3>"$H_TMP/in"
	printf 'ping from the client\n' >&3
	h_wait_until 20 grep -qx 'ping from the client' "$H_TMP/out" ||
		{ cat "$H_TMP/err" >&2; h_fail "no TLS session through libcertagent"; }
	h_assert_server_saw "CN=known key,O=certagent tests"
	h_assert_server_sig 'RSA-.*'
	kill -0 "$pid" || h_fail "the client exited before its memory was read"
	local st=0
	"$H_PY" "$CERTAGENT_SRC/tests/security/memsearch.py" "$pid" "$H_TMP/known.key" \
		"$H_TMP/client.der" || st=$?
	exec 3>&-
	[ "$st" = 0 ] || h_fail "private key material in the client's memory (or the control failed)"
	echo "ok: the client (pid $pid) holds no private key bytes after a handshake"
}

test_other_uid() {
	h_need_py
	id nobody >/dev/null 2>&1 || h_skip "no user nobody"
	[ "$(id -u)" = 0 ] || h_skip "needs root for setpriv"
	getent group nogroup >/dev/null || h_skip "no group nogroup"
	# A bus everyone may connect to: socket in a folder nobody can reach ($H_TMP is 0700 by
	# default: let others traverse it, not list it).
	chmod 711 "$H_TMP"
	mkdir -m 755 "$H_TMP/pub"
	H_BUS_LISTEN=unix:path=$H_TMP/pub/bus h_bus '<policy context="default"><allow user="*"/></policy>'
	chmod 777 "$H_TMP/pub/bus"
	setup_world
	h_unlock demo
	local uri
	uri=$(identity_uri client)
	mkdir -m 777 "$H_TMP/pub/nobody"
	openssl rand 32 >"$H_TMP/pub/hash"
	chmod 644 "$H_TMP/pub/hash"

	as_nobody() {
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
			env -i DBUS_SESSION_BUS_ADDRESS="$DBUS_SESSION_BUS_ADDRESS" PATH=/usr/bin:/bin "$@"
	}
	# The bus lets nobody in and through to the agent: a harmless method answers.
	as_nobody dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply=literal --dest=$AGENT \
		$OBJ org.freedesktop.DBus.Properties.Get string:$AGENT string:Version \
		>"$H_TMP/nobody-version" 2>&1 ||
		h_fail "nobody cannot reach the agent at all: $(cat "$H_TMP/nobody-version")"
	h_log "nobody reads Version: $(tr -s ' \n' ' ' <"$H_TMP/nobody-version")"

	# Every method with keys or state behind it is refused by the agent itself.
	local m out
	for m in ListIdentities ListTokens Lock Reload; do
		out=$(as_nobody dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply \
			--dest=$AGENT $OBJ $AGENT.$m 2>&1) && h_fail "nobody may call $m: $out"
		case $out in
		*org.certagent.Error.PolicyDenied*"runs as uid $(id -u nobody)"*) ;;
		*) h_fail "$m as nobody: expected org.certagent.Error.PolicyDenied, got: $out" ;;
		esac
	done
	h_log "nobody's ListIdentities: ${out#*: }"
	out=$(as_nobody dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply --dest=$AGENT \
		$OBJ $AGENT.Unlock string:pkcs11:token=demo string:0000 2>&1) &&
		h_fail "nobody may call Unlock: $out"
	case $out in *org.certagent.Error.PolicyDenied*) ;; *) h_fail "Unlock as nobody: $out" ;; esac
	# A copy nobody can read: the checkout may sit in a folder only root can enter.
	cp "$CERTAGENT_SRC/tests/agent/agentctl.py" "$H_TMP/pub/agentctl.py"
	chmod 644 "$H_TMP/pub/agentctl.py"
	out=$(as_nobody "$H_PY" "$H_TMP/pub/agentctl.py" sign "$uri" \
		ecdsa_secp256r1_sha256 "$H_TMP/pub/hash" "$H_TMP/pub/nobody/sig" 2>&1) &&
		h_fail "nobody got a signature: $out"
	case $out in *org.certagent.Error.PolicyDenied*) ;; *) h_fail "Sign as nobody: $out" ;; esac
	[ ! -s "$H_TMP/pub/nobody/sig" ] || h_fail "a signature was written for nobody"
	# The library says so too (when nobody can run the build's CLI at all).
	if as_nobody sh -c "test -x '$H_CERTAGENT'" 2>/dev/null; then
		out=$(as_nobody "$H_CERTAGENT" list --agent 2>&1) &&
			h_fail "certagent list works as nobody: $out"
		case $out in *"uid $(id -u nobody)"*) ;; *) h_fail "certagent list as nobody: $out" ;; esac
		h_log "certagent list as nobody: $out"
	else
		h_log "(the build folder is closed to nobody: certagent list as nobody not tried)"
	fi

	# The agent still serves its own uid, and signs.
	kill -0 "$H_AGENT_PID" || h_fail "certagentd died"
	h_ctl sign "$uri" ecdsa_secp256r1_sha256 "$H_TMP/pub/hash" "$H_TMP/sig" >/dev/null ||
		h_fail "the agent no longer signs for its own uid"
	[ -s "$H_TMP/sig" ] || h_fail "no signature for the agent's own uid"
	grep -q "runs as uid $(id -u nobody)" "$H_AGENT_LOG" ||
		h_log "(the agent does not log refused callers)"
	echo "ok: uid $(id -u nobody) refused (PolicyDenied) on a bus that lets it in; uid $(id -u) served"
}

test_load() {
	local clients=${CERTAGENT_LOAD_CLIENTS:-32} n=${CERTAGENT_LOAD_HANDSHAKES:-20}
	[ -x "$SEC/load-client" ] || h_fail "load-client not built"
	setup_world
	h_unlock demo
	local ca=$H_TMP/ca
	# Warm up (caches, worker threads, sessions), then measure.
	"$SEC/load-client" 2 2 "$ca/root.pem" "$ca/server.pem" "$ca/server.key" ||
		h_fail "warm-up handshakes failed"
	sleep 0.5
	local rss0 fd0 rss1 fd1
	rss0=$(agent_rss_kb)
	fd0=$(agent_fds)
	"$SEC/load-client" "$clients" "$n" "$ca/root.pem" "$ca/server.pem" "$ca/server.key" ||
		h_fail "handshakes failed under load"
	sleep 1 # let the bus tell the agent the clients are gone
	kill -0 "$H_AGENT_PID" || h_fail "certagentd died under load"
	rss1=$(agent_rss_kb)
	fd1=$(agent_fds)
	echo "agent before: VmRSS ${rss0} kB, ${fd0} fds; after: VmRSS ${rss1} kB, ${fd1} fds"
	# The agent keeps one lane (a socket to its module helper) per signature it ran at once,
	# at most one per worker (8 by default): up to that many fds may stay, and a second load
	# may need one more lane than the first. A leak grows with the work done instead (each
	# load is 640 handshakes from 32 clients), so even after two loads the count stays within
	# the lanes' bound.
	[ "$fd1" -le $((fd0 + 8 + 2)) ] || h_fail "the agent's fds grew from $fd0 to $fd1"
	"$SEC/load-client" "$clients" "$n" "$ca/root.pem" "$ca/server.pem" "$ca/server.key" ||
		h_fail "handshakes failed under load (second run)"
	sleep 1
	local fd2
	fd2=$(agent_fds)
	echo "after a second load: ${fd2} fds"
	[ "$fd2" -le $((fd0 + 8 + 2)) ] ||
		h_fail "the agent's fds grew from $fd0 to $fd2 over two loads (lanes: at most 8)"
	# Under ASan freed memory sits in quarantine (up to 256 MiB) instead of being reused.
	if grep -q libasan "/proc/$H_AGENT_PID/maps"; then
		h_log "ASan build: RSS growth not checked ($(((rss1 - rss0) / 1024)) MiB)"
	else
		[ "$rss1" -le $((rss0 + 20 * 1024)) ] ||
			h_fail "the agent's RSS grew by $(((rss1 - rss0) / 1024)) MiB (limit 20)"
	fi
	# Every signature has its audit line (the log line per signature is at debug level).
	grep -c '"decision":"allowed"' "$XDG_STATE_HOME/certagent/audit.jsonl" >"$H_TMP/signed" || true
	[ "$(cat "$H_TMP/signed")" -ge $((2 * clients * n)) ] ||
		h_fail "the agent audited $(cat "$H_TMP/signed") signatures, expected $((2 * clients * n))"
	echo "ok: 2 x $clients x $n handshakes"
}

test_pin_log() {
	h_need_py
	# A PIN no other text would contain, used through every path that reads a PIN: Unlock
	# (right and wrong), Lock and Unlock again, and a [pin-source] file read by the agent when
	# a Sign needs a login; all at debug log level.
	local pin=Zq7-pin-4711-xyzzy wrong=Zq7-wrong-0815-plugh
	h_token demo
	h_keygen demo p256 client 01
	h_ca
	h_client_cert demo client 01 "CN=alice,O=certagent tests"
	softhsm2-util --init-token --free --label pins --pin "$pin" --so-pin "$H_SO_PIN" \
		>/dev/null 2>&1 || h_fail "cannot create token pins"
	H_PIN=$pin h_keygen pins p256 pkey 02
	H_PIN=$pin h_client_cert pins pkey 02 "CN=pin source,O=certagent tests"
	(umask 077 && printf '%s\n' "$pin" >"$H_TMP/pins.pin")
	H_AGENT_ARGS=--debug h_agent "log-level = debug" "[pin-source pins]" \
		"token = pkcs11:token=pins" "file = $H_TMP/pins.pin"
	local out puri
	out=$(h_ctl unlock pkcs11:token=demo "$wrong") && h_fail "a wrong PIN was accepted"
	h_log "wrong PIN: $out"
	h_ctl unlock pkcs11:token=demo "$pin" >/dev/null && h_fail "token demo took the other PIN"
	h_unlock demo
	h_ctl lock >/dev/null || h_fail "Lock failed"
	h_unlock demo
	# Token pins is never unlocked by a call: the agent logs in with the pin-source file.
	puri=$(identity_uri pkey)
	openssl rand 32 >"$H_TMP/hash"
	h_ctl sign "$puri" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig" >/dev/null ||
		h_fail "Sign through the pin-source file failed"
	h_ctl reload >/dev/null || h_fail "Reload failed"
	h_agent_stop
	[ -s "$H_AGENT_LOG" ] || h_fail "the agent wrote no log"
	grep -q 'token "pins": logged in' "$H_AGENT_LOG" ||
		h_log "(the log does not say how token pins was logged in)"
	local f
	for f in "$H_AGENT_LOG" "$H_TMP/bus.log"; do
		[ -f "$f" ] || continue
		if grep -aF -e "$pin" -e "$wrong" -e 4711 -e 0815 "$f"; then
			h_fail "a PIN appears in $(basename "$f")"
		fi
	done
	echo "ok: no PIN in $(wc -l <"$H_AGENT_LOG") lines of debug log"
}

test_bus_fuzz() {
	h_need_py
	setup_world
	h_unlock demo
	local uri st=0
	uri=$(identity_uri client)
	"$H_PY" "$CERTAGENT_SRC/tests/fuzz/bus-fuzz.py" --pid "$H_AGENT_PID" --uri "$uri" \
		--token demo --count "${BUS_FUZZ_COUNT:-5000}" --seed "${BUS_FUZZ_SEED:-1}" || st=$?
	[ "$st" = 0 ] || h_fail "bus-fuzz failed (status $st)"
	kill -0 "$H_AGENT_PID" || h_fail "certagentd died"
	# Still fully working: a real signature (Lock may have been fuzzed: unlock first).
	h_unlock demo
	openssl rand 32 >"$H_TMP/hash"
	h_ctl sign "$uri" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig" >/dev/null ||
		h_fail "the agent no longer signs after fuzzing"
	echo "ok: certagentd survived and still signs"
}

case ${1:-} in
key-memory) test_key_memory ;;
other-uid) test_other_uid ;;
load) test_load ;;
pin-log) test_pin_log ;;
bus-fuzz) test_bus_fuzz ;;
*) h_fail "usage: security-test.sh key-memory|other-uid|load|pin-log|bus-fuzz" ;;
esac
