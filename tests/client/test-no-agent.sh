#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# No agent on the bus: the library and the CLI say so clearly (exit code 3 for the CLI).
. "$CERTAGENT_SRC/tests/lib/harness.sh"
h_bus
"$CERTAGENT_BUILD/tests/client/test-no-agent" "unix:path=$H_TMP/nobody-listens-here" ||
	h_fail "library checks failed"

# --agent: only the agent's view (without it, list falls back to reading the tokens).
st=0
"$H_CERTAGENT" list --agent >"$H_TMP/out" 2>"$H_TMP/err" || st=$?
[ "$st" = 3 ] || h_fail "certagent list --agent without agent: exit $st, want 3"
grep -q "certagentd is not running" "$H_TMP/err" || h_fail "unclear message: $(cat "$H_TMP/err")"
[ ! -s "$H_TMP/out" ] || h_fail "certagent list printed on stdout: $(cat "$H_TMP/out")"

st=0
"$H_CERTAGENT" list --agent --address "unix:path=$H_TMP/nobody" 2>"$H_TMP/err" || st=$?
[ "$st" = 3 ] || h_fail "certagent list with a dead bus: exit $st, want 3"

st=0
"$H_CERTAGENT" list --no-such-option 2>"$H_TMP/err" || st=$?
[ "$st" = 2 ] || h_fail "usage error: exit $st, want 2"
echo "ok"
