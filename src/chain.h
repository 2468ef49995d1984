/* Backing chains deeper than one (base <- template <- session, issue 15
 * item 4): where a commit goes and what a fresh overlay is backed by. By
 * default a commit goes into the immediate backing file (qemu-img's own
 * default); with commit_into = "deepest" it goes into the configured base
 * (or the chain's last file) with `qemu-img commit -b`, which leaves every
 * file between invalid: the fresh overlay is then backed by that base
 * directly. virt-disks.c fills struct vm_disk's chain and base; these
 * helpers only read them. */
#ifndef VMO_CHAIN_H
#define VMO_CHAIN_H

#include "model.h"

/* Files followed below an overlay at most; a deeper chain is a problem. */
#define VMO_CHAIN_MAX 16

/* Where d's chain[] holds d->base: 0 for the immediate backing file, 1
 * for its backing file and so on; -1 when base is not in the chain. */
int chain_base_depth(const struct vm_disk *d);

/* The -b path for `qemu-img commit`: d->base when the VM commits into
 * the deepest file (commit_into = "deepest") and that lies below the
 * immediate backing file; NULL for a plain commit. Borrowed from d. */
const char *chain_commit_target(const struct vm *vm, const struct vm_disk *d);

/* What a fresh overlay of d is backed by: the backing name and format as
 * the overlay stores them, or, after a commit into a deeper base
 * (after_commit and chain_commit_target), that base with the format the
 * file above it records (read from its header now: never guessed).
 * malloc'd into *backing and *format; 0, or a negative errno and a
 * translated *err (nothing allocated). */
int chain_rebuild_backing(const struct vm *vm, const struct vm_disk *d, bool after_commit,
			  char **backing, char **format, char **err);

/* An interrupted commit resumes only into the file it was writing
 * (journal_base): NULL if d->base is that file, else why not (translated,
 * malloc'd). */
char *chain_resume_refusal(const struct vm *vm, const struct vm_disk *d, const char *journal_base);

#endif
