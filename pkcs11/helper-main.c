/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * certagent-pkcs11-helper: runs exactly one PKCS#11 module on behalf of certagentd, so a
 * module that crashes, hangs or misbehaves costs only its own tokens (pkcs11/remote.c is the
 * agent's side). Started by the agent with a socketpair end as fd 3 and the module's path in
 * argv: a path the agent got from p11-kit's registration or its own configuration, never from
 * a D-Bus request. Not meant to be run by hand.
 *
 * It loads the module with p11-kit (which checks C_GetFunctionList), initialises it with
 * CKF_OS_LOCKING_OK, greets the agent with the result (RPC_OP_HELLO) on fd 3 and serves framed
 * requests (pkcs11/rpc.h) through the same call_* layer the agent uses in-process. Requests
 * come on lanes, socketpairs the agent hands over on fd 3 (RPC_OP_ADD_LANE with SCM_RIGHTS,
 * as it needs them): one thread per lane reads a request, runs it and writes the reply on
 * the same lane, so a call costs no hand-over between threads, and a token that is slow or
 * stuck holds only its own lanes. EOF on fd 3 (the agent stopped or died) finalises the
 * module and exits.
 *
 * Hygiene: no core dumps, not dumpable (no ptrace by the user's other processes); every
 * other inherited fd is closed; request frames (PINs, data to sign) are wiped after use;
 * the log (stderr, the agent's log) never carries a PIN.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "busy-poll.h"
#include "helper-list.h"
#include "helper-prime.h"
#include "key-copy.h"
#include "internal.h"
#include "rpc.h"

#define HELPER_FD 3
#define HELPER_FINALIZE_SECONDS 3 /* C_Finalize at exit may not hang us */

typedef struct Helper {
	Module m;
	unsigned lanes; /* lane threads started (only the main thread counts) */
	bool debug;
	BusyPoll poll; /* --busy-poll; sources are the lanes, by fd */
} Helper;

static Helper helper;

static void helper_log(int prio, const char *msg, void *userdata)
{
	Helper *h = userdata;

	if (prio > LOG_INFO && !h->debug)
		return;
	fprintf(stderr, "certagent-pkcs11-helper[%d] %s: %s\n", (int)getpid(),
		h->m.name ? h->m.name : "?", msg);
}

/* Sends a built reply on fd; a reply that did not encode becomes a bare CKR_GENERAL_ERROR. */
static void helper_send(int fd, RpcBuf *b, uint32_t id, RpcOp op)
{
	if (rpc_buf_finish(b) < 0) {
		rpc_buf_wipe(b);
		rpc_buf_begin(b, id, op);
		rpc_put_u64(b, CKR_GENERAL_ERROR);
		if (rpc_buf_finish(b) < 0) {
			rpc_buf_wipe(b);
			return;
		}
	}
	if (remote_write_full(fd, b->data, b->len) < 0)
		_exit(1); /* the agent is gone, or it ended this life */
	rpc_buf_wipe(b);
}

/* Field i as a CK_ULONG; a request that does not fit its op is the agent's bug: refused. */
#define ARG(i, var)                                                                                \
	do {                                                                                       \
		if (rpc_get_ulong(msg, (i), &(var)) < 0)                                           \
			return CKR_ARGUMENTS_BAD;                                                  \
	} while (0)

/*
 * The mechanism of a SignInit or SignOnce request, fields i (type) and i + 1 (parameters):
 * only what remote_put_mechanism() sends, i.e. what certagent signs with.
 */
static CK_RV helper_get_mechanism(const RpcMessage *msg, size_t i, CK_MECHANISM *mech,
				  CK_RSA_PKCS_PSS_PARAMS *pss)
{
	_cleanup_free_ CK_ULONG *params = NULL;
	size_t n = 0;
	int k;

	*mech = (CK_MECHANISM){0, NULL, 0};
	if (rpc_get_ulong(msg, i, &mech->mechanism) < 0)
		return CKR_ARGUMENTS_BAD;
	k = rpc_get_ulongs(msg, i + 1, &params, &n);
	if (k == -ENOMEM)
		return CKR_HOST_MEMORY;
	if (k < 0)
		return CKR_ARGUMENTS_BAD;
	if (mech->mechanism == CKM_RSA_PKCS_PSS && n == 3) {
		*pss = (CK_RSA_PKCS_PSS_PARAMS){params[0], params[1], params[2]};
		mech->pParameter = pss;
		mech->ulParameterLen = sizeof(*pss);
	} else if (n != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	return CKR_OK;
}

/* When the lane thread begins a signature ahead (helper-prime.h) once the reply is out. */
typedef enum Ahead {
	AHEAD_NO,
	AHEAD_QUIET, /* after a signature: once the lane stayed quiet for PRIME_DELAY_MS */
	AHEAD_NOW,   /* PREPARE_SIGN: the signature is coming, begin it now */
	AHEAD_WATCH, /* PREPARE_SIGN, one begun already: only close it when it ages out */
} Ahead;

/* What the lane thread does once a reply is out. */
typedef struct After {
	Ahead ahead;
	PrimeJob job;	   /* to begin ahead */
	KeyCopies *copies; /* non-NULL: make copy_key's copy in it (key-copy.h) */
	CK_OBJECT_HANDLE copy_key;
} After;

/*
 * Runs one request into reply b (which has the rv as its first field written by us). What
 * the lane thread is to do once the reply is out goes to *after (zeroed by the caller).
 */
static CK_RV helper_dispatch(const RpcMessage *msg, RpcBuf *b, After *after)
{
	Module *m = &helper.m;
	CK_ULONG a0 = 0, a1 = 0, a2 = 0;
	CK_RV rv;

	switch (msg->op) {
	case RPC_OP_GET_INFO: {
		CK_INFO info;

		rv = call_get_info(m, &info);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_info(b, &info);
		return rv;
	}
	case RPC_OP_GET_SLOT_LIST:
	case RPC_OP_GET_MECHANISM_LIST: {
		_cleanup_free_ CK_ULONG *v = NULL;
		size_t n = 0;

		if (msg->op == RPC_OP_GET_SLOT_LIST)
			rv = call_get_slot_list(m, &v, &n);
		else {
			ARG(0, a0);
			rv = call_get_mechanism_list(m, a0, &v, &n);
		}
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_ulongs(b, v, n);
		return rv;
	}
	case RPC_OP_GET_SLOT_INFO: {
		CK_SLOT_INFO info;

		ARG(0, a0);
		rv = call_get_slot_info(m, a0, &info);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_slot_info(b, &info);
		return rv;
	}
	case RPC_OP_GET_TOKEN_INFO: {
		CK_TOKEN_INFO info;

		ARG(0, a0);
		rv = call_get_token_info(m, a0, &info);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_token_info(b, &info);
		return rv;
	}
	case RPC_OP_GET_MECHANISM_INFO: {
		CK_MECHANISM_INFO info;

		ARG(0, a0);
		ARG(1, a1);
		rv = call_get_mechanism_info(m, a0, a1, &info);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_mechanism_info(b, &info);
		return rv;
	}
	case RPC_OP_OPEN_SESSION: {
		CK_SESSION_HANDLE h = 0;

		ARG(0, a0);
		rv = call_open_session(m, a0, &h);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK) {
			rpc_put_u64(b, h);
			prime_session_opened(h, a0);
		}
		return rv;
	}
	case RPC_OP_CLOSE_SESSION:
	case RPC_OP_LOGOUT:
		ARG(0, a0);
		if (msg->op == RPC_OP_CLOSE_SESSION) {
			prime_session_closed(a0);
			rv = call_close_session(m, a0);
		} else {
			/* No signature begun ahead outlives the login (before and after: one
			 * may begin meanwhile). */
			prime_forget();
			rv = call_logout(m, a0);
			prime_forget();
		}
		rpc_put_u64(b, rv);
		return rv;
	case RPC_OP_GET_SESSION_INFO: {
		CK_SESSION_INFO info;

		ARG(0, a0);
		rv = call_get_session_info(m, a0, &info);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_session_info(b, &info);
		return rv;
	}
	case RPC_OP_LOGIN: {
		const uint8_t *pin;
		size_t pin_len;

		ARG(0, a0);
		ARG(1, a1);
		ARG(2, a2);
		if (rpc_get_bytes(msg, 3, &pin, &pin_len) < 0)
			return CKR_ARGUMENTS_BAD;
		/* The PIN stays in the request frame, wiped when the job ends. */
		prime_forget();
		rv = call_login(m, a0, a1, a2 ? (const char *)pin : NULL, a2 ? pin_len : 0);
		prime_forget();
		rpc_put_u64(b, rv);
		return rv;
	}
	case RPC_OP_FIND_OBJECTS: {
		_cleanup_free_ CK_ATTRIBUTE *tmpl = NULL;
		_cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
		size_t n = 0, n_objs = 0;
		int k;

		ARG(0, a0);
		k = rpc_get_attrs(msg, 1, &tmpl, &n);
		if (k == -ENOMEM)
			return CKR_HOST_MEMORY;
		if (k < 0)
			return CKR_ARGUMENTS_BAD;
		prime_forget(); /* a search: the agent looks at the token's objects again */
		prime_search_begin();
		rv = call_find_objects(m, a0, tmpl, n, &objs, &n_objs);
		n_objs = prime_search_end(objs, rv == CKR_OK ? n_objs : 0);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_ulongs(b, objs, n_objs);
		return rv;
	}
	case RPC_OP_GET_ATTRIBUTE: {
		_cleanup_free_ uint8_t *v = NULL;
		size_t len = 0;

		ARG(0, a0);
		ARG(1, a1);
		ARG(2, a2);
		rv = call_get_attribute(m, a0, a1, a2, &v, &len);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_bytes(b, v, len);
		return rv;
	}
	case RPC_OP_GET_ULONG: {
		CK_ULONG v = 0;

		ARG(0, a0);
		ARG(1, a1);
		ARG(2, a2);
		rv = call_get_ulong(m, a0, a1, a2, &v);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_u64(b, v);
		return rv;
	}
	case RPC_OP_SIGN_INIT: {
		CK_RSA_PKCS_PSS_PARAMS pss;
		CK_MECHANISM mech;

		ARG(0, a0);
		ARG(3, a2);
		rv = helper_get_mechanism(msg, 1, &mech, &pss);
		if (rv != CKR_OK)
			return rv;
		rv = call_sign_init(m, a0, &mech, a2);
		rpc_put_u64(b, rv);
		return rv;
	}
	case RPC_OP_SIGN_ONCE: {
		CK_RSA_PKCS_PSS_PARAMS pss;
		CK_MECHANISM mech;
		const uint8_t *data;
		size_t len;
		uint8_t *sig = NULL;
		CK_ULONG cap, sig_len;
		bool signing = false, used;

		ARG(0, a0);
		ARG(3, a2);
		ARG(5, cap);
		if (rpc_get_bytes(msg, 4, &data, &len) < 0 || cap > CALL_SIG_MAX)
			return CKR_ARGUMENTS_BAD;
		rv = helper_get_mechanism(msg, 1, &mech, &pss);
		if (rv != CKR_OK)
			return rv;
		if (cap) {
			sig = malloc(cap);
			if (!sig)
				return CKR_HOST_MEMORY;
		}
		sig_len = cap;
		rv = prime_sign_once(a0, &mech, a2, data, len, sig, &sig_len, &signing, &used,
				     &after->copies);
		after->copy_key = a2;
		if (rv == CKR_OK && sig && sig_len > cap)
			rv = CKR_GENERAL_ERROR; /* a module writing past our buffer said so */
		if (rv == CKR_OK && prime_note(a0, &mech, a2, used, &after->job))
			after->ahead = AHEAD_QUIET;
		rpc_put_u64(b, rv);
		rpc_put_u64(b, signing);
		rpc_put_u64(b, (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) ? sig_len : 0);
		if (rv == CKR_OK && sig)
			rpc_put_bytes(b, sig, sig_len);
		erase_and_free(sig, cap);
		return rv;
	}
	case RPC_OP_PREPARE_SIGN: {
		bool want;

		ARG(0, a0);
		ARG(1, a1);
		want = prime_prepare(a0, a1, &after->job);
		after->ahead = want ? AHEAD_NOW : AHEAD_WATCH;
		rpc_put_u64(b, CKR_OK);
		rpc_put_u64(b, want);
		return CKR_OK;
	}
	case RPC_OP_SIGN: {
		const uint8_t *data;
		size_t len;
		uint8_t *sig = NULL;
		CK_ULONG cap, sig_len;

		ARG(0, a0);
		ARG(2, cap);
		if (rpc_get_bytes(msg, 1, &data, &len) < 0 || cap > CALL_SIG_MAX)
			return CKR_ARGUMENTS_BAD;
		if (cap) {
			sig = malloc(cap);
			if (!sig)
				return CKR_HOST_MEMORY;
		}
		sig_len = cap;
		rv = call_sign(m, a0, data, len, sig, &sig_len);
		if (rv == CKR_OK && sig && sig_len > cap)
			rv = CKR_GENERAL_ERROR; /* a module writing past our buffer said so */
		rpc_put_u64(b, rv);
		rpc_put_u64(b, (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) ? sig_len : 0);
		if (rv == CKR_OK && sig)
			rpc_put_bytes(b, sig, sig_len);
		erase_and_free(sig, cap);
		return rv;
	}
	case RPC_OP_WAIT_FOR_SLOT_EVENT: {
		CK_SLOT_ID slot = 0;

		ARG(0, a0);
		/* Blocking holds this lane's thread until an event or C_Finalize. */
		rv = call_wait_for_slot_event(m, a0, &slot);
		rpc_put_u64(b, rv);
		if (rv == CKR_OK)
			rpc_put_u64(b, slot);
		return rv;
	}
	default:
		return CKR_FUNCTION_NOT_SUPPORTED;
	}
}

/* Runs the request in frame buf (decoded as msg) and answers on fd; *after: helper_dispatch. */
static void helper_run(int fd, const RpcMessage *msg, After *after)
{
	RpcBuf b;
	CK_RV rv;

	*after = (After){.ahead = AHEAD_NO};
	rpc_buf_begin(&b, msg->id, msg->op);
	rv = helper_dispatch(msg, &b, after);
	if (b.n_fields == 0) {
		/* Refused before the call: the rv alone. */
		rpc_buf_wipe(&b);
		rpc_buf_begin(&b, msg->id, msg->op);
		rpc_put_u64(&b, rv);
	}
	helper_send(fd, &b, msg->id, msg->op);
}

/* Waits up to ms for a request (or EOF) on lane fd: false when none came. */
static bool helper_lane_wait(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, ms) != 0; /* an error (EINTR): let the read decide */
}

/*
 * One lane: its requests, one at a time, until the agent closes it. After a reply, a quick
 * caller's next request is busy-polled for as the agent's channel threads do
 * (common/busy-poll.h); a C_WaitForSlotEvent blocked on its lane does not count as serving.
 * A signature to begin ahead (helper-prime.h) is begun once the reply is out: at once for a
 * quick caller, else once the lane stayed quiet for PRIME_DELAY_MS; the lane then waits for
 * its next request only until the oldest such operation ages out, closes what aged out, and
 * waits again.
 */
static void *helper_lane_main(void *userdata)
{
	int fd = (int)(intptr_t)userdata;
	BusyPollSource lane = {0};
	bool watch = false; /* it began signatures ahead or made a copy: it closes what is unused */

	for (;;) {
		uint8_t *buf = NULL;
		size_t len = 0;
		RpcMessage msg;
		After after = {.ahead = AHEAD_NO};
		int r;

		/* Busy-polling first: a quick caller's request must not wait for a wake-up. */
		if (!busy_poll_wait(&helper.poll, &lane, fd, NULL))
			while (watch) {
				int ms = prime_expire();

				if (ms < 0)
					watch = false;
				else if (helper_lane_wait(fd, ms))
					break;
			}
		r = remote_read_frame(fd, NULL, &buf, &len);
		if (r == -EPIPE)
			break; /* the agent let go of this lane */
		if (r < 0 || rpc_decode_frame(buf, len, &msg) < 0 || msg.op == RPC_OP_HELLO ||
		    msg.op == RPC_OP_ADD_LANE) {
			call_log(LOG_WARNING, "%s on a lane: exiting",
				 r == -ENOMEM ? "out of memory" : "malformed request frame");
			_exit(1);
		}
		if (msg.op == RPC_OP_WAIT_FOR_SLOT_EVENT) {
			/* Blocks until a slot event: not a request worth polling for. */
			helper_run(fd, &msg, &after);
		} else {
			busy_poll_begin(&helper.poll, &lane, (uint64_t)fd);
			helper_run(fd, &msg, &after);
			busy_poll_end(&helper.poll, &lane, true);
		}
		/* The frame may hold a PIN or data to sign. */
		erase_and_free(buf, len);
		/* A copy of a key to make (key-copy.h): once a second per key at most. */
		if (after.copies) {
			prime_copy_make(after.copies, after.copy_key);
			watch = true; /* it is destroyed once too old (prime_expire) */
		}
		/* After a signature: at once for a quick caller (one whose next request usually
		 * comes within the busy-poll limit, as in a signing loop: while the reply travels
		 * to it and its next request back, the C_SignInit runs here, on the other CPU), or
		 * for the one caller of the last millisecond whose next request usually comes
		 * within that (a loop whose wake-ups are slow: the same, only with more time);
		 * otherwise once the lane stayed quiet for PRIME_DELAY_MS, so not while the agent
		 * takes the reply, nor when the next request comes within it (many callers at
		 * once: each lane's next request some hundred us later, the CPUs busy anyway).
		 * For PREPARE_SIGN at once: the request it announces comes later. */
		if (after.ahead == AHEAD_NOW ||
		    (after.ahead == AHEAD_QUIET && (busy_poll_expects(&helper.poll, &lane) ||
						    busy_poll_alone(&helper.poll, &lane) ||
						    !helper_lane_wait(fd, PRIME_DELAY_MS)))) {
			prime_start(&after.job);
			watch = true;
		} else if (after.ahead == AHEAD_WATCH)
			watch = true;
	}
	close(fd);
	return NULL;
}

/*
 * One frame on the control socket: ADD_LANE with the lane's fd. Returns the fd, -EPIPE at
 * EOF (the agent is done with us), -EBADMSG for anything else.
 */
static int helper_receive_lane(void)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	uint8_t frame[RPC_HEADER_LEN];
	struct iovec iov = {frame, sizeof(frame)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = control.buf,
			    .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cm;
	RpcMessage msg;
	struct stat st;
	ssize_t k;
	int fd = -1;

	do
		k = recvmsg(HELPER_FD, &mh, MSG_CMSG_CLOEXEC);
	while (k < 0 && errno == EINTR);
	if (k == 0)
		return -EPIPE;
	cm = k > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
	    cm->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (k != sizeof(frame) || (mh.msg_flags & MSG_CTRUNC) || fd < 0 ||
	    rpc_decode_frame(frame, sizeof(frame), &msg) < 0 || msg.op != RPC_OP_ADD_LANE ||
	    fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return k < 0 ? -errno : -EBADMSG;
	}
	return fd;
}

/* No core dumps, no ptrace by the user's other processes, nothing inherited but fds 0-3. */
static int helper_harden(void)
{
	struct rlimit no_core = {0, 0};
	struct stat st;

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || setrlimit(RLIMIT_CORE, &no_core) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
#ifdef SYS_close_range
	if (syscall(SYS_close_range, HELPER_FD + 1, ~0U, 0) < 0)
#endif
		for (int fd = HELPER_FD + 1; fd < 1024; fd++)
			close(fd);
	if (fstat(HELPER_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	return 0;
}

static void helper_finalize_alarm(int sig)
{
	_exit(0);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"module", required_argument, NULL, 'm'},
		{"name", required_argument, NULL, 'n'},
		{"debug", no_argument, NULL, 'd'},
		{"busy-poll", required_argument, NULL, 'b'},
		{"sign-ahead", no_argument, NULL, 'a'},
		{"list-registered", no_argument, NULL, 'l'},
		{},
	};
	const char *path = NULL, *name = NULL;
	bool sign_ahead = false;
	RpcBuf b;
	CK_RV rv;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
		switch (c) {
		case 'm':
			path = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'd':
			helper.debug = true;
			break;
		case 'a':
			sign_ahead = true;
			break;
		case 'b': /* microseconds, the agent's busy-poll (checked there) */
			busy_poll_init(&helper.poll, (unsigned)strtoul(optarg, NULL, 10));
			break;
		case 'l': /* print p11-kit's registered modules for the agent (helper-list.c) */
			return optind < argc ? 2 : helper_list_main();
		default:
			return 2;
		}
	if (!path || path[0] != '/' || optind < argc) {
		fprintf(stderr, "certagent-pkcs11-helper: started by certagentd only "
				"(--module ABSOLUTE-PATH [--name NAME] [--busy-poll USEC] "
				"[--sign-ahead], fd 3 a socket)\n");
		return 2;
	}
	r = helper_harden();
	if (r < 0) {
		fprintf(stderr, "certagent-pkcs11-helper: %s\n",
			r == -ENOTSOCK ? "fd 3 is not a socket: started by certagentd only"
				       : strerror(-r));
		return 2;
	}
	helper.m.name = (char *)(name ? name : path);
	helper.m.path = (char *)path;
	prime_init(&helper.m, sign_ahead);
	store_set_log(helper_log, &helper);

	/* p11_kit_module_load checks C_GetFunctionList; initialise sets CKF_OS_LOCKING_OK. */
	helper.m.fl = p11_kit_module_load(path, 0);
	if (!helper.m.fl) {
		call_log(LOG_WARNING, "cannot load %s: %s", path,
			 p11_kit_message() ? p11_kit_message() : "unknown error");
		rv = CKR_GENERAL_ERROR;
	} else
		rv = call_module_initialize(&helper.m);
	rpc_buf_begin(&b, 0, RPC_OP_HELLO);
	rpc_put_u64(&b, rv);
	if (rv == CKR_OK) {
		CK_INFO info;

		if (call_get_info(&helper.m, &info) != CKR_OK)
			memset(&info, 0, sizeof(info));
		rpc_put_info(&b, &info);
	}
	helper_send(HELPER_FD, &b, 0, RPC_OP_HELLO);
	if (rv != CKR_OK)
		return 1;

	/* fd 3 now only brings lanes; its EOF is the agent's goodbye. */
	for (;;) {
		pthread_attr_t attr;
		pthread_t thread;
		int fd = helper_receive_lane();

		if (fd == -EPIPE)
			break;
		if (fd < 0 || helper.lanes >= RPC_LANES_MAX) {
			call_log(LOG_WARNING,
				 "malformed or surplus lane on the control socket: exiting");
			_exit(1);
		}
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&thread, &attr, helper_lane_main, (void *)(intptr_t)fd) == 0)
			helper.lanes++;
		else {
			/* The agent's call on it meets EOF and restarts us. */
			call_log(LOG_WARNING, "cannot start a thread for a lane");
			close(fd);
		}
		pthread_attr_destroy(&attr);
	}
	/* The agent closed its end: finalise, unless a stuck call keeps C_Finalize waiting. */
	prime_report();
	signal(SIGALRM, helper_finalize_alarm);
	alarm(HELPER_FINALIZE_SECONDS);
	call_module_finalize(&helper.m);
	_exit(0);
}
