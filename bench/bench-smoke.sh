#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench-smoke: certagent-bench --quick runs end to end (real token, agent, bus, TLS server)
# and prints every row with a measured rate on both sides. No thresholds: machines are noisy;
# speed is read from the table, never asserted.

set -eu
: "${CERTAGENT_BUILD:?}" "${CERTAGENT_SRC:?}"

out=$(mktemp "${TMPDIR:-/tmp}/certagent-bench-smoke.XXXXXX")
trap 'rm -f "$out"' EXIT

bash "$CERTAGENT_SRC/bench/run-bench.sh" --quick --seconds 0.05 >"$out" || {
	cat "$out"
	echo "FAIL: certagent-bench did not complete" >&2
	exit 1
}
cat "$out"

fail=0
for row in "sign ecdsa_secp256r1_sha256|pkcs11 in-process" \
	"sign rsa_pss_rsae_sha256|pkcs11 in-process" \
	"mTLS 1.3 handshake P-256|pkcs11 in-process" \
	"mTLS 1.3 handshake P-256|PEM key file" \
	"mTLS 1.3 handshake RSA-2048|pkcs11 in-process" \
	"sign P-256 isolated module|in-agent module"; do
	name=${row%|*} base=${row#*|}
	# The row, then both rates: numbers above zero.
	if ! awk -v name="$name" -v base="$base" '
		index($0, name) == 1 && index($0, base) {
			rest = substr($0, index($0, base) + length(base))
			split(rest, f, " ")
			if (f[1] + 0 > 0 && f[2] + 0 > 0) found = 1
		}
		END { exit !found }' "$out"; then
		echo "FAIL: no row \"$name\" vs \"$base\" with both rates measured" >&2
		fail=1
	fi
done
exit "$fail"
