/* flow-identity.c: a VM is its connection URI + domain UUID (issue 12):
 * its records follow a renamed domain and never go to another domain of
 * the same name; commit journals are found, adopted by the domain whose
 * disk they name, or kept and shown when no domain owns them. */
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

/* ---- identity: connection URI + domain UUID (issue 12) ---- */

/* The name vm is watched under now stands for the domain (URI + UUID) the
 * watcher found: a policy saved for that domain applies; a domain new under
 * this name (redefined, or the same name on another connection) gets the
 * configured policy, never the one saved for the domain before it. */
void flow_sync_identity(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	if (!flow_identity_known(vm) || (fv->key_uri && strcmp(fv->key_uri, vm->uri) == 0 &&
					 strcmp(fv->key_uuid, vm->uuid) == 0))
		return;
	bool known_before = fv->key_uri != NULL;
	struct state_key k = flow_vm_key(vm);
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
		char *p = flow_journal_path(flow, flow->model->vms[i]);
		bool own = p && strcmp(p, path) == 0;
		free(p);
		if (own)
			return true;
	}
	return false;
}

/* True if every disk the journal names is one of vm's (the same file). */
static bool journal_disks_are(const struct imageops_journal *j, const struct vm *vm)
{
	for (size_t k = 0; k < j->n_disks; k++) {
		bool found = false;
		for (size_t i = 0; i < vm->n_disks && !found; i++)
			found = vm->disks[i].overlay &&
				image_same_file(j->disks[k].overlay, vm->disks[i].overlay);
		if (!found)
			return false;
	}
	return j->n_disks > 0;
}

/* The watched domain whose disks are the very files the journal's commit
 * merges (only one without a journal of its own and not busy). */
static struct vm *journal_adopter(struct flow *flow, const struct imageops_journal *j)
{
	for (size_t i = 0; j->overlay && i < flow->model->n_vms; i++) {
		struct vm *vm = flow->model->vms[i];
		struct flow_vm *fv = flow_fv_get(flow, vm);
		if (!fv || fv->job || !flow_identity_known(vm) || !journal_disks_are(j, vm))
			continue;
		char *p = flow_journal_path(flow, vm);
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
	char *np = flow_journal_path(flow, vm), *err = NULL;
	struct imageops_journal nj = *j; /* the same disks and states, this domain's key */
	nj.uri = vm->uri;
	nj.uuid = vm->uuid;
	nj.vm = vm->name;
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
void flow_scan_journals(struct flow *flow)
{
	const char *dir = flow_state_dir(flow);
	size_t n = flow->model->n_vms;
	/* Until libvirt has said who every watched VM is (not connected yet),
	 * no journal can be called nobody's: the notices wait. */
	bool undecided = false;
	for (size_t i = 0; i < n; i++)
		undecided = undecided || (!flow_identity_known(flow->model->vms[i]) &&
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
			flow_set_msg(
			    &text,
			    _("A commit of %s into its base did not finish (journal %s). It was "
			      "started for the domain %s on %s, not this one, so it is kept and "
			      "never resumed here: finish it by hand (qemu-img commit), then "
			      "remove the journal."),
			    ov, p, j.uuid, j.uri ? j.uri : "?");
		else
			flow_set_msg(
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
void flow_identify(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	flow_sync_identity(flow, fv, vm);
	flow_scan_journals(flow);
}

void flow_journal_found(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	char *p = flow_journal_path(flow, vm), *msg = NULL;
	log_warn("flow: %s: commit journal %s found: interrupted commit", vm->name,
		 p ? p : "?");
	free(p);
	flow_set_msg(&msg,
		     _("%s: a commit did not finish (vmoverlay or the machine stopped "
		       "during it). Nothing was lost: the overlay still holds every "
		       "change; resume the commit to finish it"),
		     vm->name);
	flow_set_state(flow, fv, vm, FLOW_INTERRUPTED);
	vm_set_str(&vm->error, msg);
	free(msg);
	flow_changed(flow, vm);
}
