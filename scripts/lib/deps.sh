# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The Debian packages certagent needs to build, test and run its demo, and one function that
# installs whichever are missing. Sourced by scripts/test, scripts/demo and scripts/bench.
#
# deps_install: checks each package with dpkg-query; if some are missing, runs apt-get update
# and apt-get install for just those (as root, or through `sudo -n` when that works). Prints
# one line either way. Does nothing on a system without dpkg (a note says so).

# Build: meson ninja-build pkg-config gcc libc6-dev and the -dev packages. Tests and demo:
# softhsm2 (token), gnutls-bin (certtool, p11tool, gnutls-serv, gnutls-cli), opensc
# (pkcs11-tool: Ed25519 keys), openssl (s_server), dbus (dbus-daemon, dbus-send), systemd
# (busctl, used by tests/agent; nothing of systemd runs), python3-dbus (agent/fault tests).
DEPS_PACKAGES="meson ninja-build pkg-config gcc libc6-dev clang libclang-rt-14-dev
	softhsm2 gnutls-bin libgnutls28-dev libp11-kit-dev p11-kit p11-kit-modules
	libdbus-1-dev dbus opensc libassuan-dev libinih-dev python3 python3-dbus openssl
	systemd pcscd vsmartcard-vpcd libcacard-dev libnss3-tools valgrind"

deps_missing() {
	local p
	for p in $DEPS_PACKAGES; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			printf '%s ' "$p"
	done
}

deps_install() {
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "deps: no dpkg here; make sure these are installed: $DEPS_PACKAGES" | tr -s ' \t\n' ' '
		echo
		return 0
	fi
	local missing sudo=""
	missing=$(deps_missing)
	if [ -z "$missing" ]; then
		echo "deps: all $(echo "$DEPS_PACKAGES" | wc -w) Debian packages present"
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo="sudo -n"
		else
			echo "deps: missing packages: $missing" >&2
			echo "deps: not root and no password-less sudo: install them and run again" >&2
			return 1
		fi
	fi
	echo "deps: installing $missing"
	# shellcheck disable=SC2086 # word lists on purpose
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null &&
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $missing </dev/null
}
