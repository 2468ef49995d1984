/* Demo mode: a real base + overlay pair made with qemu-img in a temporary
 * directory, watched as libvirt's in-process test:///default "test" domain,
 * which a second connection in this process shuts down after a visible
 * countdown. The two test:///default connections share the driver's
 * state, so the watcher sees a genuine STOPPED/SHUTDOWN lifecycle event and
 * the real prompt -> commit/discard -> rebuild flow runs on real files. */
#include "demo.h"

#include <errno.h>
#include <ftw.h>
#include <libvirt/libvirt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ui.h"
#include "config.h"
#include "i18n.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "runner.h"
#include "util.h"

#define DEMO_URI         "test:///default"
#define DEMO_DOMAIN      "test"
#define DEMO_BASE_SIZE   "64M"
#define DEMO_COUNTDOWN_S 10

struct demo {
	char *dir;
	char *base;
	char *overlay;
	char *qemu_img;
	char *qemu_io;
	const struct ui_deps *deps;
	struct loop_timer *tick;
	int countdown; /* -1 when not counting */
};

static char *path_join(const char *dir, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* Runs one image tool to completion; start-up only, before the loop runs. */
static bool run_tool(char *const argv[], char **err)
{
	struct runner_status st = {0};
	char *rerr = NULL;
	if (!runner_run_sync(argv, NULL, NULL, &st, &rerr)) {
		set_err(err, "%s", rerr ? rerr : argv[0]);
		free(rerr);
		return false;
	}
	bool ok = st.exit_code == 0;
	if (!ok)
		/* TRANSLATORS: demo set-up failure: program, its error message */
		set_err(err, _("%s failed: %s"), argv[0],
			st.last_stderr && *st.last_stderr ? st.last_stderr : "?");
	runner_status_clear(&st);
	return ok;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	if (remove(path) != 0 && errno != ENOENT)
		log_warn("demo: cannot remove %s: %s", path, strerror(errno));
	return 0;
}

static void remove_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct demo *demo_prepare(struct config *cfg, char **err)
{
	struct demo *demo = calloc(1, sizeof *demo);
	char *qemu_img = NULL, *qemu_io = NULL;
	if (!demo) {
		set_err(err, "%s", strerror(ENOMEM));
		return NULL;
	}
	demo->countdown = -1;
	const char *tmp = getenv("TMPDIR");
	char *templ = path_join(tmp && *tmp ? tmp : "/tmp", "vmoverlay-demo-XXXXXX");
	if (!templ || !mkdtemp(templ)) {
		/* TRANSLATORS: demo set-up failure: system error */
		set_err(err, _("cannot create a temporary directory: %s"), strerror(errno));
		free(templ);
		goto error;
	}
	demo->dir = templ;
	demo->base = path_join(demo->dir, "test-base.qcow2");
	demo->overlay = path_join(demo->dir, "test.qcow2");
	if (!demo->base || !demo->overlay) {
		set_err(err, "%s", strerror(ENOMEM));
		goto error;
	}

	qemu_img = runner_find_qemu_img(cfg, err);
	if (!qemu_img)
		goto error;
	qemu_io = runner_which("qemu-io");
	if (!qemu_io) {
		set_err(err, _("%s not found on PATH"), "qemu-io");
		goto error;
	}
	char *create_base[] = {qemu_img, "create",   "-q",           "-f",
			       "qcow2",  demo->base, DEMO_BASE_SIZE, NULL};
	char *create_overlay[] = {qemu_img, "create", "-q",       "-f",          "qcow2", "-F",
				  "qcow2",  "-b",     demo->base, demo->overlay, NULL};
	/* A session's worth of changes: 1 MiB of 0x5a at offset 0, which a
	 * commit moves into the base and a discard throws away. */
	char *write_pattern[] = {qemu_io,       "-f", "qcow2", "-c", "write -P 0x5a 0 1M",
				 demo->overlay, NULL};
	if (!run_tool(create_base, err) || !run_tool(create_overlay, err) ||
	    !run_tool(write_pattern, err))
		goto error;

	/* The demo replaces whatever was configured: one VM, the test driver. */
	struct vm_config *vc = calloc(1, sizeof *vc);
	char *connect = strdup(DEMO_URI);
	if (vc) {
		vc->name = strdup(DEMO_DOMAIN);
		vc->overlay = strdup(demo->overlay);
		vc->base = strdup(demo->base);
		vc->policy = POLICY_ASK;
	}
	if (!vc || !connect || !vc->name || !vc->overlay || !vc->base) {
		if (vc) {
			free(vc->name);
			free(vc->overlay);
			free(vc->base);
		}
		free(vc);
		free(connect);
		set_err(err, "%s", strerror(ENOMEM));
		goto error;
	}
	for (size_t i = 0; i < cfg->n_vms; i++)
		vm_config_clear(&cfg->vms[i]);
	free(cfg->vms);
	cfg->vms = vc;
	cfg->n_vms = 1;
	free(cfg->connect);
	cfg->connect = connect;
	cfg->demo = true;
	demo->qemu_img = qemu_img;
	demo->qemu_io = qemu_io;
	log_info("demo: images in %s (pattern 0x5a in the first MiB of the overlay)", demo->dir);
	return demo;

error:
	free(qemu_img);
	free(qemu_io);
	demo_destroy(demo);
	return NULL;
}

/* Shuts the domain down through a second connection to the same
 * in-process driver: the watcher's connection gets the lifecycle event
 * exactly as if a guest had powered off. */
static void demo_shutdown(struct demo *demo)
{
	virConnectPtr conn = virConnectOpen(DEMO_URI);
	if (!conn) {
		log_err("demo: cannot open a second %s connection", DEMO_URI);
		return;
	}
	virDomainPtr dom = virDomainLookupByName(conn, DEMO_DOMAIN);
	if (!dom) {
		log_err("demo: no domain %s", DEMO_DOMAIN);
	} else {
		if (virDomainIsActive(dom) != 1)
			log_warn("demo: domain %s is not running; nothing to shut down",
				 DEMO_DOMAIN);
		else if (virDomainShutdown(dom) < 0)
			log_err("demo: shutting %s down failed", DEMO_DOMAIN);
		else
			log_info("demo: %s shut down", DEMO_DOMAIN);
		virDomainFree(dom);
	}
	virConnectClose(conn);
}

static void on_tick(struct loop *loop, struct loop_timer *t, void *data)
{
	struct demo *demo = data;
	if (demo->countdown > 0)
		demo->countdown--;
	if (demo->countdown == 0) {
		demo->countdown = -1;
		loop_timer_arm(t, -1, 0);
		demo_shutdown(demo);
	}
	/* The tooltip shows the countdown. */
	struct vm *vm = model_find(demo->deps->model, DEMO_DOMAIN);
	if (vm)
		vm->shutdown_in_s = demo->countdown;
	model_changed(demo->deps->model);
}

void demo_start(struct demo *demo, const struct ui_deps *deps)
{
	if (!demo || !deps)
		return;
	demo->deps = deps;
	int secs = DEMO_COUNTDOWN_S;
	/* Tests shorten the wait; not documented for users. */
	const char *env = getenv("VMO_DEMO_COUNTDOWN");
	if (env && *env) {
		char *end;
		long v = strtol(env, &end, 10);
		if (*end == '\0' && v >= 0 && v <= 3600)
			secs = (int)v;
	}
	demo->countdown = secs;
	log_info("demo: %s shuts down in %d s", DEMO_DOMAIN, secs);
	if (secs == 0) {
		demo->countdown = 1;
		demo->tick = loop_timer_add(deps->loop, 0, 0, on_tick, demo);
	} else {
		demo->tick = loop_timer_add(deps->loop, 1000, 1000, on_tick, demo);
	}
	if (!demo->tick)
		log_err("demo: cannot start the countdown timer");
	struct vm *vm = model_find(deps->model, DEMO_DOMAIN);
	if (vm)
		vm->shutdown_in_s = demo->countdown;
	model_changed(deps->model);
}

/* Runs argv; true when it exited 0. stdout (malloc'd) into *stdout_text
 * when asked. */
static bool probe_tool(char *const argv[], char **stdout_text)
{
	struct runner_status st = {0};
	char *rerr = NULL;
	bool ok = runner_run_sync(argv, NULL, NULL, &st, &rerr) && st.exit_code == 0;
	if (stdout_text) {
		*stdout_text = st.all_stdout;
		st.all_stdout = NULL;
	}
	free(rerr);
	runner_status_clear(&st);
	return ok;
}

/* Whether the image at path reads PATTERN in the demo's first MiB (through
 * its backing chain, as the guest would). */
static bool reads_pattern(struct demo *demo, const char *path, const char *pattern)
{
	char cmd[64];
	snprintf(cmd, sizeof cmd, "read -P %s 0 1M", pattern);
	char *out = NULL;
	char *argv[] = {demo->qemu_io, "-r", "-f", "qcow2", "-c", cmd, (char *)path, NULL};
	bool ok = probe_tool(argv, &out) && out && strstr(out, "read 1048576/1048576 bytes");
	free(out);
	return ok;
}

/* True when the overlay holds no data of its own (every allocated range is
 * the base's, depth >= 1). */
static bool overlay_fresh(struct demo *demo)
{
	char *out = NULL;
	char *argv[] = {demo->qemu_img, "map", "--output=json", "-f", "qcow2", demo->overlay, NULL};
	bool ok = probe_tool(argv, &out) && out;
	for (char *p = out; ok && (p = strstr(p, "\"depth\": 0")); p++) {
		char *end = strchr(p, '}');
		char *data = strstr(p, "\"data\": true");
		if (data && (!end || data < end))
			ok = false;
	}
	free(out);
	return ok;
}

static bool image_checks(struct demo *demo, const char *path)
{
	char *argv[] = {demo->qemu_img, "check", "-q", "-f", "qcow2", (char *)path, NULL};
	return probe_tool(argv, NULL);
}

bool demo_report(struct demo *demo, bool committed, bool discarded, char **report)
{
	*report = NULL;
	if (!demo)
		return false;
	const char *yes = _("yes"), *no = _("no");
	bool base_ok = image_checks(demo, demo->base), ov_ok = image_checks(demo, demo->overlay);
	bool base_has = reads_pattern(demo, demo->base, "0x5a");
	bool base_empty = reads_pattern(demo, demo->base, "0");
	bool chain_has = reads_pattern(demo, demo->overlay, "0x5a");
	bool fresh = overlay_fresh(demo);
	bool ok;
	char *what;
	if (committed) {
		ok = base_ok && ov_ok && base_has && chain_has && fresh;
		/* TRANSLATORS: demo end: what a commit proved */
		what =
		    str_printf(_("Demo finished: the session's 1 MiB (pattern 0x5a) was committed "
				"into the base, and the VM starts on a fresh, empty overlay."));
	} else if (discarded) {
		ok = base_ok && ov_ok && base_empty && !chain_has && fresh;
		/* TRANSLATORS: demo end: what a discard proved */
		what = str_printf(_("Demo finished: the session's 1 MiB (pattern 0x5a) was "
				   "discarded; the base is unchanged and the overlay is fresh."));
	} else {
		ok = base_ok && ov_ok && base_empty && chain_has && !fresh;
		/* TRANSLATORS: demo end: nothing was changed */
		what = str_printf(_("Demo finished: nothing was changed; the overlay still holds "
				   "the session's 1 MiB (pattern 0x5a)."));
	}
	/* TRANSLATORS: demo end, checks made with qemu-io/qemu-img: yes/no answers */
	*report = str_printf(_("%s\n  base holds the session's data: %s\n  overlay holds data of "
			      "its own: %s\n  qemu-img check of base and overlay: %s\n"
			      "  The temporary images in %s are removed now."),
			    what, base_has ? yes : no, fresh ? no : yes,
			    base_ok && ov_ok ? _("passed") : _("FAILED"), demo->dir);
	free(what);
	return ok;
}

int demo_countdown(const struct demo *demo)
{
	return demo ? demo->countdown : -1;
}

const char *demo_dir(const struct demo *demo)
{
	return demo ? demo->dir : NULL;
}

void demo_destroy(struct demo *demo)
{
	if (!demo)
		return;
	if (demo->tick)
		loop_timer_remove(demo->tick);
	if (demo->dir) {
		remove_tree(demo->dir);
		log_info("demo: removed %s", demo->dir);
	}
	free(demo->dir);
	free(demo->base);
	free(demo->overlay);
	free(demo->qemu_img);
	free(demo->qemu_io);
	free(demo);
}
