# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the `certagent connect --explain` tests (sourced after the harness): runs connect
# against the test server on $H_PORT with the CA $ca and checks the explanation in $out.

explain() { # EXPECTED-STATUS OUTFILE ARG...
	local want=$1 file=$2 st=0
	shift 2
	timeout 30 "$H_CERTAGENT" connect --cafile "$ca" "$@" "localhost:$H_PORT" \
		</dev/null >"$file" 2>"$H_TMP/explain.err" || st=$?
	if [ "$st" != "$want" ]; then
		cat "$file" "$H_TMP/explain.err" >&2
		h_fail "connect $* exited $st, not $want"
	fi
}
has() { # ERE: a line of the text explanation matches
	grep -qE -- "$1" "$out" || { cat "$out" >&2; h_fail "the explanation lacks /$1/"; }
}
