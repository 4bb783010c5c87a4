/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-rpc: the frames between certagentd and certagent-pkcs11-helper (pkcs11/rpc.c), which
 * the agent reads from a process running a module it does not trust. Besides "no crash, no
 * read out of bounds", it checks that every field of a frame the decoder accepts can be read
 * with its typed accessor, and that encoding what was decoded gives back exactly the input
 * bytes (the format has one encoding per message, so nothing can hide in a frame).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rpc.h"
#include "util.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	RpcMessage m;
	RpcBuf b;

	if (rpc_decode_frame(data, size, &m) < 0)
		return 0;
	check(size >= RPC_HEADER_LEN && size <= RPC_FRAME_MAX && rpc_frame_size(data) == size);
	rpc_buf_begin(&b, m.id, (RpcOp)m.op);
	for (size_t i = 0; i < m.n_fields; i++) {
		switch (m.fields[i].type) {
		case RPC_T_U64: {
			uint64_t v;

			check(rpc_get_u64(&m, i, &v) == 0 && v == m.fields[i].u64);
			rpc_put_u64(&b, v);
			break;
		}
		case RPC_T_BYTES: {
			const uint8_t *p;
			size_t n;
			CK_TOKEN_INFO ti;
			CK_INFO info;

			check(rpc_get_bytes(&m, i, &p, &n) == 0);
			/* The fixed structures read only what their exact length allows. */
			(void)rpc_get_token_info(&m, i, &ti);
			(void)rpc_get_info(&m, i, &info);
			rpc_put_bytes(&b, p, n);
			break;
		}
		case RPC_T_ULONGS: {
			_cleanup_free_ CK_ULONG *v = NULL;
			size_t n = 0;

			check(rpc_get_ulongs(&m, i, &v, &n) == 0 && n <= RPC_ULONGS_MAX);
			rpc_put_ulongs(&b, v, n);
			break;
		}
		case RPC_T_ATTRS: {
			_cleanup_free_ CK_ATTRIBUTE *a = NULL;
			size_t n = 0;

			check(rpc_get_attrs(&m, i, &a, &n) == 0 && n <= RPC_ATTRS_MAX);
			for (size_t k = 0; k < n; k++)
				check(!a[k].pValue || ((const uint8_t *)a[k].pValue >= data &&
						       (const uint8_t *)a[k].pValue + a[k].ulValueLen <=
							       data + size));
			rpc_put_attrs(&b, a, n);
			break;
		}
		default:
			check(false);
		}
		/* A field of another type is refused by every other accessor. */
		if (m.fields[i].type != RPC_T_U64) {
			uint64_t v;

			check(rpc_get_u64(&m, i, &v) < 0);
		}
	}
	check(rpc_buf_finish(&b) == 0);
	check(b.len == size && memcmp(b.data, data, size) == 0);
	rpc_buf_wipe(&b);
	return 0;
}
