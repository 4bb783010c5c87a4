/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * softhsm-shim: a test fixture for tests/isolation. SoftHSM takes its token folder from the
 * environment (SOFTHSM2_CONF) of the process it runs in, so two [module] sections over
 * SoftHSM would see the same tokens. This module sets SOFTHSM2_CONF from
 * CERTAGENT_SHIM_SOFTHSM2_CONF and hands out the real SoftHSM's function list, so the module
 * it fronts has tokens of its own. Only sound in a process of its own: the agent runs it
 * isolated (certagent-pkcs11-helper), where setenv touches nothing else.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include <p11-kit/pkcs11.h>

#define SHIM_REAL "/usr/lib/softhsm/libsofthsm2.so"

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
	__attribute__((visibility("default")));

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
	const char *conf = getenv("CERTAGENT_SHIM_SOFTHSM2_CONF");
	CK_C_GetFunctionList get;
	void *dl;

	if (conf && setenv("SOFTHSM2_CONF", conf, 1) < 0)
		return CKR_HOST_MEMORY;
	dl = dlopen(SHIM_REAL, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "softhsm-shim: cannot load %s: %s\n", SHIM_REAL, dlerror());
		return CKR_GENERAL_ERROR;
	}
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	return get ? get(ret) : CKR_GENERAL_ERROR;
}
