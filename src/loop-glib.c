/* loop-glib.c: GLib's default main context iterated inside our poll()
 * (libnotify lives on GLib): prepare + query add its fds to our poll set
 * and lower the timeout, check + dispatch run what became ready. */
#include <glib.h>
#include <stdlib.h>

#include "log.h"
#include "loop-private.h"

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

/* GLib part 1: prepare + query; appends its fds after ours. */
bool loop_glib_prepare(struct loop *loop, size_t nours, int *timeout, int *max_priority, int *ngfds)
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
	if (!loop_ensure_pfds(loop, nours + (size_t)n))
		return false;
	for (int i = 0; i < n; i++) {
		loop->pfds[nours + i] = (struct pollfd){
		    .fd = loop->gfds[i].fd,
		    .events = (short)loop->gfds[i].events,
		};
		loop->pfd_owner[nours + i] = NULL;
	}
	*ngfds = n;
	*timeout = loop_timeout_min(*timeout, ready ? 0 : gtimeout);
	return true;
}

/* GLib part 2: hand back the revents, check + dispatch. */
void loop_glib_dispatch(struct loop *loop, size_t nours, int max_priority, int ngfds)
{
	for (int i = 0; i < ngfds; i++)
		loop->gfds[i].revents = (gushort)loop->pfds[nours + i].revents;
	if (g_main_context_check(loop->gctx, max_priority, loop->gfds, ngfds))
		g_main_context_dispatch(loop->gctx);
}

void loop_glib_release(struct loop *loop)
{
	if (loop->gctx)
		g_main_context_release(loop->gctx);
	loop->gctx = NULL;
	free(loop->gfds);
	loop->gfds = NULL;
}
