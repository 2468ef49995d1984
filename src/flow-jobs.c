/* flow-jobs.c: a running job's bookkeeping -- progress to the UI at most
 * every FLOW_UI_PROGRESS_MS, the libvirt re-check right before a rebuild's
 * rename -- and what each kind of job's result means for the VM: a commit
 * (then its rebuild), a rebuild, the privileged helper. */
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

#include "chain.h"
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
#include "flow-private.h"

/* ---- jobs ---- */

void flow_job_free(struct flow_job *job)
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
	*fv = vm ? flow_fv_get(job->flow, vm) : NULL;
	return *fv ? vm : NULL;
}

void flow_job_end(struct flow_job *job)
{
	struct flow *flow = job->flow;
	for (size_t i = 0; i < flow->n_fvs; i++)
		if (flow->fvs[i]->job == job)
			flow->fvs[i]->job = NULL;
	flow_job_free(job);
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

void flow_on_job_progress(void *data, double pct)
{
	struct flow_job *job = data;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	if (!vm || vm->flow != FLOW_COMMITTING)
		return;
	vm->progress = pct;
	if (fv->set.active && vm->n_disks > 1 && fv->set.total_bytes) {
		/* One bar for the whole set: what the finished disks moved plus
		 * this disk's share, over what all of them move. */
		double total = (double)fv->set.total_bytes;
		double now = (double)fv->set.bytes + pct / 100.0 * (double)job->bytes;
		vm->progress = now >= total ? 100.0 : 100.0 * now / total;
		pct = vm->progress;
	}
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

/* The commit is complete (the base holds the session, qemu-img emptied
 * the overlay) but no fresh overlay was made: FAILED, Retry rebuilds. */
void flow_rebuild_failed_after_commit(struct flow *flow, struct flow_vm *fv, struct vm *vm,
				      uint64_t bytes, const char *why)
{
	flow_set_end(fv);
	char *msg = NULL;
	flow_set_msg(&msg,
		     _("%s: the changes were committed, but a fresh overlay could not be made: %s"),
		     vm->name, why ? why : "");
	if (vm->flow != FLOW_FAILED)
		flow_fail(flow, fv, vm, IMAGEOPS_REBUILD, msg);
	fv->failed_bytes = bytes;
	free(msg);
}

void flow_success(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		  uint64_t bytes)
{
	fv->has_failed_op = false;
	if (op == IMAGEOPS_REBUILD) {
		/* A rebuild starts only with no journal, or right after its
		 * commit exited 0: one still here is a deeper commit's, kept
		 * until now (commits_done, flow-set.c). */
		char *jp = flow_journal_path(flow, vm);
		struct stat jst;
		if (jp && lstat(jp, &jst) == 0 && imageops_journal_remove(jp) < 0)
			log_warn("flow: cannot remove journal %s: %s", jp, strerror(errno));
		free(jp);
	}
	if (flow->virt)
		virt_watcher_refresh_vm(flow->virt, vm);
	else
		for (size_t i = 0; i < vm->n_disks; i++)
			vm->disks[i].overlay_bytes = image_allocated_bytes(vm->disks[i].overlay);
	enum flow_result res = RESULT_COMMITTED;
	const char *what = "commit";
	if (op == IMAGEOPS_DISCARD) {
		res = RESULT_DISCARDED;
		what = "discard";
	} else if (op == IMAGEOPS_UNDO_DISCARD) {
		res = RESULT_UNDONE;
		what = "undo";
	}
	if (op == IMAGEOPS_DISCARD)
		flow_mark_discard(flow, vm);
	else if (op == IMAGEOPS_UNDO_DISCARD)
		flow_forget_discard(flow, vm);
	log_info("flow: %s: %s done (%llu bytes)", vm->name, what, (unsigned long long)bytes);
	/* After undo the old session's changes are back: a decision is open
	 * again, so the menu offers commit/discard (KEPT). */
	flow_set_state(flow, fv, vm, op == IMAGEOPS_UNDO_DISCARD ? FLOW_KEPT : FLOW_CLEAN);
	if (flow->ui.result)
		flow->ui.result(flow->ui.data, vm, res, op == IMAGEOPS_DISCARD ? 0 : bytes, NULL);
}

void flow_on_commit_done(void *data, const struct runner_result *res)
{
	struct flow_job *job = data;
	struct flow *flow = job->flow;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	job->runner = NULL;
	if (!vm) {
		log_warn("flow: commit of vanished VM %s ended with %d", job->vm_name,
			 res->exit_code);
		flow_job_end(job);
		return;
	}
	fv->job = NULL;

	if (res->exit_code == 0 && !res->cancelled) {
		/* This disk's base now holds its session and qemu-img emptied
		 * its overlay. The journal (which guards the half-merged window
		 * only) names it committed; once every disk is, the journal goes
		 * before the rebuilds: a crash during them leaves the empty old
		 * overlays or the new ones, both correct (flow-set.c). */
		uint64_t bytes = job->bytes;
		size_t disk = job->disk;
		flow_job_free(job);
		flow_set_step_done(flow, fv, vm, disk, bytes);
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
			log_info(
			    "flow: stopped the commit of %s for the quit (qemu-img ended, "
			    "signal %d); its journal %s stays: interrupted at the next start",
			    vm->name, res->term_signal, job->journal);
		flow_set_msg(&msg,
			     _("%s: commit cancelled. Nothing was lost: the overlay still holds "
			       "every change; resume the commit to finish it"),
			     vm->name);
		flow_interrupted(flow, fv, vm, msg, RESULT_CANCELLED);
	} else if (kind == COMMIT_FAIL_PARTIAL) {
		flow_interrupted(flow, fv, vm, msg, RESULT_FAILED);
	} else if (kind == COMMIT_FAIL_PERMISSION && flow->priv.argv) {
		/* Nothing was written; the journal stays for the helper's run. */
		char *journal = job->journal;
		job->journal = NULL;
		uint64_t bytes = job->bytes;
		bool resumed = job->resumed;
		size_t job_disk = job->disk;
		flow_job_free(job);
		job = NULL;
		flow_start_privileged(flow, fv, vm, job_disk, IMAGEOPS_COMMIT, false, bytes, journal,
				      resumed, msg);
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
			flow_set_msg(&why, _("qemu-img exited with status %d"), res->exit_code);
		flow_commit_not_done(flow, fv, vm, job->journal, job->resumed, msg, why);
		free(why);
	}
	free(msg);
	flow_job_free(job);
}

/* Right before the rebuild's rename() (imageops_rebuild_finish): libvirt
 * asked afresh, as before the operation (docs/design.md §4 rules 2 and 9). */
bool flow_job_recheck(void *data, char **why)
{
	struct flow_job *job = data;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	if (!vm) {
		flow_set_msg(why, _("%s is no longer known to vmoverlay"), job->vm_name);
		return false;
	}
	if (!flow_have_virt(job->flow, vm, why))
		return false;
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
		flow_set_msg(
		    &msg,
		    _("%s: the changes were committed, but the fresh overlay was not put in "
		      "place: %s"),
		    vm->name, why ? why : "");
	else
		flow_set_msg(&msg,
			     _("%s: the discard was abandoned and the overlay left as it was, "
			       "nothing was discarded: %s"),
			     vm->name, why ? why : "");
	if (domain_active_now(flow, vm)) {
		flow_set_end(fv);
		log_warn("flow: %s: %s abandoned, the VM started: %s", vm->name,
			 imageops_op_name(op), why ? why : "");
		fv->has_failed_op = false;
		flow_set_state(flow, fv, vm, FLOW_RUNNING);
		if (flow->ui.result)
			flow->ui.result(flow->ui.data, vm, RESULT_FAILED, 0, msg);
	} else {
		flow_set_step_failed(flow, fv, vm, op, msg);
		if (op == IMAGEOPS_REBUILD)
			fv->failed_bytes = bytes;
	}
	free(msg);
}

void flow_on_rebuild_done(void *data, const struct runner_result *res)
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
		flow_job_end(job);
		return;
	}
	fv->job = NULL;
	enum imageops_op op = job->op;
	uint64_t bytes = job->bytes;
	size_t disk = job->disk;
	char *err = NULL;
	if (res->exit_code == 0) {
		int r = imageops_rebuild_finish(&job->rb, job->keep_discarded, &err);
		if (r == 0) {
			flow_job_free(job);
			flow_set_step_done(flow, fv, vm, disk, bytes);
			return;
		}
		if (r == -EBUSY) {
			flow_job_free(job);
			rebuild_abandoned(flow, fv, vm, op, bytes, err);
			free(err);
			return;
		}
		if ((r == -EACCES || r == -EPERM) && flow->priv.argv) {
			bool keep = job->keep_discarded;
			flow_job_free(job);
			flow_start_privileged(flow, fv, vm, disk, op, keep, bytes, NULL, false, err);
			free(err);
			return;
		}
	} else {
		bool perm = false;
		err = imageops_create_failure(res, &perm);
		imageops_rebuild_abort(&job->rb);
		if (perm && flow->priv.argv) {
			bool keep = job->keep_discarded;
			flow_job_free(job);
			flow_start_privileged(flow, fv, vm, disk, op, keep, bytes, NULL, false, err);
			free(err);
			return;
		}
	}
	char *msg = NULL;
	flow_set_msg(&msg, "%s: %s", vm->name, err ? err : _("rebuilding the overlay failed"));
	flow_job_free(job);
	flow_set_step_failed(flow, fv, vm, op, msg);
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

void flow_on_privileged_done(void *data, const struct runner_result *res)
{
	struct flow_job *job = data;
	struct flow *flow = job->flow;
	struct flow_vm *fv;
	struct vm *vm = job_vm(job, &fv);
	job->runner = NULL;
	if (!vm) {
		flow_job_end(job);
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
		/* A commit through the helper made the fresh overlay too; the
		 * journal goes when every disk is committed (flow-set.c). */
		size_t disk = job->disk;
		if (op == IMAGEOPS_COMMIT && fv->set.active)
			fv->set.rebuilt[disk] = true;
		flow_job_free(job);
		flow_set_step_done(flow, fv, vm, disk, bytes);
		return;
	}
	/* A cancel that reached the helper comes back as PARTIAL (it stopped
	 * qemu-img) or as the helper's own outcome (it had finished the
	 * commit: COMMITTED below); a cancelled pkexec that never ran the
	 * helper ends by our signal: kept as flow_interrupted (journal stays). */
	if (res->exit_code == FLOW_HELPER_EXIT_PARTIAL ||
	    (res->cancelled && res->exit_code != FLOW_HELPER_EXIT_COMMITTED) ||
	    (job->journal && res->term_signal)) {
		flow_set_msg(&msg,
			     _("%s: commit did not finish: %s. Nothing was lost: the overlay still "
			       "holds every change; resume the commit to finish it"),
			     vm->name,
			     *res->last_stderr ? res->last_stderr : _("the helper stopped"));
		flow_job_free(job);
		flow_interrupted(flow, fv, vm, msg,
				 res->cancelled ? RESULT_CANCELLED : RESULT_FAILED);
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
		 * was changed"; only the fresh overlay is missing. Other disks
		 * still to commit go on (the set is never left half committed);
		 * the rebuilds after them try this disk's fresh overlay again. */
		size_t disk = job->disk;
		if (op == IMAGEOPS_COMMIT && fv->set.active) {
			bool others = false;
			for (size_t i = 0; i < vm->n_disks; i++)
				others = others || (i != disk && !fv->set.done[i]);
			if (others) {
				log_warn("flow: %s: %s committed, its fresh overlay failed (%s); "
					 "committing the other disks",
					 vm->name, vm->disks[disk].target ? vm->disks[disk].target : "?",
					 why);
				flow_job_free(job);
				flow_set_step_done(flow, fv, vm, disk, bytes);
				return;
			}
		}
		int r = job->journal ? imageops_journal_remove(job->journal) : 0;
		if (r < 0)
			log_warn("flow: cannot remove journal %s: %s", job->journal, strerror(-r));
		flow_job_free(job);
		flow_rebuild_failed_after_commit(flow, fv, vm, bytes, why);
		return;
	}
	if (res->exit_code == 126)
		flow_set_msg(&msg,
			     _("%s: permission denied: the authorization was dismissed; nothing "
			       "was changed"),
			     vm->name);
	else if (res->exit_code == 127)
		flow_set_msg(&msg,
			     _("%s: permission denied: not authorized to change these images; "
			       "nothing was changed"),
			     vm->name);
	else
		flow_set_msg(&msg, helper_failure_format(op), vm->name,
			     *res->last_stderr ? res->last_stderr : "?");
	if (op == IMAGEOPS_COMMIT)
		/* The helper failed before touching the base (else PARTIAL): its
		 * journal goes if this attempt wrote it, stays if it resumed. */
		flow_commit_not_done(flow, fv, vm, job->journal, job->resumed, msg, why);
	else
		flow_set_step_failed(flow, fv, vm, op, msg);
	flow_job_free(job);
	free(msg);
}
