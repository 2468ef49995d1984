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

/* fd watches. events are POLLIN/POLLOUT (POLLERR/POLLHUP always reported).
 * Add/update/remove are safe from inside any callback, including removing
 * the watch that is being dispatched (it is freed after dispatch). */
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
 * Returns false on failure. */
bool loop_signal_add(struct loop *loop, int signo, loop_signal_cb cb, void *data);

/* Child exit notification through a pidfd; the child is reaped by the loop
 * (no zombie is ever left). Returns false if the pid cannot be watched. */
bool loop_child_watch(struct loop *loop, pid_t pid, loop_child_cb cb, void *data);

/* Run cb once on the next iteration, from a clean stack. */
void loop_defer(struct loop *loop, loop_defer_cb cb, void *data);

/* Run until loop_quit(); returns the exit code given to loop_quit(). */
int loop_run(struct loop *loop);
/* One iteration: poll with at most timeout_ms (-1 = as long as needed),
 * dispatch what is ready. Returns false once loop_quit() was called. */
bool loop_iterate(struct loop *loop, int timeout_ms);
void loop_quit(struct loop *loop, int code);
bool loop_quitting(const struct loop *loop);
/* Number of poll() returns so far (idle proof: stays constant when idle). */
uint64_t loop_iterations(const struct loop *loop);
int64_t loop_now_ms(void); /* CLOCK_MONOTONIC in ms */

/* Adapters. */
/* libdbus-1: watches + timeouts + dispatch of the connection. */
bool loop_dbus_attach(struct loop *loop, DBusConnection *conn);
void loop_dbus_detach(struct loop *loop, DBusConnection *conn);
/* libvirt: virEventRegisterImpl() with this loop. Call once, before any
 * virConnectOpen. libvirt's impl is process-global: the last loop that
 * registers owns it. */
bool loop_virt_register(struct loop *loop);
/* GLib: iterate g_main_context_default() inside our poll (libnotify). */
bool loop_glib_attach(struct loop *loop);

#endif
