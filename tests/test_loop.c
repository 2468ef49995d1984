/* Unit tests of the poll loop: timers, fd watches mutated during dispatch,
 * signalfd, pidfd children, deferred calls, the idle proof (no wake-up over
 * an idle second) and the three adapters against real parts: a private
 * dbus-daemon, libvirt's test:///default driver and GLib's main context. */
#include <dbus/dbus.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <libvirt/libvirt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "testlib.h"

/* Iterates until *flag or until timeout_ms passed; false on timeout. */
static bool iterate_until(struct loop *loop, const bool *flag, int timeout_ms)
{
	int64_t end = loop_now_ms() + timeout_ms;
	while (!*flag) {
		int64_t left = end - loop_now_ms();
		if (left <= 0)
			return false;
		loop_iterate(loop, (int)left);
	}
	return true;
}

/* ---- loop.c: timers ---- */

struct order {
	int seen[16];
	int n;
};

struct tagged {
	struct order *order;
	int tag;
	struct loop_timer *victim;
	bool remove_self;
	struct loop_timer *self;
};

static void on_tagged_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct tagged *tg = data;
	CHECK(t == tg->self);
	if (tg->order->n < 16)
		tg->order->seen[tg->order->n++] = tg->tag;
	if (tg->victim)
		loop_timer_remove(tg->victim);
	if (tg->remove_self)
		loop_timer_remove(t);
	(void)loop;
}

static void test_timers_order(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct order o = {0};
	/* Added out of order; two share a delay and keep their arming order. */
	int delays[] = {60, 10, 40, 0, 20, 20};
	int expect[] = {3, 1, 4, 5, 2, 0};
	struct tagged tg[6];
	int64_t start = loop_now_ms(); /* before arming: deadlines count from add */
	for (int i = 0; i < 6; i++) {
		tg[i] = (struct tagged){.order = &o, .tag = i};
		tg[i].self = loop_timer_add(loop, delays[i], 0, on_tagged_timer, &tg[i]);
		REQUIRE(tg[i].self);
	}
	while (o.n < 6 && loop_now_ms() - start < 2000)
		loop_iterate(loop, 2000);
	CHECK_INT_EQ(o.n, 6);
	for (int i = 0; i < 6; i++)
		CHECK_INT_EQ(o.seen[i], expect[i]);
	CHECK(loop_now_ms() - start >= 60);
	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.timers, 6);      /* one-shot timers stay until removed */
	CHECK_INT_EQ(st.timers_armed, 0); /* ... but disarmed after firing */
	loop_destroy(loop);
}

static void test_timers_cancel_rearm(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct order o = {0};
	struct tagged a = {.order = &o, .tag = 1}, b = {.order = &o, .tag = 2},
		      c = {.order = &o, .tag = 3}, d = {.order = &o, .tag = 4};
	a.self = loop_timer_add(loop, 10, 0, on_tagged_timer, &a);
	b.self = loop_timer_add(loop, 200, 0, on_tagged_timer, &b);
	c.self = loop_timer_add(loop, -1, 0, on_tagged_timer, &c); /* created disarmed */
	d.self = loop_timer_add(loop, 30, 0, on_tagged_timer, &d);
	REQUIRE(a.self && b.self && c.self && d.self);
	loop_timer_remove(a.self);       /* cancelled before firing */
	loop_timer_arm(b.self, 5, 0);    /* brought forward */
	loop_timer_arm(c.self, 15, 0);   /* armed later */
	loop_timer_arm(d.self, -1, 0);   /* disarmed */
	int64_t start = loop_now_ms();
	while (loop_now_ms() - start < 100)
		loop_iterate(loop, 100);
	CHECK_INT_EQ(o.n, 2);
	CHECK_INT_EQ(o.seen[0], 2);
	CHECK_INT_EQ(o.seen[1], 3);
	/* Rearming a fired one-shot timer fires it again. */
	loop_timer_arm(d.self, 0, 0);
	loop_iterate(loop, 100);
	CHECK_INT_EQ(o.n, 3);
	CHECK_INT_EQ(o.seen[2], 4);
	loop_destroy(loop);
}

struct repeat {
	int count;
	int stop_at;
	int64_t first_ms, last_ms;
};

static void on_repeat(struct loop *loop, struct loop_timer *t, void *data)
{
	struct repeat *r = data;
	int64_t now = loop_now_ms();
	if (r->count++ == 0)
		r->first_ms = now;
	r->last_ms = now;
	if (r->count == r->stop_at)
		loop_timer_remove(t); /* removed inside its own callback */
	(void)loop;
}

static void test_timer_repeat(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct repeat r = {.stop_at = 5};
	int64_t start = loop_now_ms();
	REQUIRE(loop_timer_add(loop, 10, 20, on_repeat, &r));
	while (loop_now_ms() - start < 250)
		loop_iterate(loop, 250);
	CHECK_INT_EQ(r.count, 5);
	CHECK(r.first_ms - start >= 10);
	/* Ticks follow the deadlines, not the (possibly late) firing times:
	 * the 5th is due 10 + 4 * 20 ms after arming. */
	CHECK(r.last_ms - start >= 90);
	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.timers, 0);
	loop_destroy(loop);
}

static void test_timer_remove_in_callbacks(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct order o = {0};
	/* Same deadline for all: a fires first, removes itself; b fires and
	 * removes c, which was due in the same iteration; d still fires. */
	struct tagged a = {.order = &o, .tag = 1, .remove_self = true};
	struct tagged b = {.order = &o, .tag = 2};
	struct tagged c = {.order = &o, .tag = 3};
	struct tagged d = {.order = &o, .tag = 4};
	a.self = loop_timer_add(loop, 5, 0, on_tagged_timer, &a);
	b.self = loop_timer_add(loop, 5, 0, on_tagged_timer, &b);
	c.self = loop_timer_add(loop, 5, 0, on_tagged_timer, &c);
	d.self = loop_timer_add(loop, 5, 0, on_tagged_timer, &d);
	b.victim = c.self;
	/* e repeats and removes itself; f removes the repeating g. */
	struct tagged e = {.order = &o, .tag = 5, .remove_self = true};
	struct tagged f = {.order = &o, .tag = 6};
	struct tagged g = {.order = &o, .tag = 7};
	e.self = loop_timer_add(loop, 30, 5, on_tagged_timer, &e);
	g.self = loop_timer_add(loop, 30, 5, on_tagged_timer, &g);
	f.self = loop_timer_add(loop, 32, 0, on_tagged_timer, &f);
	f.victim = g.self;
	int64_t start = loop_now_ms();
	while (loop_now_ms() - start < 120)
		loop_iterate(loop, 120);
	/* a b d at 5 ms; e g at 30; f at 32 removes g (g may have fired once). */
	REQUIRE(o.n >= 6);
	CHECK_INT_EQ(o.seen[0], 1);
	CHECK_INT_EQ(o.seen[1], 2);
	CHECK_INT_EQ(o.seen[2], 4);
	CHECK_INT_EQ(o.seen[3], 5);
	CHECK_INT_EQ(o.seen[4], 7);
	CHECK_INT_EQ(o.seen[5], 6);
	CHECK_INT_EQ(o.n, 6);
	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.timers, 3); /* b, d, f remain (disarmed) */
	CHECK_INT_EQ(st.timers_armed, 0);
	loop_destroy(loop);
}

/* A timer rearmed with delay 0 from its own callback runs once per
 * iteration, not in a tight loop inside one iteration. */
static void on_rearm_zero(struct loop *loop, struct loop_timer *t, void *data)
{
	int *count = data;
	if (++*count < 5)
		loop_timer_arm(t, 0, 0);
	(void)loop;
}

static void test_timer_zero_delay_per_iteration(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	int count = 0;
	REQUIRE(loop_timer_add(loop, 0, 0, on_rearm_zero, &count));
	for (int i = 1; i <= 5; i++) {
		loop_iterate(loop, 1000);
		CHECK_INT_EQ(count, i);
	}
	loop_destroy(loop);
}

/* ---- loop.c: fd watches ---- */

struct fdtest {
	int pipes[4][2];
	struct loop_fd *w[4];
	int calls[4];
	int remove_on_call[4][4]; /* watch i removes watch j when called */
	bool pause_others;        /* watch called first pauses the others */
	bool no_add;
	struct loop_fd *added;    /* added from the first callback */
	int added_calls;
};

static void on_added(struct loop *loop, int fd, short revents, void *data)
{
	struct fdtest *t = data;
	t->added_calls++;
	(void)loop;
	(void)fd;
	(void)revents;
}

static int fd_index(struct fdtest *t, int fd)
{
	for (int i = 0; i < 4; i++)
		if (t->pipes[i][0] == fd)
			return i;
	return -1;
}

static void on_pipe(struct loop *loop, int fd, short revents, void *data)
{
	struct fdtest *t = data;
	int i = fd_index(t, fd);
	REQUIRE(i >= 0);
	CHECK(revents & POLLIN);
	t->calls[i]++;
	for (int j = 0; j < 4; j++) {
		if (t->remove_on_call[i][j]) {
			loop_fd_remove(t->w[j]);
			t->w[j] = NULL;
			t->remove_on_call[i][j] = 0;
		}
	}
	if (t->pause_others) {
		for (int j = 0; j < 4; j++)
			if (j != i && t->w[j])
				loop_fd_update(t->w[j], 0);
		t->pause_others = false;
	}
	if (!t->no_add && !t->added)
		t->added = loop_fd_add(loop, t->pipes[3][0], POLLIN, on_added, t);
}

static void fdtest_open(struct fdtest *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < 4; i++) {
		if (pipe2(t->pipes[i], O_CLOEXEC | O_NONBLOCK) < 0)
			abort();
		if (write(t->pipes[i][1], "x", 1) != 1) /* all readable, never drained */
			abort();
	}
}

static void fdtest_close(struct fdtest *t)
{
	for (int i = 0; i < 4; i++) {
		close(t->pipes[i][0]);
		close(t->pipes[i][1]);
	}
}

static void test_fd_remove_during_dispatch(void)
{
	struct fdtest t;
	fdtest_open(&t);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	for (int i = 0; i < 3; i++)
		t.w[i] = loop_fd_add(loop, t.pipes[i][0], POLLIN, on_pipe, &t);
	/* Whichever of 0 and 1 runs first removes itself and the other one,
	 * both being ready in the same iteration. */
	t.remove_on_call[0][0] = t.remove_on_call[0][1] = 1;
	t.remove_on_call[1][0] = t.remove_on_call[1][1] = 1;
	t.no_add = true;
	CHECK(loop_iterate(loop, 1000));
	CHECK_INT_EQ(t.calls[0] + t.calls[1], 1);
	CHECK_INT_EQ(t.calls[2], 1);
	CHECK(loop_iterate(loop, 1000));
	CHECK_INT_EQ(t.calls[0] + t.calls[1], 1);
	CHECK_INT_EQ(t.calls[2], 2);
	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.fds, 1);
	loop_destroy(loop);
	fdtest_close(&t);
}

static void test_fd_remove_self_only(void)
{
	struct fdtest t;
	fdtest_open(&t);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	for (int i = 0; i < 2; i++)
		t.w[i] = loop_fd_add(loop, t.pipes[i][0], POLLIN, on_pipe, &t);
	t.remove_on_call[0][0] = 1;
	t.remove_on_call[1][1] = 1;
	t.no_add = true;
	loop_iterate(loop, 1000);
	CHECK_INT_EQ(t.calls[0], 1);
	CHECK_INT_EQ(t.calls[1], 1);
	loop_iterate(loop, 0);
	CHECK_INT_EQ(t.calls[0], 1);
	CHECK_INT_EQ(t.calls[1], 1);
	loop_destroy(loop);
	fdtest_close(&t);
}

static void test_fd_toggle_and_add_during_dispatch(void)
{
	struct fdtest t;
	fdtest_open(&t);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	/* Watch 2 starts paused: never dispatched, though readable. */
	for (int i = 0; i < 3; i++)
		t.w[i] = loop_fd_add(loop, t.pipes[i][0], i == 2 ? 0 : POLLIN, on_pipe, &t);
	t.pause_others = true; /* the first of 0/1 to run pauses the other */
	loop_iterate(loop, 1000);
	CHECK_INT_EQ(t.calls[0] + t.calls[1], 1);
	CHECK_INT_EQ(t.calls[2], 0);
	/* The watch added from the callback waits for the next iteration. */
	REQUIRE(t.added);
	CHECK_INT_EQ(t.added_calls, 0);
	int first = t.calls[0] ? 0 : 1;
	loop_iterate(loop, 1000);
	CHECK_INT_EQ(t.calls[first], 2);
	CHECK_INT_EQ(t.calls[1 - first], 0);
	CHECK_INT_EQ(t.added_calls, 1);
	/* Unpause. */
	loop_fd_update(t.w[1 - first], POLLIN);
	loop_fd_update(t.w[2], POLLIN);
	loop_iterate(loop, 1000);
	CHECK_INT_EQ(t.calls[1 - first], 1);
	CHECK_INT_EQ(t.calls[2], 1);
	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.fds, 4);
	CHECK_INT_EQ(st.fds_polled, 4);
	loop_destroy(loop);
	fdtest_close(&t);
}

/* Two watches on one fd (libdbus does that); hang-up is reported. */
static void on_count(struct loop *loop, int fd, short revents, void *data)
{
	int *c = data;
	c[0]++;
	c[1] |= revents;
	(void)loop;
	(void)fd;
}

static void test_fd_shared_and_hangup(void)
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	int a[2] = {0}, b[2] = {0};
	struct loop_fd *wa = loop_fd_add(loop, p[0], POLLIN, on_count, a);
	struct loop_fd *wb = loop_fd_add(loop, p[0], POLLIN, on_count, b);
	REQUIRE(wa && wb);
	CHECK(loop_iterate(loop, 0));
	CHECK_INT_EQ(a[0] + b[0], 0);
	close(p[1]);
	loop_iterate(loop, 1000);
	CHECK_INT_EQ(a[0], 1);
	CHECK_INT_EQ(b[0], 1);
	CHECK(a[1] & POLLHUP);
	loop_fd_remove(wa);
	loop_fd_remove(wb);
	loop_destroy(loop);
	close(p[0]);
}

/* ---- loop.c: signals ---- */

struct sigseen {
	int usr1, hup;
};

static void on_signal(struct loop *loop, int signo, void *data)
{
	struct sigseen *s = data;
	if (signo == SIGUSR1)
		s->usr1++;
	else if (signo == SIGHUP)
		s->hup++;
	(void)loop;
}

static void test_signals(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct sigseen s = {0};
	REQUIRE(loop_signal_add(loop, SIGUSR1, on_signal, &s));
	REQUIRE(loop_signal_add(loop, SIGHUP, on_signal, &s));
	raise(SIGUSR1);
	raise(SIGHUP);
	for (int i = 0; i < 5 && (!s.usr1 || !s.hup); i++)
		loop_iterate(loop, 1000);
	CHECK_INT_EQ(s.usr1, 1);
	CHECK_INT_EQ(s.hup, 1);
	kill(getpid(), SIGUSR1);
	loop_iterate(loop, 1000);
	CHECK_INT_EQ(s.usr1, 2);
	/* Pending at destroy: consumed, not delivered with the default
	 * action (which would kill the test). */
	raise(SIGUSR1);
	loop_destroy(loop);
	sigset_t blocked;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	CHECK(!sigismember(&blocked, SIGUSR1));
	CHECK(!sigismember(&blocked, SIGHUP));
}

/* ---- loop.c: children ---- */

struct childseen {
	pid_t pid;
	int status;
	bool done;
};

static void on_child(struct loop *loop, pid_t pid, int status, void *data)
{
	struct childseen *c = data;
	c->pid = pid;
	c->status = status;
	c->done = true;
	(void)loop;
}

static bool is_zombie_or_alive(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	struct stat st;
	return stat(path, &st) == 0;
}

static void test_child_exit(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(3);
	struct childseen c = {0};
	REQUIRE(loop_child_watch(loop, pid, on_child, &c));
	CHECK(iterate_until(loop, &c.done, 5000));
	CHECK_INT_EQ(c.pid, pid);
	CHECK(WIFEXITED(c.status));
	CHECK_INT_EQ(WEXITSTATUS(c.status), 3);
	/* Reaped: no zombie left. */
	int st;
	errno = 0;
	CHECK_INT_EQ(waitpid(pid, &st, WNOHANG), -1);
	CHECK_INT_EQ(errno, ECHILD);
	CHECK(!is_zombie_or_alive(pid));
	struct loop_stats stats;
	loop_get_stats(loop, &stats);
	/* No pidfd watch is left; only the fallback's SIGCHLD signalfd
	 * (valgrind has no pidfd_open) may stay. */
	unsigned base_fds = stats.fds;
	CHECK(base_fds <= 1);

	/* Killed by a signal. */
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	c = (struct childseen){0};
	REQUIRE(loop_child_watch(loop, pid, on_child, &c));
	kill(pid, SIGKILL);
	CHECK(iterate_until(loop, &c.done, 5000));
	CHECK(WIFSIGNALED(c.status));
	CHECK_INT_EQ(WTERMSIG(c.status), SIGKILL);
	loop_get_stats(loop, &stats);
	CHECK_INT_EQ(stats.children, 0);
	CHECK_INT_EQ(stats.fds, base_fds);
	if (getenv("VMO_LOOP_NO_PIDFD"))
		CHECK_INT_EQ(stats.fds, 1);
	loop_destroy(loop);
}

static void test_child_unwatched_still_reaped(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	int gate[2];
	REQUIRE(pipe2(gate, O_CLOEXEC) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char ch;
		close(gate[1]);
		if (read(gate[0], &ch, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(gate[0]);
	struct childseen c = {0};
	REQUIRE(loop_child_watch(loop, pid, on_child, &c));
	loop_child_unwatch(loop, pid); /* its owner lost interest */
	close(gate[1]);                /* now let it exit */
	int64_t end = loop_now_ms() + 5000;
	struct loop_stats stats;
	do {
		loop_iterate(loop, 100);
		loop_get_stats(loop, &stats);
	} while (stats.children > 0 && loop_now_ms() < end);
	CHECK_INT_EQ(stats.children, 0);
	CHECK(!c.done);
	CHECK(!is_zombie_or_alive(pid));
	loop_destroy(loop);
}

/* The same through the SIGCHLD fallback used where pidfd_open is missing
 * (kernels before 5.3, valgrind 3.19). */
static void test_child_exit_sigchld_fallback(void)
{
	setenv("VMO_LOOP_NO_PIDFD", "1", 1);
	test_child_exit();
	test_child_unwatched_still_reaped();
	unsetenv("VMO_LOOP_NO_PIDFD");
	sigset_t blocked;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	CHECK(!sigismember(&blocked, SIGCHLD)); /* restored by loop_destroy */
}

/* ---- loop.c: deferred calls ---- */

struct deferlog {
	char seq[32];
	int n;
	struct loop *loop;
};

static void on_defer(struct loop *loop, void *data);

static void defer_push(struct deferlog *d, char ch)
{
	if (d->n < 31)
		d->seq[d->n++] = ch;
}

static void on_defer_a(struct loop *loop, void *data)
{
	defer_push(data, 'a');
	loop_defer(loop, on_defer, data); /* from a deferred call: next iteration */
}

static void on_defer(struct loop *loop, void *data)
{
	defer_push(data, 'n');
	(void)loop;
}

static void on_defer_b(struct loop *loop, void *data)
{
	defer_push(data, 'b');
	(void)loop;
}

static void on_defer_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	defer_push(data, 'T');
	loop_defer(loop, on_defer_b, data); /* runs after this dispatch, same iteration */
	defer_push(data, 't');
	(void)t;
}

static void test_defer_order(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct deferlog d = {0};
	loop_defer(loop, on_defer_a, &d);
	loop_defer(loop, on_defer_b, &d);
	CHECK_INT_EQ(d.n, 0); /* never run synchronously */
	int64_t start = loop_now_ms();
	loop_iterate(loop, 5000); /* runs a b, then polls without blocking */
	CHECK(loop_now_ms() - start < 5000); /* did not wait out the poll timeout */
	CHECK_STR_EQ(d.seq, "abn");
	struct loop_timer *t = loop_timer_add(loop, 0, 0, on_defer_timer, &d);
	REQUIRE(t);
	loop_iterate(loop, 1000);
	CHECK_STR_EQ(d.seq, "abnTtb");
	loop_defer(loop, on_defer_b, &d);
	loop_destroy(loop); /* runs what is left */
	CHECK_STR_EQ(d.seq, "abnTtbb");
}

static void on_quit_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	loop_quit(loop, 42);
	(void)t;
	(void)data;
}

static void test_run_quit(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	REQUIRE(loop_timer_add(loop, 20, 0, on_quit_timer, NULL));
	CHECK(!loop_quitting(loop));
	CHECK_INT_EQ(loop_run(loop), 42);
	CHECK(loop_quitting(loop));
	CHECK(!loop_iterate(loop, 0));
	loop_destroy(loop);
	loop_destroy(NULL);
}

/* ---- loop.c: idle proof ---- */

struct idle {
	uint64_t start;
	uint64_t at_fire;
	int64_t fired_after_ms;
	int64_t start_ms;
	bool done;
};

static void on_idle_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct idle *id = data;
	id->at_fire = loop_iterations(loop) - id->start;
	id->fired_after_ms = loop_now_ms() - id->start_ms;
	id->done = true;
	(void)t;
}

static void on_silent(struct loop *loop, int fd, short revents, void *data)
{
	int *woken = data;
	(*woken)++;
	(void)loop;
	(void)fd;
	(void)revents;
}

/* Measures poll() returns over one idle second: 1 means the only wake-up
 * was the measuring timer itself. */
static uint64_t idle_iterations(struct loop *loop, const char *what)
{
	struct idle id = {.start = loop_iterations(loop), .start_ms = loop_now_ms()};
	struct loop_timer *t = loop_timer_add(loop, 1000, 0, on_idle_timer, &id);
	if (!t)
		return UINT64_MAX;
	iterate_until(loop, &id.done, 5000);
	loop_timer_remove(t);
	fprintf(stderr, "idle %s: %llu poll() returns in %lld ms\n", what,
	        (unsigned long long)id.at_fire, (long long)id.fired_after_ms);
	CHECK(id.fired_after_ms >= 1000);
	return id.done ? id.at_fire : UINT64_MAX;
}

static void test_idle_plain(void)
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	int woken = 0;
	REQUIRE(loop_fd_add(loop, p[0], POLLIN, on_silent, &woken));
	CHECK_INT_EQ(idle_iterations(loop, "fd watch"), 1);
	CHECK_INT_EQ(woken, 0);
	loop_destroy(loop);
	close(p[0]);
	close(p[1]);
}

/* ---- loop-dbus.c: the libdbus-1 adapter ---- */

struct dbus_daemon {
	pid_t pid;
	char address[512];
};

static bool dbus_daemon_start(struct dbus_daemon *d)
{
	test_require_program("dbus-daemon");
	char *out = NULL;
	int rc = test_sh_out(&out, "dbus-daemon --session --fork --print-address=1 --print-pid=1");
	if (rc != 0 || !out) {
		fprintf(stderr, "dbus-daemon failed (%d)\n", rc);
		free(out);
		return false;
	}
	d->pid = 0;
	d->address[0] = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		if (strchr(line, '='))
			snprintf(d->address, sizeof(d->address), "%s", line);
		else if (atoi(line) > 0)
			d->pid = atoi(line);
	}
	free(out);
	return d->pid > 0 && d->address[0];
}

static void dbus_daemon_stop(struct dbus_daemon *d)
{
	if (d->pid > 0)
		kill(d->pid, SIGTERM);
}

static DBusConnection *dbus_connect(const char *address)
{
	DBusError err;
	dbus_error_init(&err);
	DBusConnection *conn = dbus_connection_open_private(address, &err);
	if (!conn) {
		fprintf(stderr, "connect: %s\n", err.message);
		dbus_error_free(&err);
		return NULL;
	}
	if (!dbus_bus_register(conn, &err)) {
		fprintf(stderr, "register: %s\n", err.message);
		dbus_error_free(&err);
		dbus_connection_close(conn);
		dbus_connection_unref(conn);
		return NULL;
	}
	dbus_connection_set_exit_on_disconnect(conn, FALSE);
	return conn;
}

static void dbus_disconnect(DBusConnection *conn)
{
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
}

struct reply {
	bool done;
	bool is_error;
	char text[256];
	struct loop *detach_loop; /* detach the connection from inside the callback */
	DBusConnection *conn;
	int *counter;
};

static void on_reply(DBusPendingCall *pending, void *data)
{
	struct reply *r = data;
	DBusMessage *msg = dbus_pending_call_steal_reply(pending);
	r->done = true;
	if (r->counter)
		(*r->counter)++;
	if (msg) {
		r->is_error = dbus_message_get_type(msg) == DBUS_MESSAGE_TYPE_ERROR;
		const char *s = NULL;
		if (!r->is_error && dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &s,
		                                          DBUS_TYPE_INVALID))
			snprintf(r->text, sizeof(r->text), "%s", s);
		else if (r->is_error)
			snprintf(r->text, sizeof(r->text), "%s", dbus_message_get_error_name(msg));
		dbus_message_unref(msg);
	}
	if (r->detach_loop)
		loop_dbus_detach(r->detach_loop, r->conn);
}

static bool call_async(DBusConnection *conn, const char *method, struct reply *r,
                       const char *big_arg)
{
	DBusMessage *msg = dbus_message_new_method_call(
		"org.freedesktop.DBus", "/org/freedesktop/DBus",
		big_arg ? "org.freedesktop.DBus.Peer" : "org.freedesktop.DBus", method);
	if (!msg)
		return false;
	if (big_arg)
		dbus_message_append_args(msg, DBUS_TYPE_STRING, &big_arg, DBUS_TYPE_INVALID);
	DBusPendingCall *pending = NULL;
	bool ok = dbus_connection_send_with_reply(conn, msg, &pending, 10000) && pending;
	dbus_message_unref(msg);
	if (!ok)
		return false;
	dbus_pending_call_set_notify(pending, on_reply, r, NULL);
	dbus_pending_call_unref(pending);
	return true;
}

static void test_dbus_adapter(void)
{
	struct dbus_daemon d;
	REQUIRE(dbus_daemon_start(&d));
	DBusConnection *conn = dbus_connect(d.address);
	REQUIRE(conn);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	REQUIRE(loop_dbus_attach(loop, conn));
	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK(st.fds >= 1);
	CHECK_INT_EQ(st.dbus_conns, 1);

	/* One async call, reply through the loop. */
	struct reply r = {0};
	REQUIRE(call_async(conn, "GetId", &r, NULL));
	CHECK(iterate_until(loop, &r.done, 5000));
	CHECK(!r.is_error);
	CHECK_INT_EQ(strlen(r.text), 32);

	/* A burst: 50 calls, every reply dispatched. */
	int replies = 0;
	struct reply many[50];
	for (int i = 0; i < 50; i++) {
		many[i] = (struct reply){.counter = &replies};
		REQUIRE(call_async(conn, "GetId", &many[i], NULL));
	}
	int64_t end = loop_now_ms() + 5000;
	while (replies < 50 && loop_now_ms() < end)
		loop_iterate(loop, 1000);
	CHECK_INT_EQ(replies, 50);

	/* A 4 MiB message cannot be written at once: libdbus toggles its
	 * write watch on and off until the socket took everything. */
	size_t big_len = 4u << 20;
	char *big = malloc(big_len + 1);
	REQUIRE(big);
	memset(big, 'v', big_len);
	big[big_len] = 0;
	struct reply rb = {0};
	REQUIRE(call_async(conn, "Ping", &rb, big));
	free(big);
	uint64_t before = loop_iterations(loop);
	CHECK(iterate_until(loop, &rb.done, 10000));
	CHECK(loop_iterations(loop) - before > 1);
	fprintf(stderr, "4 MiB call answered after %llu iterations (%s)\n",
	        (unsigned long long)(loop_iterations(loop) - before),
	        rb.is_error ? rb.text : "ok");

	/* Detach from inside a reply callback (dispatch is on the stack). */
	struct reply rd = {.detach_loop = loop, .conn = conn};
	REQUIRE(call_async(conn, "GetId", &rd, NULL));
	CHECK(iterate_until(loop, &rd.done, 5000));
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.dbus_conns, 0);
	CHECK_INT_EQ(st.fds, 0);
	CHECK_INT_EQ(st.timers, 0);
	loop_iterate(loop, 0);

	/* Attach again, then detach from outside. */
	REQUIRE(loop_dbus_attach(loop, conn));
	struct reply r2 = {0};
	REQUIRE(call_async(conn, "GetId", &r2, NULL));
	CHECK(iterate_until(loop, &r2.done, 5000));
	CHECK_STR_EQ(r2.text, r.text);
	loop_dbus_detach(loop, conn);
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.fds, 0);
	CHECK_INT_EQ(st.timers, 0);

	/* Left attached: loop_destroy detaches. */
	REQUIRE(loop_dbus_attach(loop, conn));
	loop_destroy(loop);
	dbus_disconnect(conn);
	dbus_daemon_stop(&d);
}

static void test_idle_dbus(void)
{
	struct dbus_daemon d;
	REQUIRE(dbus_daemon_start(&d));
	DBusConnection *conn = dbus_connect(d.address);
	REQUIRE(conn);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	REQUIRE(loop_dbus_attach(loop, conn));
	/* Settle first: NameAcquired and a round trip. */
	struct reply r = {0};
	REQUIRE(call_async(conn, "GetId", &r, NULL));
	CHECK(iterate_until(loop, &r.done, 5000));
	while (loop_iterate(loop, 50) && loop_iterations(loop) < 20) {
	}
	CHECK_INT_EQ(idle_iterations(loop, "dbus"), 1);
	loop_destroy(loop);
	dbus_disconnect(conn);
	dbus_daemon_stop(&d);
}

/* ---- loop-virt.c: libvirt's event implementation ---- */

struct virt_events {
	int lifecycle;
	int last_event;
	bool done;
	int freed;
};

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	struct virt_events *e = opaque;
	e->lifecycle++;
	e->last_event = event;
	if (event == VIR_DOMAIN_EVENT_STOPPED)
		e->done = true;
	(void)conn;
	(void)dom;
	(void)detail;
	return 0;
}

static void on_lifecycle_free(void *opaque)
{
	struct virt_events *e = opaque;
	e->freed++;
}

static void test_virt_adapter(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	REQUIRE(loop_virt_register(loop));
	virConnectPtr watcher = virConnectOpen("test:///default");
	virConnectPtr actor = virConnectOpen("test:///default");
	REQUIRE(watcher && actor);
	struct virt_events ev = {0};
	int cb_id = virConnectDomainEventRegisterAny(watcher, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	                                             VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), &ev,
	                                             on_lifecycle_free);
	REQUIRE(cb_id >= 0);
	virDomainPtr dom = virDomainLookupByName(actor, "test");
	REQUIRE(dom);
	REQUIRE(virDomainDestroy(dom) == 0);
	virDomainFree(dom);
	CHECK_INT_EQ(ev.lifecycle, 0); /* only delivered through the loop */
	CHECK(iterate_until(loop, &ev.done, 5000));
	CHECK_INT_EQ(ev.last_event, VIR_DOMAIN_EVENT_STOPPED);

	struct loop_stats st;
	loop_get_stats(loop, &st);
	CHECK(st.virt_timeouts >= 1);
	fprintf(stderr, "libvirt registered %u handles, %u timeouts\n", st.virt_handles,
	        st.virt_timeouts);

	CHECK_INT_EQ(virConnectDomainEventDeregisterAny(watcher, cb_id), 0);
	for (int i = 0; i < 5 && !ev.freed; i++)
		loop_iterate(loop, 100);
	CHECK_INT_EQ(ev.freed, 1);
	CHECK_INT_EQ(virConnectClose(actor), 0);
	CHECK_INT_EQ(virConnectClose(watcher), 0);
	/* libvirt's free callbacks run from the next iteration. */
	loop_iterate(loop, 0);
	loop_get_stats(loop, &st);
	CHECK_INT_EQ(st.virt_handles, 0);
	CHECK_INT_EQ(st.virt_timeouts, 0);
	CHECK(st.virt_ff_calls >= 1);
	CHECK_INT_EQ(st.timers, 0);
	fprintf(stderr, "libvirt free callbacks run: %llu\n",
	        (unsigned long long)st.virt_ff_calls);
	loop_destroy(loop);
}

/* ---- loop-glib.c: GLib's default main context ---- */

struct gseen {
	char seq[16];
	int n;
	int ticks;
};

static gboolean on_g_idle(gpointer data)
{
	struct gseen *g = data;
	if (g->n < 15)
		g->seq[g->n++] = 'i';
	return G_SOURCE_REMOVE;
}

static gboolean on_g_timeout(gpointer data)
{
	struct gseen *g = data;
	if (g->n < 15)
		g->seq[g->n++] = 't';
	return ++g->ticks < 3 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void test_glib_adapter(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	REQUIRE(loop_glib_attach(loop));
	struct gseen g = {0};
	int64_t start = loop_now_ms();
	g_timeout_add(30, on_g_timeout, &g);
	g_idle_add(on_g_idle, &g);
	while (g.ticks < 3 && loop_now_ms() - start < 3000)
		loop_iterate(loop, 3000);
	CHECK_STR_EQ(g.seq, "ittt");
	fprintf(stderr, "glib: 3 ticks of 30 ms after %lld ms\n", (long long)(loop_now_ms() - start));
	/* GLib re-arms from the time it cached for the iteration, which may
	 * trail the real dispatch time by a little: allow that slack. */
	CHECK(loop_now_ms() - start >= 85);
	CHECK_INT_EQ(idle_iterations(loop, "glib"), 1);
	loop_destroy(loop);
	/* Released: another owner can take the context. */
	CHECK(g_main_context_acquire(g_main_context_default()));
	g_main_context_release(g_main_context_default());
}

/* Everything at once, as the applet runs: a D-Bus connection, a libvirt
 * connection with a lifecycle callback, GLib, signals, a silent pipe. */
static void test_idle_all(void)
{
	struct dbus_daemon d;
	REQUIRE(dbus_daemon_start(&d));
	DBusConnection *conn = dbus_connect(d.address);
	REQUIRE(conn);
	struct loop *loop = loop_create();
	REQUIRE(loop);
	REQUIRE(loop_dbus_attach(loop, conn));
	REQUIRE(loop_glib_attach(loop));
	REQUIRE(loop_virt_register(loop));
	struct sigseen s = {0};
	REQUIRE(loop_signal_add(loop, SIGHUP, on_signal, &s));
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	int woken = 0;
	REQUIRE(loop_fd_add(loop, p[0], POLLIN, on_silent, &woken));
	virConnectPtr vc = virConnectOpen("test:///default");
	REQUIRE(vc);
	struct virt_events ev = {0};
	int cb_id = virConnectDomainEventRegisterAny(vc, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	                                             VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), &ev,
	                                             on_lifecycle_free);
	REQUIRE(cb_id >= 0);
	struct reply r = {0};
	REQUIRE(call_async(conn, "GetId", &r, NULL));
	CHECK(iterate_until(loop, &r.done, 5000));
	for (int i = 0; i < 10; i++)
		loop_iterate(loop, 20);
	CHECK_INT_EQ(idle_iterations(loop, "dbus+glib+libvirt+signal+fd"), 1);
	CHECK_INT_EQ(woken, 0);
	virConnectDomainEventDeregisterAny(vc, cb_id);
	virConnectClose(vc);
	loop_iterate(loop, 0);
	CHECK_INT_EQ(ev.freed, 1);
	loop_destroy(loop);
	close(p[0]);
	close(p[1]);
	dbus_disconnect(conn);
	dbus_daemon_stop(&d);
}

/* ---- log ---- */

static void test_log_levels(void)
{
	/* stderr into a file so the lines can be read back. */
	char path[4200];
	snprintf(path, sizeof(path), "%s/log.txt", test_tmpdir());
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	int saved = dup(STDERR_FILENO);
	REQUIRE(saved >= 0);
	dup2(fd, STDERR_FILENO);

	unsetenv("JOURNAL_STREAM");
	log_init(LOG_INFO);
	log_debug("hidden %d", 1);
	log_info("shown %d", 2);
	log_set_level(LOG_DEBUG);
	CHECK_INT_EQ(log_get_level(), LOG_DEBUG);
	log_debug("multi\nline");

	/* Journal stream: only trusted when it names our stderr. */
	struct stat st;
	fstat(STDERR_FILENO, &st);
	char js[64];
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	log_init(LOG_WARN);
	log_info("hidden in journal");
	log_warn("warned");
	log_err("failed");
	setenv("JOURNAL_STREAM", "1:1", 1);
	log_init(LOG_WARN);
	log_err("not journal");
	unsetenv("JOURNAL_STREAM");
	log_init(LOG_INFO);

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char buf[2048] = {0};
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	REQUIRE(n > 0);
	fprintf(stderr, "log output:\n%s", buf);
	CHECK(!strstr(buf, "hidden"));
	CHECK(strstr(buf, "[info] shown 2\n") != NULL);
	CHECK(strstr(buf, "[debug] multi line\n") != NULL);
	CHECK(strstr(buf, "\n<4>warned\n<3>failed\n") != NULL);
	CHECK(strstr(buf, "[error] not journal\n") != NULL);
}

static const struct test_case cases[] = {
	{"timers_order", test_timers_order},
	{"timers_cancel_rearm", test_timers_cancel_rearm},
	{"timer_repeat", test_timer_repeat},
	{"timer_remove_in_callbacks", test_timer_remove_in_callbacks},
	{"timer_zero_delay_per_iteration", test_timer_zero_delay_per_iteration},
	{"fd_remove_during_dispatch", test_fd_remove_during_dispatch},
	{"fd_remove_self_only", test_fd_remove_self_only},
	{"fd_toggle_and_add_during_dispatch", test_fd_toggle_and_add_during_dispatch},
	{"fd_shared_and_hangup", test_fd_shared_and_hangup},
	{"signals", test_signals},
	{"child_exit", test_child_exit},
	{"child_unwatched_still_reaped", test_child_unwatched_still_reaped},
	{"child_exit_sigchld_fallback", test_child_exit_sigchld_fallback},
	{"defer_order", test_defer_order},
	{"run_quit", test_run_quit},
	{"idle_plain", test_idle_plain},
	{"dbus_adapter", test_dbus_adapter},
	{"idle_dbus", test_idle_dbus},
	{"virt_adapter", test_virt_adapter},
	{"glib_adapter", test_glib_adapter},
	{"idle_all", test_idle_all},
	{"log_levels", test_log_levels},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
