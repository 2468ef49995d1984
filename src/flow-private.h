/* The insides of the flow shared by its files: flow.c (the per-VM state
 * machine: records, states, actions, the watcher's inputs, life cycle),
 * flow-requests.c (the UI's requests), flow-start.c (starting commits,
 * rebuilds, undo and the privileged path), flow-jobs.c (the bookkeeping of
 * a running job and its results) and flow-identity.c (journals and state
 * keyed by connection URI + domain UUID). Nothing else includes it. */
#ifndef VMO_FLOW_PRIVATE_H
#define VMO_FLOW_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "flow.h"
#include "config.h"
#include "imageops.h"
#include "runner.h"
#include "statefile.h"

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
	/* The operation on the VM's disks, one disk after the other (issue
	 * 15): which are done, and qemu's image lock held on every overlay no
	 * job is working on, so the VM cannot start between two disks. */
	struct flow_set {
		bool active;
		enum imageops_op op; /* COMMIT (then REBUILD), REBUILD, DISCARD, UNDO_DISCARD */
		bool done[VMO_MAX_DISKS];
		bool rebuilt[VMO_MAX_DISKS]; /* COMMIT: the helper made the fresh overlay too */
		bool keep_discarded;
		bool resumed;          /* COMMIT: its journal was there before this attempt */
		uint64_t bytes;        /* committed so far */
		uint64_t total_bytes;  /* COMMIT: what all disks' commits move */
		int lock_fd[VMO_MAX_DISKS]; /* -1: none held */
	} set;
};

struct flow_job {
	struct flow *flow;
	char *vm_name;
	size_t disk; /* the index in vm->disks this job works on */
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

/* flow.c */
void flow_changed(struct flow *flow, struct vm *vm);
void flow_commit_not_done(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *journal,
			  bool resumed, const char *msg, const char *why);
void flow_fail(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
	       const char *msg);
void flow_forget_discard(struct flow *flow, const struct vm *vm);
struct flow_vm *flow_fv_get(struct flow *flow, const struct vm *vm);
bool flow_identity_known(const struct vm *vm);
void flow_interrupted(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *msg,
		      enum flow_result res);
bool flow_journal_exists(const struct flow *flow, const struct vm *vm);
char *flow_journal_path(const struct flow *flow, const struct vm *vm);
void flow_mark_discard(struct flow *flow, const struct vm *vm);
void flow_resume_failed(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *why);
void flow_set_msg(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void flow_set_state(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum flow_state s);
const char *flow_state_dir(const struct flow *flow);
char *flow_undo_refusal(const struct flow *flow, const struct vm *vm);
/* The same for disk i alone (an undo of several disks asks each in turn). */
char *flow_undo_refusal_disk(const struct flow *flow, const struct vm *vm, size_t i);
void flow_update_actions(struct flow *flow, struct vm *vm);
struct state_key flow_vm_key(const struct vm *vm);

/* flow-start.c: false with the reason when there is no libvirt watcher
 * (nobody can confirm the VM is shut off). */
bool flow_have_virt(struct flow *flow, const struct vm *vm, char **why);

/* flow-jobs.c */
/* Every disk is committed but a fresh overlay could not be made: FAILED,
 * Retry rebuilds (the bases hold the session). */
void flow_rebuild_failed_after_commit(struct flow *flow, struct flow_vm *fv, struct vm *vm,
				      uint64_t bytes, const char *why);
void flow_job_end(struct flow_job *job);
void flow_job_free(struct flow_job *job);
bool flow_job_recheck(void *data, char **why);
void flow_on_commit_done(void *data, const struct runner_result *res);
void flow_on_job_progress(void *data, double pct);
void flow_on_privileged_done(void *data, const struct runner_result *res);
void flow_on_rebuild_done(void *data, const struct runner_result *res);
void flow_success(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		  uint64_t bytes);

/* flow-start.c */
/* Everything a commit of every disk needs, checked before the first one
 * starts (rebuild checks, room, older discarded overlays). */
bool flow_commit_prepare(struct flow *flow, struct flow_vm *fv, struct vm *vm, char **why);
/* The commit of one disk (the journal names it committing first). */
bool flow_commit_disk(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
		      char **why);
/* Puts disk's <overlay>.discarded back (or runs the helper). */
bool flow_undo_disk(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
		    char **why);
void flow_auto_op(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op);
bool flow_start_op(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		   char **why);
bool flow_start_privileged(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
			   enum imageops_op op, bool keep_discarded, uint64_t bytes, char *journal,
			   bool resumed, const char *plain_msg);
bool flow_start_rebuild(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
			enum imageops_op op, uint64_t bytes, char **why);
/* The next step of fv->set after disk finished its part (a job's success):
 * the next disk's commit, rebuild, discard or undo, or the end. */
void flow_set_step_done(struct flow *flow, struct flow_vm *fv, struct vm *vm, size_t disk,
			uint64_t bytes);
/* Ends fv->set: every lock it holds is released. */
void flow_set_end(struct flow_vm *fv);
/* Takes the set's lock on disk's overlay again after its job (n_disks > 1). */
void flow_set_relock(struct flow_vm *fv, const struct vm *vm, size_t disk);
/* The .set journal of a VM with several disks exists (a discard or undo
 * stopped half-way): only Retry, which finishes it. */
bool flow_set_journal_exists(const struct flow *flow, const struct vm *vm);
char *flow_set_journal_path(const struct flow *flow, const struct vm *vm);
/* "vda, vdb" of the disks done / not done in fv->set (for messages). */
char *flow_set_disks_text(const struct flow_vm *fv, const struct vm *vm, bool done);
bool flow_set_any_done(const struct flow_vm *fv, const struct vm *vm);
/* Starts op on every disk of vm (the checks of flow_start_op made). */
bool flow_set_start(struct flow *flow, struct flow_vm *fv, struct vm *vm, enum imageops_op op,
		    char **why);
/* A job of a discard, undo or rebuild failed (msg): the VM shows FAILED;
 * a discard or undo of several disks that stopped half-way says which. */
void flow_set_step_failed(struct flow *flow, struct flow_vm *fv, struct vm *vm,
			  enum imageops_op op, const char *msg);
/* The journal (commit or .set) with fv->set's disk states; running: the
 * disk whose step starts now (RUNNING), or -1. 0 or -errno with *why. */
int flow_set_write_journal(struct flow *flow, struct flow_vm *fv, struct vm *vm, const char *path,
			   enum imageops_op op, long running, char **why);

/* flow-identity.c */
void flow_identify(struct flow *flow, struct flow_vm *fv, struct vm *vm);
void flow_journal_found(struct flow *flow, struct flow_vm *fv, struct vm *vm);
void flow_set_journal_found(struct flow *flow, struct flow_vm *fv, struct vm *vm);
void flow_scan_journals(struct flow *flow);
void flow_sync_identity(struct flow *flow, struct flow_vm *fv, struct vm *vm);

#endif
