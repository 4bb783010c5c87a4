# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Test harness for certagent's shell tests (and scripts/demo). Source it from bash:
#
#   . "$CERTAGENT_SRC/tests/lib/harness.sh"
#
# It switches on `set -eu`, makes a private temporary folder $H_TMP and installs an EXIT trap
# that stops every process the harness started (agent, dbus-daemon, TLS servers) and removes
# $H_TMP, also when the test fails. Everything is real: a SoftHSM token in $H_TMP, keys
# generated on it, a certtool CA, a private dbus-daemon, the real certagentd, gnutls-serv and
# openssl s_server on loopback. Nothing here touches the user's tokens, bus or configuration.
#
# Functions (see each one for details):
#   h_token LABEL                          SoftHSM token, user PIN 1234, SO PIN 123456
#   h_keygen TOKEN TYPE LABEL ID           key generated ON the token:
#                                          rsa2048|rsa3072|rsa4096|p256|p384|p521|ed25519
#   h_ca                                   $H_TMP/ca/{root,inter,server,other-root}.{pem,key}
#   h_client_cert TOKEN LABEL ID SUBJECT [CA]  cert by inter (or CA) for the token key, stored
#                                          on the token; $H_TMP/ca/LABEL.pem, LABEL-chain.pem
#   h_bus [XML-LINE...]                    private dbus-daemon, exports DBUS_SESSION_BUS_ADDRESS
#   h_agent [CONFIG-LINE...]               writes $H_TMP/agent.conf, starts certagentd, waits
#   h_agent_stop                           stops the agent (SIGTERM, then SIGKILL)
#   h_unlock TOKEN                         `certagent unlock` with PIN 1234 from a PIN file
#   h_gnutls_serv [OPTS]                   gnutls-serv, client certs required + verified
#   h_openssl_serv [OPTS]                  openssl s_server, the same
#   h_assert_server_saw SUBJECT            the server verified a client cert with that subject
#   h_fail MESSAGE / h_skip MESSAGE        exit 1 / exit 77 (meson's "skipped")
#   h_key_uri TOKEN LABEL [TYPE]           "pkcs11:token=TOKEN;object=LABEL;type=private"
#   h_wait_until SECONDS COMMAND...        retries COMMAND every 0.1 s, returns its status
#   h_track PID / h_untrack PID / h_kill PID   processes of a test's own, stopped on exit
#   h_certagent ARG...                     the CLI; h_name_has_owner NAME; h_serv_stop
#   h_server_subjects / h_server_sigs / h_server_versions, h_assert_server_sig ERE,
#   h_assert_server_version TLS1.x         what the last server reports per handshake
#
# Variables: H_TMP, H_PIN (1234), H_SO_PIN (123456), H_SOFTHSM (module path), H_PORT (last
# server's port), H_SERV_LOG (last server's log), H_AGENT_PID, H_AGENT_LOG, H_AGENT_CONF,
# H_CERTAGENTD and H_CERTAGENT (binaries, from $CERTAGENT_BUILD).
# Set H_KEEP=1 to keep $H_TMP after the run (its path is printed), H_VERBOSE=1 to trace.
#
# How the servers report the client certificate (what h_assert_server_saw reads). Both print
# it only for handshakes where the client chain verified against the CA file, since they are
# started so that a missing or unverifiable client certificate ends the handshake:
#   gnutls-serv --require-client-cert --verify-client-cert (stdout, per connection):
#     "- Status: The certificate is trusted.", then "- Certificate[0] info:" followed by a
#     certtool-style dump whose "<TAB>Subject: CN=alice,O=..." line is the leaf's subject
#     (RFC 4514), and "- Version: TLS1.3", "- Client Signature: RSA-PSS-RSAE-SHA256".
#   openssl s_server -rev -nameopt RFC2253 -Verify 3 -verify_return_error (stdout/stderr):
#     "Protocol version: TLSv1.3", "Peer certificate: CN=alice,O=...", "Hash used: SHA256",
#     "Signature type: RSA-PSS", "Verification: OK".

set -eu

H_SOFTHSM=${H_SOFTHSM:-/usr/lib/softhsm/libsofthsm2.so}
H_PIN=1234
H_SO_PIN=123456
H_PORT=
H_SERV_LOG=
H_SERV_PID=
H_SERV_KIND=
H_AGENT_PID=
H_PIDS=""
H_CERTAGENTD=${CERTAGENT_BUILD:-}/agent/certagentd
H_CERTAGENT=${CERTAGENT_BUILD:-}/cli/certagent
# The agent runs each module in the helper from the build, not an installed one (meson's
# test_env sets this too; scripts/demo and the bench come through here).
export CERTAGENT_PKCS11_HELPER=${CERTAGENT_PKCS11_HELPER:-${CERTAGENT_BUILD:-}/pkcs11/certagent-pkcs11-helper}

H_TMP=$(mktemp -d "${TMPDIR:-/tmp}/certagent-test.XXXXXX")
H_AGENT_LOG=$H_TMP/agent.log
H_AGENT_CONF=$H_TMP/agent.conf
export SOFTHSM2_CONF=$H_TMP/softhsm2.conf
# Keep the tools under test away from the user's own configuration.
export XDG_CONFIG_HOME=$H_TMP/config
export XDG_STATE_HOME=$H_TMP/state # the agent's audit log goes here, not to ~
export XDG_RUNTIME_DIR=$H_TMP/run
mkdir -p "$H_TMP/tokens" "$H_TMP/ca" "$XDG_CONFIG_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
cat >"$SOFTHSM2_CONF" <<EOF
directories.tokendir = $H_TMP/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
unset DBUS_SESSION_BUS_ADDRESS GNUTLS_PIN

[ "${H_VERBOSE:-0}" = 1 ] && set -x

# --- messages ----------------------------------------------------------------------------------

h_log() { printf '# %s\n' "$*" >&2; }

h_fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

h_skip() {
	printf 'SKIP: %s\n' "$*" >&2
	exit 77
}

# --- D-Bus clients in tests ----------------------------------------------------------------------

# H_PY: a python3 that has python3-dbus (a pyenv python3 first in PATH may lack it), or empty.
H_PY=
for h__p in /usr/bin/python3 python3; do
	if command -v "$h__p" >/dev/null && "$h__p" -c 'import dbus' 2>/dev/null; then
		H_PY=$h__p
		break
	fi
done
unset h__p

# h_need_py: skips the test when there is no python3 with python3-dbus.
h_need_py() { [ -n "$H_PY" ] || h_skip "python3-dbus is not installed"; }

# h_sanitized: true when the build under test is the AddressSanitizer one (certagentd links
# libasan): slower, and valgrind cannot run it.
h_sanitized() { ldd "$H_CERTAGENTD" 2>/dev/null | grep -q 'libasan'; }

# h_ctl ARG...: tests/agent/agentctl.py (structured calls to the agent, JSON out).
h_ctl() { "$H_PY" "$CERTAGENT_SRC/tests/agent/agentctl.py" "$@"; }

# h_expect_error NAME COMMAND...: COMMAND must fail and print the D-Bus error NAME; what it
# printed is left in H_LAST_ERROR.
h_expect_error() {
	local name=$1 out
	shift
	out=$("$@" 2>&1) && h_fail "expected $name, but the call succeeded: $*"
	case $out in
	*"$name"*) h_log "got $name as expected: ${out#*: }" ;;
	*) h_fail "expected $name from: $* -- got: $out" ;;
	esac
	H_LAST_ERROR=$out
}

# --- processes and cleanup ---------------------------------------------------------------------

# h_track PID: the harness stops PID (TERM, then KILL) on exit. h_untrack PID: no longer.
h_track() { H_PIDS="$H_PIDS $1"; }

h_untrack() {
	local p out=""
	for p in $H_PIDS; do [ "$p" = "$1" ] || out="$out $p"; done
	H_PIDS=$out
}

# h_kill PID: SIGTERM, up to 3 s grace, then SIGKILL. Quiet if already gone.
h_kill() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || { h_untrack "$pid"; return 0; }
	for _ in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	h_untrack "$pid"
}

# h__dump FILE: its last 40 lines on stderr, without certificate dumps (gnutls-serv prints
# every client certificate in full, which would hide the lines that matter).
h__dump() {
	local f=$1
	[ -s "$f" ] || return 0
	printf -- '--- %s (last 40 lines) ---\n' "${f#"$H_TMP"/}" >&2
	sed -e '/^-----BEGIN/,/^-----END/d' -e '/^\t/d' -e '/^$/d' -e '/^Other Information:/d' \
		-e '/^ - X.509 Certificate Information:/d' "$f" | tail -n 40 >&2
}

h__cleanup() {
	local rc=$? p
	set +e
	trap - EXIT INT TERM HUP
	[ "${H_VERBOSE:-0}" = 1 ] && set +x
	if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ "${H_QUIET_LOGS:-0}" != 1 ]; then
		for p in "$H_AGENT_LOG" "$H_TMP"/serv*.log "$H_TMP/bus.log"; do
			[ -f "$p" ] && h__dump "$p"
		done
	fi
	for p in $H_PIDS; do kill -TERM "$p" 2>/dev/null; done
	for p in $H_PIDS; do
		for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ "${H_KEEP:-0}" = 1 ]; then
		printf 'kept %s\n' "$H_TMP" >&2
	else
		rm -rf "$H_TMP"
	fi
	exit "$rc"
}
trap h__cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# h_wait_until SECONDS COMMAND [ARG...]: runs COMMAND every 0.1 s until it succeeds or time is up.
h_wait_until() {
	local n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	"$@"
}

# --- tokens and keys ---------------------------------------------------------------------------

# "0a1b" -> "%0a%1b" for pkcs11: URIs.
h__pct_id() { printf '%s' "$1" | sed 's/\(..\)/%\1/g'; }

h_key_uri() { printf 'pkcs11:token=%s;object=%s;type=%s' "$1" "$2" "${3:-private}"; }

# h_token LABEL: a new SoftHSM token in $H_TMP with user PIN 1234 and SO PIN 123456.
h_token() {
	[ $# = 1 ] || h_fail "usage: h_token LABEL"
	softhsm2-util --init-token --free --label "$1" --pin "$H_PIN" --so-pin "$H_SO_PIN" \
		>"$H_TMP/softhsm-init.log" 2>&1 ||
		{ cat "$H_TMP/softhsm-init.log" >&2; h_fail "softhsm2-util could not create token $1"; }
}

# h_keygen TOKEN TYPE LABEL ID: generates a key pair on the token (private key sensitive and
# never extractable). ID is hex ("01"). Ed25519 uses pkcs11-tool, as p11tool 3.7 cannot.
h_keygen() {
	[ $# = 4 ] || h_fail "usage: h_keygen TOKEN rsa2048|rsa3072|rsa4096|p256|p384|p521|ed25519 LABEL ID"
	local tok=$1 type=$2 label=$3 id=$4 gen
	case $type in
	rsa2048) gen="--generate-privkey rsa --bits 2048" ;;
	rsa3072) gen="--generate-privkey rsa --bits 3072" ;;
	rsa4096) gen="--generate-privkey rsa --bits 4096" ;;
	p256) gen="--generate-privkey ecdsa --curve secp256r1" ;;
	p384) gen="--generate-privkey ecdsa --curve secp384r1" ;;
	p521) gen="--generate-privkey ecdsa --curve secp521r1" ;;
	ed25519)
		pkcs11-tool --module "$H_SOFTHSM" --token-label "$tok" --login --pin "$H_PIN" \
			--keypairgen --key-type EC:edwards25519 --label "$label" --id "$id" \
			>"$H_TMP/keygen.log" 2>&1 ||
			{ cat "$H_TMP/keygen.log" >&2; h_fail "pkcs11-tool could not generate $type on $tok"; }
		return 0
		;;
	*) h_fail "h_keygen: unknown key type $type" ;;
	esac
	# shellcheck disable=SC2086 # $gen is a list of options
	p11tool --provider="$H_SOFTHSM" --login --set-pin="$H_PIN" $gen --label "$label" \
		--id "$id" --outfile "$H_TMP/keygen.pub" "pkcs11:token=$tok" >"$H_TMP/keygen.log" 2>&1 ||
		{ cat "$H_TMP/keygen.log" >&2; h_fail "p11tool could not generate $type on $tok"; }
}

# --- certificates ------------------------------------------------------------------------------

h__certtool() {
	certtool "$@" >>"$H_TMP/ca/certtool.log" 2>&1 ||
		{ tail -n 20 "$H_TMP/ca/certtool.log" >&2; h_fail "certtool $1 failed"; }
}

h__serial=100
h__template() { # FILE DN EXTRA-LINES...
	local f=$1 dn=$2
	shift 2
	h__serial=$((h__serial + 1))
	{
		printf 'dn = "%s"\nserial = %d\nexpiration_days = 30\n' "$dn" "$h__serial"
		printf '%s\n' "$@"
	} >"$f"
}

# h_ca: test CAs with ECDSA P-256 keys in files (they are test CAs; only client keys live on
# tokens). root signs inter (issues the client certs) and the server cert (CN=localhost,
# SAN dns:localhost, ip:127.0.0.1). other-root is an unrelated CA for "untrusted" cases.
h_ca() {
	local d=$H_TMP/ca n
	for n in root inter server other-root; do
		h__certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/$n.key"
	done
	h__template "$d/root.tmpl" "CN=certagent test root CA,O=certagent tests" ca \
		cert_signing_key crl_signing_key
	h__certtool --generate-self-signed --load-privkey "$d/root.key" --template "$d/root.tmpl" \
		--outfile "$d/root.pem"
	h__template "$d/other-root.tmpl" "CN=certagent unrelated root CA,O=elsewhere" ca \
		cert_signing_key crl_signing_key
	h__certtool --generate-self-signed --load-privkey "$d/other-root.key" \
		--template "$d/other-root.tmpl" --outfile "$d/other-root.pem"
	h__template "$d/inter.tmpl" "CN=certagent test client CA,O=certagent tests" ca \
		cert_signing_key crl_signing_key "path_len = 0"
	h__certtool --generate-certificate --load-privkey "$d/inter.key" --load-ca-certificate \
		"$d/root.pem" --load-ca-privkey "$d/root.key" --template "$d/inter.tmpl" \
		--outfile "$d/inter.pem"
	h__template "$d/server.tmpl" "CN=localhost" tls_www_server signing_key \
		'dns_name = "localhost"' 'ip_address = "127.0.0.1"'
	h__certtool --generate-certificate --load-privkey "$d/server.key" --load-ca-certificate \
		"$d/root.pem" --load-ca-privkey "$d/root.key" --template "$d/server.tmpl" \
		--outfile "$d/server.pem"
}

# h_client_cert TOKEN LABEL ID SUBJECT [CA]: a TLS client certificate for the key LABEL/ID on
# TOKEN, issued by CA (default inter; "other-root" for an untrusted one). The public key is read
# from the token; the certificate is written to the token with the key's label and CKA_ID, and
# the issuing intermediate is written beside it (once per token, marked CA) so the agent can send
# the chain. Also saved as $H_TMP/ca/LABEL.pem (leaf) and $H_TMP/ca/LABEL-chain.pem.
h_client_cert() {
	[ $# -ge 4 ] || h_fail "usage: h_client_cert TOKEN LABEL ID SUBJECT [CA]"
	local tok=$1 label=$2 id=$3 subject=$4 ca=${5:-inter} d=$H_TMP/ca
	[ -f "$d/$ca.pem" ] || h_fail "h_client_cert: run h_ca first"
	h__template "$d/$label.tmpl" "$subject" tls_www_client signing_key
	h__certtool --generate-certificate --provider="$H_SOFTHSM" \
		--load-pubkey "pkcs11:token=$tok;id=$(h__pct_id "$id");type=public" \
		--load-ca-certificate "$d/$ca.pem" --load-ca-privkey "$d/$ca.key" \
		--template "$d/$label.tmpl" --outfile "$d/$label.pem"
	if [ "$ca" = inter ]; then
		cat "$d/$label.pem" "$d/inter.pem" >"$d/$label-chain.pem"
	else
		cp "$d/$label.pem" "$d/$label-chain.pem"
	fi
	p11tool --provider="$H_SOFTHSM" --login --set-pin="$H_PIN" --write \
		--load-certificate "$d/$label.pem" --label "$label" --id "$id" "pkcs11:token=$tok" \
		>"$H_TMP/p11write.log" 2>&1 ||
		{ cat "$H_TMP/p11write.log" >&2; h_fail "p11tool could not store the certificate on $tok"; }
	if [ "$ca" = inter ] && [ ! -e "$H_TMP/.inter-on-$tok" ]; then
		p11tool --provider="$H_SOFTHSM" --login --set-pin="$H_PIN" --write --mark-ca \
			--load-certificate "$d/inter.pem" --label "certagent test client CA" \
			"pkcs11:token=$tok" >"$H_TMP/p11write.log" 2>&1 ||
			{ cat "$H_TMP/p11write.log" >&2; h_fail "p11tool could not store the CA on $tok"; }
		: >"$H_TMP/.inter-on-$tok"
	fi
}

# --- D-Bus and the agent -----------------------------------------------------------------------

# h_bus [XML-LINE...]: a private dbus-daemon (session type, EXTERNAL auth, socket in $H_TMP);
# exports DBUS_SESSION_BUS_ADDRESS and H_BUS_PID. XML-LINEs go into its <busconfig>, e.g.
# "<servicedir>$H_TMP/services</servicedir>" for D-Bus activation tests. H_BUS_LISTEN (default
# unix:dir=$H_TMP) and H_BUS_CONF (default $H_TMP/bus.conf) choose its address and file, for a
# second bus or one other users reach.
# shellcheck disable=SC2120 # arguments are optional
h_bus() {
	local conf=${H_BUS_CONF:-$H_TMP/bus.conf}

	cat >"$conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>${H_BUS_LISTEN:-unix:dir=$H_TMP}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
$(printf '  %s\n' "$@")
</busconfig>
EOF
	dbus-daemon --config-file="$conf" --fork --print-address=3 --print-pid=4 \
		3>"$conf.address" 4>"$conf.pid" </dev/null >>"$H_TMP/bus.log" 2>&1 ||
		h_fail "dbus-daemon ($conf) did not start"
	H_BUS_PID=$(head -n 1 "$conf.pid")
	h_track "$H_BUS_PID"
	DBUS_SESSION_BUS_ADDRESS=$(head -n 1 "$conf.address")
	export DBUS_SESSION_BUS_ADDRESS
	[ -n "$DBUS_SESSION_BUS_ADDRESS" ] || h_fail "dbus-daemon printed no address"
}

# h_name_has_owner NAME: true if NAME is owned on the private bus.
h_name_has_owner() {
	dbus-send --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply=literal --dest=org.freedesktop.DBus \
		/org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null |
		grep -q true
}

h__agent_up() {
	kill -0 "$H_AGENT_PID" 2>/dev/null || return 2
	h_name_has_owner org.certagent.Agent1
}

# h_agent [CONFIG-LINE...]: writes $H_TMP/agent.conf and starts certagentd on the private bus.
# The config has registered-modules = no and SoftHSM by path as [module softhsm]. CONFIG-LINEs
# are written after "[agent]", so "key = value" lines set agent options and a "[section]" line
# starts a section of its own (e.g. "[pin-source demo]" "token = pkcs11:token=demo" ...).
# Extra command-line options for certagentd: $H_AGENT_ARGS (e.g. "--debug"). $H_AGENT_WRAPPER
# (e.g. "valgrind --tool=memcheck ...") is put before the agent's command; H_AGENT_PID is then
# the wrapper's pid (valgrind runs the agent in its own process).
# Waits up to $H_AGENT_WAIT (10) s for org.certagent.Agent1 on the bus; fails with the agent's
# log if it died.
h_agent() {
	[ -x "$H_CERTAGENTD" ] || h_fail "certagentd not built: $H_CERTAGENTD (set CERTAGENT_BUILD)"
	# shellcheck disable=SC2119 # no extra bus configuration here
	[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] || h_bus
	{
		# No pinentry unless a test asks for one (a later "pinentry = ..." line wins): a
		# terminal pinentry must never take over the terminal of whoever runs the tests.
		printf '# written by tests/lib/harness.sh\n[agent]\nregistered-modules = no\npinentry = none\n'
		[ $# = 0 ] || printf '%s\n' "$@"
		printf '\n[module softhsm]\npath = %s\n' "$H_SOFTHSM"
	} >"$H_AGENT_CONF"
	# shellcheck disable=SC2086 # H_AGENT_WRAPPER and H_AGENT_ARGS are lists of words
	${H_AGENT_WRAPPER:-} "$H_CERTAGENTD" --config "$H_AGENT_CONF" --address "$DBUS_SESSION_BUS_ADDRESS" \
		--foreground ${H_AGENT_ARGS:-} </dev/null >>"$H_AGENT_LOG" 2>&1 &
	H_AGENT_PID=$!
	h_track "$H_AGENT_PID"
	local n=$((${H_AGENT_WAIT:-10} * 10)) st
	while :; do
		st=0
		h__agent_up || st=$?
		[ "$st" = 0 ] && return 0
		if [ "$st" = 2 ]; then
			wait "$H_AGENT_PID" && st=0 || st=$?
			h_untrack "$H_AGENT_PID"
			h_fail "certagentd exited (status $st) before taking org.certagent.Agent1; see agent.log"
		fi
		n=$((n - 1))
		[ "$n" -gt 0 ] || h_fail "certagentd did not take org.certagent.Agent1 within ${H_AGENT_WAIT:-10} s"
		sleep 0.1
	done
}

h_agent_stop() {
	[ -n "$H_AGENT_PID" ] || return 0
	h_kill "$H_AGENT_PID"
	H_AGENT_PID=
}

# h_certagent ARG...: runs the CLI (on the private bus, from the environment).
h_certagent() {
	[ -x "$H_CERTAGENT" ] || h_fail "certagent CLI not built: $H_CERTAGENT"
	"$H_CERTAGENT" "$@"
}

# h_unlock TOKEN [PIN]: `certagent unlock --pin-file F pkcs11:token=TOKEN`.
h_unlock() {
	[ $# -ge 1 ] || h_fail "usage: h_unlock TOKEN [PIN]"
	local f=$H_TMP/pin-$1
	(umask 077 && printf '%s\n' "${2:-$H_PIN}" >"$f")
	h_certagent unlock --pin-file "$f" "pkcs11:token=$1" ||
		h_fail "certagent unlock pkcs11:token=$1 failed"
}

# --- TLS servers -------------------------------------------------------------------------------

# h__listen_inodes PORT: socket inodes listening on TCP PORT (from /proc: no iproute2 needed).
h__listen_inodes() { # PORT [tcp]: socket inodes listening on PORT (IPv4 and IPv6, or IPv4 only)
	local hex files=(/proc/net/tcp /proc/net/tcp6)
	[ "${2:-}" = tcp ] && files=(/proc/net/tcp)
	hex=$(printf '%04X' "$1")
	cat "${files[@]}" 2>/dev/null |
		awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }'
}

# h__listening PORT [PID]: something (PID itself, if given) listens on TCP PORT. With PID, a
# server that lost a race for the port is not mistaken for one that listens, and it must listen
# on IPv4, where the tests' clients connect (127.0.0.1; localhost tries it too): gnutls-serv
# that lost the IPv4 port keeps running on IPv6 alone.
h__listening() {
	local ino fd
	[ $# -ge 2 ] || { [ -n "$(h__listen_inodes "$1")" ]; return; }
	for ino in $(h__listen_inodes "$1" tcp); do
		for fd in /proc/"$2"/fd/*; do
			[ "$(readlink "$fd" 2>/dev/null)" = "socket:[$ino]" ] && return 0
		done
	done
	return 1
}

# A TCP port nobody listens on now (the server may still lose a race; we retry then).
h__free_port() {
	local p
	while :; do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		h__listening "$p" || { echo "$p"; return 0; }
	done
}

# Starts "$@" as the server in the background with its output to $H_SERV_LOG, waits until it
# listens on $H_PORT. Returns 1 if it exited (port taken?), so the caller can retry.
h__start_server() {
	: >"$H_SERV_LOG"
	"$@" </dev/null >>"$H_SERV_LOG" 2>&1 &
	H_SERV_PID=$!
	h_track "$H_SERV_PID"
	local n=100
	while [ "$n" -gt 0 ]; do
		h__listening "$H_PORT" "$H_SERV_PID" && return 0
		# gnutls-serv says so and goes on with IPv6 only: a lost race too.
		grep -q 'bind() failed' "$H_SERV_LOG" && kill "$H_SERV_PID" 2>/dev/null
		if ! kill -0 "$H_SERV_PID" 2>/dev/null; then
			wait "$H_SERV_PID" 2>/dev/null || true
			h_untrack "$H_SERV_PID"
			return 1
		fi
		sleep 0.1
		n=$((n - 1))
	done
	h_fail "server did not listen on port $H_PORT within 10 s: $*"
}

h__serv_count=0
h__serv_args() { # common options: sets h__ver, h__cafile, h__cert, h__key, h__rsa
	h__ver=any
	h__rsa=any
	h__cafile=$H_TMP/ca/root.pem
	h__cert=$H_TMP/ca/server.pem
	h__key=$H_TMP/ca/server.key
	h__ocsp=
	while [ $# -gt 0 ]; do
		case $1 in
		--tls1.2) h__ver=1.2 ;;
		--tls1.3) h__ver=1.3 ;;
		--cafile) h__cafile=$2; shift ;;
		--cafile=*) h__cafile=${1#*=} ;;
		--client-rsa) h__rsa=$2; shift ;;
		--client-rsa=*) h__rsa=${1#*=} ;;
		--ocsp-response) h__ocsp=$2; shift ;;
		--ocsp-response=*) h__ocsp=${1#*=} ;;
		*) h_fail "server option not understood: $1" ;;
		esac
		shift
	done
	case $h__rsa in any | pkcs1 | pss) ;; *) h_fail "--client-rsa any|pkcs1|pss, not $h__rsa" ;; esac
	{ [ -f "$h__cafile" ] && [ -f "$h__cert" ]; } || h_fail "run h_ca before starting a server"
	[ -z "$h__ocsp" ] || [ -f "$h__ocsp" ] || h_fail "no OCSP response file $h__ocsp"
	h__serv_count=$((h__serv_count + 1))
	H_SERV_LOG=$H_TMP/serv$h__serv_count.log
	[ "$h__serv_count" = 1 ] && H_SERV_LOG=$H_TMP/serv.log
	return 0
}

# h_gnutls_serv [--tls1.2|--tls1.3] [--cafile FILE] [--client-rsa pkcs1|pss]
#               [--ocsp-response FILE]: gnutls-serv --echo
# on a free port that requires a client certificate and verifies it against root.pem (or FILE).
# --client-rsa limits the RSA signatures the server accepts from the client to PKCS#1 v1.5 or
# to PSS (ECDSA and EdDSA stay allowed); without it, TLS 1.2 clients may choose either.
# --ocsp-response staples the DER OCSP response in FILE (for server.pem) to every handshake;
# gnutls-serv is told to ignore errors in it, so a "revoked" or stale response is sent as is.
# Sets H_PORT, H_SERV_PID, H_SERV_LOG ($H_TMP/serv.log for the first server).
h_gnutls_serv() {
	h__serv_args "$@"
	local prio=NORMAL a
	case $h__ver in
	1.2) prio=NORMAL:-VERS-ALL:+VERS-TLS1.2 ;;
	1.3) prio=NORMAL:-VERS-ALL:+VERS-TLS1.3 ;;
	esac
	case $h__rsa in
	pkcs1) for a in SHA256 SHA384 SHA512; do prio=$prio:-SIGN-RSA-PSS-$a:-SIGN-RSA-PSS-RSAE-$a; done ;;
	pss) prio=$prio:-SIGN-RSA-SHA256:-SIGN-RSA-SHA384:-SIGN-RSA-SHA512:-SIGN-RSA-SHA1:-SIGN-RSA-SHA224 ;;
	esac
	local ocsp=()
	[ -z "$h__ocsp" ] || ocsp=(--ocsp-response "$h__ocsp" --ignore-ocsp-response-errors)
	H_SERV_KIND=gnutls
	for _ in 1 2 3 4 5; do
		H_PORT=$(h__free_port)
		h__start_server gnutls-serv --echo --require-client-cert --verify-client-cert \
			--x509cafile "$h__cafile" --x509certfile "$h__cert" --x509keyfile "$h__key" \
			--priority "$prio" ${ocsp[@]+"${ocsp[@]}"} -p "$H_PORT" && return 0
	done
	h__dump "$H_SERV_LOG"
	h_fail "gnutls-serv did not start"
}

# h_openssl_serv [--tls1.2|--tls1.3] [--cafile FILE] [--client-rsa pkcs1|pss]: openssl
# s_server -rev (answers each line reversed) on 127.0.0.1, verifying client certs against
# root.pem (or FILE) and refusing handshakes without a valid one. Sets the same variables as
# h_gnutls_serv. It serves one connection at a time (others wait in the listen queue).
h_openssl_serv() {
	h__serv_args "$@"
	local ver="" sigs=""
	case $h__ver in
	1.2) ver=-tls1_2 ;;
	1.3) ver=-tls1_3 ;;
	esac
	local others=ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:ed448
	case $h__rsa in
	pkcs1) sigs="-client_sigalgs RSA+SHA256:RSA+SHA384:RSA+SHA512:$others" ;;
	pss) sigs="-client_sigalgs rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:$others" ;;
	esac
	[ -z "$h__ocsp" ] || h_fail "h_openssl_serv: --ocsp-response is for h_gnutls_serv only"
	H_SERV_KIND=openssl
	for _ in 1 2 3 4 5; do
		H_PORT=$(h__free_port)
		# shellcheck disable=SC2086 # $ver and $sigs are lists of options
		h__start_server openssl s_server -accept "127.0.0.1:$H_PORT" -rev -nameopt RFC2253 \
			-Verify 3 -verify_return_error -CAfile "$h__cafile" -cert "$h__cert" \
			-key "$h__key" $ver $sigs && return 0
	done
	h__dump "$H_SERV_LOG"
	h_fail "openssl s_server did not start"
}

h_serv_stop() {
	[ -n "$H_SERV_PID" ] || return 0
	h_kill "$H_SERV_PID"
	H_SERV_PID=
}

# h_server_subjects: the client certificate subjects the last server verified, one a line.
h_server_subjects() {
	case $H_SERV_KIND in
	gnutls) awk '/^- Certificate\[0\] info:/ { f = 1 }
		f && sub(/^\tSubject: /, "") { print; f = 0 }' "$H_SERV_LOG" ;;
	openssl) sed -n 's/^Peer certificate: //p' "$H_SERV_LOG" ;;
	*) h_fail "no server started" ;;
	esac
}

# h_server_sigs: the client signature algorithm of each handshake the last server completed,
# one a line, as the server names it: gnutls-serv "ECDSA-SECP256R1-SHA256", "RSA-SHA256"
# (PKCS#1 v1.5), "RSA-PSS-RSAE-SHA256", "EdDSA-Ed25519"; openssl "ECDSA+SHA256",
# "RSA+SHA256", "RSA-PSS+SHA256", "ed25519+UNDEF" (openssl's "Signature type"+"Hash used").
h_server_sigs() {
	case $H_SERV_KIND in
	gnutls) sed -n 's/^- Client Signature: //p' "$H_SERV_LOG" ;;
	openssl) awk '/^Hash used: / { h = $3 } /^Signature type: / { print $3 "+" h; h = "UNDEF" }
		BEGIN { h = "UNDEF" }' "$H_SERV_LOG" ;;
	*) h_fail "no server started" ;;
	esac
}

# h_server_versions: the TLS version of each completed handshake ("TLS1.2", "TLS1.3").
h_server_versions() {
	case $H_SERV_KIND in
	gnutls) sed -n 's/^- Version: //p' "$H_SERV_LOG" ;;
	openssl) sed -n 's/^Protocol version: TLSv/TLS/p' "$H_SERV_LOG" ;;
	*) h_fail "no server started" ;;
	esac
}

# h_assert_server_sig ERE: every handshake the last server completed used a client signature
# matching ERE (whole line; see h_server_sigs for the names), and there was at least one.
h_assert_server_sig() {
	local sigs
	sigs=$(h_server_sigs)
	if [ -z "$sigs" ] || printf '%s\n' "$sigs" | grep -vqxE -- "$1"; then
		printf 'client signatures the server saw:\n%s\n' "${sigs:-  (none)}" >&2
		h_fail "client signature not /$1/"
	fi
}

# h_assert_server_version TLS1.2|TLS1.3: every completed handshake used that version.
h_assert_server_version() {
	local v
	v=$(h_server_versions)
	if [ -z "$v" ] || printf '%s\n' "$v" | grep -vqxF -- "$1"; then
		printf 'TLS versions the server saw:\n%s\n' "${v:-  (none)}" >&2
		h_fail "TLS version was not $1"
	fi
}

# h_assert_server_saw SUBJECT [COUNT]: the last server verified a client certificate whose
# subject is exactly SUBJECT (RFC 4514, e.g. "CN=alice,O=certagent tests"), at least COUNT
# times (default 1). Waits up to 3 s for the server to log it.
h__saw_count() { h_server_subjects | grep -cxF -- "$1" || true; }
h__saw() { [ "$(h__saw_count "$1")" -ge "$2" ]; }
h_assert_server_saw() {
	local want=$1 count=${2:-1}
	h_wait_until 3 h__saw "$want" "$count" && return 0
	printf 'server verified these client certificate subjects:\n' >&2
	h_server_subjects | sed 's/^/  /' >&2
	h_fail "server did not see client certificate \"$want\" $count time(s)"
}
