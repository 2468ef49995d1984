/* The image operations behind commit, discard and undo, shared by the
 * applet's flow (asynchronous: it runs the argv's below with a runner in
 * the main loop) and the privileged vmoverlay-helper (synchronous: the
 * *_sync wrappers run the same steps in a private loop). The file steps
 * (temp name, fsync, owner/mode, link, rename, directory fsync) live here
 * only, so both executables keep docs/design.md §4 rules 1, 4 and 7 the same way. */
#ifndef VMO_IMAGEOPS_H
#define VMO_IMAGEOPS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "runner.h"

enum imageops_op {
	IMAGEOPS_COMMIT = 0, /* qemu-img commit, then rebuild */
	IMAGEOPS_REBUILD,    /* fresh overlay after a successful commit */
	IMAGEOPS_DISCARD,    /* fresh overlay, old one kept as .discarded if asked */
	IMAGEOPS_UNDO_DISCARD,
};
const char *imageops_op_name(enum imageops_op op); /* "commit", ... */
bool imageops_op_from_name(const char *s, enum imageops_op *out);

/* How a failed qemu-img commit left the base. */
enum imageops_commit_failure {
	COMMIT_FAIL_UNTOUCHED = 0, /* failed while opening: nothing was written */
	COMMIT_FAIL_IN_USE,        /* image lock held by another process: nothing written */
	COMMIT_FAIL_PERMISSION,    /* EACCES/EPERM while opening: nothing written */
	COMMIT_FAIL_PARTIAL,       /* may have written part of the base: journal stays */
};

/* ---- argv's (NULL-terminated, malloc'd; free with imageops_argv_free) ---- */
/* qemu-img commit -p OVERLAY (plain commit: empties the overlay only on
 * success; the default writeback cache is flushed before exit 0). With a
 * base (chain_commit_target): qemu-img commit -p -b BASE OVERLAY, into a
 * file further down the chain; -b implies -d (the overlay is not emptied)
 * and leaves every file between invalid (qemu-img(1)). */
char **imageops_commit_argv(const char *qemu_img, const char *overlay, const char *base);
void imageops_argv_free(char **argv);

/* Classifies a commit's result; *msg (translated) tells the user what
 * failed and what was kept. */
enum imageops_commit_failure imageops_commit_failure(const struct runner_result *res,
						     const char *vm_name, char **msg);

/* ---- rebuild: prepare (argv), run the argv, then finish or abort ---- */

/* Asked right before the rename() (docs/design.md §4 rule 9): true if the
 * domain is still shut off and nothing else changed; else false with a
 * translated *why, and the rebuild is abandoned (-EBUSY). */
typedef bool (*imageops_recheck_fn)(void *data, char **why);

struct imageops_rebuild {
	char *overlay;
	char *tmp;     /* reserved temp name in the overlay's directory */
	char **argv;   /* qemu-img create -q -f qcow2 -o opts -F fmt -b backing tmp */
	char *backing; /* what the fresh overlay records: as the old header, or a deeper base */
	char *backing_format;
	char *options; /* -o: the old overlay's format options (image_create_options) */
	uid_t uid;
	gid_t gid;
	mode_t mode;
	/* The old overlay, opened once and held with qemu's own image lock
	 * from prepare to the end of finish (or abort): a VM start in between
	 * fails in qemu ("Failed to get "write" lock"). */
	bool locked;
	int lock_fd;
	uint32_t version, cluster_bits, refcount_order, compression_type;
	bool lazy_refcounts, extended_l2;
	imageops_recheck_fn recheck; /* optional; set after prepare */
	void *recheck_data;
};
/* The rebuild's temporary file: <dir>/.<name>.vmoverlay-tmp-XXXXXX. A name
 * no user file has, so stale ones (a rebuild killed before its rename) can
 * be removed without touching anything else. */
#define IMAGEOPS_TMP_TAG ".vmoverlay-tmp-"
/* Everything a rebuild of overlay needs, checked before an operation that
 * cannot be undone starts (a commit empties the overlay; a rebuild that
 * then refuses would leave the VM failed for ever): a regular file, not a
 * symbolic link, a qcow2 whose header records backing_stored and
 * backing_format, nothing a fresh overlay cannot reproduce (encryption,
 * external data file, internal snapshots, persistent bitmaps), and a
 * writable directory. Returns 0, -EACCES/-EPERM/-EROFS when this user may
 * not read it or write the directory (a privileged helper might), or
 * another negative errno; with a translated *err. */
int imageops_rebuild_check(const char *overlay, const char *backing_stored,
			   const char *backing_format, char **err);
/* The same checks, then takes qemu's image lock on the overlay (-EBUSY if
 * another process holds one of its bytes: in use), reserves
 * <dir>/.<name>.vmoverlay-tmp-XXXXXX (mkstemp) and builds the argv with the old
 * overlay's format options. Returns 0 or a negative errno with a
 * translated *err; on failure nothing is held. */
int imageops_rebuild_prepare(struct imageops_rebuild *rb, const char *qemu_img, const char *overlay,
			     const char *backing_stored, const char *backing_format, char **err);
/* The same, but the fresh overlay is backed by new_backing (new_format)
 * while the old one must still record backing_stored (backing_format):
 * after a commit into a deeper base (chain.h) the files between are
 * invalid and the fresh overlay lies on that base directly. */
int imageops_rebuild_prepare_onto(struct imageops_rebuild *rb, const char *qemu_img,
				  const char *overlay, const char *backing_stored,
				  const char *backing_format, const char *new_backing,
				  const char *new_format, char **err);
/* After the argv exited 0: checks the new header (backing and format
 * options as the old overlay's), fsync, owner/mode of the old overlay
 * (where permitted), takes qemu's lock on the new file too, asks
 * rb->recheck and qemu's lock bytes once more (-EBUSY: abandoned, the old
 * overlay untouched), optionally keeps the old overlay as
 * <overlay>.discarded (a hard link made before the rename, so there is
 * never a moment without an overlay), rename() over the overlay,
 * fsync(dir), then releases both locks.
 * On failure the temp file is removed and the old overlay is untouched.
 * Returns 0 or a negative errno with a translated *err. */
int imageops_rebuild_finish(struct imageops_rebuild *rb, bool keep_discarded, char **err);
/* Removes the temp file (after a failed create) and clears rb. */
void imageops_rebuild_abort(struct imageops_rebuild *rb);
/* Frees rb and releases its lock (the temp file stays). A zeroed rb is fine. */
void imageops_rebuild_clear(struct imageops_rebuild *rb);
/* Translated message for a failed `qemu-img create`; *is_perm is set on
 * EACCES/EPERM-like errors. */
char *imageops_create_failure(const struct runner_result *res, bool *is_perm);

/* ---- discard safety net ---- */
char *imageops_discarded_path(const char *overlay); /* "<overlay>.discarded" */
bool imageops_has_discarded(const char *overlay);
/* rename(<overlay>.discarded, overlay) + fsync(dir); 0 or -errno + *err. */
int imageops_undo_discard(const char *overlay, char **err);
/* Removes <overlay>.discarded (the VM started: undo is no longer offered). */
int imageops_drop_discarded(const char *overlay);

/* True if another process holds one of qemu's OFD image locks on path
 * (bytes 100..299, see QEMU's raw-posix locking); false if free or absent. */
bool imageops_locked(const char *path);
/* Takes the lock bytes a qemu-img writer holds on fd (OFD read locks: perm
 * bytes 100 + consistent-read/write/resize, shared bytes 200 + write/resize),
 * then checks that no other open file holds any byte of 100..299 (qemu's
 * own order: apply, then check, so two racing openers both fail rather
 * than both win). 0, -EBUSY (someone else has the image open; our bytes
 * are released) or another negative errno (no OFD locks here). The lock
 * goes with the last descriptor of this open file description. */
int imageops_qemu_lock(int fd);

/* ---- commit journal (docs/design.md §3) ---- */
/* One per domain, keyed like the state file (statefile.h): the libvirt
 * URI + the domain's UUID, so a renamed domain finds its journal and
 * another domain given the same name never does (issue 12). Journals
 * written before that were named after the VM and have no uri/uuid: the
 * flow moves one to its domain when the overlay it names is that domain's
 * disk, and keeps and shows every journal it cannot match. */
/* Each disk's state in a journal (issue 15: a VM with several disks
 * commits them one by one; the journal says how far it got). */
enum imageops_disk_state {
	JDISK_PENDING = 0, /* not started: this base was not touched */
	JDISK_RUNNING,     /* started: a commit's base may be half-merged */
	JDISK_DONE,        /* finished (committed, replaced, restored) */
};
struct imageops_journal_disk {
	char *target; /* NULL in a journal from before issue 15 */
	char *overlay;
	char *base;
	enum imageops_disk_state state;
};
struct imageops_journal {
	char *uri;  /* NULL in a journal from before issue 12 */
	char *uuid; /* NULL in a journal from before issue 12 */
	char *vm;   /* the VM's name when it was written (display) */
	/* COMMIT for the .commit journal; DISCARD or UNDO_DISCARD for the
	 * .set journal a VM with several disks writes while it replaces its
	 * overlays one by one (imageops_set_journal_path). */
	enum imageops_op op;
	struct imageops_journal_disk disks[VMO_MAX_DISKS];
	size_t n_disks;
	/* Written as disk 0 when n_disks is 0; set by the reader to disk 0's. */
	char *overlay;
	char *base;
	long long started; /* unix time */
};
/* The words a journal uses for a disk's state ("committed", ...). */
const char *imageops_disk_state_name(enum imageops_op op, enum imageops_disk_state s);
/* <state_dir>/<uuid>@<hash of uri>.commit; NULL if uri or uuid is empty
 * or the uuid is not a plain UUID string. */
char *imageops_journal_path(const char *state_dir, const char *uri, const char *uuid);
/* <state_dir>/<uuid>@<hash of uri>.set: the discard or undo of a VM with
 * several disks, between its first and its last replaced overlay. */
char *imageops_set_journal_path(const char *state_dir, const char *uri, const char *uuid);
/* <state_dir>/<vm>.commit ('/' in the name replaced): before issue 12. */
char *imageops_journal_legacy_path(const char *state_dir, const char *vm);
/* True for a journal's file name in the state directory (either kind). */
bool imageops_journal_name(const char *file_name);
/* Writes j (started 0: now) to tmp + fsync + rename + fsync(dir).
 * 0 or -errno + *err. */
int imageops_journal_write(const char *path, const struct imageops_journal *j, char **err);
/* 0, -ENOENT if absent, -EINVAL if malformed (then j holds what was read). */
int imageops_journal_read(const char *path, struct imageops_journal *j);
int imageops_journal_remove(const char *path);
void imageops_journal_clear(struct imageops_journal *j);

/* ---- synchronous wrappers (vmoverlay-helper, tests) ---- */
/* Commit + rebuild as one step; progress goes to cb. The rebuild is
 * checked before the commit starts (imageops_rebuild_check: a refusal
 * leaves *failure UNTOUCHED). recheck (may be NULL) is asked right before
 * the rebuild's rename(). Returns 0 or a negative errno; on failure
 * *failure says how the base was left and *committed whether qemu-img
 * commit itself exited 0 (then only the rebuild failed: the base holds the
 * session). */
int imageops_commit_sync(const char *qemu_img, const char *overlay, const char *backing_stored,
			 const char *backing_format, const char *vm_name, runner_progress_cb cb,
			 void *data, imageops_recheck_fn recheck, void *recheck_data,
			 enum imageops_commit_failure *failure, bool *committed, char **err);
int imageops_rebuild_sync(const char *qemu_img, const char *overlay, const char *backing_stored,
			  const char *backing_format, bool keep_discarded,
			  imageops_recheck_fn recheck, void *recheck_data, char **err);

#endif
