/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * worker: one mutex guards both queues; threads sleep on a condition variable. Threads are
 * started with every signal blocked (the main thread owns signals through a signalfd).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util.h"
#include "worker.h"

struct WorkerPool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	WorkerJob *queue_head, *queue_tail; /* waiting to run */
	WorkerJob *done_head, *done_tail;   /* finished, for the main thread */
	bool stopping;
	bool stopped;
	int done_fd;
	unsigned n_threads;
	unsigned n_joined;
	pthread_t *threads;
	char name[16];
};

static void list_append(WorkerJob **head, WorkerJob **tail, WorkerJob *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void notify(WorkerPool *p)
{
	uint64_t one = 1;

	/* An eventfd write only fails when the counter would overflow; the reader is behind. */
	(void)!write(p->done_fd, &one, sizeof(one));
}

/* Set by the running job when it handed itself over (see worker_job_detach). */
static __thread bool worker_detached;

void worker_job_detach(void)
{
	worker_detached = true;
}

void worker_job_attach(void)
{
	worker_detached = false;
}

bool worker_job_detached(void)
{
	return worker_detached;
}

static void *worker_main(void *userdata)
{
	WorkerPool *p = userdata;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		WorkerJob *job;

		while (!p->queue_head && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stopping)
			break;
		job = p->queue_head;
		p->queue_head = job->next;
		if (!p->queue_head)
			p->queue_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		worker_detached = false;
		job->run(job);

		pthread_mutex_lock(&p->lock);
		/* A detached job may already be queued again: do not touch it. */
		if (!worker_detached) {
			list_append(&p->done_head, &p->done_tail, job);
			notify(p);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int worker_pool_new(const char *name, unsigned n, int done_fd, WorkerPool **ret)
{
	WorkerPool *p;
	sigset_t all, old;
	int r = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->threads = calloc(n, sizeof(pthread_t));
	if (!p->threads) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->done_fd = done_fd;
	snprintf(p->name, sizeof(p->name), "%s", name);

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < n; i++) {
		char tname[16]; /* the kernel keeps 15 bytes */

		r = -pthread_create(&p->threads[i], NULL, worker_main, p);
		if (r)
			break;
		snprintf(tname, sizeof(tname), "%.10s-%u", name, i % 100);
		pthread_setname_np(p->threads[i], tname);
		p->n_threads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		worker_pool_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

void worker_pool_submit(WorkerPool *p, WorkerJob *job)
{
	pthread_mutex_lock(&p->lock);
	job->cancelled = false;
	if (p->stopping) {
		job->cancelled = true;
		list_append(&p->done_head, &p->done_tail, job);
		notify(p);
	} else {
		list_append(&p->queue_head, &p->queue_tail, job);
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
}

void worker_pool_complete(WorkerPool *p, WorkerJob *job)
{
	pthread_mutex_lock(&p->lock);
	job->cancelled = false;
	list_append(&p->done_head, &p->done_tail, job);
	notify(p);
	pthread_mutex_unlock(&p->lock);
}

WorkerJob *worker_pool_take_done(WorkerPool *p)
{
	WorkerJob *list;

	pthread_mutex_lock(&p->lock);
	list = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	return list;
}

bool worker_join_threads(const pthread_t *threads, unsigned n_threads, unsigned *n_joined,
			 unsigned timeout_ms)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (; *n_joined < n_threads; (*n_joined)++)
		if (pthread_timedjoin_np(threads[*n_joined], NULL, &deadline) != 0)
			return false;
	return true;
}

bool worker_pool_stop(WorkerPool *p, unsigned timeout_ms)
{
	pthread_mutex_lock(&p->lock);
	if (!p->stopping) {
		p->stopping = true;
		while (p->queue_head) {
			WorkerJob *job = p->queue_head;

			p->queue_head = job->next;
			job->cancelled = true;
			list_append(&p->done_head, &p->done_tail, job);
		}
		p->queue_tail = NULL;
		notify(p);
		pthread_cond_broadcast(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);

	if (!worker_join_threads(p->threads, p->n_threads, &p->n_joined, timeout_ms))
		return false;
	p->stopped = true;
	return true;
}

WorkerPool *worker_pool_free(WorkerPool *p)
{
	if (!p)
		return NULL;
	worker_pool_stop(p, 0);
	for (; p->n_joined < p->n_threads; p->n_joined++)
		pthread_join(p->threads[p->n_joined], NULL);
	/* Jobs still in the done list belong to nobody now; the owner drained them before. */
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
	return NULL;
}
