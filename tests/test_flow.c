/* The flow with real parts: libvirt's in-process test:///ABS/node.xml
 * driver (domains whose disks are real qcow2 files in a temp dir; stops and
 * starts are caused through the watcher's own connection, so the events
 * come through our loop), the real watcher, real qemu-img/qemu-io. Each
 * data-safety rule of docs/design.md §4 gets a case that tries to break it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "config.h"
#include "flow.h"
#include "image.h"
#include "imageops.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "statefile.h"
#include "testlib.h"
#include "virt.h"

/* ---- recording UI ---- */

struct ui_rec {
	int prompts, withdraws, progress, results;
	enum flow_result last_res;
	unsigned long long last_bytes;
	char last_msg[1024];
	char last_prompt_vm[64];
};

static void ui_prompt(void *data, struct vm *vm)
{
	struct ui_rec *u = data;
	u->prompts++;
	snprintf(u->last_prompt_vm, sizeof u->last_prompt_vm, "%s", vm->name);
}

static void ui_withdraw(void *data, struct vm *vm)
{
	((struct ui_rec *)data)->withdraws++;
}

static void ui_progress(void *data, struct vm *vm)
{
	((struct ui_rec *)data)->progress++;
}

static void ui_result(void *data, struct vm *vm, enum flow_result res, unsigned long long bytes,
		      const char *msg)
{
	struct ui_rec *u = data;
	u->results++;
	u->last_res = res;
	u->last_bytes = bytes;
	snprintf(u->last_msg, sizeof u->last_msg, "%s", msg ? msg : "");
}

/* ---- fixture: one dir, one node.xml, watcher + flow ---- */

struct fx {
	char dir[4096];
	char state_dir[4200];
	char uri[4300];
	struct loop *loop;
	struct config cfg;
	struct vm_config vms[8];
	struct model model;
	struct statefile *state;
	struct virt_watcher *virt;
	struct flow *flow;
	struct ui_rec ui;
	const char *overlay; /* the domain's disk; default dir/ov.qcow2 */
	char extra_disks[2048]; /* more <disk> elements of domain "vm" */
	char vm_uuid[40];    /* "" : VM_UUID */
};

static struct fx *F;

static void on_stopped(void *data, struct vm *vm, enum vm_stop_kind kind)
{
	flow_on_domain_stopped(((struct fx *)data)->flow, vm, kind);
}
static void on_started(void *data, struct vm *vm)
{
	flow_on_domain_started(((struct fx *)data)->flow, vm);
}
static void on_updated(void *data, struct vm *vm)
{
	flow_on_domain_updated(((struct fx *)data)->flow, vm);
}

static void sh_ok(const char *fmt, const char *a)
{
	char cmd[8192];
	snprintf(cmd, sizeof cmd, fmt, a, a, a, a);
	if (test_sh("cd '%s' && %s", F->dir, cmd) != 0) {
		fprintf(stderr, "command failed: %s\n", cmd);
		exit(1);
	}
}

static int sh(const char *cmd)
{
	return test_sh("cd '%s' && %s", F->dir, cmd);
}

static char *out(const char *cmd)
{
	char *o = NULL;
	if (test_sh_out(&o, "cd '%s' && %s", F->dir, cmd) != 0) {
		free(o);
		return NULL;
	}
	return o;
}

static char *path(const char *name)
{
	static char bufs[8][4200];
	static int i;
	char *b = bufs[i++ % 8];
	snprintf(b, sizeof bufs[0], "%s/%s", F->dir, name);
	return b;
}

/* The domain "vm" keeps one UUID across applet restarts (the state dir is
 * keyed by it); F->vm_uuid overrides it (a redefined domain). */
#define VM_UUID "6c0c4d4e-1f0b-4d55-9a57-2d7f1e0c9a01"

static void domain(FILE *f, const char *name, bool running, const char *overlay)
{
	const char *uuid = strcmp(name, "vm") ? NULL : F->vm_uuid[0] ? F->vm_uuid : VM_UUID;
	fprintf(f,
		"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
		"<name>%s</name>%s%s%s<memory unit='MiB'>64</memory>"
		"<os><type arch='x86_64' machine='pc'>hvm</type></os>%s<devices>"
		"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
		"<source file='%s'/><target dev='vda' bus='virtio'/></disk>%s"
		"</devices></domain>\n",
		name, uuid ? "<uuid>" : "", uuid ? uuid : "", uuid ? "</uuid>" : "",
		running ? "" : "<test:runstate>5</test:runstate>", overlay,
		strcmp(name, "vm") == 0 ? F->extra_disks : "");
}

/* dir/base.qcow2 (64M) + dir/ov.qcow2 backed by "base.qcow2"; domain "vm"
 * (running or shut off) on ov.qcow2, plus the extra domains given. */
static void fx_images(const char *name)
{
	static struct fx fx;
	memset(&fx, 0, sizeof fx);
	F = &fx;
	snprintf(F->dir, sizeof F->dir, "%s/%s", test_tmpdir(), name);
	snprintf(F->state_dir, sizeof F->state_dir, "%s/state", F->dir);
	mkdir(F->dir, 0755);
	sh_ok("qemu-img create -q -f qcow2 base.qcow2 64M && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 ov.qcow2 && chmod 0640 ov.qcow2",
	      "");
}

static void fx_start(bool running, const char *extra_domains_xml, enum vmo_policy policy)
{
	char node[4200];
	snprintf(node, sizeof node, "%s/node.xml", F->dir);
	FILE *f = fopen(node, "w");
	if (!f)
		abort();
	fprintf(f, "<node>\n");
	domain(f, "vm", running, F->overlay ? F->overlay : path("ov.qcow2"));
	if (extra_domains_xml)
		fputs(extra_domains_xml, f);
	fprintf(f, "</node>\n");
	fclose(f);
	snprintf(F->uri, sizeof F->uri, "test://%s", node);

	F->loop = loop_create();
	if (!loop_virt_register(F->loop))
		abort();
	F->cfg.connect = F->uri;
	F->cfg.keep_discarded = true;
	F->cfg.vms = F->vms;
	F->cfg.n_vms = 1;
	F->vms[0].name = "vm";
	F->vms[0].policy = policy;
	F->state = statefile_open(F->state_dir);
	if (!F->state || !model_init(&F->model, F->loop, &F->cfg))
		abort();
	/* As if the applet had seen it running, so a stop found at start-up
	 * is reported (not needed for events, harmless otherwise). */
	struct virt_events ev = {
	    .stopped = on_stopped, .started = on_started, .updated = on_updated, .data = F};
	struct flow_ui ui = {.prompt = ui_prompt,
			     .withdraw = ui_withdraw,
			     .progress = ui_progress,
			     .result = ui_result,
			     .data = &F->ui};
	F->virt = virt_watcher_create(F->loop, &F->model, &F->cfg, F->state, &ev);
	F->flow = flow_create(F->loop, &F->model, &F->cfg, F->state, F->virt, &ui);
	if (!F->virt || !F->flow)
		abort();
	int64_t end = loop_now_ms() + 3000;
	while ((!virt_watcher_connected(F->virt) ||
		model_find(&F->model, "vm")->flow == FLOW_UNKNOWN ||
		virt_watcher_scanning(F->virt)) &&
	       loop_now_ms() < end)
		loop_iterate(F->loop, 20);
	for (int i = 0; i < 5; i++)
		loop_iterate(F->loop, 5);
}

static void fx_stop(void)
{
	flow_destroy(F->flow);
	virt_watcher_destroy(F->virt);
	for (int i = 0; i < 5; i++)
		loop_iterate(F->loop, 5);
	model_finish(&F->model);
	statefile_close(F->state);
	loop_destroy(F->loop);
}

static struct vm *VM(void)
{
	return model_find(&F->model, "vm");
}

static bool wait_state(enum flow_state s, int ms)
{
	int64_t end = loop_now_ms() + ms;
	while (VM()->flow != s && loop_now_ms() < end)
		loop_iterate(F->loop, 20);
	for (int i = 0; i < 3; i++)
		loop_iterate(F->loop, 5);
	return VM()->flow == s;
}

static bool wait_not_busy(int ms)
{
	int64_t start = loop_now_ms(), end = start + ms;
	int n = 0;
	while (flow_busy(F->flow) && loop_now_ms() < end) {
		loop_iterate(F->loop, 20);
		n++;
	}
	for (int i = 0; i < 3; i++)
		loop_iterate(F->loop, 5);
	if (flow_busy(F->flow))
		fprintf(stderr, "still busy after %lld ms, %d iterations\n",
			(long long)(loop_now_ms() - start), n);
	return !flow_busy(F->flow);
}

/* Through the watcher's own connection: the event comes back to it. */
static void dom_do(const char *what)
{
	virDomainPtr d = virDomainLookupByName(virt_watcher_conn(F->virt), "vm");
	if (!d)
		abort();
	int r = -1;
	if (strcmp(what, "shutdown") == 0)
		r = virDomainShutdown(d);
	else if (strcmp(what, "destroy") == 0)
		r = virDomainDestroy(d);
	else if (strcmp(what, "start") == 0)
		r = virDomainCreate(d);
	else if (strcmp(what, "managedsave") == 0)
		r = virDomainManagedSave(d, 0);
	if (r < 0)
		abort();
	virDomainFree(d);
}

static char *sha(const char *file)
{
	char cmd[4400];
	snprintf(cmd, sizeof cmd, "sha256sum < '%s'", file);
	return out(cmd);
}

/* The overlay holds no data of its own (qemu-img map: nothing at depth 0). */
static bool overlay_empty(const char *file)
{
	char cmd[4400];
	snprintf(cmd, sizeof cmd, "qemu-img map --output=json '%s'", file);
	char *m = out(cmd);
	bool empty = m && !strstr(m, "\"depth\": 0, ") && strstr(m, "\"depth\": 1");
	if (!empty)
		fprintf(stderr, "map of %s: %s\n", file, m ? m : "(failed)");
	free(m);
	return empty;
}

static bool backed_by_base(const char *file)
{
	struct qcow2_info info;
	char *err = NULL;
	if (image_read_qcow2(file, &info, &err) < 0) {
		free(err);
		return false;
	}
	bool ok = info.backing_file && strcmp(info.backing_file, "base.qcow2") == 0 &&
		  info.backing_format && strcmp(info.backing_format, "qcow2") == 0;
	image_info_clear(&info);
	return ok;
}

/* Any commit journal in the state directory. */
static bool journal_present(void)
{
	char cmd[4400];
	snprintf(cmd, sizeof cmd, "ls '%s' 2>/dev/null | grep -q '\\.commit$'", F->state_dir);
	return test_sh("%s", cmd) == 0;
}

static unsigned A(enum vm_action a)
{
	return ACT_BIT(a);
}

/* ---- cases ---- */

static void test_commit_moves_overlay_data(void)
{
	fx_images("commit");
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' -c 'write -P 0x5a 8M 512k' ov.qcow2 >/dev/null", "");
	fx_start(true, NULL, POLICY_ASK);
	REQUIRE(VM()->flow == FLOW_RUNNING);
	CHECK_INT_EQ(VM()->actions, 0);
	dom_do("shutdown");
	REQUIRE(wait_state(FLOW_PENDING, 3000));
	CHECK_INT_EQ(F->ui.prompts, 1);
	CHECK_INT_EQ(VM()->last_stop, STOP_CLEAN);
	CHECK_INT_EQ(VM()->actions, A(ACT_COMMIT) | A(ACT_DISCARD) | A(ACT_KEEP));

	struct stat before;
	REQUIRE(stat(path("ov.qcow2"), &before) == 0);
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(journal_present());
	CHECK_INT_EQ(VM()->flow, FLOW_COMMITTING);
	CHECK_INT_EQ(VM()->actions, A(ACT_CANCEL));
	CHECK_INT_EQ(F->ui.withdraws, 1);
	/* Rule 6: one operation per image; refused, not queued. */
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "already running"));
	free(why);
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	free(why);
	CHECK(flow_busy(F->flow));

	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK_INT_EQ(F->ui.last_res, RESULT_COMMITTED);
	CHECK(F->ui.last_bytes >= (1u << 20) + (512u << 10));
	CHECK(F->ui.progress >= 1);
	CHECK(!journal_present());
	CHECK(sh("qemu-io -r -c 'read -P 0xab 0 1M' -c 'read -P 0x5a 8M 512k' "
		 "-c 'read -P 0 1M 7M' base.qcow2 | grep -q 'Pattern verification failed'") != 0);
	CHECK(sh("qemu-io -r -c 'read -P 0xab 0 1M' base.qcow2 >/dev/null") == 0);
	CHECK(sh("qemu-img check -q base.qcow2") == 0);
	CHECK(sh("qemu-img check -q ov.qcow2") == 0);
	CHECK(overlay_empty(path("ov.qcow2")));
	CHECK(backed_by_base(path("ov.qcow2")));
	struct stat after;
	REQUIRE(stat(path("ov.qcow2"), &after) == 0);
	CHECK_INT_EQ(after.st_mode & 07777, 0640);
	CHECK(after.st_ino != before.st_ino); /* a new file, renamed into place */
	CHECK(after.st_uid == before.st_uid && after.st_gid == before.st_gid);
	/* Through the chain the guest still sees its data. */
	CHECK(sh("qemu-io -r -c 'read -P 0xab 0 1M' ov.qcow2 >/dev/null") == 0);
	/* No temp files left in the directory. */
	CHECK(sh("ls -A | grep -q '^\\.ov\\.qcow2\\.'") != 0);
	CHECK(VM()->actions == (A(ACT_COMMIT) | A(ACT_DISCARD)));
	fx_stop();
}

static void test_discard_and_undo(void)
{
	fx_images("discard");
	sh_ok("qemu-io -c 'write -P 0xcd 0 2M' ov.qcow2 >/dev/null", "");
	fx_start(true, NULL, POLICY_ASK);
	char *why = NULL;
	REQUIRE(flow_set_policy(F->flow, VM(), POLICY_DISCARD, &why));
	char *base_sum = sha(path("base.qcow2"));
	char *ov_sum = sha(path("ov.qcow2"));
	REQUIRE(base_sum && ov_sum);

	dom_do("shutdown"); /* policy discard: no prompt, no user action */
	REQUIRE(wait_state(FLOW_CLEAN, 10000));
	CHECK_INT_EQ(F->ui.prompts, 0);
	CHECK_INT_EQ(F->ui.last_res, RESULT_DISCARDED);
	char *base_after = sha(path("base.qcow2"));
	CHECK_STR_EQ(base_after, base_sum);
	CHECK(overlay_empty(path("ov.qcow2")));
	CHECK(backed_by_base(path("ov.qcow2")));
	char *disc_sum = sha(path("ov.qcow2.discarded"));
	CHECK_STR_EQ(disc_sum, ov_sum);
	CHECK(VM()->has_discarded);
	CHECK(VM()->actions & A(ACT_UNDO_DISCARD));
	struct stat st;
	REQUIRE(stat(path("ov.qcow2"), &st) == 0);
	CHECK_INT_EQ(st.st_mode & 07777, 0640);

	REQUIRE(flow_request(F->flow, VM(), ACT_UNDO_DISCARD, &why));
	REQUIRE(wait_not_busy(5000));
	CHECK_INT_EQ(VM()->flow, FLOW_KEPT);
	CHECK_INT_EQ(F->ui.last_res, RESULT_UNDONE);
	char *undone = sha(path("ov.qcow2"));
	CHECK_STR_EQ(undone, ov_sum);
	CHECK(access(path("ov.qcow2.discarded"), F_OK) != 0);
	CHECK(!(VM()->actions & A(ACT_UNDO_DISCARD)));
	CHECK(sh("qemu-io -r -c 'read -P 0xcd 0 2M' ov.qcow2 >/dev/null") == 0);

	/* Discard again by hand; starting the VM ends the undo offer. */
	REQUIRE(flow_request(F->flow, VM(), ACT_DISCARD, &why));
	REQUIRE(wait_state(FLOW_CLEAN, 10000));
	CHECK(access(path("ov.qcow2.discarded"), F_OK) == 0);
	dom_do("start");
	REQUIRE(wait_state(FLOW_RUNNING, 3000));
	CHECK(access(path("ov.qcow2.discarded"), F_OK) != 0);
	CHECK(!VM()->has_discarded);

	/* The policy was remembered in the state file, not the config. */
	struct statefile *sf = statefile_open(F->state_dir);
	enum vmo_policy p;
	struct state_key k = {.uri = VM()->uri, .uuid = VM_UUID, .name = "vm"};
	CHECK(sf && statefile_get_policy(sf, &k, &p) && p == POLICY_DISCARD);
	statefile_close(sf);
	free(base_sum);
	free(ov_sum);
	free(base_after);
	free(disc_sum);
	free(undone);
	fx_stop();

	/* ... and applied at the next start of the applet. */
	fx_start(false, NULL, POLICY_ASK);
	CHECK_INT_EQ(VM()->policy, POLICY_DISCARD);
	fx_stop();
}

static void test_readonly_base_then_retry(void)
{
	fx_images("robase");
	/* The base in a directory bind-mounted read-only: real EROFS even for
	 * root (file modes do not stop root). */
	sh_ok("mkdir ro && mv base.qcow2 ro/ && rm ov.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b ro/base.qcow2 ov.qcow2 && "
	      "qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null && "
	      "mount --bind ro ro && mount -o remount,bind,ro ro",
	      "");
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->flow == FLOW_CLEAN);
	char *ov_sum = sha(path("ov.qcow2"));
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(VM()->error && strstr(VM()->error, "Read-only file system"));
	CHECK(VM()->error && strstr(VM()->error, "Nothing was lost"));
	CHECK_INT_EQ(F->ui.last_res, RESULT_FAILED);
	CHECK(!journal_present()); /* failed while opening: nothing written */
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	CHECK(VM()->actions & A(ACT_RETRY));

	/* Writable again: Retry repeats the commit. */
	REQUIRE(sh("mount -o remount,bind,rw ro") == 0);
	REQUIRE(flow_request(F->flow, VM(), ACT_RETRY, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(VM()->error == NULL);
	CHECK(sh("qemu-io -r -c 'read -P 0xab 0 1M' ro/base.qcow2 >/dev/null") == 0);
	CHECK(overlay_empty(path("ov.qcow2")));
	sh("umount ro");
	free(ov_sum);
	free(ov_after);
	fx_stop();
}

static void test_interrupted_journal_resume(void)
{
	fx_images("interrupted");
	/* A real half-merged base: a rate-limited commit killed mid-way. */
	sh_ok("qemu-io -c 'write -P 0x11 0 32M' base.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0x22 0 32M' ov.qcow2 >/dev/null",
	      "");
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execlp("qemu-img", "qemu-img", "commit", "-r", "2M", path("ov.qcow2"),
		       (char *)NULL);
		_exit(127);
	}
	usleep(1500 * 1000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* Half-merged indeed: the start is new, the end still old. */
	CHECK(sh("qemu-io -r -c 'read -P 0x22 0 64k' base.qcow2 >/dev/null") == 0);
	CHECK(
	    sh("qemu-io -r -c 'read -P 0x11 31M 1M' base.qcow2 | grep -q 'verification failed'") !=
	    0);
	mkdir(F->state_dir, 0700);
	/* Written by a vmoverlay from before issue 12 (named after the VM, no
	 * URI/UUID): it names this domain's disk, so it moves to the domain. */
	char *jp = imageops_journal_legacy_path(F->state_dir, "vm");
	char *err = NULL;
	struct imageops_journal old = {
	    .vm = "vm", .overlay = path("ov.qcow2"), .base = path("base.qcow2")};
	REQUIRE(imageops_journal_write(jp, &old, &err) == 0);

	fx_start(false, NULL, POLICY_DISCARD);
	REQUIRE(VM()->flow == FLOW_INTERRUPTED);
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME) | A(ACT_KEEP));
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "half-merged"));
	free(why);
	CHECK(!flow_request(F->flow, VM(), ACT_UNDO_DISCARD, &why));
	free(why);
	/* Keep: the journal stays, so only Resume is offered afterwards. */
	REQUIRE(flow_request(F->flow, VM(), ACT_KEEP, &why));
	CHECK_INT_EQ(VM()->flow, FLOW_KEPT);
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME));
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	free(why);

	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(access(jp, F_OK) != 0);
	CHECK(!journal_present());
	CHECK(sh("qemu-io -r -c 'read -P 0x22 0 32M' base.qcow2 >/dev/null") == 0);
	CHECK(sh("qemu-img check -q base.qcow2") == 0);
	CHECK(sh("qemu-img check -q ov.qcow2") == 0);
	CHECK(overlay_empty(path("ov.qcow2")));
	free(jp);
	fx_stop();
}

/* Issue 12: a journal is the domain's (URI + UUID), not the name's. A
 * journal of another domain once called "vm", for another disk, is kept
 * and shown, never resumed here; one whose overlay is this domain's disk
 * (the same file) becomes this domain's. */
static void test_journal_other_domain(void)
{
	fx_images("otherdomain");
	sh_ok("qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 other.qcow2", "");
	mkdir(F->state_dir, 0700);
	/* Keyed by a URI + UUID no watched domain has now. */
	char *jp = imageops_journal_path(F->state_dir, "test:///gone", VM_UUID), *err = NULL;
	struct imageops_journal j = {.uri = "test:///gone",
				     .uuid = VM_UUID,
				     .vm = "vm",
				     .overlay = path("other.qcow2"),
				     .base = path("base.qcow2")};
	REQUIRE(jp && imageops_journal_write(jp, &j, &err) == 0);
	char *ov_sum = sha(path("ov.qcow2"));
	fx_start(false, NULL, POLICY_ASK);
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(VM()->notice && strstr(VM()->notice, path("other.qcow2")) &&
	      strstr(VM()->notice, jp));
	CHECK(!(VM()->actions & A(ACT_RESUME)));
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_RESUME, &why));
	free(why);
	why = NULL;
	CHECK(access(jp, F_OK) == 0);
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	fx_stop();

	/* The same overlay file under another UUID (the domain was redefined
	 * on its disk): the journal moves to it, interrupted, Resume offered. */
	j.overlay = path("ov.qcow2");
	REQUIRE(imageops_journal_write(jp, &j, &err) == 0);
	fx_start(false, NULL, POLICY_ASK);
	CHECK_INT_EQ(VM()->flow, FLOW_INTERRUPTED);
	CHECK(VM()->notice == NULL);
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME) | A(ACT_KEEP));
	CHECK(access(jp, F_OK) != 0);
	CHECK(journal_present());
	fx_stop();
	free(jp);
	free(ov_sum);
	free(ov_after);
}

static void test_cancel_commit(void)
{
	fx_images("cancel");
	sh_ok("qemu-io -c 'write -P 0x33 0 32M' ov.qcow2 >/dev/null", "");
	char *ov_sum = sha(path("ov.qcow2"));
	fx_start(false, NULL, POLICY_ASK);
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(flow_request(F->flow, VM(), ACT_CANCEL, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_INTERRUPTED);
	CHECK_INT_EQ(F->ui.last_res, RESULT_CANCELLED);
	CHECK(journal_present());
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME) | A(ACT_KEEP));
	/* The overlay is untouched by a cancelled commit. */
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(sh("qemu-io -r -c 'read -P 0x33 0 32M' base.qcow2 >/dev/null") == 0);
	free(ov_sum);
	free(ov_after);
	fx_stop();
}

static void test_enospc_rebuild(void)
{
	fx_images("enospc");
	/* The overlay lives on a small tmpfs, filled up; the base outside. */
	sh_ok("mkdir small && mount -t tmpfs -o size=2m tmpfs small && rm ov.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b \"$PWD/base.qcow2\" small/ov.qcow2 && "
	      "qemu-io -c 'write -P 0xee 0 256k' small/ov.qcow2 >/dev/null && "
	      "(dd if=/dev/zero of=small/fill bs=4k 2>/dev/null; true)",
	      "");
	char ov[4200];
	snprintf(ov, sizeof ov, "%s", path("small/ov.qcow2"));
	F->overlay = ov;
	char *ov_sum = sha(ov);
	REQUIRE(ov_sum);
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->flow == FLOW_CLEAN);

	/* No room for a fresh overlay: refused before anything is written,
	 * with the numbers (room.c). */
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "not enough room for a fresh overlay: it needs about 1.0 MiB on"));
	CHECK(why && strstr(why, "/small, "));
	free(why);
	why = NULL;
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(sh("ls -A small | grep -q '^\\.ov\\.qcow2\\.'") != 0);
	char *ov_refused = sha(ov);
	CHECK_STR_EQ(ov_refused, ov_sum);
	free(ov_refused);

	/* The room is there when the check runs and gone when qemu-img
	 * creates the fresh overlay: a real ENOSPC mid-rebuild. The qemu-img
	 * run fills the tmpfs first, once. */
	REQUIRE(sh("rm small/fill && touch fill-once") == 0);
	char qi[4200];
	snprintf(qi, sizeof qi, "%s", path("fill-qemu-img"));
	FILE *w = fopen(qi, "w");
	REQUIRE(w);
	fprintf(w,
		"#!/bin/sh\n"
		"if [ \"$1\" = create ] && rm '%s' 2>/dev/null; then\n"
		"  dd if=/dev/zero of='%s' bs=4k 2>/dev/null\n"
		"fi\n"
		"exec qemu-img \"$@\"\n",
		path("fill-once"), path("small/fill"));
	REQUIRE(fclose(w) == 0 && chmod(qi, 0755) == 0);
	F->cfg.qemu_img = qi;
	REQUIRE(flow_request(F->flow, VM(), ACT_DISCARD, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(VM()->error && strstr(VM()->error, "No space left"));
	CHECK(VM()->error && strstr(VM()->error, "old overlay is kept"));
	char *ov_after = sha(ov);
	CHECK_STR_EQ(ov_after, ov_sum);
	CHECK(sh("ls -A small | grep -q '^\\.ov\\.qcow2\\.'") != 0); /* temp file removed */
	CHECK(access(path("small/ov.qcow2.discarded"), F_OK) != 0);
	CHECK(VM()->actions & A(ACT_RETRY));

	/* Space again: Retry completes the discard. */
	REQUIRE(sh("rm small/fill") == 0);
	F->cfg.qemu_img = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_RETRY, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(overlay_empty(ov));
	char *disc = sha(path("small/ov.qcow2.discarded"));
	CHECK_STR_EQ(disc, ov_sum);
	free(disc);
	free(ov_sum);
	free(ov_after);
	fx_stop();
	sh("umount small");
}

static void test_symlink_overlay_refused(void)
{
	fx_images("symlink");
	sh_ok("mkdir real && mv ov.qcow2 real/ && rm real/ov.qcow2 && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b \"$PWD/base.qcow2\" real/ov.qcow2 && "
	      "ln -s real/ov.qcow2 ov.qcow2",
	      "");
	fx_start(false, NULL, POLICY_ASK);
	char *why = NULL;
	/* rename() over a symlink would replace the link, not the image. */
	if (flow_request(F->flow, VM(), ACT_DISCARD, &why))
		wait_not_busy(5000);
	CHECK(why && strstr(why, "symbolic link"));
	CHECK(sh("test -L ov.qcow2") == 0);
	free(why);
	/* A commit would empty the overlay and then hit the same refusal in
	 * its rebuild (issue 12, defect 5): refused before it starts. */
	char *base_sum = sha(path("base.qcow2"));
	why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(why && strstr(why, "symbolic link"));
	free(why);
	CHECK(!flow_busy(F->flow));
	CHECK(!journal_present());
	char *base_after = sha(path("base.qcow2"));
	CHECK_STR_EQ(base_after, base_sum);
	free(base_sum);
	free(base_after);
	/* imageops refuses on its own too (the helper has no watcher). */
	struct imageops_rebuild rb;
	char *err = NULL;
	CHECK_INT_EQ(imageops_rebuild_prepare(&rb, "qemu-img", path("ov.qcow2"), path("base.qcow2"),
					      "qcow2", &err),
		     -ELOOP);
	CHECK(err && strstr(err, "symbolic link"));
	free(err);
	CHECK(sh("ls -A | grep -q '^\\.ov\\.qcow2\\.'") != 0);
	fx_stop();
}

/* Issue 12 defect 2: the overlay is held with qemu's image lock for the
 * whole rebuild (a qemu opening it fails on the lock), and a start that got
 * past the lock anyway (libvirt's test driver opens no file, as a qemu with
 * locking=off would not respect it) is seen at the last check before the
 * rename(): the rebuild is abandoned, the overlay stays the very file the
 * VM opened, the temp file goes, the state is running. */
static void test_start_during_rebuild_abandons(void)
{
	fx_images("startrace");
	sh_ok("qemu-io -c 'write -P 0xcd 0 2M' ov.qcow2 >/dev/null", "");
	static char wrapper[4300];
	snprintf(wrapper, sizeof wrapper, "%s/slow-qemu-img", F->dir);
	FILE *w = fopen(wrapper, "w");
	REQUIRE(w);
	fprintf(w, "#!/bin/sh\nif [ \"$1\" = create ]; then sleep 1; fi\nexec qemu-img \"$@\"\n");
	fclose(w);
	REQUIRE(chmod(wrapper, 0755) == 0);
	F->cfg.qemu_img = wrapper;
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->flow == FLOW_CLEAN);
	struct stat before, after;
	REQUIRE(stat(path("ov.qcow2"), &before) == 0);
	char *ov_sum = sha(path("ov.qcow2"));
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK_INT_EQ(VM()->flow, FLOW_REBUILDING);
	CHECK(imageops_locked(path("ov.qcow2")));
	/* What a VM start does first: qemu opens the image read-write. */
	char *o = NULL;
	CHECK(test_sh_out(&o, "cd '%s' && qemu-io -c 'read 0 512' ov.qcow2 2>&1", F->dir) != 0);
	CHECK(o && strstr(o, "\"write\" lock"));
	free(o);
	dom_do("start");
	REQUIRE(wait_not_busy(15000));
	CHECK_INT_EQ(VM()->flow, FLOW_RUNNING);
	CHECK_INT_EQ(F->ui.last_res, RESULT_FAILED);
	CHECK(strstr(F->ui.last_msg, "abandoned"));
	REQUIRE(stat(path("ov.qcow2"), &after) == 0);
	CHECK(after.st_ino == before.st_ino && after.st_dev == before.st_dev);
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	CHECK(access(path("ov.qcow2.discarded"), F_OK) != 0);
	CHECK(sh("ls -A | grep -q '^\\.ov\\.qcow2\\.'") != 0);
	CHECK(!imageops_locked(path("ov.qcow2")));
	/* The session is still on the overlay: its stop asks again. */
	dom_do("destroy");
	REQUIRE(wait_state(FLOW_PENDING, 3000));
	CHECK(sh("qemu-io -r -c 'read -P 0xcd 0 2M' ov.qcow2 >/dev/null") == 0);
	free(ov_sum);
	free(ov_after);
	fx_stop();
}

static void test_shared_base_refused(void)
{
	fx_images("shared");
	sh_ok("qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 ov2.qcow2 && "
	      "qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null",
	      "");
	char extra[8192];
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&buf, &len);
		domain(m, "neighbour", false, path("ov2.qcow2"));
		fclose(m);
		snprintf(extra, sizeof extra, "%s", buf);
		free(buf);
	}
	char *base_sum = sha(path("base.qcow2"));
	fx_start(false, extra, POLICY_ASK);
	REQUIRE(VM()->flow == FLOW_CLEAN);
	CHECK_STR_EQ(VM()->disks[0].shared_with, "neighbour");
	CHECK(!(VM()->actions & A(ACT_COMMIT)));
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(why && strstr(why, "neighbour"));
	free(why);
	CHECK(!flow_busy(F->flow));
	CHECK(!journal_present());
	char *base_after = sha(path("base.qcow2"));
	CHECK_STR_EQ(base_after, base_sum);
	/* Discarding only touches this VM's overlay: allowed. */
	CHECK(VM()->actions & A(ACT_DISCARD));
	free(base_sum);
	free(base_after);
	fx_stop();
}

static void test_running_refused(void)
{
	fx_images("running");
	fx_start(true, NULL, POLICY_ASK);
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(why && strstr(why, "running"));
	free(why);
	dom_do("destroy");
	REQUIRE(wait_state(FLOW_PENDING, 3000));
	CHECK_INT_EQ(VM()->last_stop, STOP_UNCLEAN);
	/* Started before the event reached us: libvirt, asked right before the
	 * operation, says it runs, so nothing starts. */
	dom_do("start");
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "not shut off"));
	free(why);
	CHECK(!flow_busy(F->flow));
	REQUIRE(wait_state(FLOW_RUNNING, 3000));
	CHECK_INT_EQ(F->ui.withdraws, 1); /* the prompt was withdrawn */
	CHECK(access(path("ov.qcow2.discarded"), F_OK) != 0);
	CHECK(backed_by_base(path("ov.qcow2")));

	/* The qemu lock held by another process (a "running VM" outside
	 * libvirt's knowledge): commit refused as in use, nothing changed. */
	dom_do("shutdown");
	REQUIRE(wait_state(FLOW_PENDING, 3000));
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		execlp("qemu-io", "qemu-io", "-c", "sleep 20000", path("ov.qcow2"), (char *)NULL);
		_exit(127);
	}
	int64_t end = loop_now_ms() + 3000;
	while (!imageops_locked(path("ov.qcow2")) && loop_now_ms() < end)
		usleep(20000);
	CHECK(imageops_locked(path("ov.qcow2")));
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "in use"));
	free(why);
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(VM()->error && strstr(VM()->error, "in use"));
	CHECK(!journal_present());
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CHECK(!imageops_locked(path("ov.qcow2")));
	fx_stop();
}

static void test_policies_on_stop(void)
{
	/* commit after a clean stop: no user action at all. */
	fx_images("pol-commit");
	sh_ok("qemu-io -c 'write -P 0x77 0 1M' ov.qcow2 >/dev/null", "");
	fx_start(true, NULL, POLICY_COMMIT);
	dom_do("shutdown");
	REQUIRE(wait_state(FLOW_CLEAN, 20000));
	CHECK_INT_EQ(F->ui.last_res, RESULT_COMMITTED);
	CHECK_INT_EQ(F->ui.prompts, 0);
	CHECK(sh("qemu-io -r -c 'read -P 0x77 0 1M' base.qcow2 >/dev/null") == 0);
	fx_stop();

	/* commit after an unclean stop (destroy): the policy applies too. */
	fx_images("pol-commit-unclean");
	sh_ok("qemu-io -c 'write -P 0x78 0 1M' ov.qcow2 >/dev/null", "");
	fx_start(true, NULL, POLICY_COMMIT);
	dom_do("destroy");
	REQUIRE(wait_state(FLOW_CLEAN, 20000));
	CHECK_INT_EQ(F->ui.prompts, 0);
	CHECK_INT_EQ(VM()->last_stop, STOP_UNCLEAN);
	CHECK(sh("qemu-io -r -c 'read -P 0x78 0 1M' base.qcow2 >/dev/null") == 0);
	fx_stop();

	/* ask after an unclean stop: prompted, flagged unclean, nothing done. */
	fx_images("pol-ask-unclean");
	sh_ok("qemu-io -c 'write -P 0x77 0 1M' ov.qcow2 >/dev/null", "");
	char *base_sum = sha(path("base.qcow2"));
	fx_start(true, NULL, POLICY_ASK);
	dom_do("destroy");
	REQUIRE(wait_state(FLOW_PENDING, 3000));
	CHECK_INT_EQ(F->ui.prompts, 1);
	CHECK_INT_EQ(VM()->last_stop, STOP_UNCLEAN);
	char *base_after = sha(path("base.qcow2"));
	CHECK_STR_EQ(base_after, base_sum);
	free(base_sum);
	free(base_after);
	fx_stop();

	/* discard after an unclean stop: applied (kiosk reset). */
	fx_images("pol-discard-unclean");
	sh_ok("qemu-io -c 'write -P 0x77 0 1M' ov.qcow2 >/dev/null", "");
	fx_start(true, NULL, POLICY_DISCARD);
	dom_do("destroy");
	REQUIRE(wait_state(FLOW_CLEAN, 10000));
	CHECK_INT_EQ(F->ui.last_res, RESULT_DISCARDED);
	CHECK(overlay_empty(path("ov.qcow2")));
	fx_stop();

	/* keep: nothing happens, both choices stay offered. */
	fx_images("pol-keep");
	fx_start(true, NULL, POLICY_KEEP);
	dom_do("shutdown");
	REQUIRE(wait_state(FLOW_KEPT, 3000));
	CHECK_INT_EQ(VM()->actions, A(ACT_COMMIT) | A(ACT_DISCARD));
	CHECK_INT_EQ(F->ui.prompts, 0);
	fx_stop();

	/* saved state: never touched, nothing offered. */
	fx_images("pol-saved");
	fx_start(true, NULL, POLICY_DISCARD);
	char *ov_sum = sha(path("ov.qcow2"));
	dom_do("managedsave");
	REQUIRE(wait_state(FLOW_SAVED, 3000));
	CHECK_INT_EQ(VM()->actions, 0);
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	free(why);
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	free(ov_sum);
	free(ov_after);
	fx_stop();
}

static int helper_calls;
static char **helper_argv(void *data, const struct vm *vm, size_t disk, enum imageops_op op,
				  bool keep)
{
	helper_calls++;
	/* A real program standing where pkexec would: it exits as pkexec
	 * does when the user dismisses the dialog. */
	char **argv = calloc(4, sizeof *argv);
	argv[0] = strdup("/bin/sh");
	argv[1] = strdup("-c");
	argv[2] = strdup("exit 126");
	return argv;
}

static void test_permission_denied(void)
{
	fx_images("perm");
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null", "");
	fx_start(false, NULL, POLICY_ASK);
	char *ov_sum = sha(path("ov.qcow2"));
	/* An immutable directory: even root gets EPERM creating the temp file. */
	REQUIRE(sh("chattr +i .") == 0);
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "permission denied"));
	free(why);
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(VM()->error && strstr(VM()->error, "permission denied"));
	/* Without a helper a commit is refused before it starts: it would
	 * empty the overlay, and the rebuild after it could not make its temp
	 * file (issue 12, defect 5). */
	char *base_sum = sha(path("base.qcow2"));
	why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(why && strstr(why, "cannot commit") && strstr(why, "permission denied"));
	free(why);
	CHECK(!flow_busy(F->flow));
	CHECK(!journal_present());
	char *base_after = sha(path("base.qcow2"));
	CHECK_STR_EQ(base_after, base_sum);
	free(base_sum);
	free(base_after);

	flow_set_privileged(F->flow, &(struct flow_privileged){.argv = helper_argv});
	why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_RETRY, &why));
	REQUIRE(wait_not_busy(5000));
	CHECK_INT_EQ(helper_calls, 1);
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(VM()->error && strstr(VM()->error, "dismissed"));
	REQUIRE(sh("chattr -i .") == 0);
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	free(ov_sum);
	free(ov_after);
	fx_stop();
}

/* ---- issue 12: the commit journal is never forgotten ---- */

static const char *helper_script; /* what the stand-in for pkexec runs */
static char **script_helper_argv(void *data, const struct vm *vm, size_t disk, enum imageops_op op,
				  bool keep)
{
	helper_calls++;
	char **argv = calloc(4, sizeof *argv);
	argv[0] = strdup("/bin/sh");
	argv[1] = strdup("-c");
	argv[2] = strdup(helper_script);
	return argv;
}

/* pkexec or vmoverlay-helper not installed: no command at all. */
static char **no_helper_argv(void *data, const struct vm *vm, size_t disk, enum imageops_op op,
				  bool keep)
{
	helper_calls++;
	return NULL;
}

static pid_t hold_lock(const char *file)
{
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		execlp("qemu-io", "qemu-io", "-c", "sleep 20000", file, (char *)NULL);
		_exit(127);
	}
	int64_t end = loop_now_ms() + 5000;
	while (!imageops_locked(file) && loop_now_ms() < end)
		usleep(20000);
	return pid;
}

/* After a failed Resume: still INTERRUPTED, journal kept, Resume/Keep only,
 * the message names the reason (docs/design.md §4 rule 8). */
static void check_still_interrupted(const char *reason)
{
	CHECK_INT_EQ(VM()->flow, FLOW_INTERRUPTED);
	CHECK(journal_present());
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME) | A(ACT_KEEP));
	CHECK(VM()->error && strstr(VM()->error, "could not be resumed"));
	CHECK(VM()->error && strstr(VM()->error, "half-merged"));
	CHECK(VM()->error && strstr(VM()->error, reason));
	if (!VM()->error || !strstr(VM()->error, reason))
		fprintf(stderr, "error: %s\n", VM()->error ? VM()->error : "(none)");
	CHECK_INT_EQ(F->ui.last_res, RESULT_FAILED);
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "half-merged"));
	free(why);
}

static void test_resume_failures_keep_journal(void)
{
	fx_images("resume-fail");
	sh_ok("qemu-io -c 'write -P 0x11 0 8M' base.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0x22 0 8M' ov.qcow2 >/dev/null && "
	      /* half-merged: the first MiB already made it into the base */
	      "qemu-io -c 'write -P 0x22 0 1M' base.qcow2 >/dev/null",
	      "");
	mkdir(F->state_dir, 0700);
	/* A journal named after the VM (from before issue 12): it names this
	 * domain's disk, so it becomes this domain's at start-up. */
	char *jp = imageops_journal_legacy_path(F->state_dir, "vm");
	char *err = NULL;
	struct imageops_journal jw = {
	    .vm = "vm", .overlay = path("ov.qcow2"), .base = path("base.qcow2")};
	REQUIRE(imageops_journal_write(jp, &jw, &err) == 0);
	free(jp);
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->flow == FLOW_INTERRUPTED);
	char *ov_sum = sha(path("ov.qcow2"));
	char *why = NULL;

	/* 1. The image is locked by another process: qemu-img fails while
	 * opening (it wrote nothing, but the journal is not this attempt's). */
	pid_t holder = hold_lock(path("ov.qcow2"));
	REQUIRE(imageops_locked(path("ov.qcow2")));
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(10000));
	check_still_interrupted("in use");
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);

	/* 2. Permission denied (immutable base), the helper's dialog is
	 * dismissed (pkexec 126). */
	REQUIRE(sh("chattr +i base.qcow2") == 0);
	helper_calls = 0;
	helper_script = "exit 126";
	flow_set_privileged(F->flow, &(struct flow_privileged){.argv = script_helper_argv});
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(helper_calls, 1);
	check_still_interrupted("dismissed");

	/* 3. The helper refuses or fails (exit 5, its last line). */
	helper_script = "echo 'vm: refusing: the domain is not shut off.' >&2; exit 5";
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(helper_calls, 2);
	check_still_interrupted("not shut off");

	/* 4. No helper can be run at all (pkexec missing). */
	flow_set_privileged(F->flow, &(struct flow_privileged){.argv = no_helper_argv});
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(helper_calls, 3);
	check_still_interrupted("privileged helper");

	/* Keep, then a failing Resume from KEPT: back to INTERRUPTED. */
	REQUIRE(flow_request(F->flow, VM(), ACT_KEEP, &why));
	CHECK_INT_EQ(VM()->flow, FLOW_KEPT);
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(10000));
	check_still_interrupted("privileged helper");

	/* Nothing of it touched the overlay; fixed, Resume completes. */
	char *ov_after = sha(path("ov.qcow2"));
	CHECK_STR_EQ(ov_after, ov_sum);
	REQUIRE(sh("chattr -i base.qcow2") == 0);
	flow_set_privileged(F->flow, NULL);
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(!journal_present());
	CHECK(sh("qemu-io -r -c 'read -P 0x22 0 8M' base.qcow2 | grep -q 'verification failed'") !=
	      0);
	CHECK(sh("qemu-io -r -c 'read -P 0x22 0 8M' base.qcow2 >/dev/null") == 0);
	CHECK(overlay_empty(path("ov.qcow2")));
	free(ov_sum);
	free(ov_after);
	fx_stop();
}

/* The attempt that wrote the journal and provably wrote nothing else
 * removes it (FAILED, Retry); a helper whose commit completed but whose
 * rebuild failed (exit 8) is reported as committed, never as "nothing was
 * changed". */
static void test_fresh_commit_helper_results(void)
{
	fx_images("fresh-helper");
	sh_ok("qemu-io -c 'write -P 0x33 0 1M' ov.qcow2 >/dev/null", "");
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(sh("chattr +i base.qcow2") == 0);
	char *why = NULL;
	helper_calls = 0;
	helper_script = "exit 126";
	flow_set_privileged(F->flow, &(struct flow_privileged){.argv = script_helper_argv});
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(helper_calls, 1);
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(!journal_present());
	CHECK(VM()->error && strstr(VM()->error, "dismissed"));
	CHECK(VM()->actions & A(ACT_RETRY));

	helper_script =
	    "echo 'permission denied: cannot create a file next to ov.qcow2' >&2; exit 8";
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(!journal_present());
	CHECK(VM()->error && strstr(VM()->error, "were committed"));
	CHECK(VM()->error && strstr(VM()->error, "cannot create a file"));
	CHECK(VM()->error && !strstr(VM()->error, "nothing was changed"));
	if (VM()->error)
		fprintf(stderr, "exit 8 reads: %s\n", VM()->error);
	CHECK(VM()->actions & A(ACT_RETRY));
	REQUIRE(sh("chattr -i base.qcow2") == 0);
	fx_stop();
}

/* Fills the stack below the caller with non-zero bytes, so a struct left
 * uninitialised in a later call's frame holds garbage pointers, not
 * lucky zeros (check_journals' journal before issue 12). */
static __attribute__((noinline)) void scribble_stack(void)
{
	volatile unsigned char junk[16384];
	memset((unsigned char *)junk, 0xa5, sizeof junk);
}

/* No state directory (no journal path): nothing is read, nothing freed. */
static void test_check_journals_without_state(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct vm_config vc = {.name = "vm", .policy = POLICY_ASK};
	struct config cfg = {.connect = "test:///default", .vms = &vc, .n_vms = 1};
	struct model model;
	REQUIRE(model_init(&model, loop, &cfg));
	struct ui_rec ui = {0};
	struct flow_ui fui = {.result = ui_result, .data = &ui};
	scribble_stack();
	struct flow *flow = flow_create(loop, &model, &cfg, NULL, NULL, &fui);
	REQUIRE(flow);
	struct vm *vm = model_find(&model, "vm");
	REQUIRE(vm);
	CHECK(vm->flow != FLOW_INTERRUPTED);
	/* A commit needs the journal first: refused, with the reason. */
	char *why = NULL;
	vm->flow = FLOW_KEPT;
	CHECK(!flow_request(flow, vm, ACT_COMMIT, &why));
	CHECK(why != NULL);
	free(why);
	flow_reconfigure(flow, &cfg); /* check_journals again */
	flow_destroy(flow);
	model_finish(&model);
	loop_destroy(loop);
}

/* The journal's directory entry must be durable before qemu-img starts:
 * a failing directory fsync fails the journal write. Made real without
 * fault injection: a directory its user may write and search but not
 * read (0300) lets open(tmp) and rename() succeed and makes the
 * directory's open(O_RDONLY) for the fsync fail (EACCES), as root drops
 * to nobody (root would override the mode). */
static void test_journal_dir_fsync_checked(void)
{
	/* Under /tmp: nobody must be able to reach it (test_tmpdir is 0700). */
	char dir[] = "/tmp/vmo-journal-nofsync.XXXXXX";
	REQUIRE(mkdtemp(dir));
	REQUIRE(chmod(dir, 0300) == 0);
	if (geteuid() == 0)
		REQUIRE(chown(dir, 65534, 65534) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		char p[4300];
		snprintf(p, sizeof p, "%s/vm.commit", dir);
		char *err = NULL;
		struct imageops_journal jw = {
		    .vm = "vm", .overlay = "/x/ov.qcow2", .base = "/x/base.qcow2"};
		int r = imageops_journal_write(p, &jw, &err);
		fprintf(stderr, "journal write into an unreadable directory: %d %s\n", r,
			err ? err : "");
		_exit(r == -EACCES && err && strstr(err, "commit journal") ? 0 : 1);
	}
	int st = 0;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* The journal file itself was written and renamed into place: only
	 * the directory fsync failed. */
	char jp[64];
	snprintf(jp, sizeof jp, "%s/vm.commit", dir);
	CHECK(access(jp, F_OK) == 0);
	test_sh("rm -rf '%s'", dir);

	/* And the flow does not start a commit whose journal cannot be
	 * written (an immutable state directory: EPERM even for root). */
	fx_images("journal-unwritable");
	sh_ok("qemu-io -c 'write -P 0x44 0 1M' ov.qcow2 >/dev/null", "");
	char *base_sum = sha(path("base.qcow2"));
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(sh("chattr +i state") == 0);
	char *why = NULL;
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(why && strstr(why, "commit journal"));
	free(why);
	CHECK(!flow_busy(F->flow));
	CHECK(!journal_present());
	REQUIRE(sh("chattr -i state") == 0);
	char *base_after = sha(path("base.qcow2"));
	CHECK_STR_EQ(base_after, base_sum);
	free(base_sum);
	free(base_after);
	fx_stop();
}


/* ---- issue 15: a VM with several disks ---- */

/* A second overlay in dir/data (a directory of its own, as a data disk on
 * another volume would be): data/ov2.qcow2 on data/base2.qcow2 as vdb. */
static void fx_second_disk(void)
{
	sh_ok("mkdir -p data && qemu-img create -q -f qcow2 data/base2.qcow2 32M && "
	      "qemu-img create -q -f qcow2 -F qcow2 -b base2.qcow2 data/ov2.qcow2",
	      "");
	snprintf(F->extra_disks, sizeof F->extra_disks,
		 "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
		 "<source file='%s'/><target dev='vdb' bus='virtio'/></disk>",
		 path("data/ov2.qcow2"));
}

/* qemu-io's reads of img all verify: its exit status and no failed pattern
 * (qemu-io prints the read line even after "Pattern verification failed"). */
static bool reads(const char *img, const char *cmds)
{
	char cmd[4600];
	snprintf(cmd, sizeof cmd,
		 "o=$(qemu-io -r %s '%s' 2>&1) && ! printf '%%s' \"$o\" | grep -q 'verification "
		 "failed'",
		 cmds, img);
	return sh(cmd) == 0;
}

static bool journal_states(enum imageops_disk_state s0, enum imageops_disk_state s1)
{
	char *p = imageops_journal_path(F->state_dir, VM()->uri, VM()->uuid);
	struct imageops_journal j;
	bool ok = p && imageops_journal_read(p, &j) == 0 && j.n_disks == 2 &&
		  j.disks[0].state == s0 && j.disks[1].state == s1 && j.disks[0].target &&
		  strcmp(j.disks[0].target, "vda") == 0 && j.disks[1].target &&
		  strcmp(j.disks[1].target, "vdb") == 0;
	if (!ok && p)
		test_sh("cat '%s' >&2", p);
	imageops_journal_clear(&j);
	free(p);
	return ok;
}

static void test_multi_disk_commit(void)
{
	fx_images("multi-commit");
	fx_second_disk();
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0xcd 2M 3M' data/ov2.qcow2 >/dev/null",
	      "");
	fx_start(true, NULL, POLICY_ASK);
	REQUIRE(VM()->n_disks == 2);
	CHECK_STR_EQ(VM()->disks[0].target, "vda");
	CHECK_STR_EQ(VM()->disks[1].target, "vdb");
	CHECK(vm_overlay_bytes(VM()) >= (4u << 20));
	dom_do("shutdown");
	REQUIRE(wait_state(FLOW_PENDING, 3000));
	CHECK_INT_EQ(F->ui.prompts, 1); /* one decision for the VM */
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(journal_present());
	int64_t end = loop_now_ms() + 30000;
	double last = 0;
	bool monotonic = true;
	while (flow_busy(F->flow) && loop_now_ms() < end) {
		loop_iterate(F->loop, 5);
		if (VM()->flow == FLOW_COMMITTING && VM()->progress >= 0) {
			monotonic = monotonic && VM()->progress + 0.001 >= last &&
				    VM()->progress <= 100.0;
			last = VM()->progress;
		}
	}
	REQUIRE(wait_not_busy(30000));
	CHECK(monotonic); /* one bar over both disks, never back */
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK_INT_EQ(F->ui.last_res, RESULT_COMMITTED);
	CHECK(F->ui.last_bytes >= (4u << 20));
	CHECK(!journal_present());
	CHECK(reads(path("base.qcow2"), "-c 'read -P 0xab 0 1M' -c 'read -P 0 1M 7M'"));
	CHECK(reads(path("data/base2.qcow2"), "-c 'read -P 0 0 2M' -c 'read -P 0xcd 2M 3M'"));
	CHECK(overlay_empty(path("ov.qcow2")));
	CHECK(overlay_empty(path("data/ov2.qcow2")));
	CHECK(backed_by_base(path("ov.qcow2")));
	CHECK(sh("qemu-img info data/ov2.qcow2 | grep -q '^backing file: base2.qcow2'") == 0);
	CHECK(reads(path("data/ov2.qcow2"), "-c 'read -P 0xcd 2M 3M'"));
	fx_stop();
}

/* The second disk's commit cannot start (its base is immutable: EPERM
 * while opening, nothing written) after the first one's finished: the set
 * is half committed, so the journal stays, naming vda committed and vdb
 * still to do; only Resume/Keep; a restart still says so; Resume commits
 * vdb only. */
static void test_multi_disk_commit_stops_between(void)
{
	fx_images("multi-stop");
	fx_second_disk();
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0xcd 2M 3M' data/ov2.qcow2 >/dev/null",
	      "");
	char *b2 = sha(path("data/base2.qcow2"));
	REQUIRE(sh("chattr +i data/base2.qcow2") == 0);
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->n_disks == 2);
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_INTERRUPTED);
	CHECK(VM()->error && strstr(VM()->error, "vda committed, vdb not"));
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME) | A(ACT_KEEP));
	CHECK(journal_states(JDISK_DONE, JDISK_RUNNING));
	CHECK(reads(path("base.qcow2"), "-c 'read -P 0xab 0 1M'"));
	char *b2_now = sha(path("data/base2.qcow2"));
	CHECK_STR_EQ(b2_now, b2);
	free(b2_now);
	CHECK(!flow_request(F->flow, VM(), ACT_DISCARD, &why));
	CHECK(why && strstr(why, "half-merged"));
	free(why);
	why = NULL;

	/* The applet stops and starts again: still interrupted. */
	fx_stop();
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(wait_state(FLOW_INTERRUPTED, 3000));
	CHECK_INT_EQ(VM()->actions, A(ACT_RESUME) | A(ACT_KEEP));
	REQUIRE(sh("chattr -i data/base2.qcow2") == 0);
	REQUIRE(flow_request(F->flow, VM(), ACT_RESUME, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(!journal_present());
	CHECK(reads(path("base.qcow2"), "-c 'read -P 0xab 0 1M' -c 'read -P 0 1M 7M'"));
	CHECK(reads(path("data/base2.qcow2"), "-c 'read -P 0xcd 2M 3M'"));
	CHECK(overlay_empty(path("ov.qcow2")));
	CHECK(overlay_empty(path("data/ov2.qcow2")));
	free(b2);
	fx_stop();
}

static void test_multi_disk_discard_and_undo(void)
{
	fx_images("multi-discard");
	fx_second_disk();
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0xcd 2M 3M' data/ov2.qcow2 >/dev/null",
	      "");
	char *s1 = sha(path("ov.qcow2")), *s2 = sha(path("data/ov2.qcow2"));
	char *b1 = sha(path("base.qcow2")), *b2 = sha(path("data/base2.qcow2"));
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->n_disks == 2);
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_DISCARD, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK_INT_EQ(F->ui.last_res, RESULT_DISCARDED);
	CHECK(overlay_empty(path("ov.qcow2")));
	CHECK(overlay_empty(path("data/ov2.qcow2")));
	char *d1 = sha(path("ov.qcow2.discarded")), *d2 = sha(path("data/ov2.qcow2.discarded"));
	CHECK_STR_EQ(d1, s1);
	CHECK_STR_EQ(d2, s2);
	char *b1n = sha(path("base.qcow2")), *b2n = sha(path("data/base2.qcow2"));
	CHECK_STR_EQ(b1n, b1);
	CHECK_STR_EQ(b2n, b2);
	CHECK(access(path("state"), F_OK) == 0);
	CHECK(sh("ls state | grep -q '\\.set$'") != 0); /* the set journal went */
	CHECK(VM()->has_discarded);
	CHECK(VM()->actions & A(ACT_UNDO_DISCARD));
	REQUIRE(flow_request(F->flow, VM(), ACT_UNDO_DISCARD, &why));
	REQUIRE(wait_not_busy(10000));
	CHECK_INT_EQ(VM()->flow, FLOW_KEPT);
	char *u1 = sha(path("ov.qcow2")), *u2 = sha(path("data/ov2.qcow2"));
	CHECK_STR_EQ(u1, s1);
	CHECK_STR_EQ(u2, s2);
	CHECK(access(path("ov.qcow2.discarded"), F_OK) != 0);
	CHECK(access(path("data/ov2.qcow2.discarded"), F_OK) != 0);
	CHECK(sh("ls state | grep -q '\\.set$'") != 0);
	free(s1), free(s2), free(b1), free(b2), free(d1), free(d2), free(b1n), free(b2n);
	free(u1), free(u2);
	fx_stop();
}

/* The discard of vda succeeded, then vdb's directory became immutable
 * (a qemu-img wrapper does it right after vda's fresh overlay was made):
 * vdb's rebuild cannot start. Half discarded: the .set journal stays, the
 * VM is FAILED with only Retry (Commit would commit vdb's session over
 * vda's discarded one), also after a restart; Retry finishes vdb and
 * leaves vda's discarded overlay alone. */
static void test_multi_disk_discard_half_way(void)
{
	fx_images("multi-half");
	fx_second_disk();
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0xcd 2M 3M' data/ov2.qcow2 >/dev/null",
	      "");
	char *s1 = sha(path("ov.qcow2")), *s2 = sha(path("data/ov2.qcow2"));
	static char qi[4300];
	snprintf(qi, sizeof qi, "%s/lock-data-qemu-img", F->dir);
	FILE *w = fopen(qi, "w");
	REQUIRE(w);
	fprintf(w,
		"#!/bin/sh\n"
		"qemu-img \"$@\" || exit $?\n"
		"if [ \"$1\" = create ] && rm '%s' 2>/dev/null; then chattr +i '%s'; fi\n",
		path("once"), path("data"));
	REQUIRE(fclose(w) == 0 && chmod(qi, 0755) == 0);
	REQUIRE(sh("touch once") == 0);
	F->cfg.qemu_img = qi;
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->n_disks == 2);
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_DISCARD, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_FAILED);
	CHECK(VM()->error && strstr(VM()->error, "vda discarded, vdb not"));
	CHECK_INT_EQ(VM()->actions, A(ACT_RETRY));
	CHECK(sh("ls state | grep -q '\\.set$'") == 0);
	CHECK(overlay_empty(path("ov.qcow2")));
	char *now2 = sha(path("data/ov2.qcow2"));
	CHECK_STR_EQ(now2, s2);
	free(now2);
	CHECK(!flow_request(F->flow, VM(), ACT_COMMIT, &why));
	CHECK(why && strstr(why, "half-way"));
	free(why);
	why = NULL;

	fx_stop();
	F->cfg.qemu_img = NULL;
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(wait_state(FLOW_FAILED, 3000));
	CHECK_INT_EQ(VM()->actions, A(ACT_RETRY));
	REQUIRE(sh("chattr -i data") == 0);
	REQUIRE(flow_request(F->flow, VM(), ACT_RETRY, &why));
	REQUIRE(wait_not_busy(30000));
	CHECK_INT_EQ(VM()->flow, FLOW_CLEAN);
	CHECK(sh("ls state | grep -q '\\.set$'") != 0);
	CHECK(overlay_empty(path("data/ov2.qcow2")));
	char *d1 = sha(path("ov.qcow2.discarded")), *d2 = sha(path("data/ov2.qcow2.discarded"));
	CHECK_STR_EQ(d1, s1); /* vda's session, not its fresh overlay */
	CHECK_STR_EQ(d2, s2);
	free(d1), free(d2), free(s1), free(s2);
	fx_stop();
}

/* Quit while the first disk's fresh overlay is made (after both commits):
 * that rebuild finishes, nothing new starts (the second disk keeps its
 * emptied overlay, as good as a fresh one), no journal is left. */
static void test_multi_disk_quit_between(void)
{
	fx_images("multi-quit");
	fx_second_disk();
	sh_ok("qemu-io -c 'write -P 0xab 0 1M' ov.qcow2 >/dev/null && "
	      "qemu-io -c 'write -P 0xcd 2M 3M' data/ov2.qcow2 >/dev/null",
	      "");
	static char qi[4300];
	snprintf(qi, sizeof qi, "%s/slow-create", F->dir);
	FILE *w = fopen(qi, "w");
	REQUIRE(w);
	fprintf(w, "#!/bin/sh\nif [ \"$1\" = create ]; then sleep 1; fi\nexec qemu-img \"$@\"\n");
	REQUIRE(fclose(w) == 0 && chmod(qi, 0755) == 0);
	F->cfg.qemu_img = qi;
	fx_start(false, NULL, POLICY_ASK);
	REQUIRE(VM()->n_disks == 2);
	struct stat ov2_before;
	char *why = NULL;
	REQUIRE(flow_request(F->flow, VM(), ACT_COMMIT, &why));
	REQUIRE(wait_state(FLOW_REBUILDING, 30000));
	REQUIRE(stat(path("data/ov2.qcow2"), &ov2_before) == 0);
	flow_stop(F->flow);
	REQUIRE(wait_not_busy(30000));
	for (int i = 0; i < 20; i++)
		loop_iterate(F->loop, 10);
	CHECK(!flow_busy(F->flow));
	CHECK(!journal_present());
	struct stat ov2_after;
	REQUIRE(stat(path("data/ov2.qcow2"), &ov2_after) == 0);
	CHECK(ov2_after.st_ino == ov2_before.st_ino); /* not rebuilt after the quit */
	CHECK(overlay_empty(path("data/ov2.qcow2")));
	CHECK(overlay_empty(path("ov.qcow2")));
	CHECK(reads(path("base.qcow2"), "-c 'read -P 0xab 0 1M'"));
	CHECK(reads(path("data/base2.qcow2"), "-c 'read -P 0xcd 2M 3M'"));
	CHECK(sh("ls -A data | grep -q vmoverlay-tmp") != 0);
	fx_stop();
}

int main(int argc, char **argv)
{
	if (getenv("VMO_DEBUG"))
		log_init(LOG_DEBUG);
	test_require_program("qemu-img");
	test_require_program("qemu-io");
	test_require_program("chattr");
	test_require_program("sha256sum");
	static const struct test_case cases[] = {
	    {"commit_moves_overlay_data", test_commit_moves_overlay_data},
	    {"discard_and_undo", test_discard_and_undo},
	    {"readonly_base_then_retry", test_readonly_base_then_retry},
	    {"interrupted_journal_resume", test_interrupted_journal_resume},
	    {"journal_other_domain", test_journal_other_domain},
	    {"cancel_commit", test_cancel_commit},
	    {"enospc_rebuild", test_enospc_rebuild},
	    {"symlink_overlay_refused", test_symlink_overlay_refused},
	    {"start_during_rebuild_abandons", test_start_during_rebuild_abandons},
	    {"shared_base_refused", test_shared_base_refused},
	    {"running_refused", test_running_refused},
	    {"policies_on_stop", test_policies_on_stop},
	    {"permission_denied", test_permission_denied},
	    {"resume_failures_keep_journal", test_resume_failures_keep_journal},
	    {"fresh_commit_helper_results", test_fresh_commit_helper_results},
	    {"check_journals_without_state", test_check_journals_without_state},
	    {"journal_dir_fsync_checked", test_journal_dir_fsync_checked},
	    {"multi_disk_commit", test_multi_disk_commit},
	    {"multi_disk_commit_stops_between", test_multi_disk_commit_stops_between},
	    {"multi_disk_discard_and_undo", test_multi_disk_discard_and_undo},
	    {"multi_disk_discard_half_way", test_multi_disk_discard_half_way},
	    {"multi_disk_quit_between", test_multi_disk_quit_between},
	    {NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
