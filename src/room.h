/* Room before an image operation (issue 15 item 3): a commit that runs out of
 * space mid-way leaves the base half-merged (only Resume is safe then), so the
 * flow compares what an operation will write with the free space of the
 * filesystems it writes to, and refuses with the numbers before any byte
 * changes. */
#ifndef VMO_ROOM_H
#define VMO_ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a fresh overlay needs: a qcow2 header, L1 table and refcount
 * clusters, 192 KiB for a 64 GiB disk (64 KiB clusters), with room to
 * spare. */
#define ROOM_REBUILD_BYTES (1ull << 20)

/* Upper estimate of what `qemu-img commit` writes into the base for an
 * overlay with this many allocated bytes: at most every allocated cluster
 * (clusters the base already has are overwritten in place), plus qcow2
 * metadata of the base (L2 tables, refcounts: about 1/6500 of the data)
 * with a margin. */
uint64_t room_commit_bytes(uint64_t overlay_allocated);

/* Enough free space for a commit of overlay into base, followed by the
 * fresh overlay beside overlay (both on one filesystem: the sum)? False with
 * *why set (translated, with VM name, sizes and directory) when it does not
 * fit. Free space that cannot be read counts as enough (logged): a commit
 * that then fails keeps its journal and can be resumed. */
bool room_for_commit(const char *vm_name, const char *overlay, const char *base, char **why);
/* The same for the commits of several disks at once: what they write on
 * one filesystem adds up. */
bool room_for_commits(const char *vm_name, const char *const *overlays, const char *const *bases,
		      size_t n, char **why);

/* Enough free space beside overlay for a fresh overlay? As above. */
bool room_for_rebuild(const char *vm_name, const char *overlay, char **why);

#endif
