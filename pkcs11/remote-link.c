/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * remote-link: the agent's link to an isolated module (remote.c: the operations on it). The
 * module runs in certagent-pkcs11-helper
 * (helper-main.c), one process per module, spawned with one end of a socketpair as fd 3 (the
 * control socket); the call_* wrappers send it one framed request (rpc.h) per operation
 * through remote_call() here.
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
#include "remote-internal.h"
#include "rpc.h"
#include "util.h"
#define REMOTE_BACKOFF_MAX_MS 30000u /* longest wait between restarts of a failing helper */
#define REMOTE_STABLE_MS 60000u	     /* a helper that lived this long starts a new backoff */
#define REMOTE_STOP_GRACE_MS 2000u   /* for C_Finalize when the agent stops a helper */
/* A reply is first read into a buffer of this size on the stack (a signature, an info
 * structure: nearly all of them), so most replies take one read. */
#define REMOTE_READ_INLINE 4096u
extern char **environ;
struct Lane {
	struct Lane *next_free;
	int fd;
	unsigned gen; /* the life it belongs to */
	bool busy;
};
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
 * read blocks (the helper's lane threads: one syscall per request); with one, it waits in
 * poll() first (the agent reads the answer right after sending the request, when it is never
 * there yet: a read before the wait would only find nothing).
 * Returns 0, -EPIPE (EOF before a whole frame), -ETIMEDOUT, -EBADMSG, -ENOMEM, -errno.
 */
int remote_read_frame(int fd, const struct timespec *deadline, uint8_t **ret, size_t *ret_len)
{
	uint8_t first[REMOTE_READ_INLINE];
	size_t got = 0, size = 0;
	uint8_t *buf = NULL;
	int r = deadline ? wait_readable(fd, deadline) : 0;

	while (r == 0 && got < 4) {
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
void remote_fail(Remote *r, unsigned gen, const char *why)
{
	uint64_t now = ca_now_usec();
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
	char busy_poll[16];
	char *argv[10];
	size_t n_argv = 0;
	struct timeval tv = {.tv_sec = m->timeout_ms / 1000,
			     .tv_usec = (m->timeout_ms % 1000) * 1000};
	struct timespec deadline;
	uint8_t *buf = NULL;
	size_t len = 0;
	RpcMessage msg;
	uint64_t rv64 = CKR_GENERAL_ERROR;
	int sv[2], k;
	pid_t pid;

	snprintf(busy_poll, sizeof(busy_poll), "%u", m->busy_poll_usec);
	/* "--name NAME" last: tests find a module's helper by it. */
	argv[n_argv++] = (char *)"certagent-pkcs11-helper";
	if (m->sign_ahead)
		argv[n_argv++] = (char *)"--sign-ahead";
	argv[n_argv++] = (char *)"--busy-poll";
	argv[n_argv++] = busy_poll;
	argv[n_argv++] = (char *)"--module";
	argv[n_argv++] = m->path;
	argv[n_argv++] = (char *)"--name";
	argv[n_argv++] = m->name;
	argv[n_argv] = NULL;
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
		call_log(LOG_WARNING, "module %s: helper %s (pid %d) %s", m->name, helper_path(),
			 (int)pid,
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
	r->started_usec = ca_now_usec();
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
	else if (r->stopping || ca_now_usec() < r->retry_usec)
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
			r->retry_usec = ca_now_usec() + (uint64_t)backoff_ms(r->fails) * 1000u;
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

/*
 * Sends req (built with id 0; wiped here) on a lane and reads the reply there (timeout_ms 0:
 * as long as the helper lives). Returns the reply's CK_RV (field 0) with the reply in *rep,
 * or CKR_DEVICE_REMOVED when the helper is gone, fails or times out, CKR_HOST_MEMORY,
 * CKR_GENERAL_ERROR (our request did not encode).
 */
CK_RV remote_call(Module *m, RpcBuf *req, RpcOp op, unsigned timeout_ms, Reply *rep)
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
