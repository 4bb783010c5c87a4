#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck disable=SC2119 # h_agent and h_bus take optional arguments, none here
#
# Interop cases: `certagent connect` (libcertagent, signatures by certagentd from a SoftHSM key)
# against gnutls-serv or openssl s_server, which require a client certificate and verify it.
# Every case asserts what a user cares about: the server verified the expected client
# certificate subject, with the TLS version and signature scheme we asked for, or (failure
# cases) the client exited non-zero with a message that says what went wrong.
#
#   interop.sh connect SERVER 1.2|1.3 KEYTYPE [pkcs1|pss]
#       SERVER gnutls|openssl; KEYTYPE rsa2048|rsa3072|p256|p384|ed25519. In TLS 1.2 the server
#       accepts RSA PKCS#1 v1.5 only (default) or PSS only; TLS 1.3 is always PSS.
#   interop.sh untrusted SERVER         the server trusts another CA: the client must fail
#   interop.sh unknown-identity SERVER  --identity names no key: the client must fail clearly
#   interop.sh parallel SERVER [N]      N (8) clients at once through one agent all succeed

. "${CERTAGENT_SRC:-$(dirname "$0")/../..}/tests/lib/harness.sh"

[ $# -ge 2 ] || h_fail "usage: interop.sh connect|untrusted|unknown-identity|parallel SERVER ..."
case_=$1
server=$2
shift 2
case $server in gnutls | openssl) ;; *) h_fail "unknown server $server" ;; esac

# setup KEYTYPE SUBJECT: token "interop" with one key + cert, CA, bus, agent, unlocked.
setup() {
	h_ca
	h_token interop
	h_keygen interop "$1" client 01
	h_client_cert interop client 01 "$2"
	h_bus
	h_agent
	h_unlock interop
}

# connect OUT-PREFIX LINE [ARG...]: one `certagent connect` sending LINE; stdout/stderr and
# status in OUT-PREFIX.{out,err,rc}. Returns the client's status.
connect() {
	local out=$1 line=$2 rc=0
	shift 2
	printf '%s\n' "$line" | timeout 60 "$H_CERTAGENT" connect "127.0.0.1:$H_PORT" \
		--cafile "$H_TMP/ca/root.pem" --servername localhost "$@" \
		>"$out.out" 2>"$out.err" || rc=$?
	echo "$rc" >"$out.rc"
	return "$rc"
}

# The server's answer to LINE: gnutls-serv echoes it, openssl s_server -rev reverses it.
answer() {
	case $server in
	gnutls) printf '%s' "$1" ;;
	openssl) awk '{ r = ""; for (i = length($0); i > 0; i--) r = r substr($0, i, 1); printf "%s", r }' <<<"$1" ;;
	esac
}

show() { # show OUT-PREFIX: the client's output, for a failure report
	printf -- '--- certagent connect (exit %s) stdout:\n' "$(cat "$1.rc")" >&2
	cat "$1.out" >&2
	printf -- '--- stderr:\n' >&2
	cat "$1.err" >&2
}

expect_sig() { # SERVER KEYTYPE TLS RSA-MODE -> ERE for h_assert_server_sig
	case $1:$2:$3:$4 in
	gnutls:rsa*:1.2:pss | gnutls:rsa*:1.3:*) echo 'RSA-PSS-RSAE-SHA(256|384|512)' ;;
	gnutls:rsa*:1.2:*) echo 'RSA-SHA(256|384|512)' ;;
	gnutls:p256:1.3:*) echo 'ECDSA-SECP256R1-SHA256' ;;
	gnutls:p384:1.3:*) echo 'ECDSA-SECP384R1-SHA384' ;;
	gnutls:p*:1.2:*) echo 'ECDSA-SHA(256|384|512)' ;;
	gnutls:ed25519:*) echo 'EdDSA-Ed25519' ;;
	openssl:rsa*:1.2:pss | openssl:rsa*:1.3:*) echo 'RSA-PSS\+SHA(256|384|512)' ;;
	openssl:rsa*:1.2:*) echo 'RSA\+SHA(256|384|512)' ;;
	openssl:p256:1.3:*) echo 'ECDSA\+SHA256' ;;
	openssl:p384:1.3:*) echo 'ECDSA\+SHA384' ;;
	openssl:p*:1.2:*) echo 'ECDSA\+SHA(256|384|512)' ;;
	openssl:ed25519:*) echo '[Ee]d25519\+UNDEF' ;;
	*) h_fail "no expectation for $*" ;;
	esac
}

case $case_ in
connect)
	[ $# -ge 2 ] || h_fail "usage: interop.sh connect SERVER 1.2|1.3 KEYTYPE [pkcs1|pss]"
	tls=$1 key=$2 rsa=${3:-pkcs1}
	subject="CN=interop $key,O=certagent tests"
	setup "$key" "$subject"
	if [ "$tls" = 1.2 ]; then
		"h_${server}_serv" --tls1.2 --client-rsa "$rsa"
	else
		"h_${server}_serv" --tls1.3
	fi
	line="hello from $key over TLS $tls"
	connect "$H_TMP/c" "$line" --verbose || { show "$H_TMP/c"; h_fail "certagent connect failed"; }
	grep -qF -- "$(answer "$line")" "$H_TMP/c.out" ||
		{ show "$H_TMP/c"; h_fail "the server's answer is not in the client's output"; }
	h_assert_server_saw "$subject"
	h_assert_server_version "TLS$tls"
	h_assert_server_sig "$(expect_sig "$server" "$key" "$tls" "$rsa")"
	# The signature came from the agent, with the key on the token (not from anywhere else).
	# (the audit log is the record of each signature; the log line is at debug level)
	grep -qE '"decision":"allowed","identity":"pkcs11:[^"]*token=interop' \
		"$XDG_STATE_HOME/certagent/audit.jsonl" ||
		h_fail "the agent's audit log shows no signature with token interop"
	echo "ok: $server TLS $tls $key: server verified \"$subject\", client signature $(h_server_sigs | head -n 1)"
	;;
untrusted)
	setup p256 "CN=untrusted client,O=certagent tests"
	"h_${server}_serv" --cafile "$H_TMP/ca/other-root.pem"
	if connect "$H_TMP/c" "should not arrive"; then
		show "$H_TMP/c"
		h_fail "certagent connect succeeded against a server that does not trust the client's CA"
	fi
	[ -s "$H_TMP/c.err" ] || { show "$H_TMP/c"; h_fail "the client failed without saying why"; }
	[ -z "$(h_server_subjects)" ] || h_fail "the server accepted a client certificate"
	if grep -qF "should not arrive" "$H_SERV_LOG"; then h_fail "data reached the server"; fi
	echo "ok: refused as expected (exit $(cat "$H_TMP/c.rc")): $(head -n 3 "$H_TMP/c.err")"
	;;
unknown-identity)
	setup p256 "CN=known client,O=certagent tests"
	"h_${server}_serv"
	bad="pkcs11:token=interop;object=no-such-key;type=private"
	if connect "$H_TMP/c" "should not arrive" --identity "$bad"; then
		show "$H_TMP/c"
		h_fail "certagent connect succeeded with an identity that does not exist"
	fi
	grep -qiE 'not found|no (such )?identity|unknown identity|does not exist|no key' "$H_TMP/c.err" ||
		{ show "$H_TMP/c"; h_fail "the error does not say the identity was not found"; }
	[ -z "$(h_server_subjects)" ] || h_fail "the server accepted a client certificate"
	echo "ok: refused as expected (exit $(cat "$H_TMP/c.rc")): $(head -n 3 "$H_TMP/c.err")"
	;;
parallel)
	n=${1:-8}
	subject="CN=parallel client,O=certagent tests"
	setup rsa2048 "$subject"
	"h_${server}_serv"
	pids=""
	for i in $(seq "$n"); do
		connect "$H_TMP/p$i" "client $i of $n" &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p" || true; done
	failed=0
	for i in $(seq "$n"); do
		if [ "$(cat "$H_TMP/p$i.rc")" != 0 ] ||
			! grep -qF -- "$(answer "client $i of $n")" "$H_TMP/p$i.out"; then
			show "$H_TMP/p$i"
			failed=$((failed + 1))
		fi
	done
	[ "$failed" = 0 ] || h_fail "$failed of $n parallel clients failed"
	h_assert_server_saw "$subject" "$n"
	echo "ok: $n parallel clients, server verified \"$subject\" $n times"
	;;
*)
	h_fail "unknown case $case_"
	;;
esac
