/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * remote: the agent side of an isolated module. The module runs in certagent-pkcs11-helper
 * (helper-main.c), one process per module, spawned with one end of a socketpair as fd 3 (the
 * control socket); the call_* wrappers send it one framed request (rpc.h) per operation.
 *
 * Lanes: requests travel on "lanes", stream socketpairs whose helper end was handed over on
 * the control socket (RPC_OP_ADD_LANE, SCM_RIGHTS) and is served by a helper thread of its
 * own. A caller takes a free lane (a new one while fewer than RPC_LANES_MAX exist, else it
 * waits), writes its request and reads its own reply on it: one request per lane at a time,
 * no reader thread and no hand-over on either side, so a call costs one socket round trip,
 * and concurrent calls run in parallel in the helper. The one blocking C_WaitForSlotEvent
 * simply holds a lane of its own.
 *
 * Failure: EOF, a write error, a malformed frame or a call that outlives its timeout
 * (module_timeout_ms; C_Login longer) kills the helper with SIGKILL and bumps the generation:
 * every pending and later call of that life answers CKR_DEVICE_REMOVED, so the store marks
 * its tokens absent and forgets their logins. Lanes belong to one life (a reply from an older
 * process cannot arrive on them), and tokens and session handles carry the generation, so
 * nothing of a dead helper reaches the next one. Session handles we hand out are our own
 * (generation << 32 | a per-life counter), mapped to the helper's (OpenSC's are pointers).
 * A death is noticed by the next call that meets it (the hotplug poll makes one every poll
 * interval). The next call after the backoff starts a new helper, which initialises the
 * module again; the poll then finds the tokens again (TokenAdded), logged out.
 *
 * Ownership: a Remote belongs to its Module. Its control fd and pid belong to the Remote. A
 * free lane belongs to the Remote; a busy one to the caller holding it, who closes it when
 * its life ended meanwhile (remote_end_locked only shuts busy lanes down, so no fd is closed
 * under a thread using it).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"
#include "rpc.h"

#define REMOTE_BACKOFF_MAX_MS 30000u /* longest wait between restarts of a failing helper */
#define REMOTE_STABLE_MS 60000u	     /* a helper that lived this long starts a new backoff */
#define REMOTE_STOP_GRACE_MS 2000u   /* for C_Finalize when the agent stops a helper */
#define REMOTE_HANDLE_BITS 32	     /* low bits of our session handle: a counter per life */
#define REMOTE_SESSIONS_MAX 4096     /* sessions open at once through one helper */
/* A reply is first read into a buffer of this size on the stack (a signature, an info
 * structure: nearly all of them), so most replies take one read. */
#define REMOTE_READ_INLINE 4096u

extern char **environ;

typedef struct Lane {
	struct Lane *next_free;
	int fd;
	unsigned gen; /* the life it belongs to */
	bool busy;
} Lane;

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
	} *sessions;
	size_t n_sessions, alloc_sessions;
	uint32_t next_session;
	unsigned fails; /* lives in a row that ended badly */
	uint64_t started_usec;
	uint64_t retry_usec; /* no restart before this (CLOCK_MONOTONIC) */
};

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Milliseconds left until deadline (rounded up), 0 when past. */
static int ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long long us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (long long)(deadline->tv_sec - now.tv_sec) * 1000000LL +
	     (deadline->tv_nsec - now.tv_nsec) / 1000;
	return us <= 0 ? 0 : (int)((us + 999) / 1000);
}

unsigned remote_generation(const Module *m)
{
	return m->remote ? __atomic_load_n(&m->remote->gen, __ATOMIC_ACQUIRE) : 0;
}


/* ---- frames on a stream socket ---- */

/* Waits until fd is readable; 0, -ETIMEDOUT past deadline (NULL: none), -errno. */
static int wait_readable(int fd, const struct timespec *deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int ms = deadline ? ms_left(deadline) : -1;
		int k;

		if (ms == 0)
			return -ETIMEDOUT;
		k = poll(&pfd, 1, ms);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k > 0)
			return 0;
	}
}

/*
 * Reads exactly n bytes; 0, -EPIPE at EOF, -ETIMEDOUT past deadline (if any), -errno. The
 * helper (helper-main.c) reads with it too, without a deadline.
 */
int remote_read_full(int fd, uint8_t *p, size_t n, const struct timespec *deadline)
{
	while (n > 0) {
		ssize_t k;

		if (deadline) {
			int w = wait_readable(fd, deadline);

			if (w < 0)
				return w;
		}
		k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EPIPE;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/*
 * One whole frame from a lane, where the peer sends one frame and then waits: the first read
 * takes up to REMOTE_READ_INLINE bytes at once (usually the whole frame), so bytes beyond the
 * announced length mean a peer that does not keep to the protocol (-EBADMSG). The length is
 * checked against RPC_FRAME_MAX before anything is allocated. Without a deadline the first
 * read blocks (the helper's lane threads: one syscall per request).
 * Returns 0, -EPIPE (EOF before a whole frame), -ETIMEDOUT, -EBADMSG, -ENOMEM, -errno.
 */
int remote_read_frame(int fd, const struct timespec *deadline, uint8_t **ret, size_t *ret_len)
{
	uint8_t first[REMOTE_READ_INLINE];
	size_t got = 0, size = 0;
	uint8_t *buf = NULL;
	int r = 0;

	while (got < 4) {
		ssize_t k = recv(fd, first + got, sizeof(first) - got, deadline ? MSG_DONTWAIT : 0);

		if (k > 0) {
			got += (size_t)k;
			continue;
		}
		if (k == 0) {
			r = -EPIPE;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -errno;
			break;
		}
		r = wait_readable(fd, deadline);
		if (r < 0)
			break;
	}
	if (r == 0) {
		size = rpc_frame_size(first);
		if (size == 0 || got > size)
			r = -EBADMSG;
	}
	if (r == 0) {
		buf = malloc(size);
		if (!buf)
			r = -ENOMEM;
	}
	if (r == 0) {
		memcpy(buf, first, got);
		r = remote_read_full(fd, buf + got, size - got, deadline);
		if (r < 0)
			erase_and_free(buf, size);
	}
	/* The frame may be a signature or a PIN. */
	explicit_bzero(first, got);
	if (r < 0)
		return r;
	*ret = buf;
	*ret_len = size;
	return 0;
}

/* Writes all n bytes (no SIGPIPE); 0 or -errno. Both ends of a socketpair use it. */
int remote_write_full(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* ---- lives of a helper ---- */

static unsigned backoff_ms(unsigned fails)
{
	unsigned ms = 1000;

	if (fails <= 1)
		return 0; /* the first restart is immediate */
	for (unsigned i = 2; i < fails && ms < REMOTE_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < REMOTE_BACKOFF_MAX_MS ? ms : REMOTE_BACKOFF_MAX_MS;
}

/* With r->lock held: this life is over. Wakes every caller; the caller of this logs. */
static void remote_end_locked(Remote *r)
{
	r->alive = false;
	__atomic_store_n(&r->gen, r->gen + 1, __ATOMIC_RELEASE);
	r->n_sessions = 0; /* they died with the helper */
	/* Stopping: remote_stop reaps (and kills) it itself; a reaped pid must not be killed. */
	if (r->pid > 0 && !r->stopping)
		kill(r->pid, SIGKILL);
	if (r->fd >= 0)
		shutdown(r->fd, SHUT_RDWR);
	/* A caller blocked on its lane wakes up with EOF and closes the lane itself. */
	for (size_t i = 0; i < r->n_lanes; i++) {
		Lane *l = r->lanes[i];

		shutdown(l->fd, SHUT_RDWR);
		if (!l->busy) {
			close(l->fd);
			free(l);
		}
	}
	r->n_lanes = 0;
	r->free_lanes = NULL;
	pthread_cond_broadcast(&r->lane_cond);
}

/* Ends life gen of the helper (if still current) because of why. */
static void remote_fail(Remote *r, unsigned gen, const char *why)
{
	uint64_t now = now_usec();
	pid_t pid;

	pthread_mutex_lock(&r->lock);
	if (!r->alive || r->gen != gen) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	pid = r->pid;
	if (r->stopping) {
		remote_end_locked(r);
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (now - r->started_usec >= (uint64_t)REMOTE_STABLE_MS * 1000u)
		r->fails = 0;
	r->fails++;
	r->retry_usec = now + (uint64_t)backoff_ms(r->fails) * 1000u;
	remote_end_locked(r);
	pthread_mutex_unlock(&r->lock);
	call_log(LOG_WARNING,
		 "module %s: helper process %d %s: its tokens are absent until it is restarted "
		 "(in %u ms) and they log in again",
		 r->m->name, (int)pid, why, backoff_ms(r->fails));
}

/* Waits up to ms for pid to end and reaps it; SIGKILL first when kill_it. */
static void reap(pid_t pid, bool kill_it, unsigned ms)
{
	if (pid <= 0)
		return;
	if (kill_it)
		kill(pid, SIGKILL);
	for (unsigned waited = 0;; waited += 10) {
		pid_t k = waitpid(pid, NULL, WNOHANG);

		if (k == pid || (k < 0 && errno != EINTR))
			return;
		if (waited >= ms) {
			if (kill_it)
				return; /* stuck in the kernel: left as a zombie */
			kill(pid, SIGKILL);
			kill_it = true;
			waited = 0;
			ms = 1000;
		}
		usleep(10 * 1000);
	}
}

/* With start_lock held and no life running: what is left of the last one goes. Its lanes
 * went with remote_end_locked() or go with the callers that still hold them. */
static void remote_bury(Remote *r)
{
	pid_t pid;
	int fd;

	pthread_mutex_lock(&r->lock);
	pid = r->pid;
	r->pid = 0;
	fd = r->fd;
	r->fd = -1;
	pthread_mutex_unlock(&r->lock);
	if (fd >= 0)
		close(fd);
	reap(pid, true, 1000);
}

/* With start_lock held: a new life. Returns the rv of the helper's C_Initialize. */
static CK_RV remote_spawn(Remote *r)
{
	Module *m = r->m;
	char *argv[] = {(char *)"certagent-pkcs11-helper", (char *)"--module", m->path,
			(char *)"--name", m->name, NULL};
	struct timeval tv = {.tv_sec = m->timeout_ms / 1000,
			     .tv_usec = (m->timeout_ms % 1000) * 1000};
	struct timespec deadline;
	uint8_t *buf = NULL;
	size_t len = 0;
	RpcMessage msg;
	uint64_t rv64 = CKR_GENERAL_ERROR;
	int sv[2], k;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		call_log(LOG_WARNING, "module %s: socketpair: %m", m->name);
		return CKR_HOST_MEMORY;
	}
	k = helper_spawn(argv, sv[1], 3, &pid);
	close(sv[1]);
	if (k != 0) {
		call_log(LOG_WARNING, "module %s: cannot start %s: %s", m->name, helper_path(),
			 strerror(-k));
		close(sv[0]);
		return CKR_GENERAL_ERROR;
	}
	/* A helper that stops reading must not block a writer forever. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	/* Its first frame: C_Initialize done (or failed). */
	deadline_in(&deadline, m->timeout_ms);
	k = remote_read_frame(sv[0], &deadline, &buf, &len);
	if (k == 0 && (rpc_decode_frame(buf, len, &msg) < 0 || msg.op != RPC_OP_HELLO ||
		       rpc_get_u64(&msg, 0, &rv64) < 0))
		k = -EBADMSG;
	if (k == 0 && rv64 == CKR_OK && rpc_get_info(&msg, 1, &m->info) < 0)
		k = -EBADMSG;
	erase_and_free(buf, len);
	if (k < 0 || rv64 != CKR_OK) {
		call_log(LOG_WARNING, "module %s: helper %s (pid %d) %s", m->name, helper_path(), (int)pid,
			 k == -ETIMEDOUT ? "did not initialise the module in time"
			 : k == -EPIPE	 ? "exited before it was ready"
			 : k < 0	 ? "sent a malformed greeting"
					 : "could not initialise the module");
		close(sv[0]);
		reap(pid, true, 1000);
		return k < 0 ? CKR_DEVICE_ERROR : (CK_RV)rv64;
	}

	pthread_mutex_lock(&r->lock);
	r->fd = sv[0];
	r->pid = pid;
	r->alive = true;
	r->started_usec = now_usec();
	pthread_mutex_unlock(&r->lock);
	call_log(LOG_INFO, "module %s: running in helper process %d", m->name, (int)pid);
	return CKR_OK;
}

/* A live helper, starting one if the last life ended and its backoff is over. */
static CK_RV remote_ensure(Remote *r)
{
	CK_RV rv;

	pthread_mutex_lock(&r->lock);
	rv = r->alive ? CKR_OK : CKR_DEVICE_REMOVED;
	pthread_mutex_unlock(&r->lock);
	if (rv == CKR_OK)
		return rv;

	pthread_mutex_lock(&r->start_lock);
	pthread_mutex_lock(&r->lock);
	if (r->alive)
		rv = CKR_OK;
	else if (r->stopping || now_usec() < r->retry_usec)
		rv = CKR_DEVICE_REMOVED;
	else
		rv = CKR_FUNCTION_FAILED; /* restart below */
	pthread_mutex_unlock(&r->lock);
	if (rv == CKR_FUNCTION_FAILED) {
		remote_bury(r);
		call_log(LOG_INFO, "module %s: restarting its helper process", r->m->name);
		rv = remote_spawn(r);
		if (rv != CKR_OK) {
			pthread_mutex_lock(&r->lock);
			r->fails++;
			r->retry_usec = now_usec() + (uint64_t)backoff_ms(r->fails) * 1000u;
			pthread_mutex_unlock(&r->lock);
			rv = CKR_DEVICE_REMOVED;
		}
	}
	pthread_mutex_unlock(&r->start_lock);
	return rv;
}

Remote *remote_free(Remote *r)
{
	if (!r)
		return NULL;
	pthread_mutex_destroy(&r->start_lock);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->lane_cond);
	free(r->sessions);
	free(r);
	return NULL;
}

CK_RV remote_start(Module *m)
{
	Remote *r = m->remote;
	CK_RV rv;

	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return CKR_HOST_MEMORY;
		r->m = m;
		r->fd = -1;
		r->gen = 1;
		pthread_mutex_init(&r->start_lock, NULL);
		pthread_mutex_init(&r->lock, NULL);
		pthread_cond_init(&r->lane_cond, NULL);
		m->remote = r;
	}
	if (!m->timeout_ms)
		m->timeout_ms = STORE_MODULE_TIMEOUT_DEFAULT_MS;
	pthread_mutex_lock(&r->start_lock);
	pthread_mutex_lock(&r->lock);
	r->stopping = false;
	r->fails = 0;
	r->retry_usec = 0;
	pthread_mutex_unlock(&r->lock);
	remote_bury(r);
	rv = remote_spawn(r);
	pthread_mutex_unlock(&r->start_lock);
	return rv;
}

/* Ends the helper: EOF on its control socket lets it C_Finalize and exit; SIGKILL after a
 * grace period. */
void remote_stop(Module *m)
{
	Remote *r = m->remote;
	pid_t pid;

	if (!r)
		return;
	pthread_mutex_lock(&r->start_lock);
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pid = r->alive ? r->pid : 0;
	if (r->alive && r->fd >= 0)
		shutdown(r->fd, SHUT_WR);
	pthread_mutex_unlock(&r->lock);
	if (pid > 0) {
		reap(pid, false, REMOTE_STOP_GRACE_MS);
		pthread_mutex_lock(&r->lock);
		if (r->pid == pid)
			r->pid = 0; /* reaped: never kill() a pid that may be reused */
		if (r->alive)
			remote_end_locked(r);
		pthread_mutex_unlock(&r->lock);
	}
	remote_bury(r);
	pthread_mutex_unlock(&r->start_lock);
}

/* ---- lanes ---- */

/*
 * With r->lock held: a new lane for this life, its helper end sent on the control socket.
 * Returns 0 or -errno (the control socket failed: the helper is gone or stuck).
 */
static int lane_add_locked(Remote *r, Lane **ret)
{
	struct timeval tv = {.tv_sec = r->m->timeout_ms / 1000,
			     .tv_usec = (r->m->timeout_ms % 1000) * 1000};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control = {0};
	uint8_t frame[RPC_HEADER_LEN];
	struct iovec iov = {frame, sizeof(frame)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = control.buf,
			    .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cm;
	RpcBuf b;
	Lane *l;
	int sv[2], k;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		free(l);
		return -errno;
	}
	rpc_buf_begin(&b, 0, RPC_OP_ADD_LANE);
	k = rpc_buf_finish(&b);
	if (k == 0 && b.len == sizeof(frame))
		memcpy(frame, b.data, sizeof(frame));
	else
		k = k < 0 ? k : -EINVAL;
	rpc_buf_wipe(&b);
	if (k == 0) {
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &sv[1], sizeof(int));
		/* The helper's main thread only waits for these: never blocks for long. */
		do
			k = sendmsg(r->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == sizeof(frame)
				    ? 0
				    : -errno;
		while (k == -EINTR);
	}
	close(sv[1]);
	if (k < 0) {
		close(sv[0]);
		free(l);
		return k;
	}
	/* A helper that stops reading must not block a writer forever. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	l->fd = sv[0];
	l->gen = r->gen;
	r->lanes[r->n_lanes++] = l;
	*ret = l;
	return 0;
}

/*
 * A lane of the current life for one request, and that life's generation and a request id.
 * Waits while all RPC_LANES_MAX lanes are busy. CKR_DEVICE_REMOVED when the helper is gone
 * (or its control socket failed: then it is ended here).
 */
static CK_RV lane_acquire(Remote *r, Lane **ret, unsigned *ret_gen, uint32_t *ret_id)
{
	Lane *l = NULL;
	unsigned gen = 0;
	int k = 0;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		if (!r->alive)
			break;
		gen = r->gen;
		if (r->free_lanes) {
			l = r->free_lanes;
			r->free_lanes = l->next_free;
			break;
		}
		if (r->n_lanes < RPC_LANES_MAX) {
			k = lane_add_locked(r, &l);
			break;
		}
		pthread_cond_wait(&r->lane_cond, &r->lock);
	}
	if (l) {
		l->busy = true;
		l->next_free = NULL;
		*ret_id = ++r->next_id ? r->next_id : ++r->next_id; /* 0 is the greeting's */
	}
	pthread_mutex_unlock(&r->lock);
	if (k == -ENOMEM)
		return CKR_HOST_MEMORY;
	if (k < 0)
		remote_fail(r, gen, "cannot be sent a new lane");
	if (!l)
		return CKR_DEVICE_REMOVED;
	*ret = l;
	*ret_gen = gen;
	return CKR_OK;
}

/* Gives lane l back, or closes it when its life ended meanwhile. */
static void lane_release(Remote *r, Lane *l)
{
	pthread_mutex_lock(&r->lock);
	if (r->alive && l->gen == r->gen) {
		l->busy = false;
		l->next_free = r->free_lanes;
		r->free_lanes = l;
		pthread_cond_signal(&r->lane_cond);
		l = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	if (l) {
		close(l->fd);
		free(l);
	}
}

/* ---- one request ---- */

typedef struct Reply {
	uint8_t *buf;
	size_t len;
	RpcMessage msg;
	CK_RV rv;
} Reply;

static void reply_clear(Reply *rep)
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
static CK_RV remote_call(Module *m, RpcBuf *req, RpcOp op, unsigned timeout_ms, Reply *rep)
{
	Remote *r = m->remote;
	struct timespec deadline;
	uint8_t *buf = NULL;
	size_t len = 0;
	RpcMessage msg;
	uint64_t rv64;
	unsigned gen;
	uint32_t id;
	Lane *lane;
	CK_RV rv;
	int k;

	*rep = (Reply){0};
	if (!r) {
		rpc_buf_wipe(req);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	k = rpc_buf_finish(req);
	if (k < 0) {
		rpc_buf_wipe(req);
		return k == -ENOMEM ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR;
	}
	rv = remote_ensure(r);
	if (rv == CKR_OK)
		rv = lane_acquire(r, &lane, &gen, &id);
	if (rv != CKR_OK) {
		rpc_buf_wipe(req);
		return rv == CKR_HOST_MEMORY ? rv : CKR_DEVICE_REMOVED;
	}
	rpc_buf_set_id(req, id);
	k = remote_write_full(lane->fd, req->data, req->len);
	rpc_buf_wipe(req);
	if (k < 0) {
		remote_fail(r, gen,
			    k == -EAGAIN ? "stopped reading requests" : "cannot be written to");
		lane_release(r, lane);
		return CKR_DEVICE_REMOVED;
	}
	if (timeout_ms)
		deadline_in(&deadline, timeout_ms);
	k = remote_read_frame(lane->fd, timeout_ms ? &deadline : NULL, &buf, &len);
	if (k == 0 && rpc_decode_frame(buf, len, &msg) < 0)
		k = -EBADMSG;
	if (k < 0) {
		char why[64];

		if (k == -ETIMEDOUT)
			snprintf(why, sizeof(why), "did not answer within %u ms", timeout_ms);
		remote_fail(r, gen,
			    k == -ETIMEDOUT ? why
			    : k == -EPIPE   ? "exited"
			    : k == -EBADMSG ? "sent a malformed frame"
					    : "cannot be read from");
		erase_and_free(buf, len);
		lane_release(r, lane);
		return CKR_DEVICE_REMOVED;
	}
	lane_release(r, lane);
	if (msg.id != id || msg.op != op || rpc_get_u64(&msg, 0, &rv64) < 0) {
		remote_fail(r, gen, "sent a reply that does not fit the request");
		erase_and_free(buf, len);
		return CKR_DEVICE_REMOVED;
	}
	rep->buf = buf;
	rep->len = len;
	rep->msg = msg;
	rep->rv = (CK_RV)rv64;
	return rep->rv;
}

/* A reply field that is missing or out of bounds: the helper is not to be trusted further. */
static CK_RV remote_bad_reply(Module *m)
{
	Remote *r = m->remote;

	remote_fail(r, __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE), "sent a malformed reply");
	return CKR_DEVICE_REMOVED;
}

/*
 * Our handle -> the helper's: CKR_DEVICE_REMOVED for a handle of an earlier life,
 * CKR_SESSION_HANDLE_INVALID for one we do not know (closed). drop: forget it (close).
 */
static CK_RV remote_handle_ex(Module *m, CK_SESSION_HANDLE h, bool drop, uint64_t *ret)
{
	Remote *r = m->remote;
	uint32_t ours = (uint32_t)((uint64_t)h & ((1ull << REMOTE_HANDLE_BITS) - 1));
	CK_RV rv = CKR_SESSION_HANDLE_INVALID;

	if (!r)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&r->lock);
	if ((uint64_t)h >> REMOTE_HANDLE_BITS != r->gen)
		rv = CKR_DEVICE_REMOVED;
	else
		for (size_t i = 0; i < r->n_sessions; i++)
			if (r->sessions[i].ours == ours) {
				*ret = r->sessions[i].real;
				if (drop)
					r->sessions[i] = r->sessions[--r->n_sessions];
				rv = CKR_OK;
				break;
			}
	pthread_mutex_unlock(&r->lock);
	return rv;
}

/*
 * Begins the request op on session h: the helper's handle is its first field. Returns what
 * remote_handle_ex() does; b is built only on CKR_OK.
 */
static CK_RV remote_begin_session(Module *m, CK_SESSION_HANDLE h, bool drop, RpcOp op, RpcBuf *b)
{
	uint64_t rh;
	CK_RV rv = remote_handle_ex(m, h, drop, &rh);

	if (rv != CKR_OK)
		return rv;
	rpc_buf_begin(b, 0, op);
	rpc_put_u64(b, rh);
	return CKR_OK;
}

static unsigned timeout_of(Module *m)
{
	return m->timeout_ms ? m->timeout_ms : STORE_MODULE_TIMEOUT_DEFAULT_MS;
}

/* ---- the operations ---- */

CK_RV remote_get_info(Module *m, CK_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_INFO);
	rv = remote_call(m, &b, RPC_OP_GET_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

/*
 * Slot and mechanism lists, and found objects: sends req and takes a ULONGS reply of at most
 * max elements.
 */
static CK_RV remote_call_list(Module *m, RpcBuf *req, RpcOp op, size_t max, CK_ULONG **ret,
			      size_t *ret_n)
{
	_cleanup_reply_ Reply rep = {0};
	CK_ULONG *v = NULL;
	size_t n = 0;
	CK_RV rv;
	int k;

	rv = remote_call(m, req, op, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	k = rpc_get_ulongs(&rep.msg, 1, &v, &n);
	if (k == -ENOMEM)
		return CKR_HOST_MEMORY;
	if (k < 0 || n > max) {
		free(v);
		return remote_bad_reply(m);
	}
	*ret = v;
	*ret_n = n;
	return CKR_OK;
}

CK_RV remote_get_slot_list(Module *m, CK_SLOT_ID **ret, size_t *ret_n)
{
	RpcBuf b;

	rpc_buf_begin(&b, 0, RPC_OP_GET_SLOT_LIST);
	return remote_call_list(m, &b, RPC_OP_GET_SLOT_LIST, CALL_SLOTS_MAX, ret, ret_n);
}

CK_RV remote_get_mechanism_list(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **ret,
				size_t *ret_n)
{
	RpcBuf b;

	rpc_buf_begin(&b, 0, RPC_OP_GET_MECHANISM_LIST);
	rpc_put_u64(&b, slot);
	return remote_call_list(m, &b, RPC_OP_GET_MECHANISM_LIST, CALL_MECHS_MAX, ret, ret_n);
}

CK_RV remote_get_slot_info(Module *m, CK_SLOT_ID slot, CK_SLOT_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_SLOT_INFO);
	rpc_put_u64(&b, slot);
	rv = remote_call(m, &b, RPC_OP_GET_SLOT_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_slot_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_get_token_info(Module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_TOKEN_INFO);
	rpc_put_u64(&b, slot);
	rv = remote_call(m, &b, RPC_OP_GET_TOKEN_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_token_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_get_mechanism_info(Module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
				CK_MECHANISM_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_GET_MECHANISM_INFO);
	rpc_put_u64(&b, slot);
	rpc_put_u64(&b, type);
	rv = remote_call(m, &b, RPC_OP_GET_MECHANISM_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_mechanism_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_open_session(Module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret)
{
	_cleanup_reply_ Reply rep = {0};
	unsigned gen = remote_generation(m);
	uint64_t h;
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_OPEN_SESSION);
	rpc_put_u64(&b, slot);
	rv = remote_call(m, &b, RPC_OP_OPEN_SESSION, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	if (rpc_get_u64(&rep.msg, 1, &h) < 0 || h == 0 || h > (CK_SESSION_HANDLE)-1)
		return remote_bad_reply(m);
	pthread_mutex_lock(&m->remote->lock);
	/* The reply came from life gen only if it is still current. */
	if (m->remote->gen != gen)
		rv = CKR_DEVICE_REMOVED;
	else if (m->remote->n_sessions >= REMOTE_SESSIONS_MAX)
		rv = CKR_SESSION_COUNT;
	else if (m->remote->n_sessions == m->remote->alloc_sessions) {
		size_t alloc = m->remote->alloc_sessions ? 2 * m->remote->alloc_sessions : 16;
		void *grown = reallocarray(m->remote->sessions, alloc,
					   sizeof(*m->remote->sessions));

		if (grown) {
			m->remote->sessions = grown;
			m->remote->alloc_sessions = alloc;
		} else
			rv = CKR_HOST_MEMORY;
	}
	if (rv == CKR_OK) {
		Remote *r = m->remote;
		uint32_t ours = ++r->next_session ? r->next_session : ++r->next_session;

		r->sessions[r->n_sessions].ours = ours;
		r->sessions[r->n_sessions++].real = h;
		*ret = (CK_SESSION_HANDLE)((uint64_t)gen << REMOTE_HANDLE_BITS | ours);
	}
	pthread_mutex_unlock(&m->remote->lock);
	if (rv != CKR_OK && rv != CKR_DEVICE_REMOVED) {
		/* Not handed out: close it in the helper. */
		RpcBuf c;
		Reply crep = {0};

		rpc_buf_begin(&c, 0, RPC_OP_CLOSE_SESSION);
		rpc_put_u64(&c, h);
		remote_call(m, &c, RPC_OP_CLOSE_SESSION, timeout_of(m), &crep);
		reply_clear(&crep);
	}
	return rv;
}

/* Operations on a session whose reply is the rv alone. */
static CK_RV remote_session_op(Module *m, RpcOp op, CK_SESSION_HANDLE h)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, op == RPC_OP_CLOSE_SESSION, op, &b);

	if (rv != CKR_OK)
		return rv;
	return remote_call(m, &b, op, timeout_of(m), &rep);
}

CK_RV remote_close_session(Module *m, CK_SESSION_HANDLE h)
{
	return remote_session_op(m, RPC_OP_CLOSE_SESSION, h);
}

CK_RV remote_logout(Module *m, CK_SESSION_HANDLE h)
{
	return remote_session_op(m, RPC_OP_LOGOUT, h);
}

CK_RV remote_get_session_info(Module *m, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_GET_SESSION_INFO, &b);

	if (rv != CKR_OK)
		return rv;
	rv = remote_call(m, &b, RPC_OP_GET_SESSION_INFO, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_session_info(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

CK_RV remote_login(Module *m, CK_SESSION_HANDLE h, CK_USER_TYPE user, const char *pin,
		   size_t pin_len)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_LOGIN, &b);

	if (rv != CKR_OK)
		return rv;
	/* The frame holds the PIN: remote_call wipes it once sent. */
	rpc_put_u64(&b, user);
	rpc_put_u64(&b, pin != NULL);
	rpc_put_bytes(&b, pin ? pin : "", pin ? pin_len : 0);
	return remote_call(m, &b, RPC_OP_LOGIN, timeout_of(m) * STORE_LOGIN_TIMEOUT_FACTOR, &rep);
}

CK_RV remote_find_objects(Module *m, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, size_t n,
			  CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_FIND_OBJECTS, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_attrs(&b, tmpl, n);
	return remote_call_list(m, &b, RPC_OP_FIND_OBJECTS, CALL_FIND_MAX, ret, ret_n);
}

CK_RV remote_get_attribute(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
			   CK_ATTRIBUTE_TYPE type, uint8_t **ret, size_t *ret_len)
{
	_cleanup_reply_ Reply rep = {0};
	const uint8_t *v;
	uint8_t *copy;
	size_t len;
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_GET_ATTRIBUTE, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_u64(&b, o);
	rpc_put_u64(&b, type);
	rv = remote_call(m, &b, RPC_OP_GET_ATTRIBUTE, timeout_of(m), &rep);
	if (rv != CKR_OK)
		return rv;
	if (rpc_get_bytes(&rep.msg, 1, &v, &len) < 0 || len > CALL_ATTR_MAX)
		return remote_bad_reply(m);
	copy = malloc(len + 1); /* +1: labels are used as strings, as call_get_attribute */
	if (!copy)
		return CKR_HOST_MEMORY;
	memcpy(copy, v, len);
	copy[len] = 0;
	*ret = copy;
	*ret_len = len;
	return CKR_OK;
}

CK_RV remote_get_ulong(Module *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
		       CK_ULONG *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_GET_ULONG, &b);

	if (rv != CKR_OK)
		return rv;
	rpc_put_u64(&b, o);
	rpc_put_u64(&b, type);
	rv = remote_call(m, &b, RPC_OP_GET_ULONG, timeout_of(m), &rep);
	if (rv == CKR_OK && rpc_get_ulong(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}

/*
 * Mechanisms travel as type + ULONGS parameters: none, or CK_RSA_PKCS_PSS_PARAMS' three
 * fields. Those are all certagent signs with (sign.c); anything else is refused here.
 */
static CK_RV remote_put_mechanism(RpcBuf *b, const CK_MECHANISM *mech)
{
	CK_ULONG params[3];
	size_t n_params = 0;

	if (mech->mechanism == CKM_RSA_PKCS_PSS) {
		const CK_RSA_PKCS_PSS_PARAMS *pss = mech->pParameter;

		if (!pss || mech->ulParameterLen != sizeof(*pss))
			return CKR_MECHANISM_PARAM_INVALID;
		params[0] = pss->hashAlg;
		params[1] = pss->mgf;
		params[2] = pss->sLen;
		n_params = 3;
	} else if (mech->pParameter || mech->ulParameterLen)
		return CKR_MECHANISM_PARAM_INVALID;
	rpc_put_u64(b, mech->mechanism);
	rpc_put_ulongs(b, params, n_params);
	return CKR_OK;
}

/* The start of a SignInit or SignOnce request: session, mechanism, key. */
static CK_RV remote_begin_sign(Module *m, CK_SESSION_HANDLE h, RpcOp op, CK_MECHANISM *mech,
			       CK_OBJECT_HANDLE key, RpcBuf *b)
{
	CK_RV rv = remote_begin_session(m, h, false, op, b);

	if (rv != CKR_OK)
		return rv;
	rv = remote_put_mechanism(b, mech);
	if (rv != CKR_OK) {
		rpc_buf_wipe(b);
		return rv;
	}
	rpc_put_u64(b, key);
	return CKR_OK;
}

CK_RV remote_sign_init(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_sign(m, h, RPC_OP_SIGN_INIT, mech, key, &b);

	if (rv != CKR_OK)
		return rv;
	return remote_call(m, &b, RPC_OP_SIGN_INIT, timeout_of(m), &rep);
}

/*
 * Reads the signature part of a Sign or SignOnce reply, fields from i: u64 length (the one
 * needed on CKR_BUFFER_TOO_SMALL), then the bytes on CKR_OK. rv is the reply's.
 */
static CK_RV remote_take_signature(Module *m, const Reply *rep, size_t i, CK_RV rv, uint8_t *sig,
				   CK_ULONG *sig_len)
{
	const uint8_t *v;
	uint64_t want;
	size_t n;

	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
		return rv;
	if (rpc_get_u64(&rep->msg, i, &want) < 0 || want > CALL_SIG_MAX)
		return remote_bad_reply(m);
	if (rv == CKR_BUFFER_TOO_SMALL || !sig) {
		*sig_len = (CK_ULONG)want;
		return rv;
	}
	if (rpc_get_bytes(&rep->msg, i + 1, &v, &n) < 0 || n != want || n > *sig_len)
		return remote_bad_reply(m);
	memcpy(sig, v, n);
	*sig_len = (CK_ULONG)n;
	return CKR_OK;
}

/*
 * C_SignInit and C_Sign in one request (call_sign_once()): the helper runs both; the reply
 * says whether C_SignInit succeeded (*ret_signing), so the operation may still be active
 * after a failed C_Sign (CKR_BUFFER_TOO_SMALL: remote_sign() with a bigger buffer).
 */
CK_RV remote_sign_once(Module *m, CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
		       const uint8_t *data, size_t len, uint8_t *sig, CK_ULONG *sig_len,
		       bool *ret_signing)
{
	_cleanup_reply_ Reply rep = {0};
	uint64_t stage;
	RpcBuf b;
	CK_RV rv = remote_begin_sign(m, h, RPC_OP_SIGN_ONCE, mech, key, &b);

	*ret_signing = false;
	if (rv != CKR_OK)
		return rv;
	/* The data may be a digest of what the client sends: wiped with the frame. */
	rpc_put_bytes(&b, data, len);
	rpc_put_u64(&b, sig ? *sig_len : 0); /* 0: only ask for the length */
	rv = remote_call(m, &b, RPC_OP_SIGN_ONCE, timeout_of(m), &rep);
	if (!rep.buf)
		return rv; /* no reply: the helper is gone */
	if (rep.msg.n_fields == 1 && rv != CKR_OK)
		return rv; /* refused before C_SignInit */
	if (rpc_get_u64(&rep.msg, 1, &stage) < 0 || stage > 1 || (stage == 0 && rv == CKR_OK))
		return remote_bad_reply(m);
	*ret_signing = stage == 1;
	if (!*ret_signing)
		return rv;
	return remote_take_signature(m, &rep, 2, rv, sig, sig_len);
}

CK_RV remote_sign(Module *m, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, uint8_t *sig,
		  CK_ULONG *sig_len)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv = remote_begin_session(m, h, false, RPC_OP_SIGN, &b);

	if (rv != CKR_OK)
		return rv;
	/* The data may be a digest of what the client sends: wiped with the frame. */
	rpc_put_bytes(&b, data, len);
	rpc_put_u64(&b, sig ? *sig_len : 0); /* 0: only ask for the length */
	rv = remote_call(m, &b, RPC_OP_SIGN, timeout_of(m), &rep);
	if (!rep.buf)
		return rv;
	return remote_take_signature(m, &rep, 1, rv, sig, sig_len);
}

/*
 * Blocking (flags 0) only on hotplug.c's slot-event thread: no timeout, it ends when the
 * module is finalised (remote_stop) or the helper dies (then the module is polled).
 */
CK_RV remote_wait_for_slot_event(Module *m, CK_FLAGS flags, CK_SLOT_ID *ret)
{
	_cleanup_reply_ Reply rep = {0};
	RpcBuf b;
	CK_RV rv;

	rpc_buf_begin(&b, 0, RPC_OP_WAIT_FOR_SLOT_EVENT);
	rpc_put_u64(&b, flags);
	rv = remote_call(m, &b, RPC_OP_WAIT_FOR_SLOT_EVENT,
			 (flags & CKF_DONT_BLOCK) ? timeout_of(m) : 0, &rep);
	if (rv == CKR_OK && rpc_get_ulong(&rep.msg, 1, ret) < 0)
		return remote_bad_reply(m);
	return rv;
}
