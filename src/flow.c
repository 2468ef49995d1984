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
#include "flow-private.h"

void flow_set_msg(char **out, const char *fmt, ...)
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

struct flow_vm *flow_fv_get(struct flow *flow, const struct vm *vm)
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

const char *flow_state_dir(const struct flow *flow)
{
	return flow->state ? statefile_dir(flow->state) : NULL;
}

/* The journal of the domain vm is (URI + UUID); NULL while not known. */
char *flow_journal_path(const struct flow *flow, const struct vm *vm)
{
	const char *dir = flow_state_dir(flow);
	return dir ? imageops_journal_path(dir, vm->uri, vm->uuid) : NULL;
}

bool flow_identity_known(const struct vm *vm)
{
	return vm->uri && *vm->uri && vm->uuid[0];
}

struct state_key flow_vm_key(const struct vm *vm)
{
	return (struct state_key){.uri = vm->uri, .uuid = vm->uuid, .name = vm->name};
}

bool flow_journal_exists(const struct flow *flow, const struct vm *vm)
{
	char *p = flow_journal_path(flow, vm);
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
static const char *mark_target(const struct vm *vm, size_t i)
{
	/* A VM with one disk keeps the record files from before issue 15 had. */
	return vm->n_disks > 1 ? vm->disks[i].target : NULL;
}

char *flow_undo_refusal_disk(const struct flow *flow, const struct vm *vm, size_t i)
{
	struct statefile_file_id mark, now;
	struct stat st;
	struct state_key k = flow_vm_key(vm);
	char *msg = NULL;
	const char *ov = vm->disks[i].overlay;
	if (!flow->state || !statefile_get_discard_mark(flow->state, &k, mark_target(vm, i), &mark))
		flow_set_msg(&msg,
			     _("%s: Undo is not offered: there is no record of the overlay the "
			       "discard left, so a session since then cannot be ruled out. The "
			       "discarded overlay stays in %s.discarded"),
			     vm->name, ov);
	else if (stat(ov, &st) < 0)
		flow_set_msg(&msg, _("%s: Undo is not offered: cannot check the overlay %s: %s"),
			     vm->name, ov, strerror(errno));
	else {
		statefile_file_id_of(&st, &now);
		if (!statefile_file_id_equal(&mark, &now))
			flow_set_msg(&msg,
				     _("%s: Undo is not offered: the overlay changed since the discard "
				       "(the VM ran or was written to while vmoverlay was not "
				       "watching), and undoing would throw that newer session away. "
				       "The discarded overlay stays in %s.discarded"),
				     vm->name, ov);
	}
	return msg;
}

char *flow_undo_refusal(const struct flow *flow, const struct vm *vm)
{
	char *msg = NULL;
	for (size_t i = 0; i < vm->n_disks && !msg; i++)
		msg = flow_undo_refusal_disk(flow, vm, i);
	return msg;
}

/* After a discard that kept .discarded: remember every fresh overlay. */
void flow_mark_discard(struct flow *flow, const struct vm *vm)
{
	struct stat st;
	struct state_key k = flow_vm_key(vm);
	if (!flow->state)
		return;
	for (size_t i = 0; i < vm->n_disks; i++) {
		const char *ov = vm->disks[i].overlay;
		if (!imageops_has_discarded(ov))
			continue;
		if (stat(ov, &st) < 0) {
			/* No mark: Undo will be refused, never offered blindly. */
			log_warn("flow: %s: cannot stat the fresh overlay %s: %s", vm->name, ov,
				 strerror(errno));
			statefile_set_discard_mark(flow->state, &k, mark_target(vm, i), NULL);
		} else {
			struct statefile_file_id id;
			statefile_file_id_of(&st, &id);
			statefile_set_discard_mark(flow->state, &k, mark_target(vm, i), &id);
		}
	}
	if (!statefile_save(flow->state))
		log_warn("flow: %s: could not save the state file (discard record)", vm->name);
}

void flow_forget_discard(struct flow *flow, const struct vm *vm)
{
	struct state_key k = flow_vm_key(vm);
	if (!flow->state)
		return;
	bool any = false;
	for (size_t i = 0; i < vm->n_disks || (i == 0 && !vm->n_disks); i++) {
		const char *t = vm->n_disks ? mark_target(vm, i) : NULL;
		if (!statefile_get_discard_mark(flow->state, &k, t, NULL))
			continue;
		statefile_set_discard_mark(flow->state, &k, t, NULL);
		any = true;
	}
	if (any)
		statefile_save(flow->state);
}

/* Every watched disk has its <overlay>.discarded (a discard kept them). */
static bool all_discarded(const struct vm *vm)
{
	for (size_t i = 0; i < vm->n_disks; i++)
		if (!vm->disks[i].overlay || !imageops_has_discarded(vm->disks[i].overlay))
			return false;
	return vm->n_disks > 0;
}

/* vm->actions from the state; the journal overrides: while a commit is
 * unfinished the base is half-merged, so nothing but Resume and Keep. */
void flow_update_actions(struct flow *flow, struct vm *vm)
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
	bool journal = flow_journal_exists(flow, vm);
	vm->has_discarded = all_discarded(vm);
	char *undo_no = vm->has_discarded ? flow_undo_refusal(flow, vm) : NULL;
	vm_set_str(&vm->undo_note, undo_no);
	free(undo_no);
	if (journal && vm->flow != FLOW_COMMITTING && vm->flow != FLOW_REBUILDING) {
		bool offered = a != 0;
		a &= ~(ACT_BIT(ACT_COMMIT) | ACT_BIT(ACT_DISCARD) | ACT_BIT(ACT_RETRY));
		if (offered)
			a |= ACT_BIT(ACT_RESUME);
	} else if (flow_set_journal_exists(flow, vm) && vm->flow != FLOW_REBUILDING) {
		/* A discard or undo of several disks stopped half-way: the set
		 * is finished first, never committed half discarded. */
		a &= ACT_BIT(ACT_RETRY);
	} else if (vm->has_discarded && !vm->undo_note && state_allows_discarded(vm->flow)) {
		a |= ACT_BIT(ACT_UNDO_DISCARD);
	}
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].shared_with)
			a &= ~ACT_BIT(ACT_COMMIT);
	vm->actions = a;
}

void flow_changed(struct flow *flow, struct vm *vm)
{
	flow_update_actions(flow, vm);
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

void flow_set_state(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum flow_state s)
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
	flow_changed(flow, vm);
}

void flow_fail(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		 const char *msg)
{
	log_warn("flow: %s: %s failed: %s", vm->name, imageops_op_name(op), msg ? msg : "");
	flow_set_end(fv);
	fv->has_failed_op = true;
	fv->failed_op = op;
	fv->failed_bytes = 0;
	flow_set_state(flow, fv, vm, FLOW_FAILED);
	vm_set_str(&vm->error, msg);
	flow_changed(flow, vm);
	if (flow->ui.result)
		flow->ui.result(flow->ui.data, vm, RESULT_FAILED, 0, msg);
}

void flow_interrupted(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *msg,
			enum flow_result res)
{
	log_warn("flow: %s: commit interrupted: %s", vm->name, msg ? msg : "");
	flow_set_end(fv);
	flow_set_state(flow, fv, vm, FLOW_INTERRUPTED);
	vm_set_str(&vm->error, msg);
	flow_changed(flow, vm);
	if (flow->ui.result)
		flow->ui.result(flow->ui.data, vm, res, 0, msg);
}

/* A commit that found a journal (Resume) failed before it could finish.
 * Whatever this attempt did or did not write, the base is as half-merged
 * as before: the journal stays and the VM stays INTERRUPTED (Resume/Keep
 * only), with why it failed (docs/design.md §4 rule 8). */
void flow_resume_failed(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *why)
{
	char *msg = NULL;
	/* The reason may be a whole sentence (the helper's last line). */
	int n = why ? (int)strlen(why) : 0;
	while (n > 0 && (why[n - 1] == '.' || why[n - 1] == ' '))
		n--;
	/* TRANSLATORS: VM name, why resuming failed ("the image is in use by
	 * another process") */
	flow_set_msg(&msg,
		_("%s: the commit could not be resumed: %.*s. Nothing was lost, but the base is "
		  "still half-merged: only resuming the commit is safe; resume it again once "
		  "this is fixed"),
		vm->name, n ? n : 1, n ? why : "?");
	flow_interrupted(flow, fv, vm, msg, RESULT_FAILED);
	free(msg);
}

/* A commit attempt failed before qemu-img (or the helper) wrote anything.
 * The journal this attempt wrote goes with it and the VM shows FAILED
 * (msg); a journal it found (resumed) stays: flow_resume_failed (why). Takes
 * neither string. */
void flow_commit_not_done(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			    const char *journal, bool resumed, const char *msg, const char *why)
{
	if (flow_set_any_done(fv, vm) && !fv->set.resumed) {
		/* Some disks of this attempt were committed, this one was not:
		 * the set must not be left half committed, the journal stays. */
		char *done = flow_set_disks_text(fv, vm, true);
		char *left = flow_set_disks_text(fv, vm, false);
		char *text = NULL;
		/* TRANSLATORS: VM name, disks committed, disks not, the reason */
		flow_set_msg(&text,
			     _("%s: %s committed, %s not: %s. Nothing was lost: the overlays not "
			       "committed still hold their changes; only resuming the commit is "
			       "safe"),
			     vm->name, done ? done : "?", left ? left : "?", why ? why : "?");
		log_warn("flow: %s: the commit stopped between disks; journal %s kept", vm->name,
			 journal ? journal : "");
		free(done);
		free(left);
		flow_interrupted(flow, fv, vm, text, RESULT_FAILED);
		free(text);
		return;
	}
	flow_set_end(fv);
	if (resumed) {
		log_warn("flow: %s: resuming the commit failed; journal %s kept", vm->name,
			 journal ? journal : "?");
		flow_resume_failed(flow, fv, vm, why);
		return;
	}
	int r = journal ? imageops_journal_remove(journal) : 0;
	if (r < 0)
		/* Still there: flow_update_actions keeps offering Resume only. */
		log_warn("flow: cannot remove journal %s: %s", journal, strerror(-r));
	flow_fail(flow, fv, vm, IMAGEOPS_COMMIT, msg);
}

/* ---- inputs from the watcher ---- */

void flow_on_domain_stopped(struct flow *flow, struct vm *vm, enum vm_stop_kind kind)
{
	struct flow_vm *fv = flow ? flow_fv_get(flow, vm) : NULL;
	if (!fv)
		return;
	fv->seen = vm;
	flow_identify(flow, fv, vm);
	if (fv->job) {
		log_warn("flow: %s stopped while an operation runs on its image", vm->name);
		return;
	}
	vm->last_stop = kind;
	vm->stop_time_ms = loop_now_ms();
	fv->has_failed_op = false;
	if (kind == STOP_NO_PROMPT) {
		/* Saved state, migration, snapshot: the overlay belongs to it. */
		flow_set_state(flow, fv, vm, FLOW_SAVED);
		return;
	}
	if (flow_journal_exists(flow, vm)) {
		/* The VM ran on top of a half-merged base (the overlay masks it):
		 * only finishing the commit is safe, never a discard. */
		if (vm->policy == POLICY_COMMIT)
			flow_auto_op(flow, fv, vm, IMAGEOPS_COMMIT);
		else
			flow_set_state(flow, fv, vm, FLOW_INTERRUPTED);
		return;
	}
	if (flow_set_journal_exists(flow, vm)) {
		flow_set_journal_found(flow, fv, vm);
		return;
	}
	if (vm->n_problems) {
		flow_set_state(flow, fv, vm, FLOW_MISCONFIGURED);
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
		flow_auto_op(flow, fv, vm, IMAGEOPS_COMMIT);
		return;
	case POLICY_DISCARD:
		flow_auto_op(flow, fv, vm, IMAGEOPS_DISCARD);
		return;
	case POLICY_KEEP:
		flow_set_state(flow, fv, vm, FLOW_KEPT);
		return;
	case POLICY_ASK:
		break;
	}
	flow_set_state(flow, fv, vm, FLOW_PENDING);
	fv->prompt_open = true;
	if (flow->ui.prompt)
		flow->ui.prompt(flow->ui.data, vm);
}

void flow_on_domain_started(struct flow *flow, struct vm *vm)
{
	struct flow_vm *fv = flow ? flow_fv_get(flow, vm) : NULL;
	if (!fv)
		return;
	fv->seen = vm;
	flow_identify(flow, fv, vm);
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
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].overlay && imageops_has_discarded(vm->disks[i].overlay))
			imageops_drop_discarded(vm->disks[i].overlay);
	flow_forget_discard(flow, vm);
	flow_set_state(flow, fv, vm, FLOW_RUNNING);
}

void flow_on_domain_updated(struct flow *flow, struct vm *vm)
{
	struct flow_vm *fv = flow ? flow_fv_get(flow, vm) : NULL;
	if (!fv)
		return;
	fv->seen = vm;
	flow_identify(flow, fv, vm);
	if (fv->job)
		return;
	if ((vm->flow == FLOW_UNKNOWN || vm->flow == FLOW_CLEAN) &&
	    (vm->run == RUN_SHUTOFF || vm->run == RUN_CRASHED) && flow_journal_exists(flow, vm)) {
		/* Found at start-up, or this domain's by its disk (flow_scan_journals). */
		flow_journal_found(flow, fv, vm);
		return;
	}
	if ((vm->flow == FLOW_UNKNOWN || vm->flow == FLOW_CLEAN) &&
	    (vm->run == RUN_SHUTOFF || vm->run == RUN_CRASHED) && flow_set_journal_exists(flow, vm)) {
		flow_set_journal_found(flow, fv, vm);
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
		flow_set_state(flow, fv, vm, s);
	else
		flow_update_actions(flow, vm);
	if (vm->actions != before || vm->has_discarded != disc_before)
		model_changed(flow->model);
}

/* ---- life cycle ---- */

/* Policies changed at run time win for VMs we have not seen before (once
 * their domain is known: flow_sync_identity); for a VM we knew, a policy now
 * different from the saved one was changed in the file (model_reload),
 * and the file is the user's newer word. */
static void apply_saved_policies(struct flow *flow)
{
	for (size_t i = 0; i < flow->model->n_vms; i++) {
		struct vm *vm = flow->model->vms[i];
		struct flow_vm *fv = flow_fv_get(flow, vm);
		if (!fv)
			continue;
		if (fv->seen == vm) {
			struct state_key k = flow_vm_key(vm);
			enum vmo_policy saved;
			if (flow_identity_known(vm) && flow->state &&
			    statefile_get_policy(flow->state, &k, &saved) && saved != vm->policy) {
				statefile_clear_policy(flow->state, &k);
				statefile_save(flow->state);
			}
		} else {
			free(fv->key_uri);
			fv->key_uri = NULL;
			fv->key_uuid[0] = 0;
			flow_sync_identity(flow, fv, vm);
		}
		fv->seen = vm;
	}
}

/* A journal of a known domain: the applet (or the machine) died during a
 * commit. Domains not known yet get theirs when the watcher finds them
 * (flow_on_domain_updated). */
static void check_journals(struct flow *flow)
{
	flow_scan_journals(flow);
	for (size_t i = 0; i < flow->model->n_vms; i++) {
		struct vm *vm = flow->model->vms[i];
		struct flow_vm *fv = flow_fv_get(flow, vm);
		if (!fv || fv->job)
			continue;
		if ((vm->flow == FLOW_UNKNOWN || vm->flow == FLOW_CLEAN) && flow_identity_known(vm) &&
		    flow_journal_exists(flow, vm))
			flow_journal_found(flow, fv, vm);
		else if ((vm->flow == FLOW_UNKNOWN || vm->flow == FLOW_CLEAN) &&
			 flow_identity_known(vm) && vm->run != RUN_RUNNING &&
			 flow_set_journal_exists(flow, vm))
			flow_set_journal_found(flow, fv, vm);
		flow_update_actions(flow, vm);
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
		flow_update_actions(flow, flow->model->vms[i]);
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
			flow_job_free(fv->job);
		}
		flow_set_end(fv);
		free(fv->name);
		free(fv->key_uri);
		free(fv);
	}
	free(flow->fvs);
	free(flow);
}
