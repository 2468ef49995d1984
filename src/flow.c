/* The per-VM state machine of docs/design.md §3, and the only module that
 * decides what happens to an image. Jobs (commit, rebuild, the privileged
 * helper) run as runner children in the loop; the file steps and argv's
 * come from imageops, shared with vmoverlay-helper. Every change ends in
 * update_actions() + model_changed() so the menu always reads the truth. */
#include "flow.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "config.h"
#include "i18n.h"
#include "image.h"
#include "imageops.h"
#include "log.h"
#include "loop.h"
#include "room.h"
#include "runner.h"
#include "statefile.h"
#include "virt.h"

#define FLOW_UI_PROGRESS_MS 500

struct flow_job;

/* What the flow remembers per VM beyond struct vm (keyed by name: vm
 * objects may be replaced by a config reload). */
struct flow_vm {
	char *name;
	const struct vm *seen; /* vm object last seen under this name */
	struct flow_job *job;
	bool has_failed_op;
	enum imageops_op failed_op; /* what Retry repeats */
	uint64_t failed_bytes;      /* committed bytes, when a rebuild after commit failed */
	bool prompt_open;
	int64_t last_ui_progress_ms;
	/* The domain (URI + UUID) this name was last seen as: its saved
	 * policy applies; another domain under the name gets its own. */
	char *key_uri;
	char key_uuid[40];
	bool policy_unsaved; /* set while the domain was not known yet */
};

struct flow_job {
	struct flow *flow;
	char *vm_name;
	enum imageops_op op; /* COMMIT, REBUILD (after a commit), DISCARD, UNDO_DISCARD */
	bool privileged;
	struct runner *runner;
	struct imageops_rebuild rb;
	bool keep_discarded;
	uint64_t bytes; /* overlay's allocated bytes before the commit */
	char *journal;
	/* The journal was there before this attempt (Resume, or a commit
	 * policy after an interrupted one): the base may be half-merged, so
	 * this attempt never removes it unless its commit exits 0. */
	bool resumed;
	/* Delivers a progress value held back by the rate limit, so the UI
	 * never stays on a stale figure (armed only while a commit runs). */
	struct loop_timer *progress_timer;
};

struct flow {
	struct loop *loop;
	struct model *model;
	const struct config *cfg;
	struct statefile *state;
	struct virt_watcher *virt;
	struct flow_ui ui;
	struct flow_privileged priv;
	int kill_grace_ms;
	bool stopping; /* flow_stop(): quitting, nothing new starts */
	struct flow_vm **fvs;
	size_t n_fvs;
};

static void set_msg(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(char **out, const char *fmt, ...)
{
	if (!out)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(out, fmt, ap) < 0)
		*out = NULL;
	va_end(ap);
}

/* ---- per-VM records ---- */

static struct flow_vm *fv_get(struct flow *flow, const struct vm *vm)
{
	for (size_t i = 0; i < flow->n_fvs; i++)
		if (strcmp(flow->fvs[i]->name, vm->name) == 0)
			return flow->fvs[i];
	struct flow_vm *fv = calloc(1, sizeof *fv);
	struct flow_vm **p = realloc(flow->fvs, (flow->n_fvs + 1) * sizeof *p);
	if (!fv || !p || !(fv->name = strdup(vm->name))) {
		free(fv);
		if (p)
			flow->fvs = p;
		return NULL;
	}
	flow->fvs = p;
	flow->fvs[flow->n_fvs++] = fv;
	return fv;
}

static const char *state_dir(const struct flow *flow)
{
	return flow->state ? statefile_dir(flow->state) : NULL;
}

/* The journal of the domain vm is (URI + UUID); NULL while not known. */
static char *journal_path(const struct flow *flow, const struct vm *vm)
{
	const char *dir = state_dir(flow);
	return dir ? imageops_journal_path(dir, vm->uri, vm->uuid) : NULL;
}

static bool identity_known(const struct vm *vm)
{
	return vm->uri && *vm->uri && vm->uuid[0];
}

static struct state_key vm_key(const struct vm *vm)
{
	return (struct state_key){.uri = vm->uri, .uuid = vm->uuid, .name = vm->name};
}

static bool journal_exists(const struct flow *flow, const struct vm *vm)
{
	char *p = journal_path(flow, vm);
	struct stat st;
	bool r = p && stat(p, &st) == 0;
	free(p);
	return r;
}

static bool state_allows_discarded(enum flow_state s)
{
	return s == FLOW_CLEAN || s == FLOW_KEPT || s == FLOW_FAILED || s == FLOW_PENDING;
}

/* Issue 12, defect 3: the .discarded overlay may only come back over the
 * very fresh overlay the discard made. The applet drops .discarded when it
 * sees the VM start, but a session it never saw (the VM ran while the
 * applet was not running, or something wrote to the image) leaves both
 * files in place; the identity recorded at discard time tells them apart.
 * Returns why Undo must be refused (translated, malloc'd), or NULL. */
static char *undo_refusal(const struct flow *flow, const struct vm *vm)
{
	struct statefile_file_id mark, now;
	struct stat st;
	struct state_key k = vm_key(vm);
	char *msg = NULL;
	if (!flow->state || !statefile_get_discard_mark(flow->state, &k, &mark))
		set_msg(
		    &msg,
		    _("%s: Undo is not offered: there is no record of the overlay the discard "
		      "left, so a session since then cannot be ruled out. The discarded overlay "
		      "stays in %s.discarded"),
		    vm->name, vm->overlay);
	else if (stat(vm->overlay, &st) < 0)
		set_msg(&msg, _("%s: Undo is not offered: cannot check the overlay %s: %s"),
			vm->name, vm->overlay, strerror(errno));
	else {
		statefile_file_id_of(&st, &now);
		if (!statefile_file_id_equal(&mark, &now))
			set_msg(
			    &msg,
			    _("%s: Undo is not offered: the overlay changed since the discard (the "
			      "VM ran or was written to while vmoverlay was not watching), and "
			      "undoing would throw that newer session away. The discarded overlay "
			      "stays in %s.discarded"),
			    vm->name, vm->overlay);
	}
	return msg;
}

/* After a discard that kept .discarded: remember the fresh overlay. */
static void mark_discard(struct flow *flow, const struct vm *vm)
{
	struct stat st;
	struct state_key k = vm_key(vm);
	if (!flow->state)
		return;
	if (stat(vm->overlay, &st) < 0) {
		/* No mark: Undo will be refused, never offered blindly. */
		log_warn("flow: %s: cannot stat the fresh overlay %s: %s", vm->name, vm->overlay,
			 strerror(errno));
		statefile_set_discard_mark(flow->state, &k, NULL);
	} else {
		struct statefile_file_id id;
		statefile_file_id_of(&st, &id);
		statefile_set_discard_mark(flow->state, &k, &id);
	}
	if (!statefile_save(flow->state))
		log_warn("flow: %s: could not save the state file (discard record)", vm->name);
}

static void forget_discard(struct flow *flow, const struct vm *vm)
{
	struct state_key k = vm_key(vm);
	if (!flow->state || !statefile_get_discard_mark(flow->state, &k, NULL))
		return;
	statefile_set_discard_mark(flow->state, &k, NULL);
	statefile_save(flow->state);
}

/* vm->actions from the state; the journal overrides: while a commit is
 * unfinished the base is half-merged, so nothing but Resume and Keep. */
static void update_actions(struct flow *flow, struct vm *vm)
{
	unsigned a = 0;
	switch (vm->flow) {
	case FLOW_CLEAN:
	case FLOW_KEPT:
		a = ACT_BIT(ACT_COMMIT) | ACT_BIT(ACT_DISCARD);
		break;
	case FLOW_PENDING:
		a = ACT_BIT(ACT_COMMIT) | ACT_BIT(ACT_DISCARD) | ACT_BIT(ACT_KEEP);
		break;
	case FLOW_FAILED:
		a = ACT_BIT(ACT_RETRY) | ACT_BIT(ACT_KEEP) | ACT_BIT(ACT_COMMIT) |
		    ACT_BIT(ACT_DISCARD);
		break;
	case FLOW_COMMITTING:
		a = ACT_BIT(ACT_CANCEL);
		break;
	case FLOW_INTERRUPTED:
		a = ACT_BIT(ACT_RESUME) | ACT_BIT(ACT_KEEP);
		break;
	case FLOW_UNKNOWN:
	case FLOW_RUNNING:
	case FLOW_REBUILDING:
	case FLOW_SAVED:
	case FLOW_MISCONFIGURED:
		break;
	}
	bool journal = journal_exists(flow, vm);
	vm->has_discarded = vm->overlay && imageops_has_discarded(vm->overlay);
	char *undo_no = vm->has_discarded ? undo_refusal(flow, vm) : NULL;
	vm_set_str(&vm->undo_note, undo_no);
	free(undo_no);
	if (journal && vm->flow != FLOW_COMMITTING && vm->flow != FLOW_REBUILDING) {
		bool offered = a != 0;
		a &= ~(ACT_BIT(ACT_COMMIT) | ACT_BIT(ACT_DISCARD) | ACT_BIT(ACT_RETRY));
		if (offered)
			a |= ACT_BIT(ACT_RESUME);
	} else if (vm->has_discarded && !vm->undo_note && state_allows_discarded(vm->flow)) {
		a |= ACT_BIT(ACT_UNDO_DISCARD);
	}
	if (vm->shared_with)
		a &= ~ACT_BIT(ACT_COMMIT);
	vm->actions = a;
}

static void changed(struct flow *flow, struct vm *vm)
{
	update_actions(flow, vm);
	model_changed(flow->model);
}

static void withdraw_prompt(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	if (!fv->prompt_open)
		return;
	fv->prompt_open = false;
	if (flow->ui.withdraw)
		flow->ui.withdraw(flow->ui.data, vm);
}

static void set_state(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum flow_state s)
{
	if (vm->flow != s)
		log_info("flow: %s: %s -> %s", vm->name, flow_state_label(vm->flow),
			 flow_state_label(s));
	vm->flow = s;
	if (s != FLOW_PENDING)
		withdraw_prompt(flow, fv, vm);
	if (s != FLOW_COMMITTING)
		vm->progress = -1;
	if (s != FLOW_FAILED && s != FLOW_INTERRUPTED)
		vm_set_str(&vm->error, NULL);
	changed(flow, vm);
}

static void fail(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		 const char *msg)
{
	log_warn("flow: %s: %s failed: %s", vm->name, imageops_op_name(op), msg ? msg : "");
	fv->has_failed_op = true;
	fv->failed_op = op;
	fv->failed_bytes = 0;
	set_state(flow, fv, vm, FLOW_FAILED);
	vm_set_str(&vm->error, msg);
	changed(flow, vm);
	if (flow->ui.result)
		flow->ui.result(flow->ui.data, vm, RESULT_FAILED, 0, msg);
}

static void interrupted(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *msg,
			enum flow_result res)
{
	log_warn("flow: %s: commit interrupted: %s", vm->name, msg ? msg : "");
	set_state(flow, fv, vm, FLOW_INTERRUPTED);
	vm_set_str(&vm->error, msg);
	changed(flow, vm);
	if (flow->ui.result)
		flow->ui.result(flow->ui.data, vm, res, 0, msg);
}

/* A commit that found a journal (Resume) failed before it could finish.
 * Whatever this attempt did or did not write, the base is as half-merged
 * as before: the journal stays and the VM stays INTERRUPTED (Resume/Keep
 * only), with why it failed (docs/design.md §4 rule 8). */
static void resume_failed(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *why)
{
	char *msg = NULL;
	/* The reason may be a whole sentence (the helper's last line). */
	int n = why ? (int)strlen(why) : 0;
	while (n > 0 && (why[n - 1] == '.' || why[n - 1] == ' '))
		n--;
	/* TRANSLATORS: VM name, why resuming failed ("the image is in use by
	 * another process") */
	set_msg(&msg,
		_("%s: the commit could not be resumed: %.*s. Nothing was lost, but the base is "
		  "still half-merged: only resuming the commit is safe; resume it again once "
		  "this is fixed"),
		vm->name, n ? n : 1, n ? why : "?");
	interrupted(flow, fv, vm, msg, RESULT_FAILED);
	free(msg);
}

/* A commit attempt failed before qemu-img (or the helper) wrote anything.
 * The journal this attempt wrote goes with it and the VM shows FAILED
 * (msg); a journal it found (resumed) stays: resume_failed (why). Takes
 * neither string. */
static void commit_not_done(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			    const char *journal, bool resumed, const char *msg, const char *why)
{
	if (resumed) {
		log_warn("flow: %s: resuming the commit failed; journal %s kept", vm->name,
			 journal ? journal : "?");
		resume_failed(flow, fv, vm, why);
		return;
	}
	int r = journal ? imageops_journal_remove(journal) : 0;
	if (r < 0)
		/* Still there: update_actions keeps offering Resume only. */
		log_warn("flow: cannot remove journal %s: %s", journal, strerror(-r));
	fail(flow, fv, vm, IMAGEOPS_COMMIT, msg);
}

/* ---- jobs ---- */

static void job_free(struct flow_job *job)
{
	if (!job)
		return;
	imageops_rebuild_clear(&job->rb);
	if (job->progress_timer)
		loop_timer_remove(job->progress_timer);
	free(job->vm_name);
	free(job->journal);
	free(job);
}

/* The job's VM; NULL if it vanished (then the job result is only logged). */
static struct vm *job_vm(struct flow_job *job, struct flow_vm **fv)
{
	struct vm *vm = model_find(job->flow->model, job->vm_name);
	*fv = vm ? fv_get(job->flow, vm) : NULL;
	return *fv ? vm : NULL;
}

static void job_end(struct flow_job *job)
{
	struct flow *flow = job->flow;
	for (size_t i = 0; i < flow->n_fvs; i++)
		if (flow->fvs[i]->job == job)
			flow->fvs[i]->job = NULL;
	job_free(job);
}

static void publish_progress(struct flow_job *job, struct flow_vm *fv, struct vm *vm)
{
	fv->last_ui_progress_ms = loop_now_ms();
	model_changed(job->flow->model);
	if (job->flow->ui.progress)
		job->flow->ui.progress(job->flow->ui.data, vm);
}

static void on_progress_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct flow_job *job = data;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	if (vm && vm->flow == FLOW_COMMITTING)
		publish_progress(job, fv, vm);
}

static void on_job_progress(void *data, double pct)
{
	struct flow_job *job = data;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	if (!vm || vm->flow != FLOW_COMMITTING)
		return;
	vm->progress = pct;
	/* Progress records come every ~1 %; the UI (D-Bus signals,
	 * notifications) gets at most two updates a second. A value held back
	 * is delivered when the interval is over. */
	int64_t wait = fv->last_ui_progress_ms + FLOW_UI_PROGRESS_MS - loop_now_ms();
	if (wait > 0 && pct < 100) {
		if (!job->progress_timer)
			job->progress_timer =
			    loop_timer_add(job->flow->loop, wait, 0, on_progress_timer, job);
		else
			loop_timer_arm(job->progress_timer, wait, 0);
		return;
	}
	if (job->progress_timer)
		loop_timer_arm(job->progress_timer, -1, 0);
	publish_progress(job, fv, vm);
}

static bool start_privileged(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			     enum imageops_op op, bool keep_discarded, uint64_t bytes,
			     char *journal, bool resumed, const char *plain_msg);
static bool start_rebuild(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
			  uint64_t bytes, char **why);

/* The commit is complete (the base holds the session, qemu-img emptied
 * the overlay) but no fresh overlay was made: FAILED, Retry rebuilds. */
static void rebuild_failed_after_commit(struct flow *flow, struct flow_vm *fv, struct vm *vm,
					uint64_t bytes, const char *why)
{
	char *msg = NULL;
	set_msg(&msg,
		_("%s: the changes were committed, but a fresh overlay could not be made: %s"),
		vm->name, why ? why : "");
	if (vm->flow != FLOW_FAILED)
		fail(flow, fv, vm, IMAGEOPS_REBUILD, msg);
	fv->failed_bytes = bytes;
	free(msg);
}

static void success(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		    uint64_t bytes)
{
	fv->has_failed_op = false;
	if (flow->virt)
		virt_watcher_refresh_vm(flow->virt, vm);
	else
		vm->overlay_bytes = image_allocated_bytes(vm->overlay);
	enum flow_result res = RESULT_COMMITTED;
	const char *what = "commit";
	if (op == IMAGEOPS_DISCARD) {
		res = RESULT_DISCARDED;
		what = "discard";
	} else if (op == IMAGEOPS_UNDO_DISCARD) {
		res = RESULT_UNDONE;
		what = "undo";
	}
	if (op == IMAGEOPS_DISCARD && imageops_has_discarded(vm->overlay))
		mark_discard(flow, vm);
	else if (op == IMAGEOPS_UNDO_DISCARD)
		forget_discard(flow, vm);
	log_info("flow: %s: %s done (%llu bytes)", vm->name, what, (unsigned long long)bytes);
	/* After undo the old session's changes are back: a decision is open
	 * again, so the menu offers commit/discard (KEPT). */
	set_state(flow, fv, vm, op == IMAGEOPS_UNDO_DISCARD ? FLOW_KEPT : FLOW_CLEAN);
	if (flow->ui.result)
		flow->ui.result(flow->ui.data, vm, res, op == IMAGEOPS_DISCARD ? 0 : bytes, NULL);
}

static void on_commit_done(void *data, const struct runner_result *res)
{
	struct flow_job *job = data;
	struct flow *flow = job->flow;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	job->runner = NULL;
	if (!vm) {
		log_warn("flow: commit of vanished VM %s ended with %d", job->vm_name,
			 res->exit_code);
		job_end(job);
		return;
	}
	fv->job = NULL;

	if (res->exit_code == 0 && !res->cancelled) {
		/* The base now holds everything and qemu-img emptied the
		 * overlay: both images are consistent, so the journal (which
		 * guards the half-merged window only) goes before the rebuild.
		 * A crash during the rebuild leaves the empty old overlay or
		 * the new one, both correct. */
		if (imageops_journal_remove(job->journal) < 0)
			log_warn("flow: cannot remove journal %s: %s", job->journal,
				 strerror(errno));
		uint64_t bytes = job->bytes;
		job_free(job);
		char *why = NULL;
		if (!start_rebuild(flow, fv, vm, IMAGEOPS_REBUILD, bytes, &why))
			rebuild_failed_after_commit(flow, fv, vm, bytes, why);
		free(why);
		return;
	}

	char *msg = NULL;
	enum imageops_commit_failure kind = imageops_commit_failure(res, vm->name, &msg);
	if (res->cancelled) {
		/* We cannot know how far qemu-img got: the base may be
		 * half-merged, so the journal stays and only Resume/Keep remain. */
		free(msg);
		msg = NULL;
		if (flow->stopping)
			log_info("flow: stopped the commit of %s for the quit (qemu-img ended, "
				 "signal %d); its journal %s stays: interrupted at the next start",
				 vm->name, res->term_signal, job->journal);
		set_msg(&msg,
			_("%s: commit cancelled. Nothing was lost: the overlay still holds "
			  "every change; resume the commit to finish it"),
			vm->name);
		interrupted(flow, fv, vm, msg, RESULT_CANCELLED);
	} else if (kind == COMMIT_FAIL_PARTIAL) {
		interrupted(flow, fv, vm, msg, RESULT_FAILED);
	} else if (kind == COMMIT_FAIL_PERMISSION && flow->priv.argv) {
		/* Nothing was written; the journal stays for the helper's run. */
		char *journal = job->journal;
		job->journal = NULL;
		uint64_t bytes = job->bytes;
		bool resumed = job->resumed;
		job_free(job);
		job = NULL;
		start_privileged(flow, fv, vm, IMAGEOPS_COMMIT, false, bytes, journal, resumed,
				 msg);
	} else {
		/* Failed while opening: this attempt wrote nothing. Its own
		 * journal goes; one it resumed stays (the base is half-merged). */
		char *why = NULL;
		if (kind == COMMIT_FAIL_IN_USE)
			why = strdup(
			    _("the image is in use by another process (is the VM running?)"));
		else if (*res->last_stderr)
			why = strdup(res->last_stderr);
		else
			set_msg(&why, _("qemu-img exited with status %d"), res->exit_code);
		commit_not_done(flow, fv, vm, job->journal, job->resumed, msg, why);
		free(why);
	}
	free(msg);
	job_free(job);
}

/* Right before the rebuild's rename() (imageops_rebuild_finish): libvirt
 * asked afresh, as before the operation (docs/design.md §4 rules 2 and 9). */
static bool job_recheck(void *data, char **why)
{
	struct flow_job *job = data;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	if (!vm) {
		set_msg(why, _("%s is no longer known to vmoverlay"), job->vm_name);
		return false;
	}
	if (!job->flow->virt) {
		set_msg(why,
			_("%s: libvirt is not connected, so it cannot be confirmed that the VM "
			  "is shut off"),
			vm->name);
		return false;
	}
	return virt_watcher_check_idle(job->flow->virt, vm, false, why);
}

/* libvirt's word on the domain now: true if it is active (running,
 * paused, starting). Asked directly: the watcher learns of the start a
 * little later (event or rescan), the user must not see a stale state. */
static bool domain_active_now(struct flow *flow, const struct vm *vm)
{
	virConnectPtr conn = flow->virt ? virt_watcher_conn(flow->virt) : NULL;
	virDomainPtr dom = conn ? virDomainLookupByName(conn, vm->name) : NULL;
	if (!dom)
		return vm->run == RUN_RUNNING;
	int active = virDomainIsActive(dom);
	virDomainFree(dom);
	return active == 1;
}

/* The rebuild saw, at its last check before the rename(), that the VM
 * started (or the overlay was opened or replaced): nothing was renamed,
 * the temp file is gone, the VM stays on the overlay it opened. */
static void rebuild_abandoned(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			      enum imageops_op op, uint64_t bytes, const char *why)
{
	char *msg = NULL;
	if (op == IMAGEOPS_REBUILD)
		set_msg(&msg,
			_("%s: the changes were committed, but the fresh overlay was not put in "
			  "place: %s"),
			vm->name, why ? why : "");
	else
		set_msg(&msg,
			_("%s: the discard was abandoned and the overlay left as it was, "
			  "nothing was discarded: %s"),
			vm->name, why ? why : "");
	if (domain_active_now(flow, vm)) {
		log_warn("flow: %s: %s abandoned, the VM started: %s", vm->name,
			 imageops_op_name(op), why ? why : "");
		fv->has_failed_op = false;
		set_state(flow, fv, vm, FLOW_RUNNING);
		if (flow->ui.result)
			flow->ui.result(flow->ui.data, vm, RESULT_FAILED, 0, msg);
	} else {
		fail(flow, fv, vm, op, msg);
		if (op == IMAGEOPS_REBUILD)
			fv->failed_bytes = bytes;
	}
	free(msg);
}

static void on_rebuild_done(void *data, const struct runner_result *res)
{
	struct flow_job *job = data;
	struct flow *flow = job->flow;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	job->runner = NULL;
	if (!vm) {
		log_warn("flow: rebuild of vanished VM %s ended with %d", job->vm_name,
			 res->exit_code);
		imageops_rebuild_abort(&job->rb);
		job_end(job);
		return;
	}
	fv->job = NULL;
	enum imageops_op op = job->op;
	uint64_t bytes = job->bytes;
	char *err = NULL;
	if (res->exit_code == 0) {
		int r = imageops_rebuild_finish(&job->rb, job->keep_discarded, &err);
		if (r == 0) {
			job_free(job);
			success(flow, fv, vm, op, bytes);
			return;
		}
		if (r == -EBUSY) {
			job_free(job);
			rebuild_abandoned(flow, fv, vm, op, bytes, err);
			free(err);
			return;
		}
		if ((r == -EACCES || r == -EPERM) && flow->priv.argv) {
			bool keep = job->keep_discarded;
			job_free(job);
			start_privileged(flow, fv, vm, op, keep, bytes, NULL, false, err);
			free(err);
			return;
		}
	} else {
		bool perm = false;
		err = imageops_create_failure(res, &perm);
		imageops_rebuild_abort(&job->rb);
		if (perm && flow->priv.argv) {
			bool keep = job->keep_discarded;
			job_free(job);
			start_privileged(flow, fv, vm, op, keep, bytes, NULL, false, err);
			free(err);
			return;
		}
	}
	char *msg = NULL;
	set_msg(&msg, "%s: %s", vm->name, err ? err : _("rebuilding the overlay failed"));
	job_free(job);
	fail(flow, fv, vm, op, msg);
	free(msg);
	free(err);
}

/* One whole sentence per operation: the helper's operation name is an
 * English word, not something to paste into a translated sentence. */
static const char *helper_failure_format(enum imageops_op op)
{
	switch (op) {
	case IMAGEOPS_COMMIT:
		/* TRANSLATORS: VM name, the privileged helper's error message */
		return _("%s: commit failed: %s; nothing was changed");
	case IMAGEOPS_REBUILD:
		/* TRANSLATORS: VM name, the privileged helper's error message */
		return _("%s: preparing a fresh overlay failed: %s; nothing was changed");
	case IMAGEOPS_DISCARD:
		/* TRANSLATORS: VM name, the privileged helper's error message */
		return _("%s: discarding the changes failed: %s; nothing was changed");
	case IMAGEOPS_UNDO_DISCARD:
		break;
	}
	/* TRANSLATORS: VM name, the privileged helper's error message */
	return _("%s: undoing the discard failed: %s; nothing was changed");
}

static void on_privileged_done(void *data, const struct runner_result *res)
{
	struct flow_job *job = data;
	struct flow *flow = job->flow;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	job->runner = NULL;
	if (!vm) {
		job_end(job);
		return;
	}
	fv->job = NULL;
	enum imageops_op op = job->op;
	uint64_t bytes = job->bytes;
	char *msg = NULL;
	if (res->exit_code == 0) {
		/* The helper (root) owns the truth: a cancel it got too late
		 * (through its stdin, the only channel that reaches it) did
		 * not stop a commit that had finished. */
		if (res->cancelled)
			log_info("flow: %s: the cancel came too late; the helper finished the %s",
				 vm->name, imageops_op_name(op));
		if (job->journal)
			imageops_journal_remove(job->journal);
		job_free(job);
		success(flow, fv, vm, op, bytes);
		return;
	}
	/* A cancel that reached the helper comes back as PARTIAL (it stopped
	 * qemu-img) or as the helper's own outcome (it had finished the
	 * commit: COMMITTED below); a cancelled pkexec that never ran the
	 * helper ends by our signal: kept as interrupted (journal stays). */
	if (res->exit_code == FLOW_HELPER_EXIT_PARTIAL ||
	    (res->cancelled && res->exit_code != FLOW_HELPER_EXIT_COMMITTED) ||
	    (job->journal && res->term_signal)) {
		set_msg(&msg,
			_("%s: commit did not finish: %s. Nothing was lost: the overlay still "
			  "holds every change; resume the commit to finish it"),
			vm->name, *res->last_stderr ? res->last_stderr : _("the helper stopped"));
		job_free(job);
		interrupted(flow, fv, vm, msg, res->cancelled ? RESULT_CANCELLED : RESULT_FAILED);
		free(msg);
		return;
	}
	/* Why, in the user's words: pkexec's own statuses, else the helper's
	 * last stderr line. */
	const char *why = res->exit_code == 126   ? _("the authorization was dismissed")
			  : res->exit_code == 127 ? _("not authorized to change these images")
			  : *res->last_stderr     ? res->last_stderr
						  : _("the helper stopped");
	if ((op == IMAGEOPS_COMMIT && res->exit_code == FLOW_HELPER_EXIT_COMMITTED) ||
	    op == IMAGEOPS_REBUILD) {
		/* The helper's qemu-img commit exited 0 (or this rebuild follows
		 * a commit that did): the base holds the session, never "nothing
		 * was changed"; only the fresh overlay is missing. */
		int r = job->journal ? imageops_journal_remove(job->journal) : 0;
		if (r < 0)
			log_warn("flow: cannot remove journal %s: %s", job->journal, strerror(-r));
		job_free(job);
		rebuild_failed_after_commit(flow, fv, vm, bytes, why);
		return;
	}
	if (res->exit_code == 126)
		set_msg(&msg,
			_("%s: permission denied: the authorization was dismissed; nothing "
			  "was changed"),
			vm->name);
	else if (res->exit_code == 127)
		set_msg(&msg,
			_("%s: permission denied: not authorized to change these images; "
			  "nothing was changed"),
			vm->name);
	else
		set_msg(&msg, helper_failure_format(op), vm->name,
			*res->last_stderr ? res->last_stderr : "?");
	if (op == IMAGEOPS_COMMIT)
		/* The helper failed before touching the base (else PARTIAL): its
		 * journal goes if this attempt wrote it, stays if it resumed. */
		commit_not_done(flow, fv, vm, job->journal, job->resumed, msg, why);
	else
		fail(flow, fv, vm, op, msg);
	job_free(job);
	free(msg);
}

static struct flow_job *job_new(struct flow *flow, struct flow_vm *fv, struct vm *vm,
				enum imageops_op op)
{
	struct flow_job *job = calloc(1, sizeof *job);
	if (!job)
		return NULL;
	job->flow = flow;
	job->op = op;
	job->vm_name = strdup(vm->name);
	if (!job->vm_name) {
		free(job);
		return NULL;
	}
	return job;
}

/* The permission hook point: a plain attempt failed with EACCES/EPERM and
 * nothing was changed. Runs the privileged helper when one is wired
 * (flow_set_privileged), else reports plain_msg. Takes journal; resumed:
 * the journal was there before this attempt (commit_not_done). */
static bool start_privileged(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			     enum imageops_op op, bool keep_discarded, uint64_t bytes,
			     char *journal, bool resumed, const char *plain_msg)
{
	char **argv =
	    flow->priv.argv ? flow->priv.argv(flow->priv.data, vm, op, keep_discarded) : NULL;
	if (!argv) {
		if (op == IMAGEOPS_COMMIT)
			commit_not_done(
			    flow, fv, vm, journal, resumed, plain_msg,
			    _("permission denied, and the privileged helper (pkexec and "
			      "vmoverlay-helper) cannot be run"));
		else
			fail(flow, fv, vm, op, plain_msg);
		free(journal);
		return false;
	}
	struct flow_job *job = job_new(flow, fv, vm, op);
	char *err = NULL;
	if (job) {
		job->privileged = true;
		job->bytes = bytes;
		job->keep_discarded = keep_discarded;
		job->journal = journal;
		job->resumed = resumed;
		journal = NULL;
		/* pkexec runs the helper as root: our signals cannot reach it
		 * (EPERM). Its stdin is the cancel channel: runner_cancel
		 * closes our end, the helper stops qemu-img and says how far
		 * it got. */
		struct runner_opts opts = {.stdin_pipe = true, .cancel_fd = -1};
		job->runner = runner_start_ex(flow->loop, argv, on_job_progress, on_privileged_done,
					      job, &opts, &err);
	}
	imageops_argv_free(argv);
	if (!job || !job->runner) {
		if (job) {
			journal = job->journal;
			job->journal = NULL;
		}
		job_free(job);
		char *msg = NULL;
		set_msg(&msg, "%s (%s)", plain_msg ? plain_msg : "", err ? err : "");
		if (op == IMAGEOPS_COMMIT)
			commit_not_done(flow, fv, vm, journal, resumed, msg,
					err ? err : strerror(ENOMEM));
		else
			fail(flow, fv, vm, op, msg);
		free(journal);
		free(msg);
		free(err);
		return false;
	}
	log_info("flow: %s: %s needs privilege; running the helper", vm->name,
		 imageops_op_name(op));
	fv->job = job;
	set_state(flow, fv, vm, op == IMAGEOPS_COMMIT ? FLOW_COMMITTING : FLOW_REBUILDING);
	if (op == IMAGEOPS_COMMIT)
		vm->progress = 0;
	return true;
}

static char *qemu_img(struct flow *flow, char **why)
{
	return runner_find_qemu_img(flow->cfg, why);
}

/* Rebuild (op REBUILD after a commit, or DISCARD). The caller checked the
 * preconditions (or qemu-img commit just exited 0). */
static bool start_rebuild(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
			  uint64_t bytes, char **why)
{
	char *qi = qemu_img(flow, why);
	if (!qi)
		return false;
	struct flow_job *job = job_new(flow, fv, vm, op);
	if (!job) {
		free(qi);
		set_msg(why, "%s", strerror(ENOMEM));
		return false;
	}
	job->bytes = bytes;
	job->keep_discarded = op == IMAGEOPS_DISCARD && flow->cfg && flow->cfg->keep_discarded;
	if (!room_for_rebuild(vm->name, vm->overlay, why)) {
		job_free(job);
		free(qi);
		return false;
	}
	int r = imageops_rebuild_prepare(&job->rb, qi, vm->overlay, vm->backing_stored,
					 vm->backing_format, why);
	free(qi);
	if (r < 0) {
		if (r == -EACCES || r == -EPERM || r == -EROFS) {
			/* The hook point: the helper if wired, else FAILED with the
			 * "permission denied: ..." text (also returned in *why). */
			char *msg = why && *why ? strdup(*why) : NULL;
			bool keep = job->keep_discarded;
			job_free(job);
			bool ok = start_privileged(flow, fv, vm, op, keep, bytes, NULL, false, msg);
			if (ok && why) {
				free(*why);
				*why = NULL;
			}
			free(msg);
			return ok;
		}
		job_free(job);
		return false;
	}
	job->rb.recheck = job_recheck;
	job->rb.recheck_data = job;
	job->runner = runner_start(flow->loop, job->rb.argv, NULL, on_rebuild_done, job, why);
	if (!job->runner) {
		imageops_rebuild_abort(&job->rb);
		job_free(job);
		return false;
	}
	fv->job = job;
	set_state(flow, fv, vm, FLOW_REBUILDING);
	return true;
}

static bool start_commit(struct flow *flow, struct flow_vm *fv, struct vm *vm, char **why)
{
	char *qi = NULL, *journal = NULL, **argv = NULL;
	struct flow_job *job = NULL;

	if (!vm->backing_stored || !vm->backing_format) {
		/* Checked before the commit, not after: a commit we could not
		 * follow with a rebuild would leave the VM half-done. */
		set_msg(why,
			_("%s: the overlay does not record its backing file and format, so no "
			  "fresh overlay could be made after the commit"),
			vm->name);
		return false;
	}
	/* Everything the rebuild after the commit needs, checked now: the
	 * commit empties the overlay, and a rebuild that refuses afterwards
	 * (a symbolic link, an encrypted overlay ...) would leave the VM
	 * failed for ever (issue 12, defect 5). Only "this user may not" is
	 * left to the privileged helper, which checks the same as root. */
	char *cerr = NULL;
	int c = imageops_rebuild_check(vm->overlay, vm->backing_stored, vm->backing_format, &cerr);
	if (c < 0 && !((c == -EACCES || c == -EPERM) && flow->priv.argv)) {
		set_msg(why, _("%s: cannot commit: %s; nothing was changed"), vm->name,
			cerr ? cerr : strerror(-c));
		free(cerr);
		return false;
	}
	free(cerr);
	journal = journal_path(flow, vm);
	if (!journal) {
		if (state_dir(flow))
			set_msg(why, _("%s: libvirt has not told which domain this is (its UUID)"),
				vm->name);
		else
			set_msg(why, _("%s: no state directory for the commit journal"), vm->name);
		return false;
	}
	/* Any journal there (even one we cannot parse) is an earlier,
	 * unfinished commit: this attempt resumes it and never removes it
	 * unless its commit exits 0. */
	struct stat jst;
	bool resumed = lstat(journal, &jst) == 0;
	struct imageops_journal j;
	if (imageops_journal_read(journal, &j) == 0) {
		/* Resuming: it must be the same overlay, or the journal is about
		 * another disk and resuming would be wrong. */
		bool same = image_same_file(j.overlay, vm->overlay);
		if (!same) {
			set_msg(why,
				_("%s: the interrupted commit was for %s, but the VM's disk is now "
				  "%s; resolve this by hand (journal %s)"),
				vm->name, j.overlay, vm->overlay, journal);
			imageops_journal_clear(&j);
			goto error;
		}
	}
	imageops_journal_clear(&j);
	/* Before any byte changes: a commit that runs out of room leaves the
	 * base half-merged (only Resume is safe then). */
	if (!room_for_commit(vm->name, vm->overlay, vm->base, why))
		goto error;
	qi = qemu_img(flow, why);
	if (!qi)
		goto error;
	argv = imageops_commit_argv(qi, vm->overlay);
	job = job_new(flow, fv, vm, IMAGEOPS_COMMIT);
	if (!argv || !job) {
		set_msg(why, "%s", strerror(ENOMEM));
		goto error;
	}
	job->bytes = image_allocated_bytes(vm->overlay);
	/* The base is about to change: an older discarded overlay, made
	 * against the old base, could no longer be restored safely. */
	if (imageops_drop_discarded(vm->overlay) < 0) {
		set_msg(why, _("%s: cannot remove the old discarded overlay before committing"),
			vm->name);
		goto error;
	}
	/* The journal must be on disk (file and directory entry) before
	 * qemu-img may write into the base; if that cannot be made sure, the
	 * commit does not start (*why names the error). */
	struct imageops_journal nj = {
	    .uri = vm->uri,
	    .uuid = vm->uuid,
	    .vm = vm->name,
	    .overlay = vm->overlay,
	    .base = vm->base,
	};
	if (imageops_journal_write(journal, &nj, why) < 0) {
		if (!resumed)
			imageops_journal_remove(journal);
		goto error;
	}
	job->journal = journal;
	job->resumed = resumed;
	journal = NULL;
	job->runner = runner_start(flow->loop, argv, on_job_progress, on_commit_done, job, why);
	if (!job->runner) {
		if (!resumed)
			imageops_journal_remove(job->journal);
		goto error;
	}
	runner_set_kill_grace(job->runner, flow->kill_grace_ms);
	log_info("flow: %s: committing %s (%llu bytes allocated)", vm->name, vm->overlay,
		 (unsigned long long)job->bytes);
	fv->job = job;
	fv->last_ui_progress_ms = 0;
	set_state(flow, fv, vm, FLOW_COMMITTING);
	vm->progress = 0;
	imageops_argv_free(argv);
	free(qi);
	return true;

error:
	job_free(job);
	imageops_argv_free(argv);
	free(qi);
	free(journal);
	return false;
}

static bool start_undo(struct flow *flow, struct flow_vm *fv, struct vm *vm, char **why)
{
	/* Asked again right before the rename (the check above was for the
	 * menu): the overlay must still be the one the discard made. */
	char *no = undo_refusal(flow, vm);
	if (no) {
		set_msg(why, "%s", no);
		free(no);
		return false;
	}
	char *err = NULL;
	int r = imageops_undo_discard(vm->overlay, &err);
	if (r == -EACCES || r == -EPERM) {
		start_privileged(flow, fv, vm, IMAGEOPS_UNDO_DISCARD, false, 0, NULL, false, err);
		free(err);
		return true;
	}
	if (r < 0) {
		set_msg(why, "%s: %s", vm->name, err ? err : strerror(-r));
		free(err);
		return false;
	}
	success(flow, fv, vm, IMAGEOPS_UNDO_DISCARD, 0);
	return true;
}

/* Every operation starts here: one job per image, libvirt asked afresh
 * (rule 2, 3, 5), qemu's lock probed for the file steps. */
static bool start_op(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		     char **why)
{
	if (fv->job) {
		set_msg(why, _("%s: another operation is still running on its image"), vm->name);
		return false;
	}
	if (flow->stopping) {
		set_msg(why, _("%s: vmoverlay is quitting; nothing was started"), vm->name);
		return false;
	}
	if (!flow->virt) {
		set_msg(why,
			_("%s: libvirt is not connected, so it cannot be confirmed that the VM "
			  "is shut off"),
			vm->name);
		return false;
	}
	char *vwhy = NULL;
	if (!virt_watcher_check_idle(flow->virt, vm, op == IMAGEOPS_COMMIT, &vwhy)) {
		set_msg(why, "%s", vwhy ? vwhy : _("the VM is not idle"));
		free(vwhy);
		return false;
	}
	if (op != IMAGEOPS_COMMIT && journal_exists(flow, vm)) {
		set_msg(why,
			_("%s: a commit was interrupted and its base is half-merged; only "
			  "resuming the commit is safe"),
			vm->name);
		return false;
	}
	/* qemu-img commit checks its own lock (and says "in use"); the file
	 * steps do not go through QEMU, so ask its locks here. */
	if (op != IMAGEOPS_COMMIT && imageops_locked(vm->overlay)) {
		set_msg(why, _("%s: the overlay is in use by another process (is the VM running?)"),
			vm->name);
		return false;
	}
	switch (op) {
	case IMAGEOPS_COMMIT:
		return start_commit(flow, fv, vm, why);
	case IMAGEOPS_REBUILD:
	case IMAGEOPS_DISCARD:
		return start_rebuild(flow, fv, vm, op,
				     op == IMAGEOPS_REBUILD ? fv->failed_bytes : 0, why);
	case IMAGEOPS_UNDO_DISCARD:
		return start_undo(flow, fv, vm, why);
	}
	return false;
}

/* A policy acts like the user's choice; if it cannot start, the VM shows
 * why (FAILED) instead of silently staying put. */
static void auto_op(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op)
{
	char *why = NULL;
	if (start_op(flow, fv, vm, op, &why)) {
		free(why);
		return;
	}
	if (vm->run == RUN_RUNNING) {
		log_info("flow: %s: %s by policy not started: %s", vm->name, imageops_op_name(op),
			 why ? why : "");
		set_state(flow, fv, vm, FLOW_RUNNING);
	} else if (op == IMAGEOPS_COMMIT && journal_exists(flow, vm)) {
		/* Finishing an interrupted commit by policy: the base is still
		 * half-merged, so INTERRUPTED (Resume/Keep), never FAILED. */
		resume_failed(flow, fv, vm, why);
	} else {
		fail(flow, fv, vm, op, why);
	}
	free(why);
}

/* ---- identity: connection URI + domain UUID (issue 12) ---- */

/* The name vm is watched under now stands for the domain (URI + UUID) the
 * watcher found: a policy saved for that domain applies; a domain new under
 * this name (redefined, or the same name on another connection) gets the
 * configured policy, never the one saved for the domain before it. */
static void sync_identity(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	if (!identity_known(vm) || (fv->key_uri && strcmp(fv->key_uri, vm->uri) == 0 &&
				    strcmp(fv->key_uuid, vm->uuid) == 0))
		return;
	bool known_before = fv->key_uri != NULL;
	struct state_key k = vm_key(vm);
	enum vmo_policy saved;
	if (fv->policy_unsaved) {
		/* Chosen before the domain was known: it is this domain's. */
		statefile_set_policy(flow->state, &k, vm->policy);
		fv->policy_unsaved = false;
	} else if (flow->state && statefile_get_policy(flow->state, &k, &saved)) {
		vm->policy = saved;
	} else if (known_before && vm->cfg) {
		vm->policy = vm->cfg->policy;
	}
	if (flow->state && !statefile_save(flow->state))
		log_warn("flow: could not save the state file");
	if (known_before)
		log_info("flow: %s is now domain %s on %s (was %s on %s)", vm->name, vm->uuid,
			 vm->uri, fv->key_uuid, fv->key_uri);
	else
		log_debug("flow: %s is domain %s on %s", vm->name, vm->uuid, vm->uri);
	vm_set_str(&fv->key_uri, vm->uri);
	snprintf(fv->key_uuid, sizeof fv->key_uuid, "%s", vm->uuid);
}

static bool journal_owned(const struct flow *flow, const char *path)
{
	for (size_t i = 0; i < flow->model->n_vms; i++) {
		char *p = journal_path(flow, flow->model->vms[i]);
		bool own = p && strcmp(p, path) == 0;
		free(p);
		if (own)
			return true;
	}
	return false;
}

/* The watched domain whose disk is the very file the journal's commit
 * merges (only one without a journal of its own and not busy). */
static struct vm *journal_adopter(struct flow *flow, const struct imageops_journal *j)
{
	for (size_t i = 0; j->overlay && i < flow->model->n_vms; i++) {
		struct vm *vm = flow->model->vms[i];
		struct flow_vm *fv = fv_get(flow, vm);
		if (!fv || fv->job || !identity_known(vm) || !vm->overlay ||
		    !image_same_file(j->overlay, vm->overlay))
			continue;
		char *p = journal_path(flow, vm);
		struct stat st;
		bool has = !p || stat(p, &st) == 0;
		free(p);
		if (!has)
			return vm;
	}
	return NULL;
}

/* Moves the journal at path to vm's name (written first, then the old one
 * removed: a crash in between leaves two copies, never none). */
static bool journal_adopt(struct flow *flow, struct vm *vm, const char *path,
			  const struct imageops_journal *j)
{
	char *np = journal_path(flow, vm), *err = NULL;
	struct imageops_journal nj = {
	    .uri = vm->uri,
	    .uuid = vm->uuid,
	    .vm = vm->name,
	    .overlay = vm->overlay,
	    .base = j->base,
	    .started = j->started,
	};
	if (!np || imageops_journal_write(np, &nj, &err) < 0) {
		log_warn("flow: %s: cannot take over the commit journal %s: %s", vm->name, path,
			 err ? err : "out of memory");
		free(err);
		free(np);
		return false;
	}
	const char *was = j->uuid ? j->uuid : j->vm ? j->vm : "?";
	log_warn("flow: %s: commit journal %s (for %s, overlay %s) is this domain's disk: now %s",
		 vm->name, path, was, j->overlay, np);
	if (imageops_journal_remove(path) < 0)
		log_warn("flow: cannot remove %s (its copy %s is used)", path, np);
	free(np);
	return true;
}

static void append_note(char **note, const char *text)
{
	char *n = NULL;
	if (*note ? asprintf(&n, "%s %s", *note, text) < 0 : !(n = strdup(text)))
		return;
	free(*note);
	*note = n;
}

/* Every journal in the state directory that is not a watched domain's
 * own: written before journals were keyed by domain, or by a domain that
 * is gone, was redefined under the same name, or lives on another
 * connection. One whose overlay is a watched domain's disk (the same file)
 * moves to that domain: resuming it there merges exactly that overlay into
 * its own base. Every other one is kept and shown (vm->notice of the VM
 * with the journal's name, else of every VM), never resumed, never
 * removed: only the user knows which disk its half-merged base is. */
static void scan_journals(struct flow *flow)
{
	const char *dir = state_dir(flow);
	size_t n = flow->model->n_vms;
	/* Until libvirt has said who every watched VM is (not connected yet),
	 * no journal can be called nobody's: the notices wait. */
	bool undecided = false;
	for (size_t i = 0; i < n; i++)
		undecided = undecided || (!identity_known(flow->model->vms[i]) &&
					  flow->model->vms[i]->run == RUN_UNKNOWN);
	char **notes = calloc(n + 1, sizeof *notes);
	DIR *d = dir && notes ? opendir(dir) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char *p = NULL;
		if (!imageops_journal_name(e->d_name) || asprintf(&p, "%s/%s", dir, e->d_name) < 0)
			continue;
		struct imageops_journal j;
		int r = imageops_journal_read(p, &j);
		struct vm *to = NULL;
		if (r == -ENOENT || journal_owned(flow, p) ||
		    (r == 0 && (to = journal_adopter(flow, &j)) &&
		     journal_adopt(flow, to, p, &j))) {
			imageops_journal_clear(&j);
			free(p);
			continue;
		}
		if (undecided) {
			imageops_journal_clear(&j);
			free(p);
			continue;
		}
		char *text = NULL;
		const char *ov = j.overlay ? j.overlay : "?";
		if (j.uuid)
			set_msg(
			    &text,
			    _("A commit of %s into its base did not finish (journal %s). It was "
			      "started for the domain %s on %s, not this one, so it is kept and "
			      "never resumed here: finish it by hand (qemu-img commit), then "
			      "remove the journal."),
			    ov, p, j.uuid, j.uri ? j.uri : "?");
		else
			set_msg(
			    &text,
			    _("A commit of %s into its base did not finish (journal %s, from an "
			      "older vmoverlay). It could not be matched to this domain's disk, "
			      "so it is kept and never resumed here: finish it by hand "
			      "(qemu-img commit), then remove the journal."),
			    ov, p);
		bool named = false;
		for (size_t i = 0; j.vm && i < n; i++)
			if (strcmp(flow->model->vms[i]->name, j.vm) == 0) {
				named = true;
				if (text)
					append_note(&notes[i], text);
			}
		for (size_t i = 0; !named && text && i < n; i++)
			append_note(&notes[i], text);
		free(text);
		imageops_journal_clear(&j);
		free(p);
	}
	if (d)
		closedir(d);
	bool changed_any = false;
	for (size_t i = 0; notes && !undecided && i < n; i++) {
		struct vm *vm = flow->model->vms[i];
		if ((vm->notice ? vm->notice : "")[0] == 0 && !notes[i])
			continue;
		if (vm->notice && notes[i] && strcmp(vm->notice, notes[i]) == 0) {
			free(notes[i]);
			continue;
		}
		if (notes[i])
			log_warn("flow: %s: %s", vm->name, notes[i]);
		free(vm->notice);
		vm->notice = notes[i];
		changed_any = true;
	}
	free(notes);
	if (changed_any)
		model_changed(flow->model);
}

/* Before anything is decided for vm: who it is, and which journals are whose. */
static void identify(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	sync_identity(flow, fv, vm);
	scan_journals(flow);
}

static void journal_found(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	char *p = journal_path(flow, vm), *msg = NULL;
	log_warn("flow: %s: commit journal %s found: interrupted commit", vm->name, p ? p : "?");
	free(p);
	set_msg(&msg,
		_("%s: a commit did not finish (vmoverlay or the machine stopped "
		  "during it). Nothing was lost: the overlay still holds every "
		  "change; resume the commit to finish it"),
		vm->name);
	set_state(flow, fv, vm, FLOW_INTERRUPTED);
	vm_set_str(&vm->error, msg);
	free(msg);
	changed(flow, vm);
}

/* ---- inputs from the watcher ---- */

void flow_on_domain_stopped(struct flow *flow, struct vm *vm, enum vm_stop_kind kind)
{
	struct flow_vm *fv = flow ? fv_get(flow, vm) : NULL;
	if (!fv)
		return;
	fv->seen = vm;
	identify(flow, fv, vm);
	if (fv->job) {
		log_warn("flow: %s stopped while an operation runs on its image", vm->name);
		return;
	}
	vm->last_stop = kind;
	vm->stop_time_ms = loop_now_ms();
	fv->has_failed_op = false;
	if (kind == STOP_NO_PROMPT) {
		/* Saved state, migration, snapshot: the overlay belongs to it. */
		set_state(flow, fv, vm, FLOW_SAVED);
		return;
	}
	if (journal_exists(flow, vm)) {
		/* The VM ran on top of a half-merged base (the overlay masks it):
		 * only finishing the commit is safe, never a discard. */
		if (vm->policy == POLICY_COMMIT)
			auto_op(flow, fv, vm, IMAGEOPS_COMMIT);
		else
			set_state(flow, fv, vm, FLOW_INTERRUPTED);
		return;
	}
	if (vm->n_problems) {
		set_state(flow, fv, vm, FLOW_MISCONFIGURED);
		return;
	}
	/* Unclean stops (destroyed, crashed, failed): the guest's disk is
	 * crash-consistent, like after a power cut. With policy ask the prompt
	 * carries a warning (vm->last_stop; its safe default is Keep). An
	 * explicit policy is applied as configured (issue 5's end-to-end test:
	 * "VM destroyed with policy commit -> base has the pattern"): discard is
	 * what a kiosk wants after a crash, and commit stores exactly the disk
	 * the VM would boot from next anyway; keeping instead would only
	 * postpone the same data into an unattended prompt. */
	switch (vm->policy) {
	case POLICY_COMMIT:
		auto_op(flow, fv, vm, IMAGEOPS_COMMIT);
		return;
	case POLICY_DISCARD:
		auto_op(flow, fv, vm, IMAGEOPS_DISCARD);
		return;
	case POLICY_KEEP:
		set_state(flow, fv, vm, FLOW_KEPT);
		return;
	case POLICY_ASK:
		break;
	}
	set_state(flow, fv, vm, FLOW_PENDING);
	fv->prompt_open = true;
	if (flow->ui.prompt)
		flow->ui.prompt(flow->ui.data, vm);
}

void flow_on_domain_started(struct flow *flow, struct vm *vm)
{
	struct flow_vm *fv = flow ? fv_get(flow, vm) : NULL;
	if (!fv)
		return;
	fv->seen = vm;
	identify(flow, fv, vm);
	if (fv->job) {
		/* QEMU could not have opened the image while qemu-img holds it;
		 * the job's own result will tell. */
		log_warn("flow: %s reported running while an operation runs on its image",
			 vm->name);
		return;
	}
	if (vm->flow == FLOW_RUNNING)
		return;
	fv->has_failed_op = false;
	/* The VM writes to the overlay again: a discarded one from before can
	 * no longer be put back meaningfully. */
	if (vm->overlay && imageops_has_discarded(vm->overlay))
		imageops_drop_discarded(vm->overlay);
	forget_discard(flow, vm);
	set_state(flow, fv, vm, FLOW_RUNNING);
}

void flow_on_domain_updated(struct flow *flow, struct vm *vm)
{
	struct flow_vm *fv = flow ? fv_get(flow, vm) : NULL;
	if (!fv)
		return;
	fv->seen = vm;
	identify(flow, fv, vm);
	if (fv->job)
		return;
	if ((vm->flow == FLOW_UNKNOWN || vm->flow == FLOW_CLEAN) &&
	    (vm->run == RUN_SHUTOFF || vm->run == RUN_CRASHED) && journal_exists(flow, vm)) {
		/* Found at start-up, or this domain's by its disk (scan_journals). */
		journal_found(flow, fv, vm);
		return;
	}
	enum flow_state s = vm->flow;
	switch (vm->flow) {
	case FLOW_UNKNOWN:
		if (vm->run == RUN_RUNNING)
			s = FLOW_RUNNING;
		else if (vm->run == RUN_SHUTOFF || vm->run == RUN_CRASHED) {
			if (vm->has_managed_save || vm->has_snapshots)
				s = FLOW_SAVED;
			else if (vm->n_problems)
				s = FLOW_MISCONFIGURED;
			else
				s = FLOW_CLEAN;
		} else if (vm->run == RUN_UNDEFINED && vm->n_problems)
			s = FLOW_MISCONFIGURED;
		break;
	case FLOW_CLEAN:
	case FLOW_KEPT:
		if (vm->n_problems)
			s = FLOW_MISCONFIGURED;
		break;
	case FLOW_MISCONFIGURED:
		if (!vm->n_problems) {
			if (vm->run == RUN_RUNNING)
				s = FLOW_RUNNING;
			else if (vm->run == RUN_SHUTOFF || vm->run == RUN_CRASHED)
				s = FLOW_CLEAN;
			else
				s = FLOW_UNKNOWN;
		}
		break;
	case FLOW_SAVED:
		/* A managed save image deleted by hand (virsh managedsave-remove)
		 * makes the VM ordinary again; a plain save file, a migration or
		 * a snapshot revert still own the overlay. */
		if (vm->run == RUN_SHUTOFF && !vm->has_managed_save && !vm->has_snapshots &&
		    vm->dom_reason != VIR_DOMAIN_SHUTOFF_SAVED &&
		    vm->dom_reason != VIR_DOMAIN_SHUTOFF_MIGRATED &&
		    vm->dom_reason != VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT)
			s = FLOW_KEPT;
		break;
	case FLOW_RUNNING:
		/* Shut off without a stop report (the watcher reports every stop
		 * it can classify): keep the overlay, offer both choices, never
		 * act on a guess. */
		if (vm->run == RUN_SHUTOFF || vm->run == RUN_CRASHED)
			s = vm->n_problems ? FLOW_MISCONFIGURED : FLOW_KEPT;
		else if (vm->run == RUN_UNDEFINED)
			s = vm->n_problems ? FLOW_MISCONFIGURED : FLOW_UNKNOWN;
		break;
	default:
		break;
	}
	unsigned before = vm->actions;
	bool disc_before = vm->has_discarded;
	if (s != vm->flow)
		set_state(flow, fv, vm, s);
	else
		update_actions(flow, vm);
	if (vm->actions != before || vm->has_discarded != disc_before)
		model_changed(flow->model);
}

/* ---- inputs from the UI ---- */

/* For log lines, which stay English. */
static const char *action_name(enum vm_action a)
{
	switch (a) {
	case ACT_COMMIT:
		return "commit";
	case ACT_DISCARD:
		return "discard";
	case ACT_KEEP:
		return "keep";
	case ACT_RETRY:
		return "retry";
	case ACT_RESUME:
		return "resume the commit";
	case ACT_UNDO_DISCARD:
		return "undo the discard";
	case ACT_CANCEL:
		return "cancel";
	case ACT_COUNT:
		break;
	}
	return "?";
}

/* One whole sentence per action: a translated verb pasted into a
 * translated sentence cannot be right in every language (issue 9). */
static const char *refusal_format(enum vm_action a)
{
	switch (a) {
	case ACT_COMMIT:
		/* TRANSLATORS: VM name, its state ("shut off · clean") */
		return _("cannot commit %s now: it is %s");
	case ACT_DISCARD:
		/* TRANSLATORS: VM name, its state ("shut off · clean") */
		return _("cannot discard %s now: it is %s");
	case ACT_KEEP:
		/* TRANSLATORS: VM name, its state ("shut off · clean") */
		return _("cannot keep %s now: it is %s");
	case ACT_RETRY:
		/* TRANSLATORS: VM name, its state ("shut off · clean") */
		return _("cannot retry %s now: it is %s");
	case ACT_RESUME:
		/* TRANSLATORS: VM name, its state ("shut off · clean") */
		return _("cannot resume the commit of %s now: it is %s");
	case ACT_UNDO_DISCARD:
		/* TRANSLATORS: VM name, its state ("shut off · clean") */
		return _("cannot undo the discard of %s now: it is %s");
	case ACT_CANCEL:
	case ACT_COUNT:
		break;
	}
	/* TRANSLATORS: VM name, its state ("shut off · clean") */
	return _("cannot cancel the commit of %s now: it is %s");
}

/* Why action is not in vm->actions, in the user's words. */
static void refusal(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum vm_action a,
		    char **why)
{
	if (fv->job)
		set_msg(why,
			_("%s: an operation is already running on its image; try again when it "
			  "has finished"),
			vm->name);
	else if (vm->flow == FLOW_RUNNING || vm->run == RUN_RUNNING)
		set_msg(why, _("%s is running; its overlay is in use"), vm->name);
	else if (a == ACT_COMMIT && vm->shared_with)
		set_msg(why,
			_("The base %s is also used by %s; committing into it would corrupt "
			  "that VM."),
			vm->base ? vm->base : "?", vm->shared_with);
	else if ((a == ACT_DISCARD || a == ACT_COMMIT || a == ACT_UNDO_DISCARD) &&
		 journal_exists(flow, vm))
		set_msg(why,
			_("%s: a commit was interrupted and its base is half-merged; only "
			  "resuming the commit is safe"),
			vm->name);
	else if (vm->flow == FLOW_SAVED)
		set_msg(why, _("%s has a saved state that needs its overlay as it is"), vm->name);
	else if (vm->flow == FLOW_MISCONFIGURED)
		set_msg(why, "%s: %s", vm->name, vm->n_problems ? vm->problems[0] : "");
	else if (a == ACT_UNDO_DISCARD && vm->undo_note)
		set_msg(why, "%s", vm->undo_note);
	else if (a == ACT_UNDO_DISCARD)
		set_msg(why, _("%s: there is no discarded overlay to restore"), vm->name);
	else
		set_msg(why, refusal_format(a), vm->name, flow_state_label(vm->flow));
}

bool flow_request(struct flow *flow, struct vm *vm, enum vm_action action, char **why)
{
	if (why)
		*why = NULL;
	struct flow_vm *fv = flow && vm ? fv_get(flow, vm) : NULL;
	if (!fv || (unsigned)action >= ACT_COUNT) {
		set_msg(why, "%s", _("unknown VM or action"));
		return false;
	}
	fv->seen = vm;
	update_actions(flow, vm);
	if (!(vm->actions & ACT_BIT(action))) {
		refusal(flow, fv, vm, action, why);
		return false;
	}
	log_info("flow: %s: request %s", vm->name, action_name(action));
	switch (action) {
	case ACT_COMMIT:
	case ACT_RESUME:
		return start_op(flow, fv, vm, IMAGEOPS_COMMIT, why);
	case ACT_DISCARD:
		return start_op(flow, fv, vm, IMAGEOPS_DISCARD, why);
	case ACT_UNDO_DISCARD:
		return start_op(flow, fv, vm, IMAGEOPS_UNDO_DISCARD, why);
	case ACT_RETRY:
		return start_op(flow, fv, vm, fv->has_failed_op ? fv->failed_op : IMAGEOPS_COMMIT,
				why);
	case ACT_KEEP:
		/* From INTERRUPTED the journal stays: KEPT then offers Resume only. */
		set_state(flow, fv, vm, FLOW_KEPT);
		return true;
	case ACT_CANCEL:
		if (fv->job && fv->job->runner && fv->job->op == IMAGEOPS_COMMIT) {
			runner_cancel(fv->job->runner);
			return true;
		}
		refusal(flow, fv, vm, action, why);
		return false;
	case ACT_COUNT:
		break;
	}
	return false;
}

bool flow_set_policy(struct flow *flow, struct vm *vm, enum vmo_policy policy, char **why)
{
	if (why)
		*why = NULL;
	if (!flow || !vm || (unsigned)policy >= POLICY_COUNT) {
		set_msg(why, "%s", _("unknown VM or policy"));
		return false;
	}
	struct flow_vm *fv = fv_get(flow, vm);
	if (fv)
		sync_identity(flow, fv, vm);
	vm->policy = policy;
	/* Remembered in the state file for this domain (URI + UUID); the
	 * user's config is never rewritten. */
	if (flow->state && identity_known(vm)) {
		struct state_key k = vm_key(vm);
		statefile_set_policy(flow->state, &k, policy);
		if (!statefile_save(flow->state))
			log_warn("flow: could not save the state file (policy of %s)", vm->name);
	} else if (fv) {
		fv->policy_unsaved = true;
	}
	log_info("flow: %s: policy %s", vm->name, policy_name(policy));
	model_changed(flow->model);
	return true;
}

bool flow_busy(const struct flow *flow)
{
	for (size_t i = 0; flow && i < flow->n_fvs; i++)
		if (flow->fvs[i]->job)
			return true;
	return false;
}

/* Quit or logout while qemu-img runs (issue 12, defect 8). We stop the
 * commit rather than leave it running: an orphan would hold qemu's image
 * lock with nobody watching, its end (success or failure) would go
 * unrecorded, and the next start could only guess (the journal says
 * "interrupted" while the orphan may still be writing, and a Resume would
 * fail on its lock). A commit stopped by SIGTERM leaves exactly what the
 * journal describes: a possibly half-merged base, every change still in
 * the overlay, Resume at the next start. So: Cancel's path (SIGTERM,
 * SIGKILL after the grace), awaited by main before it exits. A rebuild is
 * short and never touches the base: it is left to finish. */
bool flow_stop(struct flow *flow)
{
	if (!flow)
		return false;
	flow->stopping = true;
	bool running = false;
	for (size_t i = 0; i < flow->n_fvs; i++) {
		struct flow_vm *fv = flow->fvs[i];
		struct flow_job *job = fv->job;
		if (!job)
			continue;
		if (!job->runner || job->op != IMAGEOPS_COMMIT) {
			running = true;
			continue;
		}
		pid_t pid = runner_pid(job->runner);
		log_info("flow: %s: quitting: stopping the commit (pid %d); the journal stays",
			 fv->name, (int)pid);
		if (runner_cancel(job->runner)) {
			running = true;
			continue;
		}
		/* A helper running as root cannot be signalled by us: it is
		 * left to end on its own (our end of its pipes closes). The
		 * journal stays, the next start shows INTERRUPTED, and a
		 * Resume while its qemu-img still holds the lock says "in
		 * use" and keeps the journal. */
		log_warn("flow: %s: cannot stop pid %d (%s); leaving it, the journal stays",
			 fv->name, (int)pid, strerror(errno));
		runner_detach(job->runner);
		job->runner = NULL;
		job_end(job);
	}
	return running;
}

int flow_stop_deadline_ms(const struct flow *flow)
{
	/* SIGKILL after the kill grace, then up to 2 s for the pipes (runner)
	 * and a margin for the loop. */
	return (flow ? flow->kill_grace_ms : RUNNER_KILL_GRACE_MS) + 3000;
}

void flow_set_privileged(struct flow *flow, const struct flow_privileged *priv)
{
	if (flow)
		flow->priv = priv ? *priv : (struct flow_privileged){0};
}

void flow_set_kill_grace(struct flow *flow, int ms)
{
	if (flow)
		flow->kill_grace_ms = ms;
}

/* ---- life cycle ---- */

/* Policies changed at run time win for VMs we have not seen before (once
 * their domain is known: sync_identity); for a VM we knew, a policy now
 * different from the saved one was changed in the file (model_reload),
 * and the file is the user's newer word. */
static void apply_saved_policies(struct flow *flow)
{
	for (size_t i = 0; i < flow->model->n_vms; i++) {
		struct vm *vm = flow->model->vms[i];
		struct flow_vm *fv = fv_get(flow, vm);
		if (!fv)
			continue;
		if (fv->seen == vm) {
			struct state_key k = vm_key(vm);
			enum vmo_policy saved;
			if (identity_known(vm) && flow->state &&
			    statefile_get_policy(flow->state, &k, &saved) && saved != vm->policy) {
				statefile_clear_policy(flow->state, &k);
				statefile_save(flow->state);
			}
		} else {
			free(fv->key_uri);
			fv->key_uri = NULL;
			fv->key_uuid[0] = 0;
			sync_identity(flow, fv, vm);
		}
		fv->seen = vm;
	}
}

/* A journal of a known domain: the applet (or the machine) died during a
 * commit. Domains not known yet get theirs when the watcher finds them
 * (flow_on_domain_updated). */
static void check_journals(struct flow *flow)
{
	scan_journals(flow);
	for (size_t i = 0; i < flow->model->n_vms; i++) {
		struct vm *vm = flow->model->vms[i];
		struct flow_vm *fv = fv_get(flow, vm);
		if (!fv || fv->job)
			continue;
		if ((vm->flow == FLOW_UNKNOWN || vm->flow == FLOW_CLEAN) && identity_known(vm) &&
		    journal_exists(flow, vm))
			journal_found(flow, fv, vm);
		update_actions(flow, vm);
	}
}

struct flow *flow_create(struct loop *loop, struct model *model, const struct config *cfg,
			 struct statefile *state, struct virt_watcher *virt,
			 const struct flow_ui *ui)
{
	struct flow *flow = calloc(1, sizeof *flow);
	if (!flow)
		return NULL;
	flow->loop = loop;
	flow->model = model;
	flow->cfg = cfg;
	flow->state = state;
	flow->virt = virt;
	flow->kill_grace_ms = RUNNER_KILL_GRACE_MS;
	if (ui)
		flow->ui = *ui;
	apply_saved_policies(flow);
	check_journals(flow);
	model_changed(model);
	return flow;
}

void flow_reconfigure(struct flow *flow, const struct config *cfg)
{
	if (!flow)
		return;
	flow->cfg = cfg;
	/* Records of VMs no longer in the model go (a busy VM stays in the
	 * model until its job ends). */
	size_t n = 0;
	for (size_t i = 0; i < flow->n_fvs; i++) {
		struct flow_vm *fv = flow->fvs[i];
		bool present = false;
		for (size_t k = 0; k < flow->model->n_vms && !present; k++)
			present = strcmp(flow->model->vms[k]->name, fv->name) == 0;
		if (present || fv->job) {
			flow->fvs[n++] = fv;
		} else {
			free(fv->name);
			free(fv->key_uri);
			free(fv);
		}
	}
	flow->n_fvs = n;
	apply_saved_policies(flow);
	check_journals(flow);
	for (size_t i = 0; i < flow->model->n_vms; i++)
		update_actions(flow, flow->model->vms[i]);
	model_changed(flow->model);
}

void flow_destroy(struct flow *flow)
{
	if (!flow)
		return;
	for (size_t i = 0; i < flow->n_fvs; i++) {
		struct flow_vm *fv = flow->fvs[i];
		if (fv->job) {
			/* Only when flow_stop() could not end it in time (or was
			 * not called). Nothing on disk is undone: a commit keeps
			 * its journal (INTERRUPTED at the next start); a
			 * rebuild's temp file is removed, the old overlay was
			 * never touched. */
			log_warn("flow: %s: %s still running at exit", fv->name,
				 imageops_op_name(fv->job->op));
			runner_detach(fv->job->runner);
			if (fv->job->rb.tmp)
				imageops_rebuild_abort(&fv->job->rb);
			job_free(fv->job);
		}
		free(fv->name);
		free(fv->key_uri);
		free(fv);
	}
	free(flow->fvs);
	free(flow);
}
