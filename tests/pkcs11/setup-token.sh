#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs one case of test-store against a throwaway SoftHSM token, so the pkcs11/ tests do not
# depend on the shared harness. Usage: setup-token.sh TEST-BINARY CASE
#
# Token "demo" (user PIN 1234, SO PIN 123456), keys generated ON the token:
#   id 01 "rsa"   RSA-2048, cert CN=rsa issued by the intermediate, cert id 01
#   id 02 "ec"    P-256,    cert CN=ec  (id 02)
#   id 03 "ed"    Ed25519,  cert CN=ed  (id 03)
#   id 04 "lone"  P-256,    no certificate
#   id 05 "mism"  RSA-2048, cert CN=mism stored with id 55 (pairs by public key only)
#   id 06 "always" P-256 with CKA_ALWAYS_AUTHENTICATE, no certificate
#   id 77 "inter" the intermediate CA certificate; the root is not on the token.
# Exports everything the test binary needs as TEST_* variables; all removed on exit.
set -eu

bin=$1
case=$2
MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -e "$MODULE" ] || { echo "no SoftHSM at $MODULE"; exit 77; }
for t in softhsm2-util p11tool certtool pkcs11-tool; do
	command -v $t >/dev/null || { echo "missing $t"; exit 77; }
done

TMP=$(mktemp -d /tmp/ca-pkcs11-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$TMP/tokens" >"$TMP/softhsm2.conf"
export SOFTHSM2_CONF=$TMP/softhsm2.conf
# p11tool/certtool must see only our module.
export P11_KIT_NO_USER_CONFIG=1

softhsm2-util --init-token --free --label demo --pin 1234 --so-pin 123456 >/dev/null

p11() { p11tool --provider "$MODULE" "$@"; }
tok="pkcs11:token=demo"
gen() { # type label id [curve|bits]
	case $1 in
	rsa) p11 --login --set-pin=1234 --generate-privkey rsa --bits 2048 --label "$2" --id "$3" "$tok" >/dev/null 2>&1 ;;
	p256) p11 --login --set-pin=1234 --generate-privkey ecdsa --curve secp256r1 --label "$2" --id "$3" "$tok" >/dev/null 2>&1 ;;
	always) pkcs11-tool --module "$MODULE" --login --pin 1234 --token-label demo --keypairgen \
		--key-type EC:prime256v1 --always-auth --label "$2" --id "$3" >/dev/null 2>&1 ;;
	ed25519) pkcs11-tool --module "$MODULE" --login --pin 1234 --token-label demo --keypairgen \
		--key-type EC:edwards25519 --label "$2" --id "$3" >/dev/null 2>&1 ;;
	esac
}
gen rsa rsa 01
gen p256 ec 02
gen ed25519 ed 03
gen p256 lone 04
gen rsa mism 05
gen always always 06

mkdir -p "$TMP/ca"
cd "$TMP/ca"
cat >root.tmpl <<T
cn = "Test Root"
ca
cert_signing_key
expiration_days = 30
T
cat >inter.tmpl <<T
cn = "Test Intermediate"
ca
cert_signing_key
expiration_days = 30
T
certtool --generate-privkey --key-type ecdsa --outfile root.key 2>/dev/null
certtool --generate-self-signed --load-privkey root.key --template root.tmpl --outfile root.pem 2>/dev/null
certtool --generate-privkey --key-type ecdsa --outfile inter.key 2>/dev/null
certtool --generate-certificate --load-privkey inter.key --load-ca-certificate root.pem \
	--load-ca-privkey root.key --template inter.tmpl --outfile inter.pem 2>/dev/null

leaf() { # label id [cert-id]
	p11 --login --set-pin=1234 --export-pubkey "$tok;object=$1;type=public" --outfile "$1.pub" 2>/dev/null
	printf 'cn = "%s"\ntls_www_client\nsigning_key\nexpiration_days = 30\n' "$1" >"$1.tmpl"
	certtool --generate-certificate --load-pubkey "$1.pub" --load-ca-certificate inter.pem \
		--load-ca-privkey inter.key --template "$1.tmpl" --outfile "$1.pem" 2>/dev/null
	p11 --login --set-pin=1234 --write --no-mark-private --load-certificate "$1.pem" \
		--label "$1" --id "${3:-$2}" "$tok" >/dev/null 2>&1
}
leaf rsa 01
leaf ec 02
leaf ed 03
leaf mism 05 55
p11 --login --set-pin=1234 --write --no-mark-private --load-certificate inter.pem --label inter --id 77 "$tok" >/dev/null 2>&1
cd - >/dev/null

export TEST_MODULE=$MODULE TEST_DIR=$TMP TEST_CA=$TMP/ca
printf '1234\n' >"$TMP/pin"
printf '9999\n' >"$TMP/badpin"
"$bin" "$case"
