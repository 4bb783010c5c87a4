/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * slow-module: a PKCS#11 module for the agent tests that wraps SoftHSM and makes C_Sign on
 * tokens whose label starts with "slow" wait at a gate: each such call appends a line to
 * $CERTAGENT_TEST_GATE.entered, then waits until the file $CERTAGENT_TEST_GATE exists (or 60 s).
 * A test can so hold a signature inside the token for as long as it needs, without timing
 * assumptions, and check that the agent keeps serving everyone else.
 * Exporting C_GetFunctionList is what makes this a module (the one C_ name we define).
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define SLOW_REAL_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static CK_FUNCTION_LIST *slow_real;
static CK_FUNCTION_LIST slow_functions;

static int slow_token(CK_SESSION_HANDLE h)
{
	CK_SESSION_INFO si;
	CK_TOKEN_INFO ti;

	if (slow_real->C_GetSessionInfo(h, &si) != CKR_OK ||
	    slow_real->C_GetTokenInfo(si.slotID, &ti) != CKR_OK)
		return 0;
	return memcmp(ti.label, "slow", 4) == 0;
}

static void slow_gate(void)
{
	const char *gate = getenv("CERTAGENT_TEST_GATE");
	char entered[4096];
	int fd;

	if (!gate)
		return;
	snprintf(entered, sizeof(entered), "%s.entered", gate);
	fd = open(entered, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		(void)!write(fd, "x\n", 2);
		close(fd);
	}
	for (int i = 0; i < 6000 && access(gate, F_OK) != 0; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
}

static CK_RV slow_sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
		       CK_ULONG_PTR sig_len)
{
	if (sig && slow_token(h))
		slow_gate();
	return slow_real->C_Sign(h, data, len, sig, sig_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
	if (!slow_real) {
		void *lib = dlopen(SLOW_REAL_MODULE, RTLD_NOW | RTLD_LOCAL);
		CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
		CK_RV rv;

		if (!lib)
			return CKR_GENERAL_ERROR;
		get = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(lib, "C_GetFunctionList");
		if (!get)
			return CKR_GENERAL_ERROR;
		rv = get(&slow_real);
		if (rv != CKR_OK)
			return rv;
		slow_functions = *slow_real;
		slow_functions.C_GetFunctionList = C_GetFunctionList;
		slow_functions.C_Sign = slow_sign;
	}
	*ret = &slow_functions;
	return CKR_OK;
}
