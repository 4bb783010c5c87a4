/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How libcertagent waits for the agent's reply (client-lib/reply-wait.c), against a real peer
 * thread on a SOCK_SEQPACKET socketpair like the signing channel:
 *   - a peer that answers at once: the answers are picked up by the busy poll, without
 *     sleeping in recv (when the machine has more than one CPU);
 *   - a peer that answers after 5 ms, like a slow token or a loaded agent: spinning stops by
 *     itself, so the waiting thread burns (almost) no CPU while it waits;
 *   - CERTAGENT_SPIN_US=0: never spins.
 * These are behaviours, not speeds: nothing here compares a duration with a threshold except
 * the CPU the waiter used against the time it waited.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "reply-wait.h"

static int fail(const char *what)
{
	fprintf(stderr, "FAIL: %s\n", what);
	return 1;
}

typedef struct Peer {
	int fd;
	unsigned delay_us;
} Peer;

static void *peer_main(void *userdata)
{
	Peer *p = userdata;
	char buf[64];
	ssize_t n;

	while ((n = recv(p->fd, buf, sizeof(buf), 0)) > 0) {
		if (p->delay_us)
			usleep(p->delay_us);
		if (send(p->fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
			break;
	}
	return NULL;
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* n requests; returns how many answers the spin caught, or -1. */
static int round_trips(ReplyWait *w, int fd, int n)
{
	char buf[64] = "sign";
	int spun = 0;

	for (int i = 0; i < n; i++) {
		ssize_t k;

		if (send(fd, buf, 16, MSG_NOSIGNAL) != 16)
			return -1;
		reply_wait_sent(w);
		k = reply_wait_spin(w, fd, buf, sizeof(buf), 0);
		if (k > 0)
			spun++;
		else if (k < 0 && errno == EAGAIN)
			k = recv(fd, buf, sizeof(buf), 0);
		reply_wait_done(w);
		if (k != 16)
			return -1;
	}
	return spun;
}

static int with_peer(unsigned delay_us, int n, ReplyWait *w, int *ret_spun, double *ret_cpu,
		     double *ret_wall)
{
	int sv[2];
	pthread_t t;
	Peer p;
	double c0, w0;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	p = (Peer){.fd = sv[1], .delay_us = delay_us};
	if (pthread_create(&t, NULL, peer_main, &p) != 0)
		return -1;
	c0 = thread_cpu_s();
	w0 = wall_s();
	*ret_spun = round_trips(w, sv[0], n);
	*ret_cpu = thread_cpu_s() - c0;
	*ret_wall = wall_s() - w0;
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	return *ret_spun < 0 ? -1 : 0;
}

int main(void)
{
	ReplyWait w;
	int spun;
	double cpu, wall;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	unsetenv("CERTAGENT_SPIN_US");
	reply_wait_init(&w);
	if (ncpu > 1 && w.limit_us != REPLY_WAIT_SPIN_DEFAULT_US)
		return fail("the default spin limit is not used");
	if (ncpu < 2 && w.limit_us != 0)
		return fail("spinning is on with one CPU");

	/* A quick peer: with two CPUs, most answers come in while spinning. */
	if (with_peer(0, 2000, &w, &spun, &cpu, &wall) < 0)
		return fail("round trips with a quick peer");
	printf("quick peer: %d of 2000 answers caught by the busy poll, average %u us\n", spun,
	       w.avg_us);
	if (ncpu > 1 && spun < 1000)
		return fail("a quick peer's answers are not picked up by the busy poll");

	/*
	 * A slow peer (5 ms) against a 2 ms limit: the average passes the limit after a few
	 * answers and spinning stops. A spinner that did not adapt would burn 40 % of the wait.
	 */
	setenv("CERTAGENT_SPIN_US", "2000", 1);
	reply_wait_init(&w);
	if (with_peer(5000, 40, &w, &spun, &cpu, &wall) < 0)
		return fail("round trips with a slow peer");
	printf("slow peer: %d of 40 caught spinning, average %u us, CPU %.1f ms in %.1f ms\n", spun,
	       w.avg_us, cpu * 1e3, wall * 1e3);
	if (w.avg_us <= w.limit_us)
		return fail("the average did not follow a slow peer");
	if (cpu > 0.25 * wall)
		return fail("the waiter burnt CPU while a slow peer took its time");

	/* Off by configuration. */
	setenv("CERTAGENT_SPIN_US", "0", 1);
	reply_wait_init(&w);
	if (w.limit_us != 0)
		return fail("CERTAGENT_SPIN_US=0 did not turn spinning off");
	if (with_peer(1000, 20, &w, &spun, &cpu, &wall) < 0)
		return fail("round trips with spinning off");
	if (cpu > 0.25 * wall)
		return fail("spinning off still burnt CPU");
	/* A bad value keeps the default rather than spinning for ever. */
	setenv("CERTAGENT_SPIN_US", "99999999", 1);
	reply_wait_init(&w);
	if (ncpu > 1 && w.limit_us != REPLY_WAIT_SPIN_DEFAULT_US)
		return fail("an out-of-range CERTAGENT_SPIN_US was taken");
	printf("ok\n");
	return 0;
}
