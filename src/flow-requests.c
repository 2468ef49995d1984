/* flow-requests.c: what the UI asks of the flow -- an action (commit,
 * discard, keep, retry, resume, undo, cancel) or a policy -- accepted, or
 * refused with a translated reason. */
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
#include "flow-private.h"

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

/* The first disk whose base another disk reads, or NULL. */
static const struct vm_disk *shared_disk(const struct vm *vm)
{
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].shared_with)
			return &vm->disks[i];
	return NULL;
}

/* Why action is not in vm->actions, in the user's words. */
static void refusal(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum vm_action a,
		    char **why)
{
	if (fv->job)
		flow_set_msg(
		    why,
		    _("%s: an operation is already running on its image; try again when it "
		      "has finished"),
		    vm->name);
	else if (vm->flow == FLOW_RUNNING || vm->run == RUN_RUNNING)
		flow_set_msg(why, _("%s is running; its overlay is in use"), vm->name);
	else if (a == ACT_COMMIT && shared_disk(vm))
		flow_set_msg(why,
			     _("The base %s is also used by %s; committing into it would corrupt "
			       "that VM."),
			     shared_disk(vm)->base ? shared_disk(vm)->base : "?",
			     shared_disk(vm)->shared_with);
	else if (flow_set_journal_exists(flow, vm) && a != ACT_RETRY)
		flow_set_msg(why,
			     _("%s: a discard or undo of its disks stopped half-way; only Retry, "
			       "which finishes it, is offered"),
			     vm->name);
	else if ((a == ACT_DISCARD || a == ACT_COMMIT || a == ACT_UNDO_DISCARD) &&
		 flow_journal_exists(flow, vm))
		flow_set_msg(
		    why,
		    _("%s: a commit was interrupted and its base is half-merged; only "
		      "resuming the commit is safe"),
		    vm->name);
	else if (vm->flow == FLOW_SAVED)
		flow_set_msg(why, _("%s has a saved state that needs its overlay as it is"),
			     vm->name);
	else if (vm->flow == FLOW_MISCONFIGURED)
		flow_set_msg(why, "%s: %s", vm->name, vm->n_problems ? vm->problems[0] : "");
	else if (a == ACT_UNDO_DISCARD && vm->undo_note)
		flow_set_msg(why, "%s", vm->undo_note);
	else if (a == ACT_UNDO_DISCARD)
		flow_set_msg(why, _("%s: there is no discarded overlay to restore"), vm->name);
	else
		flow_set_msg(why, refusal_format(a), vm->name, flow_state_label(vm->flow));
}

bool flow_request(struct flow *flow, struct vm *vm, enum vm_action action, char **why)
{
	if (why)
		*why = NULL;
	struct flow_vm *fv = flow && vm ? flow_fv_get(flow, vm) : NULL;
	if (!fv || (unsigned)action >= ACT_COUNT) {
		flow_set_msg(why, "%s", _("unknown VM or action"));
		return false;
	}
	fv->seen = vm;
	flow_update_actions(flow, vm);
	if (!(vm->actions & ACT_BIT(action))) {
		refusal(flow, fv, vm, action, why);
		return false;
	}
	log_info("flow: %s: request %s", vm->name, action_name(action));
	switch (action) {
	case ACT_COMMIT:
	case ACT_RESUME:
		return flow_start_op(flow, fv, vm, IMAGEOPS_COMMIT, why);
	case ACT_DISCARD:
		return flow_start_op(flow, fv, vm, IMAGEOPS_DISCARD, why);
	case ACT_UNDO_DISCARD:
		return flow_start_op(flow, fv, vm, IMAGEOPS_UNDO_DISCARD, why);
	case ACT_RETRY:
		return flow_start_op(flow, fv, vm,
				     fv->has_failed_op ? fv->failed_op : IMAGEOPS_COMMIT, why);
	case ACT_KEEP:
		/* From INTERRUPTED the journal stays: KEPT then offers Resume only. */
		flow_set_state(flow, fv, vm, FLOW_KEPT);
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
		flow_set_msg(why, "%s", _("unknown VM or policy"));
		return false;
	}
	struct flow_vm *fv = flow_fv_get(flow, vm);
	if (fv)
		flow_sync_identity(flow, fv, vm);
	vm->policy = policy;
	/* Remembered in the state file for this domain (URI + UUID); the
	 * user's config is never rewritten. */
	if (flow->state && flow_identity_known(vm)) {
		struct state_key k = flow_vm_key(vm);
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
		flow_job_end(job);
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
