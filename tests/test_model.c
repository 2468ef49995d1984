/* The shared model: VMs built from the config, reload keeps/drops the right
 * ones, change notifications coalesce into one refresh per iteration. */
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "model.h"
#include "testlib.h"

static struct vm_config vcs[3] = {
	{.name = "win10", .policy = POLICY_ASK},
	{.name = "kiosk", .policy = POLICY_DISCARD},
	{.name = "lab", .policy = POLICY_KEEP},
};

static int refreshes;
static void on_change(void *data)
{
	(void)data;
	refreshes++;
}

static void test_init_and_find(void)
{
	struct config cfg = {.vms = vcs, .n_vms = 3};
	struct model m;
	REQUIRE(model_init(&m, NULL, &cfg));
	CHECK_INT_EQ(m.n_vms, 3);
	struct vm *k = model_find(&m, "kiosk");
	REQUIRE(k);
	CHECK_INT_EQ(k->policy, POLICY_DISCARD);
	CHECK(k->cfg == &vcs[1]);
	CHECK_INT_EQ(k->dom_state, -1);
	CHECK(model_find(&m, "nope") == NULL);
	CHECK(model_find(&m, NULL) == NULL);
	strcpy(k->uuid, "c7a5fdbd-cdaf-9455-926a-d65c16db1809");
	CHECK(model_find_uuid(&m, "c7a5fdbd-cdaf-9455-926a-d65c16db1809") == k);
	CHECK(model_find_uuid(&m, "") == NULL);
	model_finish(&m);
}

static void test_changes_coalesce(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct config cfg = {.vms = vcs, .n_vms = 1};
	struct model m;
	REQUIRE(model_init(&m, loop, &cfg));
	model_add_listener(&m, on_change, NULL);
	refreshes = 0;
	model_changed(&m);
	model_changed(&m);
	model_changed(&m);
	CHECK_INT_EQ(refreshes, 0); /* deferred to the next iteration */
	loop_iterate(loop, 0);
	CHECK_INT_EQ(refreshes, 1);
	CHECK_INT_EQ(m.serial, 3);
	loop_iterate(loop, 0);
	CHECK_INT_EQ(refreshes, 1);
	model_remove_listener(&m, on_change, NULL);
	model_changed(&m);
	loop_iterate(loop, 0);
	CHECK_INT_EQ(refreshes, 1);
	model_finish(&m);
	loop_destroy(loop);
}

static void test_reload(void)
{
	struct config cfg = {.vms = vcs, .n_vms = 3};
	struct model m;
	REQUIRE(model_init(&m, NULL, &cfg));
	struct vm *win = model_find(&m, "win10");
	struct vm *lab = model_find(&m, "lab");
	win->policy = POLICY_COMMIT; /* changed at run time */
	lab->flow = FLOW_COMMITTING; /* busy: survives removal */
	vm_add_problem(win, "problem %d", 1);
	vm_add_problem(win, "problem %d", 1); /* no duplicates */
	CHECK_INT_EQ(win->n_problems, 1);

	struct vm_config next[2] = {
		{.name = "win10", .policy = POLICY_ASK},
		{.name = "new", .policy = POLICY_COMMIT},
	};
	struct config cfg2 = {.vms = next, .n_vms = 2};
	model_reload(&m, &cfg2);
	CHECK_INT_EQ(m.n_vms, 3);
	CHECK(model_find(&m, "win10") == win);   /* same object kept */
	CHECK_INT_EQ(win->policy, POLICY_COMMIT); /* file's policy unchanged: run-time choice kept */
	CHECK(win->cfg == &next[0]);
	CHECK(model_find(&m, "kiosk") == NULL);  /* idle and gone */
	CHECK(model_find(&m, "lab") == lab);     /* busy: kept until done */
	CHECK(lab->cfg == NULL);
	CHECK(model_find(&m, "new") != NULL);

	/* A newer file changed the policy: the file wins. */
	struct vm_config next2[2] = {next[0], next[1]};
	next2[0].policy = POLICY_DISCARD;
	struct config cfg3 = {.vms = next2, .n_vms = 2};
	lab->flow = FLOW_CLEAN;
	model_reload(&m, &cfg3);
	CHECK_INT_EQ(win->policy, POLICY_DISCARD);
	CHECK(model_find(&m, "lab") == NULL);
	CHECK_INT_EQ(m.n_vms, 2);
	model_finish(&m);
}

static void test_summary_line(void)
{
	struct vm vm = {.name = "win10", .flow = FLOW_RUNNING, .disks = {{.overlay_bytes = 1288490189ull}}, .n_disks = 1};
	char buf[256];
	vm_summary_line(&vm, buf, sizeof buf);
	CHECK(strstr(buf, "win10") != NULL);
	CHECK(strstr(buf, "running") != NULL);
	CHECK(strstr(buf, "1.2 GiB") != NULL);
	vm.flow = FLOW_COMMITTING;
	vm.progress = 43.2;
	vm_summary_line(&vm, buf, sizeof buf);
	CHECK_STR_EQ(buf, "win10: committing 43 %");
}

/* Several disks (issue 15): the tooltip's total, the menu's and the
 * terminal's short line per disk, status's full line, the commit's bases. */
static void test_two_disks_lines(void)
{
	struct vm vm = {
	    .name = "win10",
	    .flow = FLOW_RUNNING,
	    .shutdown_in_s = -1,
	    .disks = {{.target = "vda",
		       .overlay = "/var/lib/libvirt/images/win.qcow2",
		       .base = "/var/lib/libvirt/images/win-base.qcow2",
		       .overlay_bytes = 1288490189ull},
		      {.target = "vdb",
		       .overlay = "/data/win_data.qcow2",
		       .base = "/data/win_data-base.qcow2",
		       .overlay_bytes = 300ull << 20}},
	    .n_disks = 2,
	};
	char buf[512];
	CHECK(vm_overlay_bytes(&vm) == 1288490189ull + (300ull << 20));
	CHECK_STR_EQ(vm_summary_line(&vm, buf, sizeof buf),
		     "win10 — running · overlays 1.5 GiB on 2 disks");
	CHECK_STR_EQ(vm_disks_total_line(&vm, buf, sizeof buf), "overlays 1.5 GiB on 2 disks");
	CHECK_STR_EQ(vm_disk_line(&vm, 0, false, buf, sizeof buf), "vda: 1.2 GiB · win.qcow2");
	CHECK_STR_EQ(vm_disk_line(&vm, 1, false, buf, sizeof buf), "vdb: 300 MiB · win_data.qcow2");
	CHECK_STR_EQ(vm_disk_line(&vm, 0, true, buf, sizeof buf),
		     "vda: 1.2 GiB · /var/lib/libvirt/images/win.qcow2 · base "
		     "/var/lib/libvirt/images/win-base.qcow2");
	CHECK_STR_EQ(vm_disk_line(&vm, 1, true, buf, sizeof buf),
		     "vdb: 300 MiB · /data/win_data.qcow2 · base /data/win_data-base.qcow2");
	CHECK_STR_EQ(vm_disk_bases(&vm, ", ", buf, sizeof buf),
		     "vda → win-base.qcow2, vdb → win_data-base.qcow2");
	/* Too small a buffer: cut, still terminated. */
	char small[12];
	vm_disk_bases(&vm, ", ", small, sizeof small);
	CHECK_STR_EQ(small, "vda → win");
	vm_disk_bases(&vm, ", ", small, 7); /* "vda → " cut inside the arrow */
	CHECK_STR_EQ(small, "vda ");
	/* Not known yet: "?" rather than a crash or "(null)". */
	struct vm bare = {.name = "new", .flow = FLOW_CLEAN, .disks = {{0}, {0}}, .n_disks = 2};
	/* No target (a disk named by `overlay` alone): size and file only. */
	CHECK_STR_EQ(vm_disk_line(&bare, 1, true, buf, sizeof buf), "0 bytes · ? · base ?");
	CHECK_STR_EQ(vm_disk_bases(&bare, "; ", buf, sizeof buf), "? → ?; ? → ?");
	CHECK_STR_EQ(vm_summary_line(&bare, buf, sizeof buf), "new — shut off · clean");
	/* One disk: the line of before. */
	vm.n_disks = 1;
	CHECK_STR_EQ(vm_summary_line(&vm, buf, sizeof buf), "win10 — running · overlay 1.2 GiB");
}

/* Backing chains deeper than one (issue 15 item 4): deepest first, file
 * names only; one file below is no chain to show. */
static void test_chain_text(void)
{
	char *c1[] = {"/img/win-base.qcow2"};
	char *c3[] = {"/img/tmpl.qcow2", "/img/mid.qcow2", "/gold/base.qcow2"};
	struct vm vm = {
	    .name = "win10",
	    .disks = {{.target = "vda", .overlay = "/img/win.qcow2", .chain = c1, .n_chain = 1},
		      {.target = "vdb", .overlay = "/img/data.qcow2", .chain = c3, .n_chain = 3}},
	    .n_disks = 1,
	};
	CHECK(vm_disk_chain_text(&vm.disks[0]) == NULL);
	CHECK(vm_chain_text(&vm) == NULL);
	char *t = vm_disk_chain_text(&vm.disks[1]);
	CHECK_STR_EQ(t, "base.qcow2 ← mid.qcow2 ← tmpl.qcow2 ← data.qcow2");
	free(t);
	vm.n_disks = 2; /* several disks: each chain with its target */
	t = vm_chain_text(&vm);
	CHECK_STR_EQ(t, "vdb: base.qcow2 ← mid.qcow2 ← tmpl.qcow2 ← data.qcow2");
	free(t);
	vm.disks[0].chain = c3;
	vm.disks[0].n_chain = 2;
	t = vm_chain_text(&vm);
	CHECK_STR_EQ(t, "vda: mid.qcow2 ← tmpl.qcow2 ← win.qcow2; vdb: base.qcow2 ← mid.qcow2 ← "
			"tmpl.qcow2 ← data.qcow2");
	free(t);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"init_and_find", test_init_and_find},
	    {"changes_coalesce", test_changes_coalesce},
	    {"reload", test_reload},
	    {"summary_line", test_summary_line},
	    {"two_disks_lines", test_two_disks_lines},
	    {"chain_text", test_chain_text},
	    {0},
	};
	return test_main(argc, argv, cases);
}
