#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# run-fuzz.sh FUZZER SEED-DIR: a short libFuzzer run (FUZZ_SECONDS, default 20) from the
# committed seeds. New inputs go to a scratch folder, never into the source tree; a crash
# leaves its input in $FUZZ_ARTIFACTS (default: the scratch folder, printed) and fails.
set -eu
fuzzer=$1 seeds=$2
scratch=$(mktemp -d "${TMPDIR:-/tmp}/certagent-fuzz.XXXXXX")
artifacts=${FUZZ_ARTIFACTS:-$scratch/artifacts}
mkdir -p "$scratch/corpus" "$artifacts"
dict=$(dirname "$seeds")/../$(basename "$seeds").dict
extra=()
[ -f "$dict" ] && extra+=("-dict=$dict")
rc=0
"$fuzzer" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" \
	"$scratch/corpus" "$seeds" || rc=$?
if [ "$rc" != 0 ]; then
	echo "FAIL: $(basename "$fuzzer") found a crash; inputs kept in $artifacts:" >&2
	ls -l "$artifacts" >&2
	exit 1
fi
rm -rf "$scratch"
