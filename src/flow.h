/* The per-VM state machine of DESIGN.md §3 — the only place that decides.
 * Inputs: stops/starts from the watcher, requests from the UI (menu,
 * notification actions, control interface). Outputs: runner jobs
 * (commit, rebuild) through the shared image operations (imageops.c), and
 * calls to the UI hooks below. Every data-safety rule of DESIGN.md §4 is
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

/* From the UI. Returns false with a translated *why when refused. */
bool flow_request(struct flow *flow, struct vm *vm, enum vm_action action, char **why);
bool flow_set_policy(struct flow *flow, struct vm *vm, enum vmo_policy policy, char **why);
/* True while any commit/rebuild runs (quit waits / asks). */
bool flow_busy(const struct flow *flow);

#endif
