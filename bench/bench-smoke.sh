#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench-smoke: certagent-bench --quick runs end to end (real token, agents, buses, TLS server,
# p11-kit server, the fault module, bus activation) and prints every row of the issue's cases
# (P1-P5) with its numbers measured. No thresholds: machines are noisy;
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
# case|baseline|columns that must hold a number above zero (3: base, 4: agent)
for row in "sign ecdsa_secp256r1_sha256|pkcs11 in-process|3 4" \
	"sign rsa_pss_rsae_sha256|pkcs11 in-process|3 4" \
	"P1 P-256 rate, isolation=process|p11-kit forwarding|4" \
	"P1 P-256 added p50, isolation=process|unix echo RTT p50|3" \
	"P2 P-256, 8 clients vs 2 threads|in-process, 2 threads|3 4" \
	"P2 P-256, isolation=none agent|in-process, 2 threads|3 4" \
	"P2 RSA-2048, 8 clients vs 2 threads|in-process, 2 threads|3 4" \
	"P4 Sign other token, slow token busy|same, slow token idle|3 4" \
	"P4 ListIdentities, slow token busy|same, slow token idle|3 4" \
	"mTLS 1.3 handshake P-256|pkcs11 in-process|3 4" \
	"mTLS 1.3 handshake P-256|PEM key file|3 4" \
	"mTLS 1.3 handshake RSA-2048|pkcs11 in-process|3 4" \
	"mTLS 1.2 handshake P-256|pkcs11 in-process|3 4" \
	"mTLS 1.2 handshake RSA-2048|pkcs11 in-process|3 4" \
	"P5 agent RSS, idle after start|agent alone (MiB)|3 4" \
	"P5 activation to first signature|-|4"; do
	IFS='|' read -r name base cols <<<"$row"
	# The row, then the numbers after the baseline column (f[1] = base, f[2] = agent).
	if ! awk -v name="$name" -v base="$base" -v cols="$cols" '
		index($0, name) == 1 {
			rest = substr($0, 42)
			if (index(rest, base) != 1) next
			split(substr(rest, length(base) + 1), f, " ")
			ok = 1
			n = split(cols, c, " ")
			for (i = 1; i <= n; i++)
				if (!(f[c[i] - 2] + 0 > 0)) ok = 0
			if (ok) found = 1
		}
		END { exit !found }' "$out"; then
		echo "FAIL: no row \"$name\" vs \"$base\" with its numbers measured" >&2
		fail=1
	fi
done
exit "$fail"
