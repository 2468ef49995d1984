/* flow-set.c: an operation on a VM's disks, one disk after the other
 * (issue 15). One decision per VM applies to every watched disk, and the
 * set is never left half committed and half discarded:
 * - commit: every disk's commit, in order, under one journal that names
 *   each disk's state (pending, committing, committed); only when all are
 *   committed does the journal go and the fresh overlays are made. An
 *   interruption leaves the journal: Resume goes on with the first disk
 *   not committed; Discard is never offered meanwhile.
 * - discard and undo of a VM with several disks: a .set journal, written
 *   before the first overlay is replaced and removed after the last, says
 *   which disks are done; if the set stops half-way, only Retry (which
 *   finishes it) is offered, also after a restart.
 * - while the set runs, qemu's image lock is held on every overlay no job
 *   works on at that moment, so the VM cannot start between two disks. */
#include "flow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "i18n.h"
#include "image.h"
#include "imageops.h"
#include "log.h"
#include "flow-private.h"

static void unlock_disk(struct flow_vm *fv, size_t i)
{
	if (fv->set.lock_fd[i] > 0)
		close(fv->set.lock_fd[i]);
	fv->set.lock_fd[i] = -1;
}

void flow_set_end(struct flow_vm *fv)
{
	for (size_t i = 0; i < VMO_MAX_DISKS; i++)
		unlock_disk(fv, i);
	memset(&fv->set, 0, sizeof fv->set);
	for (size_t i = 0; i < VMO_MAX_DISKS; i++)
		fv->set.lock_fd[i] = -1;
}

/* qemu's lock on disk i's overlay: 0, -EBUSY (in use), or another errno
 * when it cannot be taken here (root's 0600 image: the helper checks as
 * root). */
static int lock_disk(struct flow_vm *fv, const struct vm *vm, size_t i)
{
	unlock_disk(fv, i);
	const char *ov = vm->disks[i].overlay;
	int fd = ov ? open(ov, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW) : -1;
	if (fd < 0)
		return -errno;
	int r = imageops_qemu_lock(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	fv->set.lock_fd[i] = fd;
	return 0;
}

void flow_set_relock(struct flow_vm *fv, const struct vm *vm, size_t disk)
{
	if (!fv->set.active || vm->n_disks < 2 || disk >= vm->n_disks)
		return;
	int r = lock_disk(fv, vm, disk);
	if (r < 0 && r != -EACCES && r != -EPERM)
		log_warn("flow: %s: cannot hold the lock on %s between two disks: %s", vm->name,
			 vm->disks[disk].overlay, strerror(-r));
}

/* Starts fv->set for op; with several disks every overlay is locked.
 * False with *why (nothing held) when one of them is in use. */
static bool set_begin(struct flow_vm *fv, const struct vm *vm, enum imageops_op op, char **why)
{
	flow_set_end(fv);
	fv->set.active = true;
	fv->set.op = op;
	for (size_t i = 0; vm->n_disks > 1 && i < vm->n_disks; i++) {
		int r = lock_disk(fv, vm, i);
		if (r == -EBUSY) {
			flow_set_end(fv);
			flow_set_msg(why,
				     _("%s: the overlay %s (disk %s) is in use by another process "
				       "(is the VM running?)"),
				     vm->name, vm->disks[i].overlay,
				     vm->disks[i].target ? vm->disks[i].target : "?");
			return false;
		}
		if (r < 0)
			log_debug("flow: %s: no lock on %s here (%s); the helper checks as root",
				  vm->name, vm->disks[i].overlay, strerror(-r));
	}
	return true;
}

bool flow_set_any_done(const struct flow_vm *fv, const struct vm *vm)
{
	for (size_t i = 0; fv->set.active && i < vm->n_disks; i++)
		if (fv->set.done[i])
			return true;
	return false;
}

char *flow_set_disks_text(const struct flow_vm *fv, const struct vm *vm, bool done)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	bool first = true;
	for (size_t i = 0; i < vm->n_disks; i++) {
		if (fv->set.done[i] != done)
			continue;
		fprintf(f, "%s%s", first ? "" : ", ",
			vm->disks[i].target ? vm->disks[i].target : vm->disks[i].overlay);
		first = false;
	}
	fclose(f);
	return out;
}

char *flow_set_journal_path(const struct flow *flow, const struct vm *vm)
{
	const char *dir = flow_state_dir(flow);
	return dir ? imageops_set_journal_path(dir, vm->uri, vm->uuid) : NULL;
}

bool flow_set_journal_exists(const struct flow *flow, const struct vm *vm)
{
	char *p = flow_set_journal_path(flow, vm);
	struct stat st;
	bool r = p && stat(p, &st) == 0;
	free(p);
	return r;
}

/* The journal of fv->set as it stands: done disks DONE, running (if any)
 * RUNNING, the rest PENDING. 0 or -errno with *why. */
int flow_set_write_journal(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *path,
			 enum imageops_op op, long running, char **why)
{
	struct imageops_journal j = {
	    .uri = vm->uri, .uuid = vm->uuid, .vm = vm->name, .op = op, .n_disks = vm->n_disks};
	for (size_t i = 0; i < vm->n_disks; i++) {
		j.disks[i] = (struct imageops_journal_disk){
		    .target = vm->disks[i].target,
		    .overlay = vm->disks[i].overlay,
		    .base = vm->disks[i].base,
		    .state = fv->set.done[i]       ? JDISK_DONE
			     : (long)i == running ? JDISK_RUNNING
						  : JDISK_PENDING,
		};
	}
	(void)flow;
	return imageops_journal_write(path, &j, why);
}

/* Reads a journal's disk states into fv->set.done: every disk it names
 * must be one of vm's (the same file), else false with *why. A journal
 * that cannot be parsed marks nothing done. */
static bool adopt_journal(struct flow_vm *fv, const struct vm *vm, const char *path,
			  enum imageops_op want, char **why)
{
	struct imageops_journal j;
	int r = imageops_journal_read(path, &j);
	if (r == -ENOENT) {
		imageops_journal_clear(&j);
		return true;
	}
	bool ok = true;
	char *no = NULL;
	if (r == 0 && j.op != want) {
		flow_set_msg(why, _("%s: an unfinished %s of its disks is recorded in %s; finish it "
				    "first"),
			     vm->name, imageops_op_name(j.op), path);
		ok = false;
	}
	for (size_t k = 0; ok && r == 0 && k < j.n_disks; k++) {
		size_t i = 0;
		while (i < vm->n_disks && !image_same_file(j.disks[k].overlay, vm->disks[i].overlay))
			i++;
		if (i == vm->n_disks) {
			flow_set_msg(why,
				     _("%s: the unfinished operation was for %s, which is not one of "
				       "the VM's disks now; resolve this by hand (journal %s)"),
				     vm->name, j.disks[k].overlay, path);
			ok = false;
		} else if (j.disks[k].state != JDISK_PENDING &&
			   (no = chain_resume_refusal(vm, &vm->disks[i], j.disks[k].base))) {
			/* A commit goes on only into the file it wrote (chain.h). */
			flow_set_msg(why, "%s", no);
			free(no);
			ok = false;
		} else if (j.disks[k].state == JDISK_DONE) {
			fv->set.done[i] = true;
		}
	}
	imageops_journal_clear(&j);
	return ok;
}

/* ---- the steps ---- */

static bool start_disk(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t i, char **why);

static long next_disk(const struct flow_vm *fv, const struct vm *vm)
{
	for (size_t i = 0; i < vm->n_disks; i++)
		if (!fv->set.done[i])
			return (long)i;
	return -1;
}

/* A set journal (discard, undo) is kept only for several disks. */
static bool uses_set_journal(const struct flow_vm *fv, const struct vm *vm)
{
	return vm->n_disks > 1 &&
	       (fv->set.op == IMAGEOPS_DISCARD || fv->set.op == IMAGEOPS_UNDO_DISCARD);
}

/* The discard or undo of a VM with several disks cannot go on at disk i:
 * msg says why. With no disk done yet nothing changed (the .set journal
 * goes); else the journal stays and only Retry is offered. */
static void set_failed(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		       const char *msg)
{
	char *full = NULL;
	if (uses_set_journal(fv, vm)) {
		char *p = flow_set_journal_path(flow, vm);
		if (!flow_set_any_done(fv, vm)) {
			if (p)
				imageops_journal_remove(p);
		} else {
			char *done = flow_set_disks_text(fv, vm, true);
			char *left = flow_set_disks_text(fv, vm, false);
			flow_set_msg(&full,
				     op == IMAGEOPS_DISCARD
					 /* TRANSLATORS: the reason, the disks done, the disks left */
					 ? _("%s. The discard stopped half-way: %s discarded, %s not. "
					     "Retry finishes the discard; nothing else is offered until "
					     "then")
					 /* TRANSLATORS: the reason, the disks done, the disks left */
					 : _("%s. The undo stopped half-way: %s restored, %s not. Retry "
					     "finishes the undo; nothing else is offered until then"),
				     msg ? msg : "?", done ? done : "?", left ? left : "?");
			free(done);
			free(left);
		}
		free(p);
	}
	flow_set_end(fv);
	flow_fail(flow, fv, vm, op, full ? full : msg);
	free(full);
}

static bool start_disk(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t i, char **why)
{
	unlock_disk(fv, i); /* the job takes the image: our own lock would make it fail */
	bool ok = false;
	switch (fv->set.op) {
	case IMAGEOPS_COMMIT:
		ok = flow_commit_disk(flow, fv, vm, i, why);
		break;
	case IMAGEOPS_REBUILD:
	case IMAGEOPS_DISCARD:
		ok = flow_start_rebuild(flow, fv, vm, i, fv->set.op,
					fv->set.op == IMAGEOPS_REBUILD ? fv->set.bytes : 0, why);
		break;
	case IMAGEOPS_UNDO_DISCARD:
		ok = flow_undo_disk(flow, fv, vm, i, why);
		break;
	}
	if (!ok)
		flow_set_relock(fv, vm, i);
	return ok;
}

/* All disks committed: the journal goes (every base holds its session,
 * every overlay was emptied by qemu-img), then the fresh overlays. Not so
 * after `commit -b` into a deeper base (chain.h): that overlay stays full
 * over files that are now invalid, so until the fresh overlays lie on the
 * bases only finishing is safe (Resume: the same commit again, then the
 * rebuilds; a discard would put the VM on an invalid template). The
 * journal then stays until the rebuilds are done (flow_success). */
/* A disk commits into a base further down its chain: its overlay lies on
 * an invalid template until its fresh overlay exists, so the journal stays
 * until then (flow_success removes it). */
static bool any_deep(const struct vm *vm)
{
	bool deep = false;
	for (size_t i = 0; i < vm->n_disks; i++)
		deep |= chain_commit_target(vm, &vm->disks[i]) != NULL;
	return deep;
}

static void commits_done(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	char *journal = any_deep(vm) ? NULL : flow_journal_path(flow, vm);
	int r = journal ? imageops_journal_remove(journal) : 0;
	if (r < 0)
		log_warn("flow: cannot remove journal %s: %s", journal, strerror(-r));
	free(journal);
	fv->set.op = IMAGEOPS_REBUILD;
	memcpy(fv->set.done, fv->set.rebuilt, sizeof fv->set.done);
	long i = next_disk(fv, vm);
	if (i < 0) {
		uint64_t bytes = fv->set.bytes;
		flow_set_end(fv);
		flow_success(flow, fv, vm, IMAGEOPS_REBUILD, bytes);
		return;
	}
	char *why = NULL;
	/* A step that failed on its own way (the helper's) ended the set. */
	if (!start_disk(flow, fv, vm, (size_t)i, &why) && fv->set.active)
		flow_rebuild_failed_after_commit(flow, fv, vm, fv->set.bytes, why);
	free(why);
}

void flow_set_step_done(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
			uint64_t bytes)
{
	if (!fv->set.active) {
		/* Not started through flow_start_op (cannot happen): end it here. */
		flow_success(flow, fv, vm, IMAGEOPS_REBUILD, bytes);
		return;
	}
	fv->set.done[disk] = true;
	if (fv->set.op == IMAGEOPS_COMMIT)
		fv->set.bytes += bytes;
	flow_set_relock(fv, vm, disk);
	enum imageops_op op = fv->set.op;
	char *journal = op == IMAGEOPS_COMMIT	   ? flow_journal_path(flow, vm)
			: uses_set_journal(fv, vm) ? flow_set_journal_path(flow, vm)
						   : NULL;
	long next = next_disk(fv, vm);
	if (journal && next >= 0) {
		char *err = NULL;
		/* Not fatal: a journal that still says "committing" for this
		 * disk only makes a resume commit its emptied overlay again. */
		if (flow_set_write_journal(flow, fv, vm, journal, op, -1, &err) < 0)
			log_warn("flow: %s: %s", vm->name, err ? err : "journal not updated");
		free(err);
	}
	if (flow->stopping && (next >= 0 || op == IMAGEOPS_COMMIT)) {
		/* Quitting between two disks: nothing new starts. What is left
		 * is on disk for the next start: a commit journal (interrupted,
		 * Resume), a .set journal (Retry), or, after the last commit,
		 * emptied overlays that are as good as fresh ones. */
		log_info("flow: %s: quitting between disks (%s of %s done)", vm->name,
			 imageops_op_name(op), vm->disks[disk].target ? vm->disks[disk].target : "?");
		if (op == IMAGEOPS_COMMIT && next < 0 && journal && !any_deep(vm))
			imageops_journal_remove(journal);
		free(journal);
		flow_set_end(fv);
		return;
	}
	if (next < 0) {
		if (op == IMAGEOPS_COMMIT) {
			free(journal);
			commits_done(flow, fv, vm);
			return;
		}
		if (journal && imageops_journal_remove(journal) < 0)
			log_warn("flow: cannot remove %s: %s", journal, strerror(errno));
		free(journal);
		uint64_t total = fv->set.bytes;
		flow_set_end(fv);
		flow_success(flow, fv, vm, op, total);
		return;
	}
	free(journal);
	log_info("flow: %s: %s of disk %s done; next disk %s", vm->name, imageops_op_name(op),
		 vm->disks[disk].target ? vm->disks[disk].target : "?",
		 vm->disks[next].target ? vm->disks[next].target : "?");
	char *why = NULL;
	/* A step that failed on its own way (the helper's) ended the set. */
	if (!start_disk(flow, fv, vm, (size_t)next, &why) && fv->set.active) {
		char *msg = NULL;
		flow_set_msg(&msg, "%s", why ? why : "?");
		if (op == IMAGEOPS_COMMIT)
			flow_commit_not_done(flow, fv, vm, NULL, true, msg, why);
		else if (op == IMAGEOPS_REBUILD)
			flow_rebuild_failed_after_commit(flow, fv, vm, fv->set.bytes, why);
		else
			set_failed(flow, fv, vm, op, msg);
		free(msg);
	}
	free(why);
}

/* A job of the set failed at disk (not a commit: flow-jobs.c has those). */
void flow_set_step_failed(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			  enum imageops_op op, const char *msg)
{
	if (fv->set.active && uses_set_journal(fv, vm))
		set_failed(flow, fv, vm, op, msg);
	else {
		flow_set_end(fv);
		flow_fail(flow, fv, vm, op, msg);
	}
}

/* ---- the start ---- */

/* Before the first overlay of several is replaced: every one of them can
 * be (the same checks the rebuild makes; "this user may not" is left to
 * the privileged helper), and for undo every one has its discarded
 * overlay. A refusal here changes nothing; one after the first disk
 * leaves the set half done. */
static bool discard_prepare(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			    enum imageops_op op, char **why)
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct vm_disk *d = &vm->disks[i];
		if (op == IMAGEOPS_UNDO_DISCARD) {
			if (!imageops_has_discarded(d->overlay) && !fv->set.done[i]) {
				flow_set_msg(why, _("%s: there is no discarded overlay to restore"),
					     vm->name);
				return false;
			}
			continue;
		}
		char *cerr = NULL;
		int c = imageops_rebuild_check(d->overlay, d->backing_stored, d->backing_format,
					       &cerr);
		if (c < 0 && !((c == -EACCES || c == -EPERM) && flow->priv.argv)) {
			flow_set_msg(why, "%s: %s", vm->name, cerr ? cerr : strerror(-c));
			free(cerr);
			return false;
		}
		free(cerr);
	}
	return true;
}

/* The journal of a commit of several disks, written before the first
 * byte of any base changes; the disks an earlier attempt committed are
 * done already. */
static bool begin_commit(struct flow *flow, struct flow_vm *fv, struct vm *vm, char **why)
{
	char *journal = flow_journal_path(flow, vm);
	if (!journal) {
		if (flow_state_dir(flow))
			flow_set_msg(why,
				     _("%s: libvirt has not told which domain this is (its UUID)"),
				     vm->name);
		else
			flow_set_msg(why, _("%s: no state directory for the commit journal"),
				     vm->name);
		return false;
	}
	/* Any journal there (even one we cannot parse) is an earlier,
	 * unfinished commit: this attempt resumes it and never removes it
	 * unless every disk's commit exits 0. */
	struct stat jst;
	fv->set.resumed = lstat(journal, &jst) == 0;
	bool ok = adopt_journal(fv, vm, journal, IMAGEOPS_COMMIT, why);
	free(journal);
	return ok;
}

bool flow_set_start(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		    char **why)
{
	if (!set_begin(fv, vm, op, why))
		return false;
	char *setj = NULL;
	bool ok = true, had_setj = false;
	if (op == IMAGEOPS_COMMIT) {
		ok = begin_commit(flow, fv, vm, why) && flow_commit_prepare(flow, fv, vm, why);
	} else if (uses_set_journal(fv, vm)) {
		setj = flow_set_journal_path(flow, vm);
		struct stat jst;
		had_setj = setj && lstat(setj, &jst) == 0;
		if (!setj) {
			flow_set_msg(why, _("%s: no state directory for the journal of its disks"),
				     vm->name);
			ok = false;
		} else {
			/* The disks an earlier attempt finished stay done; the
			 * journal names the set before the first overlay changes. */
			ok = adopt_journal(fv, vm, setj, op, why) &&
			     discard_prepare(flow, fv, vm, op, why) &&
			     flow_set_write_journal(flow, fv, vm, setj, op, -1, why) == 0;
		}
	}
	long first = ok ? next_disk(fv, vm) : -1;
	if (ok && first < 0) {
		/* Every disk was done by an earlier attempt (a journal that
		 * outlived its last step): finish as the last step would. */
		if (op == IMAGEOPS_COMMIT) {
			commits_done(flow, fv, vm);
			return true;
		}
		if (setj)
			imageops_journal_remove(setj);
		free(setj);
		flow_set_end(fv);
		flow_success(flow, fv, vm, op, 0);
		return true;
	}
	if (ok)
		ok = start_disk(flow, fv, vm, (size_t)first, why);
	if (!ok) {
		/* Only a journal this attempt wrote, with nothing done: one from
		 * before (another operation's, or this one's) stays. */
		if (setj && !had_setj && !flow_set_any_done(fv, vm))
			imageops_journal_remove(setj);
		flow_set_end(fv);
	}
	free(setj);
	return ok;
}

/* A .set journal found with nothing running (the applet or the machine
 * stopped half-way through a discard or undo of several disks). */
void flow_set_journal_found(struct flow *flow, struct flow_vm *fv, struct vm *vm)
{
	char *p = flow_set_journal_path(flow, vm);
	struct imageops_journal j;
	enum imageops_op op = IMAGEOPS_DISCARD;
	if (p && imageops_journal_read(p, &j) == 0)
		op = j.op;
	imageops_journal_clear(&j);
	log_warn("flow: %s: journal %s found: a %s of its disks did not finish", vm->name,
		 p ? p : "?", imageops_op_name(op));
	free(p);
	char *msg = NULL;
	flow_set_msg(&msg,
		     op == IMAGEOPS_UNDO_DISCARD
			 ? _("%s: an undo of its disks did not finish (vmoverlay or the machine "
			     "stopped during it). Retry finishes it; nothing else is offered until "
			     "then")
			 : _("%s: a discard of its disks did not finish (vmoverlay or the machine "
			     "stopped during it). Retry finishes it; nothing else is offered until "
			     "then"),
		     vm->name);
	fv->has_failed_op = true;
	fv->failed_op = op;
	fv->failed_bytes = 0;
	flow_set_state(flow, fv, vm, FLOW_FAILED);
	vm_set_str(&vm->error, msg);
	free(msg);
	flow_changed(flow, vm);
}
