/* The libvirt watcher in-process: test:///default (a second connection in
 * this process causes the events the watcher sees through OUR loop) and
 * test:///ABS/node.xml fixtures whose disks are real qcow2 files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "chain.h"
#include "chainprobe.h"
#include "config.h"
#include "image.h"
#include "imageops.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "statefile.h"
#include "testlib.h"
#include "virt.h"

static struct loop *loop;

struct record {
	char what; /* 'S' stopped, 'R' started */
	char name[64];
	enum vm_stop_kind kind;
};

static struct record records[64];
static int n_records;

static void on_stopped(void *data, struct vm *vm, enum vm_stop_kind kind)
{
	if (n_records < 64) {
		records[n_records] = (struct record){'S', "", kind};
		snprintf(records[n_records].name, sizeof(records[0].name), "%s", vm->name);
		n_records++;
	}
}

static void on_started(void *data, struct vm *vm)
{
	if (n_records < 64) {
		records[n_records] = (struct record){'R', "", 0};
		snprintf(records[n_records].name, sizeof(records[0].name), "%s", vm->name);
		n_records++;
	}
}

static int n_updated;
static void on_updated(void *data, struct vm *vm)
{
	n_updated++;
}

static const struct virt_events events = {
	.stopped = on_stopped,
	.started = on_started,
	.updated = on_updated,
};

static int count(char what, const char *name)
{
	int n = 0;
	for (int i = 0; i < n_records; i++)
		n += records[i].what == what && strcmp(records[i].name, name) == 0;
	return n;
}

static const struct record *last_of(char what, const char *name)
{
	for (int i = n_records - 1; i >= 0; i--) {
		if (records[i].what == what && strcmp(records[i].name, name) == 0)
			return &records[i];
	}
	return NULL;
}

/* Iterates our loop until n_records reaches want or ms pass. */
static bool wait_records(int want, int ms)
{
	int64_t end = loop_now_ms() + ms;
	while (n_records < want && loop_now_ms() < end)
		loop_iterate(loop, 50);
	/* Let anything still queued arrive, so duplicates would show. */
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	return n_records >= want;
}

static bool wait_connected(struct virt_watcher *w, int ms)
{
	int64_t end = loop_now_ms() + ms;
	while (!virt_watcher_connected(w) && loop_now_ms() < end)
		loop_iterate(loop, 50);
	for (int i = 0; i < 3; i++)
		loop_iterate(loop, 10);
	return virt_watcher_connected(w);
}

/* Iterates until the reconcile's shared-base scan (a child) answered. */
static bool wait_scanned(struct virt_watcher *w, int ms)
{
	int64_t end = loop_now_ms() + ms;
	while (virt_watcher_scanning(w) && loop_now_ms() < end)
		loop_iterate(loop, 50);
	return !virt_watcher_scanning(w);
}

/* A config with the given VMs; strings are borrowed (tests own them). */
struct fixture {
	struct config cfg;
	struct vm_config vms[16];
	struct model model;
};

static void fixture_init(struct fixture *f, const char *uri)
{
	memset(f, 0, sizeof(*f));
	f->cfg.connect = (char *)uri;
	f->cfg.vms = f->vms;
}

static struct vm_config *fixture_vm(struct fixture *f, const char *name)
{
	struct vm_config *vc = &f->vms[f->cfg.n_vms++];
	vc->name = (char *)name;
	return vc;
}

static void fixture_model(struct fixture *f)
{
	if (!model_init(&f->model, loop, &f->cfg))
		abort();
}

static void test_classify(void)
{
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SHUTDOWN, false, false),
	             STOP_CLEAN);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED, false, false),
	             STOP_UNCLEAN);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_CRASHED, false, false),
	             STOP_UNCLEAN);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_FAILED, false, false),
	             STOP_UNCLEAN);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DAEMON, false, false),
	             STOP_UNCLEAN);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SAVED, false, false),
	             STOP_NO_PROMPT);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED, false, false),
	             STOP_NO_PROMPT);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT, false,
	                                false),
	             STOP_NO_PROMPT);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SHUTDOWN, true, false),
	             STOP_NO_PROMPT);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SHUTDOWN, false, true),
	             STOP_NO_PROMPT);
	CHECK_INT_EQ(virt_classify_stop(VIR_DOMAIN_CRASHED, 0, false, false), STOP_UNCLEAN);
	CHECK_INT_EQ(virt_classify_event(VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN), STOP_CLEAN);
	CHECK_INT_EQ(virt_classify_event(VIR_DOMAIN_EVENT_STOPPED_DESTROYED), STOP_UNCLEAN);
	CHECK_INT_EQ(virt_classify_event(VIR_DOMAIN_EVENT_STOPPED_SAVED), STOP_NO_PROMPT);
	CHECK_INT_EQ(virt_classify_event(VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT), STOP_NO_PROMPT);
}

/* Events on test:///default caused through a second connection. */
static void test_default_events(void)
{
	char *statedir = NULL;
	if (asprintf(&statedir, "%s/state-default", test_tmpdir()) < 0)
		abort();
	struct statefile *sf = statefile_open(statedir);
	REQUIRE(sf);
	struct fixture f;
	fixture_init(&f, "test:///default");
	fixture_vm(&f, "test");
	fixture_model(&f);
	n_records = 0;

	/* The other side keeps the shared default state alive throughout. */
	virConnectPtr other = virConnectOpen("test:///default");
	REQUIRE(other);
	virDomainPtr dom = virDomainLookupByName(other, "test");
	REQUIRE(dom);

	struct virt_watcher *w = virt_watcher_create(loop, &f.model, &f.cfg, sf, &events);
	REQUIRE(w);
	REQUIRE(wait_connected(w, 2000));
	struct vm *vm = model_find(&f.model, "test");
	CHECK_INT_EQ(vm->run, RUN_RUNNING);
	CHECK_INT_EQ(count('R', "test"), 1);
	CHECK(vm->uuid[0] != 0);
	CHECK(vm->uri && strncmp(vm->uri, "test:", 5) == 0);
	CHECK(n_updated > 0);
	/* The state file's key: this connection and the domain's UUID. */
	char *key_uri = strdup(vm->uri ? vm->uri : ""), key_uuid[40];
	snprintf(key_uuid, sizeof key_uuid, "%s", vm->uuid);
	struct state_key key = {key_uri, key_uuid, "test"};
	CHECK(statefile_get_running(sf, &key));
	/* The default domain's disk has no qcow2 driver: a problem, not a guess. */
	CHECK_INT_EQ(vm->n_problems, 1);
	CHECK(vm->n_problems && strstr(vm->problems[0], "qcow2"));
	char *why = NULL;
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "not shut off"));
	free(why);

	/* destroy -> unclean stop */
	int base = n_records;
	REQUIRE(virDomainDestroy(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	CHECK_INT_EQ(n_records, base + 1);
	const struct record *r = last_of('S', "test");
	CHECK(r && r->kind == STOP_UNCLEAN);
	CHECK_INT_EQ(vm->run, RUN_SHUTOFF);
	CHECK_INT_EQ(vm->dom_reason, VIR_DOMAIN_SHUTOFF_DESTROYED);
	CHECK(!statefile_get_running(sf, &key));

	/* create -> started */
	base = n_records;
	REQUIRE(virDomainCreate(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	CHECK_INT_EQ(n_records, base + 1);
	CHECK(records[n_records - 1].what == 'R');
	CHECK_INT_EQ(vm->run, RUN_RUNNING);

	/* guest shutdown -> clean stop */
	base = n_records;
	REQUIRE(virDomainShutdown(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	CHECK_INT_EQ(n_records, base + 1);
	r = last_of('S', "test");
	CHECK(r && r->kind == STOP_CLEAN);
	CHECK_INT_EQ(vm->dom_reason, VIR_DOMAIN_SHUTOFF_SHUTDOWN);

	/* managed save -> never prompt */
	REQUIRE(virDomainCreate(dom) == 0);
	base = n_records + 1;
	CHECK(wait_records(base, 2000));
	REQUIRE(virDomainManagedSave(dom, 0) == 0);
	CHECK(wait_records(base + 1, 2000));
	CHECK_INT_EQ(n_records, base + 1);
	r = last_of('S', "test");
	CHECK(r && r->kind == STOP_NO_PROMPT);
	CHECK(vm->has_managed_save);
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "managed save"));
	free(why);

	/* restore (start from the managed save) -> started */
	base = n_records;
	REQUIRE(virDomainCreate(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	CHECK(records[n_records - 1].what == 'R');
	CHECK(!vm->has_managed_save);

	/* a libvirt snapshot exists -> a destroy does not prompt */
	virDomainSnapshotPtr snap =
		virDomainSnapshotCreateXML(dom, "<domainsnapshot><name>s1</name></domainsnapshot>", 0);
	REQUIRE(snap);
	base = n_records;
	REQUIRE(virDomainDestroy(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	r = last_of('S', "test");
	CHECK(r && r->kind == STOP_NO_PROMPT);
	CHECK(vm->has_snapshots);
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "snapshot"));
	free(why);
	CHECK(virDomainSnapshotDelete(snap, 0) == 0);
	virDomainSnapshotFree(snap);

	/* Shut off now, nothing else wrong but the disk: check_idle names it. */
	virt_watcher_reconcile(w);
	CHECK(!vm->has_snapshots);
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "qcow2"));
	free(why);

	/* "Restart" of the applet while the VM runs; it stops meanwhile. */
	base = n_records;
	REQUIRE(virDomainCreate(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	CHECK(statefile_get_running(sf, &key));
	virt_watcher_destroy(w);
	statefile_close(sf);
	model_finish(&f.model);
	REQUIRE(virDomainShutdown(dom) == 0);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);

	sf = statefile_open(statedir);
	REQUIRE(sf);
	CHECK(statefile_get_running(sf, &key));
	fixture_model(&f);
	n_records = 0;
	w = virt_watcher_create(loop, &f.model, &f.cfg, sf, &events);
	REQUIRE(wait_connected(w, 2000));
	CHECK_INT_EQ(n_records, 1);
	r = last_of('S', "test");
	CHECK(r && r->kind == STOP_CLEAN);
	CHECK(!statefile_get_running(sf, &key));
	/* A second reconcile reports nothing new. */
	virt_watcher_reconcile(w);
	CHECK_INT_EQ(n_records, 1);
	virt_watcher_destroy(w);
	statefile_close(sf);

	/* Reopen from disk: the stop was recorded, so no third report. */
	sf = statefile_open(statedir);
	CHECK(!statefile_get_running(sf, &key));
	statefile_close(sf);

	virDomainCreate(dom); /* leave the shared default as we found it */
	virDomainFree(dom);
	virConnectClose(other);
	model_finish(&f.model);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	free(statedir);
	free(key_uri);
}

/* ---- node.xml fixtures ---- */

static const char *T;

static void sh_ok(const char *cmd)
{
	if (test_sh("cd '%s' && %s", T, cmd) != 0) {
		fprintf(stderr, "command failed: %s\n", cmd);
		exit(1);
	}
}

static char *tpath(const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", T, name) < 0)
		abort();
	return p;
}

static void make_images(void)
{
	static bool done;
	if (done)
		return;
	test_require_program("qemu-img");
	sh_ok("qemu-img create -q -f qcow2 baseA.qcow2 16M && "
	      "qemu-img create -q -f qcow2 baseB.qcow2 16M && "
	      "qemu-img create -q -f qcow2 baseS.qcow2 16M && "
	      "qemu-img create -q -f raw raw.img 1M && "
	      "mkdir -p pool && "
	      "for o in ovA ovSaved ovM1 ovM2 ovK1 ovK2 ovK3 ovK5 ovSnap; do "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseA.qcow2 $o.qcow2 || exit 1; done && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseB.qcow2 ovWrong.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b ../baseA.qcow2 pool/vol.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseS.qcow2 ovShA.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseS.qcow2 ovShB.qcow2 && "
	      "qemu-img create -q -f qcow2 baseT1.qcow2 16M && "
	      "qemu-img create -q -f qcow2 baseT2.qcow2 8M && "
	      "qemu-img create -q -f qcow2 plain1.qcow2 4M && "
	      "qemu-img create -q -f qcow2 plain2.qcow2 4M && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseT1.qcow2 ovT1.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseT2.qcow2 ovT2.qcow2 && "
	      "qemu-img create -q -f qcow2 baseP1.qcow2 4M && "
	      "qemu-img create -q -f qcow2 baseP2.qcow2 4M && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseP1.qcow2 ovP1.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseP2.qcow2 ovP2.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseP1.qcow2 ovP3.qcow2 && "
	      "qemu-img create -q -f qcow2 baseQ.qcow2 4M && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseQ.qcow2 ovQ1.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b baseQ.qcow2 ovQ2.qcow2");
	done = true;
}

static void disk(FILE *f, const char *type, const char *drv, const char *file, const char *dev,
                 const char *extra)
{
	fprintf(f,
	        "<disk type='file' device='%s'><driver name='qemu' type='%s'/>"
	        "<source file='%s/%s'/><target dev='%s' bus='virtio'/>%s</disk>\n",
	        type, drv, T, file, dev, extra ? extra : "");
}

static void domain_open(FILE *f, const char *name, bool off, bool managed_save)
{
	fprintf(f,
	        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
	        "<name>%s</name><memory unit='MiB'>64</memory>"
	        "<os><type arch='x86_64' machine='pc'>hvm</type></os>%s%s<devices>\n",
	        name, off ? "<test:runstate>5</test:runstate>" : "",
	        managed_save ? "<test:hasmanagedsave/>" : "");
}

static char *write_node_xml(void)
{
	char *path = tpath("node.xml");
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fprintf(f, "<node>\n");
	domain_open(f, "off1", true, false);
	disk(f, "disk", "qcow2", "ovA.qcow2", "vda", NULL);
	disk(f, "cdrom", "raw", "raw.img", "hdc", "<readonly/>");
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "saved1", true, true);
	disk(f, "disk", "qcow2", "ovSaved.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "run1", false, false);
	disk(f, "disk", "qcow2", "ovSnap.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "multi", true, false);
	disk(f, "disk", "qcow2", "ovM1.qcow2", "vda", NULL);
	disk(f, "disk", "qcow2", "ovM2.qcow2", "vdb", NULL);
	fprintf(f, "</devices></domain>\n");

	/* A system and a data overlay on bases of their own, and a plain qcow2
	 * scratch disk without a backing file (not an overlay: left alone). */
	domain_open(f, "twodisk", true, false);
	disk(f, "disk", "qcow2", "ovT1.qcow2", "vda", NULL);
	disk(f, "disk", "qcow2", "plain1.qcow2", "vdb", NULL);
	disk(f, "disk", "qcow2", "ovT2.qcow2", "vdc", NULL);
	fprintf(f, "</devices></domain>\n");
	domain_open(f, "plains", true, false);
	disk(f, "disk", "qcow2", "plain1.qcow2", "vda", NULL);
	disk(f, "disk", "qcow2", "plain2.qcow2", "vdb", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "pair", true, false);
	disk(f, "disk", "qcow2", "ovQ1.qcow2", "vda", NULL);
	disk(f, "disk", "qcow2", "ovQ2.qcow2", "vdb", NULL);
	fprintf(f, "</devices></domain>\n");
	domain_open(f, "picked", true, false);
	disk(f, "disk", "qcow2", "ovP1.qcow2", "vda", NULL);
	disk(f, "disk", "qcow2", "ovP2.qcow2", "vdb", NULL);
	fprintf(f, "</devices></domain>\n");
	domain_open(f, "missing", true, false);
	disk(f, "disk", "qcow2", "ovP3.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "skips", true, false);
	disk(f, "disk", "qcow2", "ovK1.qcow2", "vda", "<transient/>");
	disk(f, "disk", "qcow2", "ovK2.qcow2", "vdb", "<readonly/>");
	disk(f, "disk", "qcow2", "ovK3.qcow2", "vdc", "<shareable/>");
	disk(f, "disk", "raw", "raw.img", "vdd", NULL);
	disk(f, "disk", "qcow2", "ovK5.qcow2", "vde", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "wrong", true, false);
	disk(f, "disk", "qcow2", "ovWrong.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "shareA", true, false);
	disk(f, "disk", "qcow2", "ovShA.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");
	domain_open(f, "shareB", true, false);
	disk(f, "disk", "qcow2", "ovShB.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");

	domain_open(f, "vol", true, false);
	fprintf(f, "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
	           "<source pool='vpool' volume='vol.qcow2'/><target dev='vda' bus='virtio'/></disk>\n");
	fprintf(f, "</devices></domain>\n");

	fprintf(f,
	        "<pool type='dir'><name>vpool</name><uuid>35bb2ad9-388a-cdfe-461a-b8907f6e53fe</uuid>"
	        "<capacity>1000000</capacity><allocation>0</allocation><available>1000000</available>"
	        "<source/><target><path>%s/pool</path></target>"
	        "<volume type='file'><name>vol.qcow2</name><capacity>16777216</capacity>"
	        "<target><path>%s/pool/vol.qcow2</path><format type='qcow2'/></target></volume>"
	        "</pool>\n",
	        T, T);
	fprintf(f, "</node>\n");
	fclose(f);
	return path;
}

static void test_fixture_discovery(void)
{
	T = test_tmpdir();
	make_images();
	char *node = write_node_xml();
	char *uri = NULL;
	if (asprintf(&uri, "test://%s", node) < 0)
		abort();
	/* As if the applet had seen these running before it was restarted:
	 * a state file from before issue 12 (keyed by name) is migrated. */
	char *statedir = tpath("state-fixture");
	CHECK(test_sh("mkdir -p '%s' && printf 'running\toff1\nrunning\tsaved1\n' >'%s/state'",
	              statedir, statedir) == 0);
	struct statefile *sf = statefile_open(statedir);
	struct fixture f;
	fixture_init(&f, uri);
	fixture_vm(&f, "off1");
	fixture_vm(&f, "saved1");
	fixture_vm(&f, "run1");
	fixture_vm(&f, "multi");
	fixture_vm(&f, "twodisk");
	fixture_vm(&f, "plains");
	fixture_vm(&f, "pair");
	static char *vdb[] = {"vdb"}, *vda_vdz[] = {"vda", "vdz"};
	struct vm_config *picked = fixture_vm(&f, "picked");
	picked->disks = vdb; /* disks = ["vdb"] */
	picked->n_disks = 1;
	struct vm_config *missing = fixture_vm(&f, "missing");
	missing->disks = vda_vdz;
	missing->n_disks = 2;
	fixture_vm(&f, "skips");
	struct vm_config *wrong = fixture_vm(&f, "wrong");
	char *baseA = tpath("baseA.qcow2");
	wrong->base = baseA;
	fixture_vm(&f, "shareA");
	fixture_vm(&f, "vol");
	struct vm_config *ghost = fixture_vm(&f, "ghost");
	char *ovA = tpath("ovA.qcow2");
	ghost->overlay = ovA;
	ghost->base = baseA;
	fixture_model(&f);
	n_records = 0;

	struct virt_watcher *w = virt_watcher_create(loop, &f.model, &f.cfg, sf, &events);
	REQUIRE(wait_connected(w, 2000));
	REQUIRE(wait_scanned(w, 10000));

	/* Missed stops found by the start-up reconcile, classified. */
	const struct record *r = last_of('S', "off1");
	CHECK(r && r->kind == STOP_UNCLEAN); /* reason unknown: not a clean shutdown */
	r = last_of('S', "saved1");
	CHECK(r && r->kind == STOP_NO_PROMPT);
	CHECK_INT_EQ(count('S', "off1") + count('S', "saved1"), 2);
	CHECK_INT_EQ(count('R', "run1"), 1);
	CHECK_INT_EQ(count('S', "multi"), 0); /* never seen running: nothing to report */

	struct vm *vm = model_find(&f.model, "off1");
	CHECK_INT_EQ(vm->run, RUN_SHUTOFF);
	CHECK_INT_EQ(vm->n_problems, 0);
	CHECK_STR_EQ(vm->disks[0].target, "vda");
	CHECK_STR_EQ(vm->disks[0].overlay, ovA);
	CHECK_STR_EQ(vm->disks[0].base, baseA);
	CHECK_STR_EQ(vm->disks[0].backing_stored, "baseA.qcow2");
	CHECK_STR_EQ(vm->disks[0].backing_format, "qcow2");
	CHECK_INT_EQ(vm->disks[0].virtual_size, 16 << 20);
	CHECK(vm->disks[0].overlay_bytes > 0);
	/* baseA is also under the overlays of saved1, multi, skips... */
	CHECK(vm->disks[0].shared_with != NULL);
	char *why = NULL;
	CHECK(virt_watcher_check_idle(w, vm, false, &why)); /* discard: fine */
	CHECK(why == NULL);
	CHECK(!virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why && strstr(why, "also used by"));
	free(why);

	vm = model_find(&f.model, "saved1");
	CHECK(vm->has_managed_save);
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "managed save"));
	free(why);

	/* Several overlays: every one is watched (issue 15). Both of multi's
	 * lie on baseA: committing one would change what the other reads. */
	vm = model_find(&f.model, "multi");
	CHECK_INT_EQ(vm->n_problems, 0);
	REQUIRE(vm->n_disks == 2);
	CHECK_STR_EQ(vm->disks[0].target, "vda");
	CHECK_STR_EQ(vm->disks[1].target, "vdb");
	CHECK(vm->disks[0].shared_with && vm->disks[1].shared_with);
	CHECK(!virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why && strstr(why, "also used by"));
	free(why);
	/* pair: two overlays on one base nobody else uses: each blocks the
	 * other's commit, by the VM's own name and disk. */
	vm = model_find(&f.model, "pair");
	REQUIRE(vm->n_disks == 2);
	CHECK_STR_EQ(vm->disks[0].shared_with, "pair (vdb)");
	CHECK_STR_EQ(vm->disks[1].shared_with, "pair (vda)");
	CHECK(!virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why && strstr(why, "pair (vdb)"));
	free(why);
	CHECK(virt_watcher_check_idle(w, vm, false, &why)); /* discard: fine */

	/* Two overlays on bases of their own; the plain scratch disk (no
	 * backing file) is not one of them. */
	vm = model_find(&f.model, "twodisk");
	CHECK_INT_EQ(vm->n_problems, 0);
	REQUIRE(vm->n_disks == 2);
	CHECK_STR_EQ(vm->disks[0].target, "vda");
	CHECK_STR_EQ(vm->disks[1].target, "vdc");
	char *bT1 = tpath("baseT1.qcow2"), *bT2 = tpath("baseT2.qcow2");
	CHECK_STR_EQ(vm->disks[0].base, bT1);
	CHECK_STR_EQ(vm->disks[1].base, bT2);
	CHECK_INT_EQ(vm->disks[1].virtual_size, 8 << 20);
	CHECK(vm->disks[0].shared_with == NULL && vm->disks[1].shared_with == NULL);
	CHECK(vm_overlay_bytes(vm) == vm->disks[0].overlay_bytes + vm->disks[1].overlay_bytes);
	CHECK(virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why == NULL);
	free(bT1);
	free(bT2);

	/* Several qcow2 disks and none an overlay: nothing to guard. */
	vm = model_find(&f.model, "plains");
	CHECK_INT_EQ(vm->n_disks, 0);
	CHECK(vm->n_problems && strstr(vm->problems[0], "vda, vdb") &&
	      strstr(vm->problems[0], "none of them is an overlay"));
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	free(why);

	/* disks = ["vdb"]: only that one. */
	vm = model_find(&f.model, "picked");
	CHECK_INT_EQ(vm->n_problems, 0);
	REQUIRE(vm->n_disks == 1);
	CHECK_STR_EQ(vm->disks[0].target, "vdb");
	/* disks = ["vda", "vdz"]: the missing one is a problem, nothing runs. */
	vm = model_find(&f.model, "missing");
	CHECK(vm->n_problems && strstr(vm->problems[0], "no disk vdz"));
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "vdz"));
	free(why);

	vm = model_find(&f.model, "skips");
	CHECK_INT_EQ(vm->n_problems, 0);
	CHECK_STR_EQ(vm->disks[0].target, "vde");
	char *ovK5 = tpath("ovK5.qcow2");
	CHECK_STR_EQ(vm->disks[0].overlay, ovK5);
	free(ovK5);

	vm = model_find(&f.model, "wrong");
	CHECK_INT_EQ(vm->n_problems, 1);
	CHECK(vm->n_problems && strstr(vm->problems[0], "is not backed by the base") &&
	      strstr(vm->problems[0], "baseB.qcow2"));
	CHECK_STR_EQ(vm->disks[0].base, baseA);

	vm = model_find(&f.model, "shareA");
	CHECK_STR_EQ(vm->disks[0].shared_with, "shareB");
	CHECK(virt_watcher_check_idle(w, vm, false, &why));
	CHECK(!virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why && strstr(why, "shareB"));
	free(why);

	vm = model_find(&f.model, "vol");
	CHECK_INT_EQ(vm->n_problems, 0);
	char *volp = tpath("pool/vol.qcow2");
	CHECK_STR_EQ(vm->disks[0].overlay, volp);
	CHECK(image_same_file(vm->disks[0].base, baseA));
	free(volp);

	vm = model_find(&f.model, "ghost");
	CHECK_INT_EQ(vm->run, RUN_UNDEFINED);
	CHECK_STR_EQ(vm->disks[0].overlay, ovA);
	CHECK_STR_EQ(vm->disks[0].base, baseA);
	CHECK_INT_EQ(vm->n_problems, 1);
	CHECK(vm->n_problems && strstr(vm->problems[0], "no domain named ghost"));
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	free(why);

	/* run1: running (refused), then destroyed on the watcher's own
	 * connection (custom files have per-connection state) -> unclean. */
	vm = model_find(&f.model, "run1");
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	free(why);
	virDomainPtr dom = virDomainLookupByName(virt_watcher_conn(w), "run1");
	REQUIRE(dom);
	int base = n_records;
	REQUIRE(virDomainDestroy(dom) == 0);
	CHECK(wait_records(base + 1, 2000));
	r = last_of('S', "run1");
	CHECK(r && r->kind == STOP_UNCLEAN);
	CHECK(virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why == NULL);
	/* A snapshot makes it untouchable. */
	virDomainSnapshotPtr snap =
		virDomainSnapshotCreateXML(dom, "<domainsnapshot><name>s</name></domainsnapshot>", 0);
	REQUIRE(snap);
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	CHECK(why && strstr(why, "snapshot"));
	free(why);
	virDomainSnapshotFree(snap);

	/* Undefining shareB frees shareA's base (event -> rescan). */
	virDomainPtr b = virDomainLookupByName(virt_watcher_conn(w), "shareB");
	REQUIRE(b);
	REQUIRE(virDomainUndefine(b) == 0);
	virDomainFree(b);
	for (int i = 0; i < 10; i++)
		loop_iterate(loop, 20);
	REQUIRE(wait_scanned(w, 10000));
	vm = model_find(&f.model, "shareA");
	CHECK(vm->disks[0].shared_with == NULL);
	CHECK(virt_watcher_check_idle(w, vm, true, &why));

	virDomainFree(dom);
	virt_watcher_destroy(w);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	model_finish(&f.model);
	/* The migrated records are keyed by the domains now. */
	CHECK(test_sh("grep -q '^vm-running' '%s/state' || ! grep -q '^running' '%s/state'", statedir,
	              statedir) == 0);
	statefile_close(sf);
	free(statedir);
	free(ovA);
	free(baseA);
	free(uri);
	free(node);
}

/* An unreachable URI: no crash, retries with backoff, last error kept. */
static void test_unreachable(void)
{
	struct fixture f;
	fixture_init(&f, "test:///nonexistent/node.xml");
	fixture_vm(&f, "x");
	fixture_model(&f);
	struct statefile *sf = statefile_open(NULL);
	struct virt_watcher *w = virt_watcher_create(loop, &f.model, &f.cfg, sf, &events);
	REQUIRE(w);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	CHECK(!virt_watcher_connected(w));
	CHECK(virt_watcher_last_error(w) != NULL);
	CHECK_INT_EQ(model_find(&f.model, "x")->run, RUN_UNKNOWN);
	char *why = NULL;
	CHECK(!virt_watcher_check_idle(w, model_find(&f.model, "x"), false, &why));
	CHECK(why && strstr(why, "Not connected"));
	free(why);
	/* Reconfigure to a working URI connects. */
	struct config cfg2 = f.cfg;
	cfg2.connect = "test:///default";
	virt_watcher_reconfigure(w, &cfg2);
	CHECK(wait_connected(w, 2000));
	CHECK(virt_watcher_last_error(w) == NULL);
	CHECK_INT_EQ(model_find(&f.model, "x")->run, RUN_UNDEFINED);
	virt_watcher_destroy(w);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	model_finish(&f.model);
	statefile_close(sf);
}

static bool has_id(const struct chainprobe_result *r, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return false;
	for (size_t i = 0; i < r->n_ids; i++)
		if (r->ids[i].dev == st.st_dev && r->ids[i].ino == st.st_ino)
			return true;
	return false;
}

static bool async_done;
static struct chainprobe_outcome async_out;

static void on_probe_done(void *data, struct chainprobe_outcome *o)
{
	async_out = *o;
	memset(o, 0, sizeof(*o));
	async_done = true;
}

/* Issue 12, defect 7: the chain probe child, waited for and in the loop.
 * A FIFO declared qcow2 blocks the child's open for ever (as a dead NFS
 * mount would): the timeout names it, the chains before it are complete,
 * the ones after it were never reached. */
static void test_chain_probe(void)
{
	test_require_program("qemu-img");
	const char *dir = test_tmpdir();
	REQUIRE(test_sh("cd '%s' && mkdir -p probe && cd probe && "
	                "qemu-img create -q -f qcow2 b.qcow2 1M && "
	                "qemu-img create -q -f qcow2 -F qcow2 -b b.qcow2 o.qcow2 && "
	                "qemu-img create -q -f raw r.img 1M && rm -f p.qcow2 && mkfifo p.qcow2",
	                dir) == 0);
	char *o = NULL, *b = NULL, *r = NULL, *p = NULL, *m = NULL;
	if (asprintf(&o, "%s/probe/o.qcow2", dir) < 0 || asprintf(&b, "%s/probe/b.qcow2", dir) < 0 ||
	    asprintf(&r, "%s/probe/r.img", dir) < 0 || asprintf(&p, "%s/probe/p.qcow2", dir) < 0 ||
	    asprintf(&m, "%s/probe/missing.qcow2", dir) < 0)
		abort();
	struct chainprobe_item items[] = {{o, true}, {r, false}, {m, true}, {p, true}, {o, true}};
	struct chainprobe_outcome out;
	pid_t left = -1;
	chainprobe_run_sync(loop, items, 5, 1500, &out, &left);
	CHECK(out.timed_out);
	CHECK(out.spawn_error == NULL);
	REQUIRE(out.n == 5);
	CHECK_INT_EQ(out.results[0].state, PROBE_DONE);
	CHECK_INT_EQ(out.results[0].n_ids, 2);
	CHECK(has_id(&out.results[0], o) && has_id(&out.results[0], b));
	CHECK_INT_EQ(out.results[1].state, PROBE_DONE); /* raw: itself only */
	CHECK_INT_EQ(out.results[1].n_ids, 1);
	CHECK_INT_EQ(out.results[2].state, PROBE_DONE); /* missing: nobody's base */
	CHECK_INT_EQ(out.results[2].n_ids, 0);
	CHECK_INT_EQ(out.results[3].state, PROBE_UNKNOWN);
	CHECK_INT_EQ(out.results[3].err, ETIMEDOUT);
	CHECK_STR_EQ(out.results[3].err_path, p);
	CHECK_STR_EQ(out.hung_path, p);
	CHECK_INT_EQ(out.results[4].state, PROBE_NOT_RUN);
	chainprobe_outcome_clear(&out);
	for (int i = 0; i < 20 && left > 0 && chainprobe_child_alive(left); i++)
		loop_iterate(loop, 50);
	CHECK(!chainprobe_child_alive(left)); /* killed and reaped by the loop */

	/* The same in the loop, without the FIFO: complete, nothing left. */
	struct chainprobe_item ok_items[] = {{o, true}, {r, false}};
	async_done = false;
	char *err = NULL;
	struct chainprobe *pr = chainprobe_start(loop, ok_items, 2, 10000, on_probe_done, NULL, &err);
	REQUIRE(pr);
	int64_t end = loop_now_ms() + 10000;
	while (!async_done && loop_now_ms() < end)
		loop_iterate(loop, 50);
	REQUIRE(async_done);
	CHECK(!async_out.timed_out);
	CHECK_INT_EQ(async_out.results[0].state, PROBE_DONE);
	CHECK(has_id(&async_out.results[0], b));
	CHECK_INT_EQ(async_out.results[1].state, PROBE_DONE);
	chainprobe_outcome_clear(&async_out);

	/* In the loop with the FIFO: the timer fires, the loop never blocked. */
	async_done = false;
	pr = chainprobe_start(loop, items, 5, 1500, on_probe_done, NULL, &err);
	REQUIRE(pr);
	uint64_t iters = loop_iterations(loop);
	end = loop_now_ms() + 10000;
	while (!async_done && loop_now_ms() < end)
		loop_iterate(loop, 50);
	REQUIRE(async_done);
	CHECK(loop_iterations(loop) > iters + 5); /* it went on polling meanwhile */
	CHECK(async_out.timed_out);
	CHECK_STR_EQ(async_out.hung_path, p);
	CHECK_INT_EQ(async_out.results[3].err, ETIMEDOUT);
	chainprobe_outcome_clear(&async_out);
	free(o);
	free(b);
	free(r);
	free(p);
	free(m);
}

/* ---- backing chains deeper than one (issue 15 item 4) ---- */

/* base<i> <- tmpl<i> <- ov<i> for every VM; tshare's overlay lies on
 * tmpl4 too; loopA <-> loopB point at each other; d0 <- d1 <- ... d18 is
 * deeper than vmoverlay follows. */
static char *write_chain_xml(const char *dir, const char *name)
{
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	const char *keepT = T;
	T = dir;
	fprintf(f, "<node>\n");
	static const char *const vms[] = {"chain1", "chain2", "chain3", "chain4", "chain5"};
	for (int i = 0; i < 5; i++) {
		char ov[32];
		snprintf(ov, sizeof ov, "ov%d.qcow2", i + 1);
		domain_open(f, vms[i], true, false);
		disk(f, "disk", "qcow2", ov, "vda", NULL);
		fprintf(f, "</devices></domain>\n");
	}
	domain_open(f, "tshare", true, false);
	disk(f, "disk", "qcow2", "ovTS.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");
	fprintf(f, "</node>\n");
	fclose(f);
	/* Apart: a domain whose chain cannot be checked refuses everyone's
	 * commits (rule 9). */
	char *bad = NULL;
	if (asprintf(&bad, "%s/bad.xml", dir) < 0 || !(f = fopen(bad, "w")))
		abort();
	free(bad);
	fprintf(f, "<node>\n");
	domain_open(f, "loopy", true, false);
	disk(f, "disk", "qcow2", "ovL.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");
	domain_open(f, "deep", true, false);
	disk(f, "disk", "qcow2", "d18.qcow2", "vda", NULL);
	fprintf(f, "</devices></domain>\n");
	fprintf(f, "</node>\n");
	fclose(f);
	T = keepT;
	return path;
}

static char *cpath(const char *dir, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

static void test_chain_depth(void)
{
	test_require_program("qemu-img");
	const char *tmp = test_tmpdir();
	char *dir = cpath(tmp, "chain");
	REQUIRE(test_sh("mkdir -p '%s' && cd '%s' && for i in 1 2 3 4 5; do "
			"qemu-img create -q -f qcow2 base$i.qcow2 4M && "
			"qemu-img create -q -f qcow2 -F qcow2 -b base$i.qcow2 tmpl$i.qcow2 && "
			"qemu-img create -q -f qcow2 -F qcow2 -b tmpl$i.qcow2 ov$i.qcow2 || exit "
			"1; done && "
			"qemu-img create -q -f qcow2 -F qcow2 -b tmpl4.qcow2 ovTS.qcow2 && "
			"qemu-img create -q -f qcow2 -u -F qcow2 -b loopB.qcow2 loopA.qcow2 4M && "
			"qemu-img create -q -f qcow2 -u -F qcow2 -b loopA.qcow2 loopB.qcow2 4M && "
			"qemu-img create -q -f qcow2 -u -F qcow2 -b loopA.qcow2 ovL.qcow2 4M && "
			"qemu-img create -q -f qcow2 d0.qcow2 4M && for i in $(seq 1 18); do "
			"qemu-img create -q -f qcow2 -u -F qcow2 -b d$((i-1)).qcow2 d$i.qcow2 4M "
			"|| exit 1; done",
			dir, dir) == 0);
	char *node = write_chain_xml(dir, "chain.xml");
	char *uri = NULL;
	if (asprintf(&uri, "test://%s", node) < 0)
		abort();
	char *base2 = cpath(dir, "base2.qcow2"), *base3 = cpath(dir, "base3.qcow2");
	char *base4 = cpath(dir, "base4.qcow2"), *base5 = cpath(dir, "base5.qcow2");
	char *tmpl1 = cpath(dir, "tmpl1.qcow2"), *base1 = cpath(dir, "base1.qcow2");
	struct fixture f;
	fixture_init(&f, uri);
	fixture_vm(&f, "chain1"); /* default: commit into tmpl1 */
	struct vm_config *c2 = fixture_vm(&f, "chain2");
	c2->base = base2; /* two levels down, no commit_into: refused */
	struct vm_config *c3 = fixture_vm(&f, "chain3");
	c3->base = base3;
	c3->commit_into = COMMIT_INTO_DEEPEST;
	struct vm_config *c4 = fixture_vm(&f, "chain4");
	c4->commit_into = COMMIT_INTO_DEEPEST; /* tmpl4 is also under tshare */
	struct vm_config *c5 = fixture_vm(&f, "chain5");
	c5->commit_into = COMMIT_INTO_DEEPEST; /* no base: the chain's last file */
	fixture_model(&f);
	struct statefile *sf = statefile_open(NULL);
	struct virt_watcher *w = virt_watcher_create(loop, &f.model, &f.cfg, sf, &events);
	REQUIRE(wait_connected(w, 2000));
	REQUIRE(wait_scanned(w, 10000));
	char *why = NULL;

	/* Default: the chain nearest first, the commit into the template. */
	struct vm *vm = model_find(&f.model, "chain1");
	CHECK_INT_EQ(vm->n_problems, 0);
	REQUIRE(vm->disks[0].n_chain == 2);
	CHECK_STR_EQ(vm->disks[0].chain[0], tmpl1);
	CHECK_STR_EQ(vm->disks[0].chain[1], base1);
	CHECK_STR_EQ(vm->disks[0].base, tmpl1);
	CHECK(chain_commit_target(vm, &vm->disks[0]) == NULL);
	char *text = vm_disk_chain_text(&vm->disks[0]);
	CHECK_STR_EQ(text, "base1.qcow2 \xe2\x86\x90 tmpl1.qcow2 \xe2\x86\x90 ov1.qcow2");
	free(text);
	text = vm_chain_text(vm);
	CHECK(text && strstr(text, "base1.qcow2"));
	free(text);
	CHECK(virt_watcher_check_idle(w, vm, true, &why));
	char *bk = NULL, *bf = NULL;
	CHECK_INT_EQ(chain_rebuild_backing(vm, &vm->disks[0], true, &bk, &bf, &why), 0);
	CHECK_STR_EQ(bk, "tmpl1.qcow2"); /* as stored in the overlay */
	CHECK_STR_EQ(bf, "qcow2");
	free(bk);
	free(bf);
	char **argv = imageops_commit_argv("qemu-img", vm->disks[0].overlay, NULL);
	REQUIRE(argv);
	CHECK(argv[4] == NULL); /* qemu-img commit -p OVERLAY */
	imageops_argv_free(argv);

	/* The configured base two levels down, commit_into not set: refused,
	 * saying how far down and what to configure. */
	vm = model_find(&f.model, "chain2");
	REQUIRE(vm->n_problems == 1);
	CHECK(strstr(vm->problems[0], "2 levels down") && strstr(vm->problems[0], "commit_into") &&
	      strstr(vm->problems[0], "deepest"));
	CHECK(!virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why && strstr(why, "commit_into"));
	free(why);
	why = NULL;

	/* commit_into = "deepest" with the configured base: -b base3, the
	 * fresh overlay backed by base3 directly with base3's format. */
	vm = model_find(&f.model, "chain3");
	CHECK_INT_EQ(vm->n_problems, 0);
	CHECK_STR_EQ(vm->disks[0].base, base3);
	CHECK_STR_EQ(chain_commit_target(vm, &vm->disks[0]), base3);
	CHECK(virt_watcher_check_idle(w, vm, true, &why));
	argv = imageops_commit_argv("qemu-img", vm->disks[0].overlay, base3);
	REQUIRE(argv);
	CHECK_STR_EQ(argv[1], "commit");
	CHECK_STR_EQ(argv[2], "-p");
	CHECK_STR_EQ(argv[3], "-b");
	CHECK_STR_EQ(argv[4], base3);
	CHECK_STR_EQ(argv[5], vm->disks[0].overlay);
	CHECK(argv[6] == NULL);
	imageops_argv_free(argv);
	CHECK_INT_EQ(chain_rebuild_backing(vm, &vm->disks[0], true, &bk, &bf, &why), 0);
	CHECK_STR_EQ(bk, base3);
	CHECK_STR_EQ(bf, "qcow2");
	free(bk);
	free(bf);
	/* A discard before any commit keeps the template under the VM. */
	CHECK_INT_EQ(chain_rebuild_backing(vm, &vm->disks[0], false, &bk, &bf, &why), 0);
	CHECK_STR_EQ(bk, "tmpl3.qcow2");
	free(bk);
	free(bf);
	/* An interrupted commit into base3 resumes only into base3. */
	CHECK(chain_resume_refusal(vm, &vm->disks[0], base3) == NULL);
	char *r = chain_resume_refusal(vm, &vm->disks[0], vm->disks[0].chain[0]);
	CHECK(r && strstr(r, "tmpl3.qcow2"));
	free(r);

	/* deepest, the template also under tshare's overlay: committing
	 * through it would change what tshare reads. */
	vm = model_find(&f.model, "chain4");
	CHECK_INT_EQ(vm->n_problems, 0);
	CHECK_STR_EQ(vm->disks[0].base, base4);
	CHECK_STR_EQ(vm->disks[0].shared_with, "tshare");
	CHECK(!virt_watcher_check_idle(w, vm, true, &why));
	CHECK(why && strstr(why, "tshare"));
	free(why);
	why = NULL;
	CHECK(virt_watcher_check_idle(w, vm, false, &why)); /* discard: fine */

	/* deepest without a base: the chain's last file. */
	vm = model_find(&f.model, "chain5");
	CHECK_INT_EQ(vm->n_problems, 0);
	CHECK_STR_EQ(vm->disks[0].base, base5);
	CHECK_STR_EQ(chain_commit_target(vm, &vm->disks[0]), base5);

	virt_watcher_destroy(w);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	model_finish(&f.model);

	/* A chain that loops, and one too deep: VM problems, clearly said. */
	char *bad_uri = NULL;
	if (asprintf(&bad_uri, "test://%s/bad.xml", dir) < 0)
		abort();
	fixture_init(&f, bad_uri);
	fixture_vm(&f, "loopy");
	fixture_vm(&f, "deep");
	fixture_model(&f);
	w = virt_watcher_create(loop, &f.model, &f.cfg, sf, &events);
	REQUIRE(wait_connected(w, 2000));
	REQUIRE(wait_scanned(w, 10000));
	vm = model_find(&f.model, "loopy");
	CHECK(vm->n_problems >= 1 && strstr(vm->problems[0], "loops"));
	/* The shared-use scan says so too (not "Too many levels of symbolic
	 * links", ELOOP's own words). */
	CHECK(vm->check_unknown && strstr(vm->check_unknown, "loops or is deeper than 16"));
	CHECK(!virt_watcher_check_idle(w, vm, false, &why));
	free(why);
	why = NULL;
	vm = model_find(&f.model, "deep");
	CHECK(vm->n_problems >= 1 && strstr(vm->problems[0], "deeper than 16"));
	CHECK(vm->disks[0].n_chain <= 16);

	virt_watcher_destroy(w);
	for (int i = 0; i < 5; i++)
		loop_iterate(loop, 10);
	model_finish(&f.model);
	statefile_close(sf);
	free(base1);
	free(base2);
	free(base3);
	free(base4);
	free(base5);
	free(tmpl1);
	free(uri);
	free(bad_uri);
	free(node);
	free(dir);
}

int main(int argc, char **argv)
{
	log_init(getenv("VMO_TEST_DEBUG") ? LOG_DEBUG : LOG_WARN);
	loop = loop_create();
	if (!loop || !loop_virt_register(loop))
		return 1;
	static const struct test_case cases[] = {
	    {"classify", test_classify},
	    {"default_events", test_default_events},
	    {"fixture_discovery", test_fixture_discovery},
	    {"unreachable", test_unreachable},
	    {"chain_probe", test_chain_probe},
	    {"chain_depth", test_chain_depth},
	    {NULL, NULL},
	};
	int rc = test_main(argc, argv, cases);
	loop_destroy(loop);
	return rc;
}
