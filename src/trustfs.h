/* The privileged helper's file steps (issue 13), for images a hostile user
 * may have prepared: every file is reached through directories opened one
 * by one without following links, and only if each of them and the file is
 * owned by root or the qemu user (libvirt's qemu.conf `user`, by default
 * libvirt-qemu) and writable by nobody else; qemu-img then gets the files
 * the helper checked and holds open, as /dev/fd/N, never a name it would
 * resolve again. A new overlay is an O_TMPFILE in the checked directory
 * (a random O_EXCL name where the file system has no O_TMPFILE), linked
 * under a fresh name and renamed over the overlay: a symbolic link planted
 * anywhere is never followed. */
#ifndef VMO_TRUSTFS_H
#define VMO_TRUSTFS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "image.h"
#include "imageops.h"
#include "runner.h"

#define TRUSTFS_QEMU_CONF "/etc/libvirt/qemu.conf"

/* Who besides root may own what the helper touches. */
struct trustfs_ids {
	uid_t uid;
	gid_t gid;
};

/* `user` and `group` from libvirt's qemu.conf ("name", "+uid", or absent:
 * libvirt-qemu); the group defaults to the user's. 0 or -errno + *why. */
int trustfs_qemu_ids(const char *qemu_conf, struct trustfs_ids *ids, char **why);

/* An opened, checked file and its directory. */
struct trustfs_file {
	int fd;     /* the file, opened with the flags asked for */
	int dirfd;  /* its directory (O_RDONLY | O_DIRECTORY) */
	char *name; /* its name in that directory */
	struct stat st;
};
#define TRUSTFS_FILE_INIT                                                                          \
	{                                                                                          \
		.fd = -1, .dirfd = -1                                                              \
	}

/* Opens the absolute path with flags (O_RDONLY / O_RDWR; O_NOFOLLOW and
 * O_CLOEXEC are added) as described above. Returns 0, or -errno with a
 * translated *why naming the path that failed (-EPERM for an owner or mode
 * we do not trust, -ELOOP for a symbolic link). */
int trustfs_open(const struct trustfs_ids *ids, const char *path, int flags,
		 struct trustfs_file *out, char **why);
void trustfs_close(struct trustfs_file *f);
/* The same ownership and mode rule, for tests and messages. */
bool trustfs_trusted(const struct trustfs_ids *ids, const struct stat *st);

/* qemu-img commit -p of the opened overlay into the opened base (format
 * base_format), both handed over as /dev/fd/N in a json: spec. cancel_fd
 * (or -1): its EOF cancels qemu-img. st: qemu-img's status (st->cancelled
 * if the cancel arrived while it ran; exit_code 0 then means it had already
 * finished). Returns false only if qemu-img could not be run (*err). */
bool trustfs_commit(const char *qemu_img, const struct trustfs_file *overlay,
		    const struct trustfs_file *base, const char *base_format,
		    runner_progress_cb progress, void *data, int cancel_fd,
		    struct runner_status *st, char **err);

/* A fresh overlay for the opened one, whose header is old: qcow2 of its
 * virtual size and format options (image_create_options) backed by its
 * backing file (as stored) and format, created through /dev/fd/N, owner
 * and mode of the old overlay, fsync'd, and renamed over it (the old one
 * first hard-linked as <name>.discarded when keep_discarded). As the
 * applet's rebuild (imageops.c): qemu's image lock is held on the old
 * overlay throughout and on the new file before its rename, and right
 * before the rename recheck (may be NULL) is asked, the name must still be
 * the file we hold and nobody else may have it open (-EBUSY otherwise).
 * 0 or -errno + translated *err; on failure the old overlay is untouched. */
int trustfs_rebuild(const char *qemu_img, const struct trustfs_file *overlay,
		    const struct qcow2_info *old, bool keep_discarded, imageops_recheck_fn recheck,
		    void *recheck_data, char **err);

/* <name>.discarded (checked like the overlay) renamed over the overlay. */
int trustfs_undo_discard(const struct trustfs_ids *ids, const struct trustfs_file *overlay,
			 char **err);

/* qemu's OFD image locks (bytes 100..299) held on the open file. */
bool trustfs_locked(int fd);

/* A format name safe to put into a json: spec (qcow2, raw, ...). */
bool trustfs_format_ok(const char *fmt);

#endif
