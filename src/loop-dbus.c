/* loop-dbus.c: libdbus-1 on the loop. A connection's DBusWatches become
 * fd watches, its DBusTimeouts timers, and dispatching runs from a
 * deferred call until DBUS_DISPATCH_COMPLETE, so handlers may detach the
 * connection (or attach another) from inside a dispatch. */
#include <dbus/dbus.h>
#include <stdlib.h>

#include "log.h"
#include "loop-private.h"

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
	list_for_each_safe(pos, tmp, &loop->dbus_conns)
	{
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
	list_for_each_safe(pos, tmp, &ld->watches)
	    dbus_watch_entry_free(container_of(pos, struct loop_dbus_watch, link));
	list_for_each_safe(pos, tmp, &ld->timeouts)
	    dbus_timeout_entry_free(container_of(pos, struct loop_dbus_timeout, link));
	if (ld->dispatch_queued)
		loop_defer_cancel(loop, dbus_dispatch_deferred, ld);
	list_remove(&ld->link);
	if (ld->dispatching)
		ld->detached = true; /* the dispatcher on the stack frees it */
	else
		free(ld);
	dbus_connection_unref(conn);
}

void loop_dbus_release(struct loop *loop)
{
	list_for_each_safe(pos, tmp, &loop->dbus_conns)
	    loop_dbus_detach(loop, container_of(pos, struct loop_dbus, link)->conn);
}
