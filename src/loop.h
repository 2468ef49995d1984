/* The one poll(2) loop of vmoverlay: fd watches, monotonic timers, signals
 * (signalfd), child exits (pidfd), deferred calls, and adapters for libdbus-1,
 * libvirt's event implementation and GLib's default main context.
 * Single thread; every callback runs from loop_run()/loop_iterate(). */
#ifndef VMO_LOOP_H
#define VMO_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct loop;
struct loop_fd;
struct loop_timer;
typedef struct DBusConnection DBusConnection;

typedef void (*loop_fd_cb)(struct loop *loop, int fd, short revents, void *data);
typedef void (*loop_timer_cb)(struct loop *loop, struct loop_timer *timer, void *data);
typedef void (*loop_signal_cb)(struct loop *loop, int signo, void *data);
/* status is as from waitpid(): WIFEXITED/WEXITSTATUS/WIFSIGNALED work. */
typedef void (*loop_child_cb)(struct loop *loop, pid_t pid, int status, void *data);
typedef void (*loop_defer_cb)(struct loop *loop, void *data);

struct loop *loop_create(void);
/* Frees every watch still registered (their data is not freed). NULL ok. */
void loop_destroy(struct loop *loop);

/* fd watches. events are POLLIN/POLLOUT (POLLERR/POLLHUP always reported);
 * events 0 pauses the watch (the fd is not polled at all, not even for HUP).
 * Several watches may share one fd. Add/update/remove are safe from inside
 * any callback, including removing the watch that is being dispatched (it is
 * freed after dispatch); a watch removed or paused during an iteration is not
 * dispatched later in that iteration. */
struct loop_fd *loop_fd_add(struct loop *loop, int fd, short events, loop_fd_cb cb, void *data);
void loop_fd_update(struct loop_fd *w, short events);
void loop_fd_remove(struct loop_fd *w);

/* Monotonic timers. delay_ms >= 0 arms the timer; interval_ms > 0 repeats.
 * Timers fire earliest first. loop_timer_arm(t, -1, 0) disarms. */
struct loop_timer *loop_timer_add(struct loop *loop, int64_t delay_ms, int64_t interval_ms,
                                  loop_timer_cb cb, void *data);
void loop_timer_arm(struct loop_timer *t, int64_t delay_ms, int64_t interval_ms);
void loop_timer_remove(struct loop_timer *t);

/* Signals via signalfd: the signal is blocked and delivered as a callback.
 * Returns false on failure. Add signals before any thread is created (GLib's
 * GDBus worker, ...): threads inherit the mask, and an earlier thread with
 * the signal unblocked would take the default action instead. */
bool loop_signal_add(struct loop *loop, int signo, loop_signal_cb cb, void *data);
/* In a forked child before exec: restore the signal mask the process had
 * before the loop blocked signals (the blocked mask survives exec).
 * Async-signal-safe (one sigprocmask call). */
void loop_restore_sigmask(const struct loop *loop);

/* Child exit notification through a pidfd; the child is reaped by the loop
 * (no zombie is ever left). Returns false if the pid cannot be watched.
 * cb gets status -1 if someone else reaped the child first. */
bool loop_child_watch(struct loop *loop, pid_t pid, loop_child_cb cb, void *data);
/* Drop the callback of a watched child (its owner went away); the loop still
 * reaps it when it exits. */
void loop_child_unwatch(struct loop *loop, pid_t pid);

/* Run cb once from a clean stack: at the end of the current iteration when
 * queued from a callback, else at the start of the next one (before poll,
 * which then does not block). FIFO order. loop_destroy() runs what is left. */
void loop_defer(struct loop *loop, loop_defer_cb cb, void *data);

/* Run until loop_quit(); returns the exit code given to loop_quit(). */
int loop_run(struct loop *loop);
/* One iteration: poll with at most timeout_ms (-1 = as long as needed),
 * dispatch what is ready. Returns false once loop_quit() was called.
 * Not reentrant: calling it from a callback is refused. */
bool loop_iterate(struct loop *loop, int timeout_ms);
void loop_quit(struct loop *loop, int code);
bool loop_quitting(const struct loop *loop);
/* Number of poll() returns so far (idle proof: stays constant when idle). */
uint64_t loop_iterations(const struct loop *loop);
int64_t loop_now_ms(void); /* CLOCK_MONOTONIC in ms */

/* What is registered right now (tests, --verbose diagnostics). */
struct loop_stats {
	unsigned fds;          /* live fd watches, paused ones included */
	unsigned fds_polled;   /* of those, not paused */
	unsigned timers;       /* live timers */
	unsigned timers_armed; /* of those, armed */
	unsigned defers;       /* deferred calls queued */
	unsigned children;     /* children watched, not yet reaped */
	unsigned dbus_conns;
	unsigned virt_handles;
	unsigned virt_timeouts;
	uint64_t virt_ff_calls; /* libvirt free callbacks run so far */
};
void loop_get_stats(const struct loop *loop, struct loop_stats *stats);

/* Adapters. */
/* libdbus-1: watches + timeouts + dispatch of the connection. The loop holds
 * a reference while attached; detach before the last unref. Dispatch runs
 * from a deferred call until DBUS_DISPATCH_COMPLETE; handlers may detach. */
bool loop_dbus_attach(struct loop *loop, DBusConnection *conn);
void loop_dbus_detach(struct loop *loop, DBusConnection *conn);
/* libvirt: virEventRegisterImpl() with this loop. Call once, before any
 * virConnectOpen. libvirt's impl is process-global: the last loop that
 * registers owns it. */
bool loop_virt_register(struct loop *loop);
/* GLib: iterate g_main_context_default() inside our poll (libnotify). The
 * context is acquired by the loop until loop_destroy(). */
bool loop_glib_attach(struct loop *loop);

#endif
