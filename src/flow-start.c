/* flow-start.c: starting an operation once the flow decided on it --
 * the checks right before (libvirt says shut off, nothing else uses the
 * images, room on the disks, the journal durable), then the commit, the
 * rebuild, undo, or the privileged path through the helper. */
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

bool flow_have_virt(struct flow *flow, const struct vm *vm, char **why)
{
	if (flow->virt)
		return true;
	flow_set_msg(why,
	             _("%s: libvirt is not connected, so it cannot be confirmed that the VM "
	               "is shut off"),
	             vm->name);
	return false;
}

static struct flow_job *job_new(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
				enum imageops_op op)
{
	struct flow_job *job = calloc(1, sizeof *job);
	if (!job)
		return NULL;
	job->flow = flow;
	job->op = op;
	job->disk = disk;
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
 * the journal was there before this attempt (flow_commit_not_done). */
bool flow_start_privileged(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
			   enum imageops_op op, bool keep_discarded, uint64_t bytes, char *journal,
			   bool resumed, const char *plain_msg)
{
	char **argv = flow->priv.argv
			  ? flow->priv.argv(flow->priv.data, vm, disk, op, keep_discarded)
			  : NULL;
	if (!argv) {
		if (op == IMAGEOPS_COMMIT)
			flow_commit_not_done(
			    flow, fv, vm, journal, resumed, plain_msg,
			    _("permission denied, and the privileged helper (pkexec and "
			      "vmoverlay-helper) cannot be run"));
		else
			flow_set_step_failed(flow, fv, vm, op, plain_msg);
		free(journal);
		return false;
	}
	struct flow_job *job = job_new(flow, fv, vm, disk, op);
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
		job->runner = runner_start_ex(flow->loop, argv, flow_on_job_progress,
					      flow_on_privileged_done, job, &opts, &err);
	}
	imageops_argv_free(argv);
	if (!job || !job->runner) {
		if (job) {
			journal = job->journal;
			job->journal = NULL;
		}
		flow_job_free(job);
		char *msg = NULL;
		flow_set_msg(&msg, "%s (%s)", plain_msg ? plain_msg : "", err ? err : "");
		if (op == IMAGEOPS_COMMIT)
			flow_commit_not_done(flow, fv, vm, journal, resumed, msg,
					     err ? err : strerror(ENOMEM));
		else
			flow_set_step_failed(flow, fv, vm, op, msg);
		free(journal);
		free(msg);
		free(err);
		return false;
	}
	log_info("flow: %s: %s of %s needs privilege; running the helper", vm->name,
		 imageops_op_name(op), vm->disks[disk].target ? vm->disks[disk].target : "its disk");
	fv->job = job;
	flow_set_state(flow, fv, vm, op == IMAGEOPS_COMMIT ? FLOW_COMMITTING : FLOW_REBUILDING);
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
bool flow_start_rebuild(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
			enum imageops_op op, uint64_t bytes, char **why)
{
	const struct vm_disk *d = &vm->disks[disk];
	char *qi = qemu_img(flow, why);
	if (!qi)
		return false;
	struct flow_job *job = job_new(flow, fv, vm, disk, op);
	if (!job) {
		free(qi);
		flow_set_msg(why, "%s", strerror(ENOMEM));
		return false;
	}
	job->bytes = bytes;
	job->keep_discarded = op == IMAGEOPS_DISCARD && flow->cfg && flow->cfg->keep_discarded;
	if (!room_for_rebuild(vm->name, d->overlay, why)) {
		flow_job_free(job);
		free(qi);
		return false;
	}
	/* After a commit into a deeper base the files between are invalid:
	 * the fresh overlay lies on that base (chain.h). Until then the
	 * commit journal stays, so no discard can build on them (flow-set.c). */
	char *bk = NULL, *bf = NULL;
	int r = chain_rebuild_backing(vm, d, op == IMAGEOPS_REBUILD, &bk, &bf, why);
	if (r == 0)
		r = imageops_rebuild_prepare_onto(&job->rb, qi, d->overlay, d->backing_stored,
						  d->backing_format, bk, bf, why);
	free(bk);
	free(bf);
	free(qi);
	if (r < 0) {
		if (r == -EACCES || r == -EPERM || r == -EROFS) {
			/* The hook point: the helper if wired, else FAILED with the
			 * "permission denied: ..." text (also returned in *why). */
			char *msg = why && *why ? strdup(*why) : NULL;
			bool keep = job->keep_discarded;
			flow_job_free(job);
			bool ok = flow_start_privileged(flow, fv, vm, disk, op, keep, bytes, NULL,
							false, msg);
			if (ok && why) {
				free(*why);
				*why = NULL;
			}
			free(msg);
			return ok;
		}
		flow_job_free(job);
		return false;
	}
	job->rb.recheck = flow_job_recheck;
	job->rb.recheck_data = job;
	job->runner = runner_start(flow->loop, job->rb.argv, NULL, flow_on_rebuild_done, job, why);
	if (!job->runner) {
		imageops_rebuild_abort(&job->rb);
		flow_job_free(job);
		return false;
	}
	fv->job = job;
	flow_set_state(flow, fv, vm, FLOW_REBUILDING);
	return true;
}

bool flow_commit_prepare(struct flow *flow, struct flow_vm *fv, struct vm *vm, char **why)
{
	const char *ovs[VMO_MAX_DISKS], *bases[VMO_MAX_DISKS];
	size_t n = 0;
	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct vm_disk *d = &vm->disks[i];
		if (fv->set.done[i])
			continue;
		if (!d->backing_stored || !d->backing_format) {
			/* Checked before the commit, not after: a commit we could
			 * not follow with a rebuild would leave the VM half-done. */
			flow_set_msg(why,
				     _("%s: the overlay does not record its backing file and format, "
				       "so no fresh overlay could be made after the commit"),
				     vm->name);
			return false;
		}
		/* Everything the rebuild after the commit needs, checked now:
		 * the commit empties the overlay, and a rebuild that refuses
		 * afterwards (a symbolic link, an encrypted overlay ...) would
		 * leave the VM failed for ever (issue 12, defect 5). Only "this
		 * user may not" is left to the privileged helper, which checks
		 * the same as root. */
		char *cerr = NULL;
		int c = imageops_rebuild_check(d->overlay, d->backing_stored, d->backing_format,
					       &cerr);
		if (c < 0 && !((c == -EACCES || c == -EPERM) && flow->priv.argv)) {
			flow_set_msg(why, _("%s: cannot commit: %s; nothing was changed"), vm->name,
				     cerr ? cerr : strerror(-c));
			free(cerr);
			return false;
		}
		free(cerr);
		ovs[n] = d->overlay;
		bases[n++] = d->base;
		fv->set.total_bytes += image_allocated_bytes(d->overlay);
	}
	/* Before any byte changes: a commit that runs out of room leaves the
	 * base half-merged (only Resume is safe then). Disks whose bases share
	 * a filesystem add up. */
	if (!room_for_commits(vm->name, ovs, bases, n, why))
		return false;
	/* The bases are about to change: an older discarded overlay, made
	 * against the old base, could no longer be restored safely. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		if (fv->set.done[i] || imageops_drop_discarded(vm->disks[i].overlay) == 0)
			continue;
		flow_set_msg(why,
			     _("%s: cannot remove the old discarded overlay before committing"),
			     vm->name);
		return false;
	}
	return true;
}

bool flow_commit_disk(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
		      char **why)
{
	const struct vm_disk *d = &vm->disks[disk];
	char *qi = NULL, *journal = NULL, **argv = NULL;
	struct flow_job *job = NULL;
	bool resumed = fv->set.resumed || flow_set_any_done(fv, vm);
	journal = flow_journal_path(flow, vm);
	qi = qemu_img(flow, why);
	if (!journal || !qi)
		goto error;
	argv = imageops_commit_argv(qi, d->overlay, chain_commit_target(vm, d));
	job = job_new(flow, fv, vm, disk, IMAGEOPS_COMMIT);
	if (!argv || !job) {
		flow_set_msg(why, "%s", strerror(ENOMEM));
		goto error;
	}
	job->bytes = image_allocated_bytes(d->overlay);
	/* The journal must be on disk (file and directory entry), naming this
	 * disk "committing", before qemu-img may write into its base; if that
	 * cannot be made sure, the commit does not start (*why names the
	 * error). */
	if (flow_set_write_journal(flow, fv, vm, journal, IMAGEOPS_COMMIT, (long)disk, why) < 0) {
		if (!resumed)
			imageops_journal_remove(journal);
		goto error;
	}
	job->journal = journal;
	job->resumed = resumed;
	journal = NULL;
	job->runner =
	    runner_start(flow->loop, argv, flow_on_job_progress, flow_on_commit_done, job, why);
	if (!job->runner) {
		if (!resumed)
			imageops_journal_remove(job->journal);
		goto error;
	}
	runner_set_kill_grace(job->runner, flow->kill_grace_ms);
	log_info("flow: %s: committing %s (%llu bytes allocated)", vm->name, d->overlay,
		 (unsigned long long)job->bytes);
	fv->job = job;
	fv->last_ui_progress_ms = 0;
	if (vm->flow != FLOW_COMMITTING) {
		flow_set_state(flow, fv, vm, FLOW_COMMITTING);
		vm->progress = 0;
	}
	imageops_argv_free(argv);
	free(qi);
	return true;

error:
	flow_job_free(job);
	imageops_argv_free(argv);
	free(qi);
	free(journal);
	return false;
}

bool flow_undo_disk(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
		    char **why)
{
	/* Asked again right before the rename (the check above was for the
	 * menu): the overlay must still be the one the discard made. */
	char *no = flow_undo_refusal_disk(flow, vm, disk);
	if (no) {
		flow_set_msg(why, "%s", no);
		free(no);
		return false;
	}
	char *err = NULL;
	int r = imageops_undo_discard(vm->disks[disk].overlay, &err);
	if (r == -EACCES || r == -EPERM) {
		bool ok = flow_start_privileged(flow, fv, vm, disk, IMAGEOPS_UNDO_DISCARD, false, 0,
						NULL, false, err);
		free(err);
		return ok;
	}
	if (r < 0) {
		flow_set_msg(why, "%s: %s", vm->name, err ? err : strerror(-r));
		free(err);
		return false;
	}
	flow_set_step_done(flow, fv, vm, disk, 0);
	return true;
}

/* Every operation starts here: one job per image, libvirt asked afresh
 * (rule 2, 3, 5), qemu's lock probed for the file steps. */
bool flow_start_op(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		   char **why)
{
	if (fv->job) {
		flow_set_msg(why, _("%s: another operation is still running on its image"),
			     vm->name);
		return false;
	}
	if (flow->stopping) {
		flow_set_msg(why, _("%s: vmoverlay is quitting; nothing was started"), vm->name);
		return false;
	}
	if (!flow_have_virt(flow, vm, why))
		return false;
	/* The facts asked afresh (a query: the watcher alone writes them into
	 * the model); the decision is made here, on what is true now. */
	struct virt_now now;
	virt_watcher_query(flow->virt, vm, &now);
	char *vwhy = virt_now_refusal(&now, vm, op == IMAGEOPS_COMMIT);
	bool changed = now.changed;
	virt_now_clear(&now);
	if (vwhy) {
		flow_set_msg(why, "%s", vwhy);
		free(vwhy);
		return false;
	}
	if (changed) {
		/* The operation would act on the disk the model shows, which is no
		 * longer the one libvirt names: nothing is started; the watcher
		 * re-reads it from the loop and the same request works then. */
		flow_set_msg(why,
		             _("%s: its disks changed since vmoverlay last read them; they are "
		               "being read again, nothing was started. Try once more."),
		             vm->name);
		return false;
	}
	if ((op == IMAGEOPS_COMMIT || op == IMAGEOPS_REBUILD) && flow_set_journal_exists(flow, vm)) {
		flow_set_msg(why,
			     _("%s: a discard or undo of its disks stopped half-way; only Retry, "
			       "which finishes it, is offered"),
			     vm->name);
		return false;
	}
	if (op != IMAGEOPS_COMMIT && flow_journal_exists(flow, vm)) {
		flow_set_msg(
		    why,
		    _("%s: a commit was interrupted and its base is half-merged; only "
		      "resuming the commit is safe"),
		    vm->name);
		return false;
	}
	/* qemu-img commit checks its own lock (and says "in use"); the file
	 * steps do not go through QEMU, so ask its locks here. */
	for (size_t i = 0; op != IMAGEOPS_COMMIT && i < vm->n_disks; i++) {
		if (!imageops_locked(vm->disks[i].overlay))
			continue;
		flow_set_msg(why,
			     _("%s: the overlay is in use by another process (is the VM running?)"),
			     vm->name);
		return false;
	}
	uint64_t failed_bytes = fv->failed_bytes;
	if (!flow_set_start(flow, fv, vm, op, why))
		return false;
	if (op == IMAGEOPS_REBUILD && fv->set.active && !fv->set.bytes)
		fv->set.bytes = failed_bytes; /* what the commit before moved: for the result */
	return true;
}

/* A policy acts like the user's choice; if it cannot start, the VM shows
 * why (FAILED) instead of silently staying put. */
void flow_auto_op(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op)
{
	char *why = NULL;
	if (flow_start_op(flow, fv, vm, op, &why)) {
		free(why);
		return;
	}
	if (vm->run == RUN_RUNNING) {
		log_info("flow: %s: %s by policy not started: %s", vm->name, imageops_op_name(op),
			 why ? why : "");
		flow_set_state(flow, fv, vm, FLOW_RUNNING);
	} else if (op == IMAGEOPS_COMMIT && flow_journal_exists(flow, vm)) {
		/* Finishing an interrupted commit by policy: the base is still
		 * half-merged, so INTERRUPTED (Resume/Keep), never FAILED. */
		flow_resume_failed(flow, fv, vm, why);
	} else {
		flow_fail(flow, fv, vm, op, why);
	}
	free(why);
}
