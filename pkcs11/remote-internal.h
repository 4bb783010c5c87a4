/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * remote-internal: what the two halves of the agent side of an isolated module share.
 * remote-link.c runs the helper process and carries requests to it (lives, lanes, frames,
 * remote_call()); remote.c turns PKCS#11 operations into requests and replies back into
 * PKCS#11 results, and maps session handles. Only those two files include this.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"
#include "rpc.h"

#define REMOTE_HANDLE_BITS 32	 /* low bits of our session handle: a counter per life */
#define REMOTE_SESSIONS_MAX 4096 /* sessions open at once through one helper */

typedef struct Lane Lane;

struct Remote {
	Module *m;
	pthread_mutex_t start_lock; /* one start or stop at a time */
	pthread_mutex_t lock;	    /* everything below */
	pthread_cond_t lane_cond;   /* a lane came free, or the life ended */
	int fd;			    /* the control socket, fd 3 of the helper */
	pid_t pid;
	bool alive;
	bool stopping; /* remote_stop: the EOF that follows is expected */
	unsigned gen;  /* atomic reads: the current life; bumped when one ends */
	uint32_t next_id;
	Lane *lanes[RPC_LANES_MAX]; /* this life's lanes, busy or free */
	size_t n_lanes;
	Lane *free_lanes;
	struct {
		uint32_t ours; /* low bits of the handle the store holds */
		uint64_t real; /* the helper's handle */
	} * sessions;
	size_t n_sessions, alloc_sessions;
	uint32_t next_session;
	unsigned fails; /* lives in a row that ended badly */
	uint64_t started_usec;
	uint64_t retry_usec; /* no restart before this (CLOCK_MONOTONIC) */
};

/* A reply: its frame (wiped when cleared: it may hold a signature or a PIN) and its CK_RV. */
typedef struct Reply {
	uint8_t *buf;
	size_t len;
	RpcMessage msg;
	CK_RV rv;
} Reply;

static inline void reply_clear(Reply *rep)
{
	erase_and_free(rep->buf, rep->len);
	*rep = (Reply){0};
}
#define _cleanup_reply_ _cleanup_(reply_clear)

/*
 * Sends req (built with id 0; wiped here) on a lane and reads the reply there (timeout_ms 0:
 * as long as the helper lives). Returns the reply's CK_RV (field 0) with the reply in *rep,
 * or CKR_DEVICE_REMOVED when the helper is gone, fails or times out, CKR_HOST_MEMORY,
 * CKR_GENERAL_ERROR (our request did not encode).
 */
CK_RV remote_call(Module *m, RpcBuf *req, RpcOp op, unsigned timeout_ms, Reply *rep);

/* The life gen of r ended badly (why: for the log): kill the helper, fail its calls. */
void remote_fail(Remote *r, unsigned gen, const char *why);
