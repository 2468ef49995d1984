/* The one poll(2) loop of vmoverlay. Every source (fd watches, timers,
 * signalfd, pidfds, libdbus, libvirt, GLib) becomes an entry of one pollfd
 * array built per iteration, and the poll timeout is the earliest timer, so
 * an idle process sleeps in poll() with timeout -1 and never wakes up. */
#include "loop.h"

#include <dbus/dbus.h>
#include <errno.h>
#include <glib.h>
#include <libvirt/libvirt.h>
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

/* A tiny intrusive doubly-linked list (wl_list style): O(1) removal of any
 * entry, which is what "remove from inside a callback" needs. */
struct list {
	struct list *prev, *next;
};

/* A poll() at least this long counts as going to sleep (heap trim). */
#define LOOP_TRIM_SLEEP_MS 1000

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define list_for_each_safe(pos, tmp, head)                                                     \
	for (struct list *pos = (head)->next, *tmp = pos->next; pos != (head);               \
	     pos = tmp, tmp = pos->next)

static void list_init(struct list *l)
{
	l->prev = l->next = l;
}

static bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* Inserts elm just before pos; with pos == head that appends. */
static void list_insert_before(struct list *pos, struct list *elm)
{
	elm->prev = pos->prev;
	elm->next = pos;
	pos->prev->next = elm;
	pos->prev = elm;
}

static void list_remove(struct list *elm)
{
	elm->prev->next = elm->next;
	elm->next->prev = elm->prev;
	list_init(elm);
}

struct loop_fd {
	struct loop *loop;
	struct list link; /* loop.fds, or loop.dead_fds once removed */
	int fd;
	short events; /* 0 = paused: not polled at all */
	bool removed;
	loop_fd_cb cb;
	void *data;
};

struct loop_timer {
	struct loop *loop;
	struct list link;       /* loop.timers, or loop.dead_timers once removed */
	struct list armed_link; /* loop.armed, sorted by deadline, when armed */
	bool armed;
	bool removed;
	int64_t deadline_ns;
	int64_t interval_ns;
	/* Arm sequence number: a timer (re)armed during the timer phase of an
	 * iteration waits for the next one, so delay 0 cannot starve the loop. */
	uint64_t seq;
	loop_timer_cb cb;
	void *data;
};

struct loop_deferred {
	struct loop_deferred *next;
	loop_defer_cb cb; /* NULL once cancelled */
	void *data;
};

struct loop_signal {
	struct list link;
	int signo;
	loop_signal_cb cb;
	void *data;
};

struct loop_child {
	struct list link;
	struct loop *loop;
	pid_t pid;
	int pidfd; /* -1: no pidfd_open (old kernel, valgrind): SIGCHLD scan */
	struct loop_fd *watch;
	loop_child_cb cb; /* NULL after loop_child_unwatch: still reaped */
	void *data;
};

struct loop_dbus {
	struct list link; /* loop.dbus_conns */
	struct loop *loop;
	DBusConnection *conn; /* referenced while attached */
	struct list watches;  /* struct loop_dbus_watch */
	struct list timeouts; /* struct loop_dbus_timeout */
	bool dispatch_queued;
	bool dispatching;
	bool detached; /* detached while dispatching: freed by the dispatcher */
};

struct loop_dbus_watch {
	struct list link;
	struct loop_dbus *ld;
	DBusWatch *watch;
	struct loop_fd *fd;
};

struct loop_dbus_timeout {
	struct list link;
	struct loop_dbus *ld;
	DBusTimeout *timeout;
	struct loop_timer *timer;
};

struct loop_virt_handle {
	struct list link; /* loop.virt_handles */
	struct loop *loop;
	int id;
	struct loop_fd *fd;
	virEventHandleCallback cb;
	void *opaque;
	virFreeCallback ff;
};

struct loop_virt_timeout {
	struct list link; /* loop.virt_timeouts */
	struct loop *loop;
	int id;
	int frequency;
	struct loop_timer *timer;
	virEventTimeoutCallback cb;
	void *opaque;
	virFreeCallback ff;
};

struct loop {
	struct list fds;
	struct list dead_fds; /* removed during an iteration, freed at its end */
	struct list timers;
	struct list armed;
	struct list dead_timers;
	uint64_t arm_seq;

	struct loop_deferred *defer_head, *defer_tail;
	struct loop_deferred *defer_running; /* the batch being run */

	/* Per-iteration poll set: our watches first, then GLib's fds. */
	struct pollfd *pfds;
	struct loop_fd **pfd_owner;
	size_t pfd_cap;

	int sigfd;
	struct loop_fd *sigwatch;
	sigset_t sigmask;      /* signals routed to sigfd */
	sigset_t orig_sigmask; /* mask before the first loop_signal_add */
	bool sigmask_saved;
	struct list signals;

	struct list children;
	bool sigchld_scan; /* SIGCHLD routed to the signalfd for the fallback */
	struct list dbus_conns;
	struct list virt_handles;
	struct list virt_timeouts;
	int virt_next_id;
	uint64_t virt_ff_calls;

	GMainContext *gctx; /* acquired while attached */
	GPollFD *gfds;
	int gfds_cap;

	bool in_iterate;
	bool quit;
	int exit_code;
	uint64_t iterations;
	uint64_t trimmed_at; /* iterations at the last malloc_trim() */
};

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

static void defer_cancel(struct loop *loop, loop_defer_cb cb, void *data)
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

static bool ensure_pfds(struct loop *loop, size_t n)
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
static int timeout_min(int a, int b)
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

/* GLib part 1: prepare + query; appends its fds after ours. */
static bool glib_prepare(struct loop *loop, size_t nours, int *timeout, int *max_priority,
                         int *ngfds)
{
	gboolean ready = g_main_context_prepare(loop->gctx, max_priority);
	int gtimeout = -1;
	int n;
	while ((n = g_main_context_query(loop->gctx, *max_priority, &gtimeout, loop->gfds,
	                                 loop->gfds_cap)) > loop->gfds_cap) {
		GPollFD *g = realloc(loop->gfds, (size_t)n * sizeof(*g));
		if (!g)
			return false;
		loop->gfds = g;
		loop->gfds_cap = n;
	}
	if (!ensure_pfds(loop, nours + (size_t)n))
		return false;
	for (int i = 0; i < n; i++) {
		loop->pfds[nours + i] = (struct pollfd){
			.fd = loop->gfds[i].fd,
			.events = (short)loop->gfds[i].events,
		};
		loop->pfd_owner[nours + i] = NULL;
	}
	*ngfds = n;
	*timeout = timeout_min(*timeout, ready ? 0 : gtimeout);
	return true;
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
		if (!ensure_pfds(loop, nours + 1)) {
			log_err("loop: out of memory building the poll set");
			break;
		}
		loop->pfds[nours] = (struct pollfd){.fd = w->fd, .events = w->events};
		loop->pfd_owner[nours] = w;
		nours++;
	}

	int timeout = timeout_min(timeout_ms, timers_timeout(loop));
	if (loop->defer_head || loop->quit)
		timeout = 0;

	int max_priority = 0, ngfds = 0;
	bool glib = loop->gctx != NULL;
	if (glib && !glib_prepare(loop, nours, &timeout, &max_priority, &ngfds)) {
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
	if (glib) {
		for (int i = 0; i < ngfds; i++)
			loop->gfds[i].revents = (gushort)loop->pfds[nours + i].revents;
		if (g_main_context_check(loop->gctx, max_priority, loop->gfds, ngfds))
			g_main_context_dispatch(loop->gctx);
	}
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

static unsigned list_length(const struct list *head)
{
	unsigned n = 0;
	for (const struct list *pos = head->next; pos != head; pos = pos->next)
		n++;
	return n;
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

/* ---- libdbus-1 ---- */

static void dbus_dispatch_deferred(struct loop *loop, void *data)
{
	struct loop_dbus *ld = data;
	ld->dispatch_queued = false;
	/* A message handler may detach, close and unref the connection. */
	DBusConnection *conn = dbus_connection_ref(ld->conn);
	ld->dispatching = true;
	while (!ld->detached && dbus_connection_dispatch(conn) == DBUS_DISPATCH_DATA_REMAINS) {
	}
	ld->dispatching = false;
	if (ld->detached)
		free(ld);
	dbus_connection_unref(conn);
}

static void dbus_queue_dispatch(struct loop_dbus *ld)
{
	if (ld->dispatch_queued || ld->detached)
		return;
	ld->dispatch_queued = true;
	loop_defer(ld->loop, dbus_dispatch_deferred, ld);
}

static void dbus_on_status(DBusConnection *conn, DBusDispatchStatus status, void *data)
{
	/* Called from inside libdbus with its state in flux: dispatch later. */
	if (status == DBUS_DISPATCH_DATA_REMAINS)
		dbus_queue_dispatch(data);
}

static short dbus_watch_events(DBusWatch *watch)
{
	if (!dbus_watch_get_enabled(watch))
		return 0;
	unsigned int flags = dbus_watch_get_flags(watch);
	short events = 0;
	if (flags & DBUS_WATCH_READABLE)
		events |= POLLIN;
	if (flags & DBUS_WATCH_WRITABLE)
		events |= POLLOUT;
	return events;
}

static void dbus_on_fd(struct loop *loop, int fd, short revents, void *data)
{
	struct loop_dbus_watch *e = data;
	struct loop_dbus *ld = e->ld; /* e may be freed by dbus_watch_handle */
	unsigned int flags = 0;
	if (revents & POLLIN)
		flags |= DBUS_WATCH_READABLE;
	if (revents & POLLOUT)
		flags |= DBUS_WATCH_WRITABLE;
	if (revents & POLLHUP)
		flags |= DBUS_WATCH_HANGUP;
	if (revents & (POLLERR | POLLNVAL))
		flags |= DBUS_WATCH_ERROR;
	dbus_watch_handle(e->watch, flags);
	if (dbus_connection_get_dispatch_status(ld->conn) != DBUS_DISPATCH_COMPLETE)
		dbus_queue_dispatch(ld);
}

static dbus_bool_t dbus_add_watch(DBusWatch *watch, void *data)
{
	struct loop_dbus *ld = data;
	struct loop_dbus_watch *e = calloc(1, sizeof(*e));
	if (!e)
		return FALSE;
	e->ld = ld;
	e->watch = watch;
	/* Each DBusWatch gets its own entry even when they share an fd
	 * (libdbus uses one for reading and one for writing). */
	e->fd = loop_fd_add(ld->loop, dbus_watch_get_unix_fd(watch), dbus_watch_events(watch),
	                    dbus_on_fd, e);
	if (!e->fd) {
		free(e);
		return FALSE;
	}
	list_insert_before(&ld->watches, &e->link);
	dbus_watch_set_data(watch, e, NULL);
	return TRUE;
}

static void dbus_watch_entry_free(struct loop_dbus_watch *e)
{
	dbus_watch_set_data(e->watch, NULL, NULL);
	loop_fd_remove(e->fd);
	list_remove(&e->link);
	free(e);
}

static void dbus_remove_watch(DBusWatch *watch, void *data)
{
	struct loop_dbus_watch *e = dbus_watch_get_data(watch);
	if (e)
		dbus_watch_entry_free(e);
}

static void dbus_toggle_watch(DBusWatch *watch, void *data)
{
	struct loop_dbus_watch *e = dbus_watch_get_data(watch);
	if (e)
		loop_fd_update(e->fd, dbus_watch_events(watch));
}

static void dbus_on_timer(struct loop *loop, struct loop_timer *timer, void *data)
{
	struct loop_dbus_timeout *e = data;
	struct loop_dbus *ld = e->ld; /* e may be freed by dbus_timeout_handle */
	dbus_timeout_handle(e->timeout);
	if (dbus_connection_get_dispatch_status(ld->conn) != DBUS_DISPATCH_COMPLETE)
		dbus_queue_dispatch(ld);
}

static void dbus_timeout_arm(struct loop_dbus_timeout *e)
{
	/* libdbus timeouts repeat until removed or disabled, and restart
	 * from now whenever they are (re-)enabled. */
	int interval = dbus_timeout_get_interval(e->timeout);
	if (dbus_timeout_get_enabled(e->timeout))
		loop_timer_arm(e->timer, interval, interval);
	else
		loop_timer_arm(e->timer, -1, 0);
}

static dbus_bool_t dbus_add_timeout(DBusTimeout *timeout, void *data)
{
	struct loop_dbus *ld = data;
	struct loop_dbus_timeout *e = calloc(1, sizeof(*e));
	if (!e)
		return FALSE;
	e->ld = ld;
	e->timeout = timeout;
	e->timer = loop_timer_add(ld->loop, -1, 0, dbus_on_timer, e);
	if (!e->timer) {
		free(e);
		return FALSE;
	}
	dbus_timeout_arm(e);
	list_insert_before(&ld->timeouts, &e->link);
	dbus_timeout_set_data(timeout, e, NULL);
	return TRUE;
}

static void dbus_timeout_entry_free(struct loop_dbus_timeout *e)
{
	dbus_timeout_set_data(e->timeout, NULL, NULL);
	loop_timer_remove(e->timer);
	list_remove(&e->link);
	free(e);
}

static void dbus_remove_timeout(DBusTimeout *timeout, void *data)
{
	struct loop_dbus_timeout *e = dbus_timeout_get_data(timeout);
	if (e)
		dbus_timeout_entry_free(e);
}

static void dbus_toggle_timeout(DBusTimeout *timeout, void *data)
{
	struct loop_dbus_timeout *e = dbus_timeout_get_data(timeout);
	if (e)
		dbus_timeout_arm(e);
}

static struct loop_dbus *dbus_find(struct loop *loop, DBusConnection *conn)
{
	list_for_each_safe (pos, tmp, &loop->dbus_conns) {
		struct loop_dbus *ld = container_of(pos, struct loop_dbus, link);
		if (ld->conn == conn)
			return ld;
	}
	return NULL;
}

bool loop_dbus_attach(struct loop *loop, DBusConnection *conn)
{
	if (dbus_find(loop, conn))
		return true;
	struct loop_dbus *ld = calloc(1, sizeof(*ld));
	if (!ld) {
		log_err("loop: out of memory");
		return false;
	}
	ld->loop = loop;
	ld->conn = dbus_connection_ref(conn);
	list_init(&ld->watches);
	list_init(&ld->timeouts);
	list_insert_before(&loop->dbus_conns, &ld->link);

	if (!dbus_connection_set_watch_functions(conn, dbus_add_watch, dbus_remove_watch,
	                                         dbus_toggle_watch, ld, NULL) ||
	    !dbus_connection_set_timeout_functions(conn, dbus_add_timeout, dbus_remove_timeout,
	                                           dbus_toggle_timeout, ld, NULL)) {
		log_err("loop: cannot attach the D-Bus connection (out of memory)");
		loop_dbus_detach(loop, conn);
		return false;
	}
	dbus_connection_set_dispatch_status_function(conn, dbus_on_status, ld, NULL);
	/* Messages may already be queued (read while registering). */
	if (dbus_connection_get_dispatch_status(conn) != DBUS_DISPATCH_COMPLETE)
		dbus_queue_dispatch(ld);
	return true;
}

void loop_dbus_detach(struct loop *loop, DBusConnection *conn)
{
	struct loop_dbus *ld = dbus_find(loop, conn);
	if (!ld)
		return;
	/* Replacing the functions makes libdbus call our remove functions
	 * for every watch and timeout it still has. */
	dbus_connection_set_watch_functions(conn, NULL, NULL, NULL, NULL, NULL);
	dbus_connection_set_timeout_functions(conn, NULL, NULL, NULL, NULL, NULL);
	dbus_connection_set_dispatch_status_function(conn, NULL, NULL, NULL);
	list_for_each_safe (pos, tmp, &ld->watches)
		dbus_watch_entry_free(container_of(pos, struct loop_dbus_watch, link));
	list_for_each_safe (pos, tmp, &ld->timeouts)
		dbus_timeout_entry_free(container_of(pos, struct loop_dbus_timeout, link));
	if (ld->dispatch_queued)
		defer_cancel(loop, dbus_dispatch_deferred, ld);
	list_remove(&ld->link);
	if (ld->dispatching)
		ld->detached = true; /* the dispatcher on the stack frees it */
	else
		free(ld);
	dbus_connection_unref(conn);
}

/* ---- libvirt ---- */

/* virEventRegisterImpl() takes plain function pointers without user data and
 * libvirt keeps the first set for the whole process (it refuses to replace
 * them), so the callbacks find their loop here. This is the one mutable
 * global of the loop module. */
static struct {
	struct loop *loop;
	bool registered;
} virt_impl;
#define virt_loop (virt_impl.loop)

static short virt_to_poll(int events)
{
	short e = 0;
	if (events & VIR_EVENT_HANDLE_READABLE)
		e |= POLLIN;
	if (events & VIR_EVENT_HANDLE_WRITABLE)
		e |= POLLOUT;
	return e;
}

static int poll_to_virt(short revents)
{
	int e = 0;
	if (revents & POLLIN)
		e |= VIR_EVENT_HANDLE_READABLE;
	if (revents & POLLOUT)
		e |= VIR_EVENT_HANDLE_WRITABLE;
	if (revents & (POLLERR | POLLNVAL))
		e |= VIR_EVENT_HANDLE_ERROR;
	if (revents & POLLHUP)
		e |= VIR_EVENT_HANDLE_HANGUP;
	return e;
}

static void virt_on_fd(struct loop *loop, int fd, short revents, void *data)
{
	struct loop_virt_handle *h = data;
	/* h may be removed by the callback; nothing touches it afterwards. */
	h->cb(h->id, fd, poll_to_virt(revents), h->opaque);
}

static int virt_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                           virFreeCallback ff)
{
	struct loop *loop = virt_loop;
	if (!loop)
		return -1;
	struct loop_virt_handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -1;
	h->loop = loop;
	h->cb = cb;
	h->opaque = opaque;
	h->ff = ff;
	h->fd = loop_fd_add(loop, fd, virt_to_poll(events), virt_on_fd, h);
	if (!h->fd) {
		free(h);
		return -1;
	}
	if (loop->virt_next_id == INT_MAX) {
		log_err("loop: libvirt watch ids exhausted");
		loop_fd_remove(h->fd);
		free(h);
		return -1;
	}
	h->id = ++loop->virt_next_id; /* never reused */
	list_insert_before(&loop->virt_handles, &h->link);
	return h->id;
}

static struct loop_virt_handle *virt_find_handle(int id)
{
	if (!virt_loop)
		return NULL;
	list_for_each_safe (pos, tmp, &virt_loop->virt_handles) {
		struct loop_virt_handle *h = container_of(pos, struct loop_virt_handle, link);
		if (h->id == id)
			return h;
	}
	return NULL;
}

static void virt_update_handle(int id, int events)
{
	struct loop_virt_handle *h = virt_find_handle(id);
	if (h)
		loop_fd_update(h->fd, virt_to_poll(events));
	else
		log_debug("loop: libvirt updated unknown handle %d", id);
}

static void virt_handle_free_deferred(struct loop *loop, void *data)
{
	struct loop_virt_handle *h = data;
	loop->virt_ff_calls++;
	h->ff(h->opaque);
	free(h);
}

static int virt_remove_handle(int id)
{
	struct loop_virt_handle *h = virt_find_handle(id);
	if (!h)
		return -1;
	loop_fd_remove(h->fd);
	list_remove(&h->link);
	/* libvirt may hold locks here; ff must run from a clean stack. */
	if (h->ff)
		loop_defer(h->loop, virt_handle_free_deferred, h);
	else
		free(h);
	return 0;
}

static void virt_timeout_set(struct loop_virt_timeout *vt, int frequency)
{
	vt->frequency = frequency;
	if (frequency < 0)
		loop_timer_arm(vt->timer, -1, 0);
	else if (frequency == 0)
		loop_timer_arm(vt->timer, 0, 0);
	else
		loop_timer_arm(vt->timer, frequency, frequency);
}

static void virt_on_timer(struct loop *loop, struct loop_timer *timer, void *data)
{
	struct loop_virt_timeout *vt = data;
	/* Frequency 0 means "every iteration": rearmed before the callback so
	 * the callback can still disable it. */
	if (vt->frequency == 0)
		loop_timer_arm(timer, 0, 0);
	vt->cb(vt->id, vt->opaque);
}

static int virt_add_timeout(int frequency, virEventTimeoutCallback cb, void *opaque,
                            virFreeCallback ff)
{
	struct loop *loop = virt_loop;
	if (!loop || loop->virt_next_id == INT_MAX)
		return -1;
	struct loop_virt_timeout *vt = calloc(1, sizeof(*vt));
	if (!vt)
		return -1;
	vt->loop = loop;
	vt->cb = cb;
	vt->opaque = opaque;
	vt->ff = ff;
	vt->timer = loop_timer_add(loop, -1, 0, virt_on_timer, vt);
	if (!vt->timer) {
		free(vt);
		return -1;
	}
	virt_timeout_set(vt, frequency);
	vt->id = ++loop->virt_next_id;
	list_insert_before(&loop->virt_timeouts, &vt->link);
	return vt->id;
}

static struct loop_virt_timeout *virt_find_timeout(int id)
{
	if (!virt_loop)
		return NULL;
	list_for_each_safe (pos, tmp, &virt_loop->virt_timeouts) {
		struct loop_virt_timeout *vt = container_of(pos, struct loop_virt_timeout, link);
		if (vt->id == id)
			return vt;
	}
	return NULL;
}

static void virt_update_timeout(int id, int frequency)
{
	struct loop_virt_timeout *vt = virt_find_timeout(id);
	if (vt)
		virt_timeout_set(vt, frequency);
	else
		log_debug("loop: libvirt updated unknown timeout %d", id);
}

static void virt_timeout_free_deferred(struct loop *loop, void *data)
{
	struct loop_virt_timeout *vt = data;
	loop->virt_ff_calls++;
	vt->ff(vt->opaque);
	free(vt);
}

static int virt_remove_timeout(int id)
{
	struct loop_virt_timeout *vt = virt_find_timeout(id);
	if (!vt)
		return -1;
	loop_timer_remove(vt->timer);
	list_remove(&vt->link);
	if (vt->ff)
		loop_defer(vt->loop, virt_timeout_free_deferred, vt);
	else
		free(vt);
	return 0;
}

bool loop_virt_register(struct loop *loop)
{
	virt_loop = loop;
	if (!virt_impl.registered) {
		virt_impl.registered = true;
		virEventRegisterImpl(virt_add_handle, virt_update_handle, virt_remove_handle,
		                     virt_add_timeout, virt_update_timeout, virt_remove_timeout);
	}
	return true;
}

/* ---- GLib ---- */

bool loop_glib_attach(struct loop *loop)
{
	if (loop->gctx)
		return true;
	GMainContext *ctx = g_main_context_default();
	/* prepare/query/check/dispatch need the context owned by this thread. */
	if (!g_main_context_acquire(ctx)) {
		log_err("loop: GLib's default main context is owned by another thread");
		return false;
	}
	loop->gctx = ctx;
	return true;
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

	if (loop->gctx)
		g_main_context_release(loop->gctx);
	free(loop->gfds);

	list_for_each_safe (pos, tmp, &loop->dbus_conns)
		loop_dbus_detach(loop, container_of(pos, struct loop_dbus, link)->conn);

	/* libvirt still holding handles here is a caller bug (connections
	 * must be closed first); drop ours without calling into libvirt. */
	if (virt_loop == loop)
		virt_loop = NULL;
	list_for_each_safe (pos, tmp, &loop->virt_handles) {
		struct loop_virt_handle *h = container_of(pos, struct loop_virt_handle, link);
		log_warn("loop: libvirt handle %d still registered at exit", h->id);
		list_remove(&h->link);
		free(h);
	}
	list_for_each_safe (pos, tmp, &loop->virt_timeouts) {
		struct loop_virt_timeout *vt = container_of(pos, struct loop_virt_timeout, link);
		log_warn("loop: libvirt timeout %d still registered at exit", vt->id);
		list_remove(&vt->link);
		free(vt);
	}

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
