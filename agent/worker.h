/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * worker: a pool of threads that run jobs handed over by the main thread, so a slow token
 * never holds up the D-Bus loop. Jobs only compute; a finished job is queued back and the
 * main thread is woken through an eventfd to send the reply (only the main thread touches the
 * DBusConnection).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>

typedef struct WorkerJob WorkerJob;

struct WorkerJob {
	void (*run)(WorkerJob *job); /* on a worker thread */
	WorkerJob *next;	     /* owned by the pool while queued */
	bool cancelled;		     /* the pool stopped before the job ran */
};

typedef struct WorkerPool WorkerPool;

/* Starts n threads named "<name>-<i>"; done_fd is an eventfd written after each job. */
int worker_pool_new(const char *name, unsigned n, int done_fd, WorkerPool **ret);

/* Queues a job; the pool owns it until worker_pool_take_done() hands it back. */
void worker_pool_submit(WorkerPool *p, WorkerJob *job);

/* The finished (or cancelled) jobs, oldest first, linked by next; NULL if none. */
WorkerJob *worker_pool_take_done(WorkerPool *p);

/*
 * Stops taking jobs: queued ones are cancelled (handed back with cancelled set), running ones
 * finish. Waits up to timeout_ms for the threads; returns false if one is still stuck (in a
 * token that does not answer), in which case the pool must be leaked, not freed.
 */
bool worker_pool_stop(WorkerPool *p, unsigned timeout_ms);

/*
 * Joins threads[*n_joined ..n_threads), counting each one joined in *n_joined, until
 * timeout_ms from now. Returns false if one is still running at the deadline (call again, or
 * leak them). For every pool of threads the agent stops with a deadline (channel.c too).
 */
bool worker_join_threads(const pthread_t *threads, unsigned n_threads, unsigned *n_joined,
			 unsigned timeout_ms);

/*
 * Called from a job's run(): the job was handed to someone else (a PIN prompt) who will
 * submit it again; the pool forgets it when run() returns instead of reporting it finished.
 * worker_job_attach() undoes it when the hand-over did not happen.
 */
void worker_job_detach(void);
void worker_job_attach(void);
/* Whether the job run() last ran on this thread detached itself. */
bool worker_job_detached(void);

/*
 * Hands back a job that ran outside the pool (a Sign served on a signing channel's thread)
 * as if it had finished in it: the main thread gets it from worker_pool_take_done().
 */
void worker_pool_complete(WorkerPool *p, WorkerJob *job);

/* Frees a stopped pool (stopping it first, waiting as long as it takes). */
WorkerPool *worker_pool_free(WorkerPool *p);
