#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-docs.sh CERTAGENT MAN-PAGE COMPLETION: --help, the man page and the bash completion never
# disagree. The list of commands and options comes from the binary (`--help`, `COMMAND --help`
# and `--help-table`), so commands added later are covered without touching this test.
# Every command and option of --help is in the man page (in that command's section) and in the
# completion, and the man page and completion name nothing else; "certagent con" completes
# to "connect".
set -eu
bin=$1 man=$2 comp=$3
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" --help-table >"$tmp/table"
# Commands from the table, and the same from --help's "Commands:" list.
awk -F'\t' '$2 == "" { print $1 }' "$tmp/table" | sort >"$tmp/cmds"
[ -s "$tmp/cmds" ] || fail "--help-table lists no commands"
"$bin" --help | awk '/^Commands:/ { f = 1; next } /^$/ { f = 0 } f { print $1 }' | sort >"$tmp/help-cmds"
# A command of two words ("token init") shows as its first word in --help.
awk '{ print $1 }' "$tmp/cmds" | sort -u >"$tmp/cmds1"
sort -u "$tmp/help-cmds" | diff -u "$tmp/cmds1" - >&2 || fail "--help and --help-table list different commands"

# The man page as plain text per command section: ".SS "certagent CMD ..."" up to the next .SS/.SH.
section() { # CMD: the roff source of that command's section
	awk -v want="certagent $1" '
		/^\.S[SH] / { on = 0 }
		/^\.SS / { t = $0; sub(/^\.SS "?/, "", t); sub(/"$/, "", t); gsub(/\\-/, "-", t)
			if (t == want || index(t, want " ") == 1) on = 1 }
		on' "$man"
}
# The options a section documents: the heads of its .TP paragraphs (\fB\-\-name\fR ...).
opts_in() {
	awk 'p { print; p = 0 } /^\.TP/ { p = 1 }' | sed 's/\\-/-/g' |
		grep -oE -- '\\fB--?[a-zA-Z0-9][a-zA-Z0-9.-]*' | sed 's/^\\fB//' | sort -u
}

# shellcheck disable=SC1090
. "$comp"
complete_words() { # WORD...: runs the completion function on "certagent WORD..." (last one = current)
	COMP_WORDS=(certagent "$@")
	COMP_CWORD=$#
	COMPREPLY=()
	_certagent
	printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort -u
}

while read -r cmd; do
	# Options of the command from its --help (the parser's own table) ...
	# shellcheck disable=SC2086 # a command of two words is two arguments
	"$bin" $cmd --help | awk '/^Options:/ { f = 1; next } /^$/ { f = 0 } f' |
		grep -oE -- '(^|[ ,])--?[a-zA-Z0-9][a-zA-Z0-9.-]*' | tr -d ' ,' | sort -u >"$tmp/help-opts"
	[ -s "$tmp/help-opts" ] || fail "certagent $cmd --help lists no options"
	# ... and from the table.
	awk -F'\t' -v c="$cmd" '$1 == c && $2 != "" { print $2; if ($3 != "") print $3 }' \
		"$tmp/table" | sort -u >"$tmp/table-opts"
	diff -u "$tmp/help-opts" "$tmp/table-opts" >&2 || fail "$cmd: --help and --help-table differ"
	# The man page section names exactly these options.
	section "$cmd" >"$tmp/sec"
	[ -s "$tmp/sec" ] || fail "the man page has no section for \"certagent $cmd\""
	opts_in <"$tmp/sec" >"$tmp/man-opts"
	diff -u "$tmp/help-opts" "$tmp/man-opts" >&2 ||
		fail "$cmd: the man page names other options than --help (- help, + man)"
	# The completion offers exactly these options after "certagent CMD -".
	# shellcheck disable=SC2086
	complete_words $cmd - >"$tmp/comp-opts"
	diff -u "$tmp/help-opts" "$tmp/comp-opts" >&2 ||
		fail "$cmd: the completion offers other options than --help (- help, + completion)"
done <"$tmp/cmds"

# The man page has no command section --help does not know.
grep -E '^\.SS "certagent ' "$man" | sed -E 's/^\.SS "certagent //; s/"$//; s/\\-/-/g' |
	while read -r w rest; do
		grep -qx -- "$w" "$tmp/cmds1" || fail "the man page documents an unknown command \"$w\""
	done
# The completion offers exactly the commands at the first word.
complete_words "" >"$tmp/comp-cmds"
diff -u "$tmp/cmds1" "$tmp/comp-cmds" >&2 || fail "the completion offers other commands than --help"

# Smoke: "certagent con" → connect; "certagent connect --ca" → --cafile; a FILE argument
# completes file names.
[ "$(complete_words con)" = connect ] || fail "\"certagent con\" did not complete to connect"
[ "$(complete_words connect --ca)" = --cafile ] || fail "\"certagent connect --ca\" did not give --cafile"
touch "$tmp/some-ca.pem"
[ "$(complete_words connect --cafile "$tmp/some-ca")" = "$tmp/some-ca.pem" ] ||
	fail "--cafile FILE did not complete a file name"
# A command whose synopsis starts with literal words ("init|set-pin TOKEN") completes them.
awk -F'\t' '$2 == "" && $4 ~ /^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*( |$)/ {
	split($4, w, " "); print $1 "\t" w[1] }' "$tmp/table" |
	while IFS=$'\t' read -r cmd subs; do
		# shellcheck disable=SC2086
		got=$(complete_words $cmd "" | tr '\n' '|' | sed 's/|$//')
		want=$(printf '%s\n' "${subs//|/$'\n'}" | sort -u | tr '\n' '|' | sed 's/|$//')
		[ "$got" = "$want" ] || fail "\"certagent $cmd \" completes to '$got', not '$want'"
	done
# Exit codes and environment variables: one table in the binary (--help-table "@exit"/"@env"
# rows); the man page lists each, and so does docs/cli.md, where they are documented once.
awk -F'\t' '$1 == "@exit" { print $2 }' "$tmp/table" >"$tmp/codes"
[ "$(tr '\n' ' ' <"$tmp/codes")" = "0 1 2 3 4 5 6 7 " ] || fail "exit codes in --help-table: $(cat "$tmp/codes")"
awk '/^\.SH EXIT STATUS/ { f = 1; next } /^\.SH / { f = 0 } f && p { print; p = 0 } f && /^\.TP/ { p = 1 }' \
	"$man" | diff -u "$tmp/codes" - >&2 || fail "the man page's EXIT STATUS differs from the table"
doc=${CERTAGENT_SRC:-$(dirname "$0")/../..}/docs/cli.md
while read -r code; do
	grep -q "^| $code | " "$doc" || fail "docs/cli.md lacks exit code $code"
done <"$tmp/codes"
awk -F'\t' '$1 == "@env" { print $2 }' "$tmp/table" | while read -r var; do
	grep -qF "\\fB$(printf '%s' "$var" | sed 's/-/\\-/g')\\fR" "$man" || fail "the man page lacks $var"
	grep -qF "| \`$var\` |" "$doc" || fail "docs/cli.md lacks $var"
done
"$bin" tokens --help | tr -s '\n ' '  ' | grep -q 'Exit status: 0 success, .* 7 nothing matches' ||
	fail "--help does not end with the exit codes"
man_cmds=$(wc -l <"$tmp/cmds")
echo "ok: --help, man page and completion agree on $man_cmds commands"
