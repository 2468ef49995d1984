/* Commit wall time of a 1 GiB overlay: through the flow (journal, runner in
 * the loop with progress parsing, qemu-img commit, rebuild, fsyncs) against
 * a bare `qemu-img commit` (fork/exec/wait) on identical copies. Prints the
 * numbers and the ratio; never fails on speed (only on wrong data). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "config.h"
#include "flow.h"
#include "loop.h"
#include "model.h"
#include "statefile.h"
#include "../testlib.h"
#include "virt.h"

#define SIZE_MB 1024

static int64_t now_ms(void)
{
	return loop_now_ms();
}

static void make_copy(const char *master, const char *dir)
{
	/* Same starting point for each run: files on disk, caches dropped
	 * (root; if not permitted, the page cache just stays warm). */
	if (test_sh("mkdir -p '%s' && cp '%s/base.qcow2' '%s/ov.qcow2' '%s/' && sync && "
		    "(echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; true",
		    dir, master, master, dir) != 0) {
		fprintf(stderr, "copy failed\n");
		exit(1);
	}
}

static bool verify(const char *dir)
{
	return test_sh("qemu-io -r -c 'read -P 0xab 0 %dM' '%s/base.qcow2' >/dev/null", SIZE_MB,
		       dir) == 0;
}

static int64_t run_bare(const char *dir)
{
	char ov[8400];
	snprintf(ov, sizeof ov, "%s/ov.qcow2", dir);
	int64_t t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		execlp("qemu-img", "qemu-img", "commit", "-q", ov, (char *)NULL);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	int64_t t = now_ms() - t0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !verify(dir)) {
		fprintf(stderr, "bare commit failed\n");
		exit(1);
	}
	return t;
}

struct fctx {
	struct vm *vm;
	int64_t commit_end;
};

static void on_progress(void *data, struct vm *vm)
{
}

static int64_t run_flow(const char *dir, int64_t *commit_only)
{
	char node[8400], uri[8500], state[8400], ov[8400];
	snprintf(node, sizeof node, "%s/node.xml", dir);
	snprintf(uri, sizeof uri, "test://%s", node);
	snprintf(state, sizeof state, "%s/state", dir);
	snprintf(ov, sizeof ov, "%s/ov.qcow2", dir);
	FILE *f = fopen(node, "w");
	fprintf(
	    f,
	    "<node><domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
	    "<name>vm</name><memory unit='MiB'>64</memory>"
	    "<os><type arch='x86_64' machine='pc'>hvm</type></os><test:runstate>5</test:runstate>"
	    "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
	    "<source file='%s'/><target dev='vda' "
	    "bus='virtio'/></disk></devices></domain></node>\n",
	    ov);
	fclose(f);

	struct loop *loop = loop_create();
	loop_virt_register(loop);
	struct vm_config vc = {.name = "vm", .policy = POLICY_ASK};
	struct config cfg = {.connect = uri, .vms = &vc, .n_vms = 1};
	struct model model;
	struct statefile *sf = statefile_open(state);
	model_init(&model, loop, &cfg);
	struct fctx ctx = {0};
	struct flow *flow = NULL;
	struct virt_events ev = {0};
	struct flow_ui ui = {.progress = on_progress, .data = &ctx};
	struct virt_watcher *virt = virt_watcher_create(loop, &model, &cfg, sf, &ev);
	flow = flow_create(loop, &model, &cfg, sf, virt, &ui);
	struct vm *vm = model_find(&model, "vm");
	int64_t end = now_ms() + 5000;
	while (!virt_watcher_connected(virt) && now_ms() < end)
		loop_iterate(loop, 20);
	flow_on_domain_updated(flow, vm);

	char *why = NULL;
	int64_t t0 = now_ms(), tc = 0;
	if (!flow_request(flow, vm, ACT_COMMIT, &why)) {
		fprintf(stderr, "flow refused: %s\n", why ? why : "?");
		exit(1);
	}
	while (flow_busy(flow)) {
		loop_iterate(loop, 100);
		if (!tc && vm->flow != FLOW_COMMITTING)
			tc = now_ms();
	}
	int64_t t = now_ms() - t0;
	*commit_only = tc - t0;
	if (vm->flow != FLOW_CLEAN || !verify(dir)) {
		fprintf(stderr, "flow commit failed: %s\n", vm->error ? vm->error : "?");
		exit(1);
	}
	flow_destroy(flow);
	virt_watcher_destroy(virt);
	for (int i = 0; i < 3; i++)
		loop_iterate(loop, 5);
	model_finish(&model);
	statefile_close(sf);
	loop_destroy(loop);
	return t;
}

static double median(const int64_t v[3])
{
	int64_t a = v[0], b = v[1], c = v[2];
	if (a > b) {
		int64_t x = a;
		a = b;
		b = x;
	}
	if (b > c) {
		int64_t x = b;
		b = c;
		c = x;
	}
	if (a > b) {
		int64_t x = a;
		a = b;
		b = x;
	}
	return (double)b;
}

static void bench(void)
{
	test_require_program("qemu-img");
	test_require_program("qemu-io");
	const char *t = test_tmpdir();
	char master[4200];
	snprintf(master, sizeof master, "%s/master", t);
	REQUIRE(test_sh("mkdir -p '%s' && cd '%s' && qemu-img create -q -f qcow2 base.qcow2 %dM && "
			"qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 ov.qcow2 && "
			"qemu-io -c 'write -P 0xab 0 %dM' ov.qcow2 >/dev/null",
			master, master, SIZE_MB, SIZE_MB) == 0);
	enum { N = 3 };
	int64_t bare[N], flow[N], commit_only[N];
	/* Interleaved: neither side always runs after the other. */
	const char order[] = "bffbbf";
	int nb = 0, nf = 0;
	for (int i = 0; i < 2 * N; i++) {
		char dir[4300];
		snprintf(dir, sizeof dir, "%s/run%d", t, i);
		make_copy(master, dir);
		if (order[i] == 'b') {
			bare[nb++] = run_bare(dir);
		} else {
			flow[nf] = run_flow(dir, &commit_only[nf]);
			nf++;
		}
		test_sh("rm -rf '%s'", dir);
	}
	double b = median(bare), fl = median(flow), co = median(commit_only);
	printf("1 GiB overlay commit, %d runs each (ms):\n  bare qemu-img commit:        %lld %lld "
	       "%lld\n"
	       "  flow (journal+commit+rebuild): %lld %lld %lld\n  flow commit phase only:      "
	       "%lld %lld %lld\n",
	       N, (long long)bare[0], (long long)bare[1], (long long)bare[2], (long long)flow[0],
	       (long long)flow[1], (long long)flow[2], (long long)commit_only[0],
	       (long long)commit_only[1], (long long)commit_only[2]);
	printf("median ratio flow/bare: %.3f (whole operation), %.3f (commit phase)\n", fl / b,
	       co / b);
	CHECK(b > 0 && fl > 0);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"commit_1g", bench},
	    {NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
