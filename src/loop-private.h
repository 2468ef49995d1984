/* The loop's insides, shared by loop.c (fd watches, timers, signals,
 * children, deferred calls, the iteration) and its adapters beside it:
 * loop-dbus.c (libdbus-1), loop-virt.c (libvirt's event implementation)
 * and loop-glib.c (GLib's default main context). Nothing outside these
 * four files includes it. */
#ifndef VMO_LOOP_PRIVATE_H
#define VMO_LOOP_PRIVATE_H

#include <glib.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"

/* A tiny intrusive doubly-linked list (wl_list style): O(1) removal of any
 * entry, which is what "remove from inside a callback" needs. */
struct list {
	struct list *prev, *next;
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define list_for_each_safe(pos, tmp, head)                                                         \
	for (struct list *pos = (head)->next, *tmp = pos->next; pos != (head);                     \
	     pos = tmp, tmp = pos->next)

static inline void list_init(struct list *l)
{
	l->prev = l->next = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* Inserts elm just before pos; with pos == head that appends. */
static inline void list_insert_before(struct list *pos, struct list *elm)
{
	elm->prev = pos->prev;
	elm->next = pos;
	pos->prev->next = elm;
	pos->prev = elm;
}

static inline void list_remove(struct list *elm)
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

static inline unsigned list_length(const struct list *head)
{
	unsigned n = 0;
	for (const struct list *pos = head->next; pos != head; pos = pos->next)
		n++;
	return n;
}

/* Cancels a queued loop_defer() call of cb with data (a connection being
 * detached must not be dispatched later). */
void loop_defer_cancel(struct loop *loop, loop_defer_cb cb, void *data);
/* Room for n entries in the per-iteration poll set. */
bool loop_ensure_pfds(struct loop *loop, size_t n);
/* min() of two poll timeouts where -1 means "no limit". */
int loop_timeout_min(int a, int b);

/* loop-glib.c: GLib's part of one iteration (loop->gctx set). prepare
 * appends GLib's fds after our nours and lowers *timeout; dispatch hands
 * back their revents and dispatches what is ready. */
bool loop_glib_prepare(struct loop *loop, size_t nours, int *timeout, int *max_priority,
		       int *ngfds);
void loop_glib_dispatch(struct loop *loop, size_t nours, int max_priority, int ngfds);
void loop_glib_release(struct loop *loop);
/* loop-dbus.c: detaches every connection still attached. */
void loop_dbus_release(struct loop *loop);
/* loop-virt.c: forgets libvirt's handles and timeouts (loop going away). */
void loop_virt_release(struct loop *loop);

#endif
