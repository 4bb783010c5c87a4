#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libcertagent.so exports certagent_* and nothing else (no common/ helpers, no ca_*/ipc_*),
# each in the version node of the release that added it: what certagent.h declares before its
# "Since 0.2" line in CERTAGENT_0.1, the rest in CERTAGENT_0.2; its soname is libcertagent.so.0.
set -eu
lib=${1:-$CERTAGENT_BUILD/client-lib/libcertagent.so}
[ -e "$lib" ] || { echo "FAIL: $lib not built" >&2; exit 1; }

syms=$(nm -D --defined-only "$lib" | awk '{ print $3 }')
[ -n "$syms" ] || { echo "FAIL: no exported symbols" >&2; exit 1; }
bad=$(printf '%s\n' "$syms" |
	grep -vE '^(certagent_[a-z0-9_]+@@CERTAGENT_0\.[12]|CERTAGENT_0\.[12])$' || true)
if [ -n "$bad" ]; then
	echo "FAIL: libcertagent.so exports symbols outside certagent_*@@CERTAGENT_0.{1,2}:" >&2
	printf '  %s\n' $bad >&2
	exit 1
fi
# Every function the header declares is exported in its release's node (and nothing else is).
hdr=${CERTAGENT_SRC:-$(dirname "$0")/../..}/client-lib/certagent.h
decls() { grep -oE '\bcertagent_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u; }
want=$( { sed '/Since 0\.2/,$d' "$hdr" | decls | sed 's/$/@@CERTAGENT_0.1/'
	  sed -n '/Since 0\.2/,$p' "$hdr" | decls | sed 's/$/@@CERTAGENT_0.2/'; } | sort)
have=$(printf '%s\n' "$syms" | grep '^certagent_' | sort)
if [ "$want" != "$have" ]; then
	echo "FAIL: header and exports differ (symbol@@node):" >&2
	diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") >&2 || true
	exit 1
fi
soname=$(objdump -p "$lib" | awk '/SONAME/ { print $2 }')
[ "$soname" = libcertagent.so.0 ] || { echo "FAIL: soname is '$soname'" >&2; exit 1; }
echo "ok: $(printf '%s\n' "$have" | wc -l) symbols, certagent_* in CERTAGENT_0.1/0.2 as declared, soname $soname"
