/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-p11kit: a minimal PKCS#11 client (one session, one key) over a module loaded with
 * p11_kit_module_load(), for the p11-kit forwarding baseline. The module is finalized and
 * released in bench_p11kit_free(); the PIN is only borrowed.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

#include "bench-p11kit.h"

#define BENCH_P11KIT_SLOTS_MAX 64

struct BenchP11Kit {
	CK_FUNCTION_LIST *m;
	bool initialized;
	CK_SESSION_HANDLE session;
	bool have_session;
	CK_OBJECT_HANDLE key;
};

BenchP11Kit *bench_p11kit_free(BenchP11Kit *p)
{
	if (!p)
		return NULL;
	if (p->have_session)
		p->m->C_CloseSession(p->session);
	if (p->initialized)
		p->m->C_Finalize(NULL);
	if (p->m)
		p11_kit_module_release(p->m);
	free(p);
	return NULL;
}

static bool bench_p11kit_label_is(const CK_UTF8CHAR label[32], const char *want)
{
	size_t n = strlen(want), end = 32;

	while (end > 0 && label[end - 1] == ' ')
		end--;
	return n == end && memcmp(label, want, n) == 0;
}

int bench_p11kit_new(const char *module, const char *token, const char *key_label, const char *pin,
		     BenchP11Kit **ret, CaError *err)
{
	BenchP11Kit *p = calloc(1, sizeof(*p));
	CK_SLOT_ID slots[BENCH_P11KIT_SLOTS_MAX];
	CK_ULONG n_slots = BENCH_P11KIT_SLOTS_MAX, n_found = 0;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_LABEL, (void *)key_label, strlen(key_label)},
	};
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_RV rv;
	int r = CA_E_FAILED;

	if (!p)
		return -ENOMEM;
	p->m = p11_kit_module_load(module, 0);
	if (!p->m) {
		ca_error_set(err, CA_E_FAILED, "cannot load %s: %s", module, p11_kit_message());
		goto fail;
	}
	rv = p->m->C_Initialize(&args);
	if (rv != CKR_OK) {
		ca_error_set(err, CA_E_FAILED,
			     "%s: C_Initialize: %s (is p11-kit server running "
			     "and P11_KIT_SERVER_ADDRESS set?)",
			     module, p11_kit_strerror(rv));
		goto fail;
	}
	p->initialized = true;
	rv = p->m->C_GetSlotList(CK_TRUE, slots, &n_slots);
	for (CK_ULONG i = 0; rv == CKR_OK && i < n_slots && !p->have_session; i++) {
		CK_TOKEN_INFO ti;

		if (p->m->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    !bench_p11kit_label_is(ti.label, token))
			continue;
		rv = p->m->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &p->session);
		p->have_session = rv == CKR_OK;
	}
	if (!p->have_session) {
		ca_error_set(err, CA_E_FAILED, "%s: no token \"%s\" to open a session on", module,
			     token);
		goto fail;
	}
	rv = p->m->C_Login(p->session, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		ca_error_set(err, CA_E_FAILED, "%s: C_Login: %s", module, p11_kit_strerror(rv));
		goto fail;
	}
	rv = p->m->C_FindObjectsInit(p->session, tmpl, 2);
	if (rv == CKR_OK) {
		rv = p->m->C_FindObjects(p->session, &p->key, 1, &n_found);
		p->m->C_FindObjectsFinal(p->session);
	}
	if (rv != CKR_OK || n_found != 1) {
		r = ca_error_set(err, CA_E_KEY_NOT_FOUND, "%s: no private key \"%s\" on \"%s\"",
				 module, key_label, token);
		goto fail;
	}
	*ret = p;
	return 0;
fail:
	bench_p11kit_free(p);
	return r;
}

int bench_p11kit_sign(BenchP11Kit *p, const uint8_t *hash, size_t hash_len, uint8_t *sig,
		      size_t *sig_len, CaError *err)
{
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	CK_ULONG n = *sig_len;
	CK_RV rv = p->m->C_SignInit(p->session, &mech, p->key);

	if (rv == CKR_OK)
		rv = p->m->C_Sign(p->session, (CK_BYTE *)hash, hash_len, sig, &n);
	if (rv != CKR_OK)
		return ca_error_set(err, CA_E_FAILED, "p11-kit forwarding: C_Sign: %s",
				    p11_kit_strerror(rv));
	*sig_len = n;
	return 0;
}
