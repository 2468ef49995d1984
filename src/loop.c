/* The one poll(2) loop of vmoverlay. Every source (fd watches, timers,
 * signalfd, pidfds, libdbus, libvirt, GLib) becomes an entry of one pollfd
 * array built per iteration, and the poll timeout is the earliest timer, so
 * an idle process sleeps in poll() with timeout -1 and never wakes up.
 * This file is the core; the adapters for libdbus-1, libvirt and GLib are
 * loop-dbus.c, loop-virt.c and loop-glib.c beside it (loop-private.h). */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#include "loop-private.h"

/* A poll() at least this long counts as going to sleep (heap trim). */
#define LOOP_TRIM_SLEEP_MS 1000

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t loop_now_ms(void)
{
	return now_ns() / 1000000;
}

struct loop *loop_create(void)
{
	struct loop *loop = calloc(1, sizeof(*loop));
	if (!loop) {
		log_err("loop: out of memory");
		return NULL;
	}
	list_init(&loop->fds);
	list_init(&loop->dead_fds);
	list_init(&loop->timers);
	list_init(&loop->armed);
	list_init(&loop->dead_timers);
	list_init(&loop->signals);
	list_init(&loop->children);
	list_init(&loop->dbus_conns);
	list_init(&loop->virt_handles);
	list_init(&loop->virt_timeouts);
	sigemptyset(&loop->sigmask);
	loop->sigfd = -1;
	return loop;
}

/* ---- fd watches ---- */

struct loop_fd *loop_fd_add(struct loop *loop, int fd, short events, loop_fd_cb cb, void *data)
{
	if (fd < 0 || !cb)
		return NULL;
	struct loop_fd *w = calloc(1, sizeof(*w));
	if (!w) {
		log_err("loop: out of memory");
		return NULL;
	}
	w->loop = loop;
	w->fd = fd;
	w->events = events & (POLLIN | POLLOUT | POLLPRI);
	w->cb = cb;
	w->data = data;
	list_insert_before(&loop->fds, &w->link);
	return w;
}

void loop_fd_update(struct loop_fd *w, short events)
{
	if (w && !w->removed)
		w->events = events & (POLLIN | POLLOUT | POLLPRI);
}

void loop_fd_remove(struct loop_fd *w)
{
	if (!w || w->removed)
		return;
	w->removed = true;
	list_remove(&w->link);
	/* The iteration's pollfd array may still point at it. */
	if (w->loop->in_iterate)
		list_insert_before(&w->loop->dead_fds, &w->link);
	else
		free(w);
}

/* ---- timers ---- */

static void timer_disarm(struct loop_timer *t)
{
	if (t->armed) {
		list_remove(&t->armed_link);
		t->armed = false;
	}
}

static void timer_schedule(struct loop_timer *t, int64_t deadline_ns)
{
	struct loop *loop = t->loop;
	timer_disarm(t);
	t->deadline_ns = deadline_ns;
	t->seq = ++loop->arm_seq;
	t->armed = true;
	/* Equal deadlines keep their arming order. */
	struct list *pos = loop->armed.next;
	while (pos != &loop->armed) {
		struct loop_timer *o = container_of(pos, struct loop_timer, armed_link);
		if (o->deadline_ns > deadline_ns)
			break;
		pos = pos->next;
	}
	list_insert_before(pos, &t->armed_link);
}

void loop_timer_arm(struct loop_timer *t, int64_t delay_ms, int64_t interval_ms)
{
	if (!t || t->removed)
		return;
	t->interval_ns = interval_ms > 0 ? interval_ms * 1000000 : 0;
	if (delay_ms < 0)
		timer_disarm(t);
	else
		timer_schedule(t, now_ns() + delay_ms * 1000000);
}

struct loop_timer *loop_timer_add(struct loop *loop, int64_t delay_ms, int64_t interval_ms,
                                  loop_timer_cb cb, void *data)
{
	if (!cb)
		return NULL;
	struct loop_timer *t = calloc(1, sizeof(*t));
	if (!t) {
		log_err("loop: out of memory");
		return NULL;
	}
	t->loop = loop;
	t->cb = cb;
	t->data = data;
	list_init(&t->armed_link);
	list_insert_before(&loop->timers, &t->link);
	loop_timer_arm(t, delay_ms, interval_ms);
	return t;
}

void loop_timer_remove(struct loop_timer *t)
{
	if (!t || t->removed)
		return;
	timer_disarm(t);
	t->removed = true;
	list_remove(&t->link);
	if (t->loop->in_iterate)
		list_insert_before(&t->loop->dead_timers, &t->link);
	else
		free(t);
}

static void dispatch_timers(struct loop *loop)
{
	int64_t now = now_ns();
	uint64_t limit = loop->arm_seq;
	for (;;) {
		/* Rescan from the head each time: callbacks may add, rearm or
		 * remove any timer, including the next one. */
		struct loop_timer *due = NULL;
		for (struct list *pos = loop->armed.next; pos != &loop->armed; pos = pos->next) {
			struct loop_timer *t = container_of(pos, struct loop_timer, armed_link);
			if (t->deadline_ns > now)
				break;
			if (t->seq <= limit) {
				due = t;
				break;
			}
		}
		if (!due)
			return;
		if (due->interval_ns > 0) {
			int64_t next = due->deadline_ns + due->interval_ns;
			if (next <= now) /* we were late: skip missed ticks, no burst */
				next = now + due->interval_ns;
			timer_schedule(due, next);
		} else {
			timer_disarm(due);
		}
		due->cb(loop, due, due->data);
	}
}

/* ---- deferred calls ---- */

void loop_defer(struct loop *loop, loop_defer_cb cb, void *data)
{
	struct loop_deferred *d = calloc(1, sizeof(*d));
	if (!d) {
		log_err("loop: out of memory, deferred call dropped");
		return;
	}
	d->cb = cb;
	d->data = data;
	if (loop->defer_tail)
		loop->defer_tail->next = d;
	else
		loop->defer_head = d;
	loop->defer_tail = d;
}

void loop_defer_cancel(struct loop *loop, loop_defer_cb cb, void *data)
{
	struct loop_deferred *lists[] = {loop->defer_running, loop->defer_head};
	for (size_t i = 0; i < 2; i++)
		for (struct loop_deferred *d = lists[i]; d; d = d->next)
			if (d->cb == cb && d->data == data)
				d->cb = NULL;
}

/* Runs the calls queued so far; calls they queue wait for the next run. */
static void run_deferred(struct loop *loop)
{
	loop->defer_running = loop->defer_head;
	loop->defer_head = loop->defer_tail = NULL;
	struct loop_deferred *d;
	while ((d = loop->defer_running)) {
		loop->defer_running = d->next;
		loop_defer_cb cb = d->cb;
		void *data = d->data;
		free(d);
		if (cb)
			cb(loop, data);
	}
}

/* ---- signals ---- */

static void on_signalfd(struct loop *loop, int fd, short revents, void *data)
{
	struct signalfd_siginfo si;
	ssize_t n;
	while ((n = read(fd, &si, sizeof(si))) == (ssize_t)sizeof(si)) {
		list_for_each_safe (pos, tmp, &loop->signals) {
			struct loop_signal *s = container_of(pos, struct loop_signal, link);
			if (s->signo == (int)si.ssi_signo)
				s->cb(loop, s->signo, s->data);
		}
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		log_err("loop: reading signalfd: %s", strerror(errno));
}

bool loop_signal_add(struct loop *loop, int signo, loop_signal_cb cb, void *data)
{
	struct loop_signal *s = calloc(1, sizeof(*s));
	if (!s) {
		log_err("loop: out of memory");
		return false;
	}
	s->signo = signo;
	s->cb = cb;
	s->data = data;

	sigset_t one, newmask = loop->sigmask;
	sigemptyset(&one);
	if (sigaddset(&one, signo) < 0 || sigaddset(&newmask, signo) < 0) {
		log_err("loop: invalid signal %d", signo);
		goto error;
	}
	if (!loop->sigmask_saved) {
		sigprocmask(SIG_BLOCK, NULL, &loop->orig_sigmask);
		loop->sigmask_saved = true;
	}
	/* Blocked so that it is only ever delivered through the signalfd. */
	if (sigprocmask(SIG_BLOCK, &one, NULL) < 0) {
		log_err("loop: sigprocmask: %s", strerror(errno));
		goto error;
	}
	int fd = signalfd(loop->sigfd, &newmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		log_err("loop: signalfd: %s", strerror(errno));
		goto error;
	}
	if (loop->sigfd < 0) {
		loop->sigwatch = loop_fd_add(loop, fd, POLLIN, on_signalfd, NULL);
		if (!loop->sigwatch) {
			close(fd);
			goto error;
		}
		loop->sigfd = fd;
	}
	loop->sigmask = newmask;
	list_insert_before(&loop->signals, &s->link);
	return true;

error:
	free(s);
	return false;
}

void loop_restore_sigmask(const struct loop *loop)
{
	if (loop && loop->sigmask_saved)
		sigprocmask(SIG_SETMASK, &loop->orig_sigmask, NULL);
}

/* ---- children ---- */

static void child_free(struct loop_child *c)
{
	loop_fd_remove(c->watch);
	if (c->pidfd >= 0)
		close(c->pidfd);
	list_remove(&c->link);
	free(c);
}

/* Reaps c if it has exited and runs its callback; true if it was reaped. */
static bool child_try_reap(struct loop *loop, struct loop_child *c)
{
	int status = 0;
	pid_t r = waitpid(c->pid, &status, WNOHANG);
	if (r == 0 || (r < 0 && errno == EINTR))
		return false; /* not exited yet */
	if (r < 0) {
		/* Someone else reaped it (a stray waitpid(-1)); no status. */
		log_warn("loop: child %d already reaped: %s", (int)c->pid, strerror(errno));
		status = -1;
	}
	pid_t pid = c->pid;
	loop_child_cb cb = c->cb;
	void *cb_data = c->data;
	child_free(c);
	if (cb)
		cb(loop, pid, status, cb_data);
	return true;
}

static void on_pidfd(struct loop *loop, int fd, short revents, void *data)
{
	child_try_reap(loop, data);
}

/* Fallback: SIGCHLD says "some child changed", so every child without a
 * pidfd is asked. Only our own pids are waited for, never waitpid(-1),
 * so children other modules wait for synchronously are left alone. */
static void children_scan(struct loop *loop)
{
	bool again = true;
	while (again) {
		again = false;
		list_for_each_safe (pos, tmp, &loop->children) {
			struct loop_child *c = container_of(pos, struct loop_child, link);
			if (c->pidfd < 0 && child_try_reap(loop, c)) {
				again = true; /* the callback may have changed the list */
				break;
			}
		}
	}
}

static void on_sigchld(struct loop *loop, int signo, void *data)
{
	children_scan(loop);
}

static void children_scan_deferred(struct loop *loop, void *data)
{
	children_scan(loop);
}

bool loop_child_watch(struct loop *loop, pid_t pid, loop_child_cb cb, void *data)
{
	if (pid <= 0)
		return false;
	int pidfd;
	if (getenv("VMO_LOOP_NO_PIDFD")) { /* lets the tests cover the fallback */
		pidfd = -1;
		errno = ENOSYS;
	} else {
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	}
	if (pidfd < 0 && errno != ENOSYS) {
		log_err("loop: pidfd_open(%d): %s", (int)pid, strerror(errno));
		return false;
	}
	if (pidfd < 0 && !loop->sigchld_scan) {
		log_debug("loop: no pidfd_open, watching children through SIGCHLD");
		if (!loop_signal_add(loop, SIGCHLD, on_sigchld, NULL))
			return false;
		loop->sigchld_scan = true;
	}
	struct loop_child *c = calloc(1, sizeof(*c));
	if (!c) {
		if (pidfd >= 0)
			close(pidfd);
		log_err("loop: out of memory");
		return false;
	}
	c->loop = loop;
	c->pid = pid;
	c->pidfd = pidfd;
	c->cb = cb;
	c->data = data;
	if (pidfd >= 0) {
		c->watch = loop_fd_add(loop, pidfd, POLLIN, on_pidfd, c);
		if (!c->watch) {
			close(pidfd);
			free(c);
			return false;
		}
	} else {
		/* It may have exited before SIGCHLD was routed to us. */
		loop_defer(loop, children_scan_deferred, NULL);
	}
	list_insert_before(&loop->children, &c->link);
	return true;
}

void loop_child_unwatch(struct loop *loop, pid_t pid)
{
	list_for_each_safe (pos, tmp, &loop->children) {
		struct loop_child *c = container_of(pos, struct loop_child, link);
		if (c->pid == pid)
			c->cb = NULL;
	}
}

/* ---- iteration ---- */

bool loop_ensure_pfds(struct loop *loop, size_t n)
{
	if (n <= loop->pfd_cap)
		return true;
	size_t cap = loop->pfd_cap ? loop->pfd_cap : 16;
	while (cap < n)
		cap *= 2;
	struct pollfd *p = realloc(loop->pfds, cap * sizeof(*p));
	if (!p)
		return false;
	loop->pfds = p;
	struct loop_fd **o = realloc(loop->pfd_owner, cap * sizeof(*o));
	if (!o)
		return false;
	loop->pfd_owner = o;
	loop->pfd_cap = cap;
	return true;
}

/* min() where -1 means "no limit". */
int loop_timeout_min(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

static int timers_timeout(struct loop *loop)
{
	if (list_empty(&loop->armed))
		return -1;
	struct loop_timer *t = container_of(loop->armed.next, struct loop_timer, armed_link);
	int64_t diff = t->deadline_ns - now_ns();
	if (diff <= 0)
		return 0;
	/* Round up so poll never returns just before the deadline. */
	int64_t ms = (diff + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void dispatch_fds(struct loop *loop, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct loop_fd *w = loop->pfd_owner[i];
		short rev = loop->pfds[i].revents;
		/* Removed or paused since poll() (maybe by an earlier callback of
		 * this very loop): not dispatched. */
		if (!rev || w->removed || !w->events)
			continue;
		rev &= w->events | POLLERR | POLLHUP | POLLNVAL;
		if (!rev)
			continue;
		if (rev & POLLNVAL)
			log_warn("loop: fd %d is watched but not open", w->fd);
		w->cb(loop, w->fd, rev, w->data);
	}
}

static void free_dead(struct loop *loop)
{
	list_for_each_safe (pos, tmp, &loop->dead_fds)
		free(container_of(pos, struct loop_fd, link));
	list_init(&loop->dead_fds);
	list_for_each_safe (pos, tmp, &loop->dead_timers)
		free(container_of(pos, struct loop_timer, link));
	list_init(&loop->dead_timers);
}

bool loop_iterate(struct loop *loop, int timeout_ms)
{
	if (loop->in_iterate) {
		log_err("loop: loop_iterate() called from a callback; ignored");
		return !loop->quit;
	}
	if (loop->quit)
		return false;
	loop->in_iterate = true;

	run_deferred(loop);

	size_t nours = 0;
	list_for_each_safe (pos, tmp, &loop->fds) {
		struct loop_fd *w = container_of(pos, struct loop_fd, link);
		if (!w->events)
			continue;
		if (!loop_ensure_pfds(loop, nours + 1)) {
			log_err("loop: out of memory building the poll set");
			break;
		}
		loop->pfds[nours] = (struct pollfd){.fd = w->fd, .events = w->events};
		loop->pfd_owner[nours] = w;
		nours++;
	}

	int timeout = loop_timeout_min(timeout_ms, timers_timeout(loop));
	if (loop->defer_head || loop->quit)
		timeout = 0;

	int max_priority = 0, ngfds = 0;
	bool glib = loop->gctx != NULL;
	if (glib && !loop_glib_prepare(loop, nours, &timeout, &max_priority, &ngfds)) {
		log_err("loop: out of memory adding GLib's fds");
		ngfds = 0;
	}

	/* About to sleep for a while after doing something: give the heap
	 * pages that start-up, a big D-Bus reply or an operation freed back to
	 * the system (glibc keeps them resident otherwise: ~90 KiB of RssAnon
	 * after start-up, tests/bench/memory.sh). Only on the way into a long
	 * sleep and once per sleep, so an idle loop never wakes for it and a
	 * busy one does not pay for it on every event. */
	if ((timeout < 0 || timeout >= LOOP_TRIM_SLEEP_MS) && loop->iterations != loop->trimmed_at) {
		malloc_trim(0);
		loop->trimmed_at = loop->iterations;
	}
	int n = poll(loop->pfds, nours + (nfds_t)ngfds, timeout);
	loop->iterations++;
	if (n < 0) {
		if (errno != EINTR)
			log_err("loop: poll: %s", strerror(errno));
		for (size_t i = 0; i < nours + (size_t)ngfds; i++)
			loop->pfds[i].revents = 0;
	}

	if (n > 0)
		dispatch_fds(loop, nours);
	dispatch_timers(loop);
	if (glib)
		loop_glib_dispatch(loop, nours, max_priority, ngfds);
	run_deferred(loop);

	free_dead(loop);
	loop->in_iterate = false;
	return !loop->quit;
}

int loop_run(struct loop *loop)
{
	while (loop_iterate(loop, -1)) {
	}
	return loop->exit_code;
}

void loop_quit(struct loop *loop, int code)
{
	loop->quit = true;
	loop->exit_code = code;
}

bool loop_quitting(const struct loop *loop)
{
	return loop->quit;
}

uint64_t loop_iterations(const struct loop *loop)
{
	return loop->iterations;
}

void loop_get_stats(const struct loop *loop, struct loop_stats *st)
{
	*st = (struct loop_stats){0};
	for (const struct list *pos = loop->fds.next; pos != &loop->fds; pos = pos->next) {
		st->fds++;
		if (container_of(pos, struct loop_fd, link)->events)
			st->fds_polled++;
	}
	st->timers = list_length(&loop->timers);
	st->timers_armed = list_length(&loop->armed);
	for (const struct loop_deferred *d = loop->defer_head; d; d = d->next)
		st->defers += d->cb != NULL;
	st->children = list_length(&loop->children);
	st->dbus_conns = list_length(&loop->dbus_conns);
	st->virt_handles = list_length(&loop->virt_handles);
	st->virt_timeouts = list_length(&loop->virt_timeouts);
	st->virt_ff_calls = loop->virt_ff_calls;
}

/* ---- destruction ---- */

void loop_destroy(struct loop *loop)
{
	if (!loop)
		return;
	/* Pending deferred calls usually release things (libvirt's free
	 * callbacks), so they run; a few rounds for calls they queue. */
	for (int round = 0; round < 8 && loop->defer_head; round++)
		run_deferred(loop);

	loop_glib_release(loop);
	loop_dbus_release(loop);
	loop_virt_release(loop);

	list_for_each_safe (pos, tmp, &loop->children) {
		struct loop_child *c = container_of(pos, struct loop_child, link);
		int status;
		/* Reap it if it is done; a running child is left to init. */
		waitpid(c->pid, &status, WNOHANG);
		child_free(c);
	}

	if (loop->sigfd >= 0) {
		/* Consume what is pending before unblocking: a pending SIGUSR1
		 * would otherwise kill us on the spot. */
		struct signalfd_siginfo si;
		while (read(loop->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		}
		close(loop->sigfd);
	}
	if (loop->sigmask_saved)
		sigprocmask(SIG_SETMASK, &loop->orig_sigmask, NULL);
	list_for_each_safe (pos, tmp, &loop->signals)
		free(container_of(pos, struct loop_signal, link));

	list_for_each_safe (pos, tmp, &loop->fds)
		free(container_of(pos, struct loop_fd, link));
	list_for_each_safe (pos, tmp, &loop->timers)
		free(container_of(pos, struct loop_timer, link));
	free_dead(loop);
	for (struct loop_deferred *d = loop->defer_head, *next; d; d = next) {
		next = d->next;
		free(d);
	}
	free(loop->pfds);
	free(loop->pfd_owner);
	free(loop);
}
