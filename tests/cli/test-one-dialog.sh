#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# One dialog at a time across PIN prompts and confirmations (agent/prompt.c prompt_ui_lock,
# taken by agent/confirm.c too): two Sign calls at once, one on an identity whose policy wants
# a confirmation, one on a locked token that needs a PIN prompt. The pinentry stand-in below
# holds each dialog open for 2 s and records when a second one starts while one is open.
# Both signatures must succeed, both dialogs must have been shown, never both at once.
. "$CERTAGENT_SRC/tests/lib/harness.sh"

h_need_py

cat >"$H_TMP/pinentry" <<EOF
#!/bin/bash
mkdir "$H_TMP/dialog-open" 2>/dev/null || echo "overlap \$\$" >>"$H_TMP/overlap"
echo "OK Pleased to meet you"
while read -r cmd rest; do
	case \$cmd in
	CONFIRM) sleep 2; echo confirm >>"$H_TMP/dialogs"; echo OK ;;
	GETPIN) sleep 2; echo getpin >>"$H_TMP/dialogs"; echo "D $H_PIN"; echo OK ;;
	BYE) echo OK; break ;;
	*) echo OK ;;
	esac
done
rmdir "$H_TMP/dialog-open" 2>/dev/null
exit 0
EOF
chmod +x "$H_TMP/pinentry"

h_token demo
h_token other
h_keygen demo p256 asked 01
h_keygen other p256 locked 01
h_ca
h_client_cert demo asked 01 "CN=asked,O=certagent tests"
h_client_cert other locked 01 "CN=locked,O=certagent tests"
h_bus
h_agent "pinentry = $H_TMP/pinentry" "[policy ask]" "identity = $(h_key_uri demo asked)" \
	"confirm = yes"
h_unlock demo # "asked" needs only the confirmation; "other" stays locked: a PIN prompt
head -c 32 /dev/urandom >"$H_TMP/hash"

h_ctl sign "$(h_key_uri demo asked)" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig1" \
	>"$H_TMP/out1" 2>&1 &
p1=$!
h_ctl sign "$(h_key_uri other locked)" ecdsa_secp256r1_sha256 "$H_TMP/hash" "$H_TMP/sig2" \
	>"$H_TMP/out2" 2>&1 &
p2=$!
st1=0 st2=0
wait "$p1" || st1=$?
wait "$p2" || st2=$?
[ "$st1" = 0 ] || h_fail "the confirmed Sign failed: $(cat "$H_TMP/out1")"
[ "$st2" = 0 ] || h_fail "the Sign behind a PIN prompt failed: $(cat "$H_TMP/out2")"
[ -s "$H_TMP/sig1" ] && [ -s "$H_TMP/sig2" ] || h_fail "a signature is missing"
grep -qx confirm "$H_TMP/dialogs" && grep -qx getpin "$H_TMP/dialogs" ||
	h_fail "both dialogs should have been shown: $(cat "$H_TMP/dialogs" 2>/dev/null)"
[ ! -e "$H_TMP/overlap" ] || h_fail "two dialogs were on screen at once ($(cat "$H_TMP/overlap"))"
echo "ok: confirmation and PIN prompt shown one after the other ($(tr '\n' ' ' <"$H_TMP/dialogs"))"
