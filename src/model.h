/* The model every module shares: one struct vm per managed VM. The libvirt
 * watcher (virt) fills the domain/disk facts, the flow owns the decision
 * state; UI modules (sni, menu, notify, control) only read it and ask the
 * flow to act. Changes are announced with model_changed(), which coalesces
 * into one refresh of every listener on the next loop iteration. */
#ifndef VMO_MODEL_H
#define VMO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct loop;

/* What libvirt says, simplified. */
enum vm_run_state {
	RUN_UNKNOWN = 0, /* not connected / not looked up yet */
	RUN_UNDEFINED,   /* no such domain */
	RUN_RUNNING,     /* running, blocked, paused, pmsuspended, shutting down */
	RUN_SHUTOFF,
	RUN_CRASHED,
};

/* How a domain stopped, classified (libvirt-qemu-img.md §1). */
enum vm_stop_kind {
	STOP_CLEAN = 0, /* STOPPED/SHUTDOWN: prompt */
	STOP_UNCLEAN,   /* DESTROYED, CRASHED, FAILED: prompt with a warning */
	STOP_NO_PROMPT, /* SAVED, MIGRATED, FROM_SNAPSHOT, managed save, snapshots */
};

/* docs/design.md §3. */
enum flow_state {
	FLOW_UNKNOWN = 0, /* nothing known yet (not connected) */
	FLOW_RUNNING,     /* VM runs on its overlay */
	FLOW_CLEAN,       /* shut off, overlay fresh / nothing pending */
	FLOW_PENDING,     /* stopped, waiting for the user's choice */
	FLOW_KEPT,        /* user said keep for now; overlay untouched */
	FLOW_COMMITTING,  /* qemu-img commit running */
	FLOW_REBUILDING,  /* qemu-img create + rename running */
	FLOW_FAILED,      /* last operation failed; data kept; Retry offered */
	FLOW_INTERRUPTED, /* a commit journal was found: only Resume or Keep */
	FLOW_SAVED,       /* stopped with saved state: must not touch */
	FLOW_MISCONFIGURED, /* problems[] says why; no operation possible */
};

/* Actions a user can request; the flow decides which are possible and
 * publishes them in vm->actions as a bitmask of (1u << action). */
enum vm_action {
	ACT_COMMIT = 0,
	ACT_DISCARD,
	ACT_KEEP,
	ACT_RETRY,
	ACT_RESUME,       /* resume an interrupted commit */
	ACT_UNDO_DISCARD, /* restore <overlay>.discarded */
	ACT_CANCEL,       /* cancel a running commit */
	ACT_COUNT,
};
#define ACT_BIT(a) (1u << (a))

/* One watched disk of a VM: its overlay and what lies below it. */
struct vm_disk {
	char *target;           /* "vda" */
	char *overlay;          /* absolute path of the disk's source */
	char *base;             /* absolute path of its backing file */
	char *backing_stored;   /* backing name exactly as in the overlay header */
	char *backing_format;   /* "qcow2", "raw"; NULL if not recorded */
	uint64_t overlay_bytes; /* allocated size (st_blocks * 512) */
	uint64_t virtual_size;
	char *shared_with;     /* another disk whose chain holds the base, or NULL */
	char *overlay_used_by; /* another disk whose chain holds the overlay, or NULL */
	/* The backing chain below the overlay, nearest first: chain[0] is
	 * base (resolved), then the base's backing file, and so on. */
	char **chain;
	size_t n_chain;
};

struct vm {
	/* identity (from config) */
	char *name;
	const struct vm_config *cfg;
	enum vmo_policy policy; /* effective: config, or changed at run time */

	/* libvirt facts (virt.c) */
	char uuid[40];          /* "" when unknown */
	char *uri;              /* the connection uuid belongs to (virConnectGetURI); with
	                         * uuid, the identity the state dir is keyed by */
	enum vm_run_state run;
	int dom_state;          /* virDomainState, -1 unknown */
	int dom_reason;
	bool has_managed_save;
	bool has_snapshots;
	/* The watched disks (virt-disks.c): one for a `disk` key or a single
	 * qcow2 overlay, several for `disks = [...]` or a domain with several
	 * overlays. disks[i] past n_disks are zero. disks[0].overlay is NULL
	 * when none is known. */
	struct vm_disk disks[VMO_MAX_DISKS];
	size_t n_disks;
	char *check_unknown;   /* a disk that could not be checked: why (translated) */
	char *check_note;      /* the sentence the menu/status show about those, or NULL */

	/* problems: human-readable, translated; empty when fine */
	char **problems;
	size_t n_problems;

	/* flow (flow.c) */
	enum flow_state flow;
	enum vm_stop_kind last_stop; /* meaningful in PENDING */
	unsigned actions;            /* ACT_BIT mask of what may be requested now */
	double progress;             /* 0..100 while COMMITTING, else -1 */
	char *error;                 /* FAILED: translated message incl. qemu-img's */
	bool has_discarded;          /* <overlay>.discarded exists (Undo possible) */
	char *notice;                /* translated; a commit journal no domain owns, or NULL */
	char *undo_note;             /* why Undo is refused although it exists, or NULL */
	int64_t stop_time_ms;        /* loop_now_ms() of the stop that prompted */

	/* demo mode: seconds before the demo shuts this VM down, -1 otherwise */
	int shutdown_in_s;
};

typedef void (*model_listener_cb)(void *data);

struct model {
	struct vm **vms;
	size_t n_vms;
	struct loop *loop;
	unsigned serial;     /* bumped by every model_changed() */
	bool refresh_queued;
	struct model_listener {
		model_listener_cb cb;
		void *data;
	} *listeners;
	size_t n_listeners;
};

/* Builds one vm per configured VM (policy from config). */
bool model_init(struct model *m, struct loop *loop, const struct config *cfg);
void model_finish(struct model *m);
/* Rebinds after a config reload: keeps vm objects whose name stays, adds
 * new ones, drops vanished ones that are idle. */
void model_reload(struct model *m, const struct config *cfg);
struct vm *model_find(const struct model *m, const char *name);
struct vm *model_find_uuid(const struct model *m, const char *uuid);

void model_add_listener(struct model *m, model_listener_cb cb, void *data);
void model_remove_listener(struct model *m, model_listener_cb cb, void *data);
/* Marks the model changed; listeners run once on the next iteration. */
void model_changed(struct model *m);

/* A deep copy of vm outside the model (a scratch for facts read now, e.g.
 * virt_watcher_query); NULL on ENOMEM. vm_scratch_free accepts NULL. */
struct vm *vm_scratch_copy(const struct vm *vm);
void vm_scratch_free(struct vm *vm);

/* Helpers for strings in struct vm. */
void vm_set_str(char **field, const char *value);
void vm_clear_problems(struct vm *vm);
void vm_add_problem(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the disk's strings and zeroes it. */
void vm_disk_clear(struct vm_disk *d);
/* Clears every disk; n_disks = 0. */
void vm_clear_disks(struct vm *vm);
/* The disk with this target, or NULL. */
struct vm_disk *vm_disk_find(struct vm *vm, const char *target);
/* The sum of the watched overlays' allocated bytes. */
uint64_t vm_overlay_bytes(const struct vm *vm);

/* Translated, short, for menus/tooltips/status. */
const char *flow_state_label(enum flow_state s);
const char *run_state_label(enum vm_run_state s);
/* "win10 — running · overlay 1.2 GiB" (translated), written into buf; with
 * several disks "win10 — running · overlays 1.5 GiB on 2 disks". */
char *vm_summary_line(const struct vm *vm, char *buf, size_t len);
/* "overlays 1.5 GiB on 2 disks" (translated): the total of the watched
 * overlays, for the lines that list several disks. */
char *vm_disks_total_line(const struct vm *vm, char *buf, size_t len);
/* One line about vm->disks[i] (translated): short, "vda: 1.2 GiB ·
 * win.qcow2" (the overlay's file name, for the menu and the terminal); full,
 * "vda: 1.2 GiB · /images/win.qcow2 · base /images/win-base.qcow2"
 * (`vmoverlay status`). */
char *vm_disk_line(const struct vm *vm, size_t i, bool full, char *buf, size_t len);
/* "vda → win-base.qcow2" per disk, joined by sep: where a commit went. */
char *vm_disk_bases(const struct vm *vm, const char *sep, char *buf, size_t len);
/* "base.qcow2 ← template.qcow2 ← win.qcow2": d's chain by file names,
 * deepest first, when it is deeper than one file below the overlay; else
 * NULL. malloc'd. */
char *vm_disk_chain_text(const struct vm_disk *d);
/* The same for every watched disk with such a chain ("vda: …; vdb: …"
 * when the VM has several disks), or NULL. malloc'd. */
char *vm_chain_text(const struct vm *vm);

#endif
