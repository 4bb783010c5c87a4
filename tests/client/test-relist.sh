#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-relist.sh: a long-lived libcertagent client (one client, one set of credentials, a new
# connection per line; tests/client/test-relist.c) keeps the agent's identity list between
# handshakes and must follow the agent's IdentitiesChanged signal: when the certificate of its
# key is replaced on the token and the agent reloads, the next handshake presents the new
# certificate (the server verifies and logs its subject), and after the agent restarts
# (NameOwnerChanged) the next handshake still succeeds.
. "$CERTAGENT_SRC/tests/lib/harness.sh"
bin=$CERTAGENT_BUILD/tests/client/test-relist
[ -x "$bin" ] || h_fail "test-relist not built: $bin"
old="CN=alice,O=certagent tests" new="CN=alice renewed,O=certagent tests"

h_token demo
h_keygen demo p256 alice 01
h_ca
h_client_cert demo alice 01 "$old"
h_agent
h_unlock demo
h_gnutls_serv

mkfifo "$H_TMP/in"
"$bin" "$H_PORT" "$H_TMP/ca/root.pem" <"$H_TMP/in" >"$H_TMP/out" 2>"$H_TMP/err" &
h_track $!
exec 7>"$H_TMP/in"

done_count() { [ "$(grep -c '^handshake ' "$H_TMP/out")" -ge "$1" ]; }
# handshake N LINE: the client's Nth connection; fails the test unless it succeeded.
handshake() {
	echo "$2" >&7
	h_wait_until 20 done_count "$1" || h_fail "handshake $1 did not finish: $(cat "$H_TMP/err")"
	grep -q "^handshake $1: presented pkcs11:" "$H_TMP/out" ||
		h_fail "handshake $1: $(grep "^handshake $1:" "$H_TMP/out") $(cat "$H_TMP/err")"
}

handshake 1 "first"
h_assert_server_saw "$old" 1

# The certificate is renewed on the token (same key, new subject); the agent reloads and tells
# its clients (IdentitiesChanged). The client's kept list is stale from then on.
p11tool --provider="$H_SOFTHSM" --login --set-pin="$H_PIN" --batch \
	--delete "pkcs11:token=demo;object=alice;type=cert" >"$H_TMP/p11del.log" 2>&1 ||
	{ cat "$H_TMP/p11del.log" >&2; h_fail "p11tool could not delete the old certificate"; }
h_client_cert demo alice 01 "$new"
h_certagent reload >/dev/null || h_fail "certagent reload failed"
h_unlock demo # a reload starts the modules afresh, logged out
sleep 1 # the signal reaches the client's socket (a few ms)
handshake 2 "second"
h_assert_server_saw "$new" 1
[ "$(h__saw_count "$old")" = 1 ] ||
	h_fail "the client presented the old certificate again after IdentitiesChanged"

# The agent restarts: its channel and list are gone; the client must notice and go on.
h_agent_stop
h_agent
h_unlock demo
handshake 3 "third"
h_assert_server_saw "$new" 2
echo "ok: one client, 3 handshakes: \"$old\", then \"$new\" after the reload, then again after an agent restart"
