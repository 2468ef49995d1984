/* loop-virt.c: libvirt's event implementation (virEventRegisterImpl) on
 * the loop. libvirt's handles become fd watches and its timeouts timers;
 * ids are never reused and free callbacks run deferred, as libvirt asks. */
#include <libvirt/libvirt.h>
#include <stdlib.h>

#include "log.h"
#include "loop-private.h"

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
	list_for_each_safe(pos, tmp, &virt_loop->virt_handles)
	{
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
	list_for_each_safe(pos, tmp, &virt_loop->virt_timeouts)
	{
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

void loop_virt_release(struct loop *loop)
{
	/* libvirt still holding handles here is a caller bug (connections
	 * must be closed first); drop ours without calling into libvirt. */
	if (virt_loop == loop)
		virt_loop = NULL;
	list_for_each_safe(pos, tmp, &loop->virt_handles)
	{
		struct loop_virt_handle *h = container_of(pos, struct loop_virt_handle, link);
		log_warn("loop: libvirt handle %d still registered at exit", h->id);
		list_remove(&h->link);
		free(h);
	}
	list_for_each_safe(pos, tmp, &loop->virt_timeouts)
	{
		struct loop_virt_timeout *vt = container_of(pos, struct loop_virt_timeout, link);
		log_warn("loop: libvirt timeout %d still registered at exit", vt->id);
		list_remove(&vt->link);
		free(vt);
	}
}
