#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-reject.sh TLS-VERSION: the failures `certagent connect` must tell apart.
#   - token locked: the agent's PinRequired, exit 4;
#   - --identity names no identity of the agent: exit 7 before any handshake;
#   - forced identity the server does not trust: rejected (TLS 1.3: alert after the
#     handshake), exit 1 with the alert;
#   - the server's certificate untrusted: exit 1, "not trusted";
#   - --identity as a shorter URI that selects one identity works; one that selects two, or
#     has a misspelled attribute, is a usage error (2).
. "$CERTAGENT_SRC/tests/lib/harness.sh"
ver=${1:-1.3}
h_token demo
h_keygen demo p256 good 01
h_keygen demo p256 stranger 02
h_ca
h_client_cert demo good 01 "CN=good,O=certagent tests"
h_client_cert demo stranger 02 "CN=stranger,O=elsewhere" other-root
h_agent
h_gnutls_serv "--tls$ver"
ca=$H_TMP/ca/root.pem
good="pkcs11:token=demo;object=good;type=private"

connect() { # EXPECTED-STATUS NAME ARGS...: runs connect with /dev/null as input
	local want=$1 name=$2 st=0
	shift 2
	timeout 30 "$H_CERTAGENT" connect --verbose "$@" "localhost:$H_PORT" </dev/null \
		>"$H_TMP/$name.out" 2>"$H_TMP/$name.err" || st=$?
	sed "s/^/[$name] /" "$H_TMP/$name.err" >&2
	[ "$st" = "$want" ] || h_fail "$name: exit $st, want $want"
}

# Locked token: the agent cannot sign; exit 4 and the agent's message.
ident=$(h_certagent list --json | python3 -c '
import json, sys
print([i["uri"] for i in json.load(sys.stdin)["identities"] if i["label"] == "good"][0])')
connect 4 locked --cafile "$ca" --identity "$ident"
grep -qi 'unlock\|pin' "$H_TMP/locked.err" || h_fail "locked: no hint to unlock"

h_unlock demo
# A URI that selects none of the agent's identities: nothing matches (7), said before any
# handshake, so the server sees no client at all.
connect 7 nosuch --cafile "$ca" --identity "pkcs11:token=demo;object=nosuch;type=private"
grep -q 'has no identity that --identity' "$H_TMP/nosuch.err" || h_fail "nosuch: no reason given"
[ -z "$(h_server_subjects)" ] || h_fail "nosuch: the server saw a client certificate"

# An identity whose CA the server does not trust, forced: the server's alert is named.
sid=$(h_certagent list --json | python3 -c '
import json, sys
print([i["uri"] for i in json.load(sys.stdin)["identities"] if i["label"] == "stranger"][0])')
connect 1 stranger --cafile "$ca" --identity "$sid"
grep -q 'rejected the client .*(alert: ' "$H_TMP/stranger.err" || h_fail "stranger: no alert named"
grep -q "certificate sent was $sid" "$H_TMP/stranger.err" || h_fail "stranger: identity not named"

# Automatic choice skips the stranger (issuer not in the server's CA list) and uses good.
connect 0 auto --cafile "$ca"
grep -q "identity offered: .*CN=good" "$H_TMP/auto.err" || h_fail "auto: good was not chosen"
h_assert_server_saw "CN=good,O=certagent tests"

# --identity as any URI that selects one identity (as the admin commands take it); one that
# selects several, or has a misspelled attribute, is a usage error naming what to add.
connect 0 short --cafile "$ca" --identity "pkcs11:token=demo;object=good"
grep -q "identity offered: .*object=good;type=private" "$H_TMP/short.err" ||
	h_fail "short: the identity pkcs11:token=demo;object=good was not used"
connect 2 several --cafile "$ca" --identity "pkcs11:token=demo"
grep -q 'selects 2 of the agent.s identities' "$H_TMP/several.err" || h_fail "several: not said"
connect 2 misspelled --cafile "$ca" --identity "pkcs11:tokn=demo;object=good"
grep -q 'misspelled' "$H_TMP/misspelled.err" || h_fail "misspelled: not said"

# Server certificate not trusted.
connect 1 untrusted --cafile "$H_TMP/ca/other-root.pem"
grep -q "server's certificate is not trusted" "$H_TMP/untrusted.err" || h_fail "untrusted: unclear"

# Wrong server name.
connect 1 wrongname --cafile "$ca" --servername not-localhost.example
grep -q "not trusted" "$H_TMP/wrongname.err" || h_fail "wrong name: unclear"
echo ok
