#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libcertagent.so exports certagent_* and nothing else (no common/ helpers, no ca_*/ipc_*),
# all in version node CERTAGENT_0.1, and its soname is libcertagent.so.0.
set -eu
lib=${1:-$CERTAGENT_BUILD/client-lib/libcertagent.so}
[ -e "$lib" ] || { echo "FAIL: $lib not built" >&2; exit 1; }

syms=$(nm -D --defined-only "$lib" | awk '{ print $3 }')
[ -n "$syms" ] || { echo "FAIL: no exported symbols" >&2; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -vE '^(certagent_[a-z0-9_]+@@CERTAGENT_0\.1|CERTAGENT_0\.1)$' || true)
if [ -n "$bad" ]; then
	echo "FAIL: libcertagent.so exports symbols outside certagent_*@@CERTAGENT_0.1:" >&2
	printf '  %s\n' $bad >&2
	exit 1
fi
# Every function the header declares is exported (and nothing else is).
hdr=${CERTAGENT_SRC:-$(dirname "$0")/../..}/client-lib/certagent.h
want=$(grep -oE '\bcertagent_[a-z0-9_]+ *\(' "$hdr" | tr -d ' (' | sort -u)
have=$(printf '%s\n' "$syms" | sed -n 's/@@CERTAGENT_0\.1$//p' | sort -u)
if [ "$want" != "$have" ]; then
	echo "FAIL: header and exports differ:" >&2
	diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") >&2 || true
	exit 1
fi
soname=$(objdump -p "$lib" | awk '/SONAME/ { print $2 }')
[ "$soname" = libcertagent.so.0 ] || { echo "FAIL: soname is '$soname'" >&2; exit 1; }
echo "ok: $(printf '%s\n' "$have" | wc -l) symbols, all certagent_* in CERTAGENT_0.1, soname $soname"
