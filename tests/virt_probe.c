/* Runs the real libvirt watcher (virt.c in our loop) against a URI and
 * prints one line per callback for integration scripts:
 *     <CLOCK_REALTIME ns> CONNECTED|DISCONNECTED
 *     <ns> STARTED <vm>
 *     <ns> STOPPED <vm> clean|unclean|no-prompt state=<n> reason=<n>
 * Usage: virt_probe URI STATE_DIR VM... (SIGTERM/SIGINT end it; VMO_PROBE_DEBUG=1
 * logs the watcher's debug lines to stderr; VMO_PROBE_RECONCILE=N sets
 * reconcile_interval, default 0). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "statefile.h"
#include "virt.h"

struct probe {
	struct loop *loop;
	struct model model;
	struct virt_watcher *w;
	bool connected;
};

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char *kind_name(enum vm_stop_kind k)
{
	switch (k) {
	case STOP_CLEAN:
		return "clean";
	case STOP_UNCLEAN:
		return "unclean";
	case STOP_NO_PROMPT:
		return "no-prompt";
	}
	return "?";
}

static void on_stopped(void *data, struct vm *vm, enum vm_stop_kind kind)
{
	printf("%lld STOPPED %s %s state=%d reason=%d\n", now_ns(), vm->name, kind_name(kind),
	       vm->dom_state, vm->dom_reason);
}

static void on_started(void *data, struct vm *vm)
{
	printf("%lld STARTED %s\n", now_ns(), vm->name);
}

static void on_model(void *data)
{
	struct probe *p = data;
	bool c = virt_watcher_connected(p->w);
	if (c != p->connected) {
		p->connected = c;
		printf("%lld %s\n", now_ns(), c ? "CONNECTED" : "DISCONNECTED");
	}
}

static void on_signal(struct loop *loop, int signo, void *data)
{
	loop_quit(loop, 0);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s URI STATE_DIR VM...\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init(getenv("VMO_PROBE_DEBUG") ? LOG_DEBUG : LOG_INFO);

	struct probe p = {0};
	struct config cfg = {0};
	cfg.connect = argv[1];
	const char *ri = getenv("VMO_PROBE_RECONCILE");
	cfg.reconcile_interval = ri ? atoi(ri) : 0;
	cfg.n_vms = (size_t)(argc - 3);
	cfg.vms = calloc(cfg.n_vms, sizeof(*cfg.vms));
	for (size_t i = 0; i < cfg.n_vms; i++)
		cfg.vms[i].name = argv[3 + i];

	p.loop = loop_create();
	if (!p.loop || !loop_virt_register(p.loop))
		return 1;
	loop_signal_add(p.loop, SIGTERM, on_signal, &p);
	loop_signal_add(p.loop, SIGINT, on_signal, &p);
	if (!model_init(&p.model, p.loop, &cfg))
		return 1;
	struct statefile *sf = statefile_open(argv[2]);
	const struct virt_events ev = {.stopped = on_stopped, .started = on_started, .data = &p};
	p.w = virt_watcher_create(p.loop, &p.model, &cfg, sf, &ev);
	if (!sf || !p.w)
		return 1;
	model_add_listener(&p.model, on_model, &p);

	int rc = loop_run(p.loop);

	virt_watcher_destroy(p.w);
	/* libvirt frees its handles from a clean stack: a few more turns. */
	for (int i = 0; i < 3; i++)
		loop_iterate(p.loop, 10);
	model_finish(&p.model);
	statefile_close(sf);
	loop_destroy(p.loop);
	free(cfg.vms);
	return rc;
}
