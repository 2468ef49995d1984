/* The per-VM state machine of docs/design.md §3 — the only place that decides.
 * Inputs: stops/starts from the watcher, requests from the UI (menu,
 * notification actions, control interface). Outputs: runner jobs
 * (commit, rebuild) through the shared image operations (imageops.c), and
 * calls to the UI hooks below. Every data-safety rule of docs/design.md §4 is
 * enforced here or in imageops. */
#ifndef VMO_FLOW_H
#define VMO_FLOW_H

#include <stdbool.h>

#include "model.h"

struct loop;
struct flow;
struct statefile;
struct virt_watcher;

enum flow_result {
	RESULT_COMMITTED = 0, /* commit + rebuild done */
	RESULT_DISCARDED,     /* rebuild done, old overlay kept as .discarded if configured */
	RESULT_UNDONE,        /* undo discard restored the old overlay */
	RESULT_FAILED,        /* msg: what failed; data kept */
	RESULT_CANCELLED,     /* commit cancelled; overlay kept */
};

/* What the flow tells the user; every hook may be NULL. */
struct flow_ui {
	void (*prompt)(void *data, struct vm *vm);   /* vm is PENDING: ask */
	void (*withdraw)(void *data, struct vm *vm); /* the question is no longer open */
	void (*progress)(void *data, struct vm *vm); /* vm->progress changed */
	/* bytes: what was committed (RESULT_COMMITTED) */
	void (*result)(void *data, struct vm *vm, enum flow_result res, unsigned long long bytes,
		       const char *msg);
	void *data;
};

struct flow *flow_create(struct loop *loop, struct model *model, const struct config *cfg,
			 struct statefile *state, struct virt_watcher *virt,
			 const struct flow_ui *ui);
void flow_destroy(struct flow *flow); /* NULL ok; cancels nothing on disk */
void flow_reconfigure(struct flow *flow, const struct config *cfg);

/* From the watcher (plug into struct virt_events). */
void flow_on_domain_stopped(struct flow *flow, struct vm *vm, enum vm_stop_kind kind);
void flow_on_domain_started(struct flow *flow, struct vm *vm);
/* vm's facts were re-read (virt_events.updated): leaves FLOW_UNKNOWN for a
 * VM found shut off, follows problems (MISCONFIGURED) and .discarded. */
void flow_on_domain_updated(struct flow *flow, struct vm *vm);

/* From the UI. Returns false with a translated *why when refused. */
bool flow_request(struct flow *flow, struct vm *vm, enum vm_action action, char **why);
bool flow_set_policy(struct flow *flow, struct vm *vm, enum vmo_policy policy, char **why);
/* True while any commit/rebuild runs (quit waits / asks). */
bool flow_busy(const struct flow *flow);
/* Quit or logout (issue 12, defect 8): every running commit is stopped like
 * Cancel (SIGTERM, SIGKILL after the kill grace; its journal stays, so the
 * next start shows *interrupted*), a rebuild is left to finish (it takes a
 * moment and never touches the base), and no new operation starts. Returns
 * true while something still runs: the caller keeps the loop going until
 * flow_busy() is false, bounded by flow_stop_deadline_ms(). */
bool flow_stop(struct flow *flow);
/* How long a quit waits for flow_stop() at most: the kill grace plus the
 * runner's pipe grace, and a margin. */
int flow_stop_deadline_ms(const struct flow *flow);

/* The privileged path (issue 7): used only when a plain attempt failed with
 * EACCES/EPERM. argv returns the command to run (e.g. pkexec
 * vmoverlay-helper OP UUID TARGET), malloc'd and NULL-terminated, or NULL
 * when no helper is available; the flow frees it. The command's exit
 * status: 0 done (for commit: commit + rebuild), FLOW_HELPER_EXIT_PARTIAL a
 * commit stopped after writing into the base (the journal stays),
 * FLOW_HELPER_EXIT_COMMITTED the commit completed but the fresh overlay
 * could not be made (the base holds the session: Retry rebuilds), 126
 * authorization dismissed, 127 not authorised, anything else failed with
 * nothing changed (its last stderr line is shown). A resumed commit's
 * journal stays whatever the helper says, except after exit 0 or
 * FLOW_HELPER_EXIT_COMMITTED (docs/design.md §4 rule 8). Progress records on
 * its stdout are shown like qemu-img's. Without a hook, a permission
 * failure is reported as FAILED "permission denied: ...". */
#define FLOW_HELPER_EXIT_PARTIAL   3
#define FLOW_HELPER_EXIT_COMMITTED 8
enum imageops_op;
struct flow_privileged {
	/* disk: the index in vm->disks the step is for. */
	char **(*argv)(void *data, const struct vm *vm, size_t disk, enum imageops_op op,
		       bool keep_discarded);
	void *data;
};
void flow_set_privileged(struct flow *flow, const struct flow_privileged *priv);
/* Grace between SIGTERM and SIGKILL when a commit is cancelled (tests). */
void flow_set_kill_grace(struct flow *flow, int ms);

#endif
