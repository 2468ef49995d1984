/* Image operations shared by the flow (async) and vmoverlay-helper (sync):
 * argv's for qemu-img, the atomic rebuild's file steps, the discard safety
 * net, qemu's image-lock probe and the commit journal. Nothing here decides
 * whether an operation may run; the callers re-check the preconditions. */
#include "imageops.h"

#include <errno.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "i18n.h"
#include "image.h"
#include "log.h"
#include "util.h"
#include "imageops-private.h"

static const char *const op_names[] = {
    [IMAGEOPS_COMMIT] = "commit",
    [IMAGEOPS_REBUILD] = "rebuild",
    [IMAGEOPS_DISCARD] = "discard",
    [IMAGEOPS_UNDO_DISCARD] = "undo-discard",
};

const char *imageops_op_name(enum imageops_op op)
{
	return (unsigned)op < sizeof op_names / sizeof op_names[0] ? op_names[op] : "?";
}

bool imageops_op_from_name(const char *s, enum imageops_op *out)
{
	for (size_t i = 0; s && i < sizeof op_names / sizeof op_names[0]; i++) {
		if (strcmp(s, op_names[i]) == 0) {
			*out = (enum imageops_op)i;
			return true;
		}
	}
	return false;
}

char **imageops_argv_build(const char *first, ...)
{
	size_t n = 1;
	va_list ap;
	va_start(ap, first);
	while (va_arg(ap, const char *))
		n++;
	va_end(ap);
	char **argv = calloc(n + 1, sizeof *argv);
	if (!argv)
		return NULL;
	argv[0] = strdup(first);
	va_start(ap, first);
	for (size_t i = 1; i < n; i++)
		argv[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	for (size_t i = 0; i < n; i++) {
		if (!argv[i]) {
			imageops_argv_free(argv);
			return NULL;
		}
	}
	return argv;
}

void imageops_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

char **imageops_commit_argv(const char *qemu_img, const char *overlay, const char *base)
{
	if (base)
		return imageops_argv_build(qemu_img, "commit", "-p", "-b", base, overlay, NULL);
	return imageops_argv_build(qemu_img, "commit", "-p", overlay, NULL);
}

int imageops_fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

bool imageops_has(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle);
}

enum imageops_commit_failure imageops_commit_failure(const struct runner_result *res,
						     const char *vm_name, char **msg)
{
	const char *se = res->all_stderr;
	const char *line = res->last_stderr && *res->last_stderr ? res->last_stderr : NULL;
	enum imageops_commit_failure kind;

	/* qemu-img opens both images (and reopens the base read-write) before
	 * it copies anything; every failure at that stage is reported as
	 * "Could not open ..." (measured with 7.2: lock held, read-only fs,
	 * immutable base, missing file). Anything else may have happened
	 * after the first write into the base. */
	if (res->cancelled || res->term_signal)
		kind = COMMIT_FAIL_PARTIAL;
	else if (imageops_has(se, "\"write\" lock") || imageops_has(se, "Is another process using the image"))
		kind = COMMIT_FAIL_IN_USE;
	else if (imageops_has(se, "Could not open") || imageops_has(se, "does not have a backing file")) {
		if (imageops_has(se, "Permission denied") || imageops_has(se, "Operation not permitted"))
			kind = COMMIT_FAIL_PERMISSION;
		else
			kind = COMMIT_FAIL_UNTOUCHED;
	} else
		kind = COMMIT_FAIL_PARTIAL;

	if (!msg)
		return kind;
	char why[512];
	if (res->cancelled)
		snprintf(why, sizeof why, "%s", _("cancelled"));
	else if (res->term_signal)
		snprintf(why, sizeof why, _("qemu-img was killed by signal %d"), res->term_signal);
	else if (line)
		snprintf(why, sizeof why, "%s", line);
	else
		snprintf(why, sizeof why, _("qemu-img exited with status %d"), res->exit_code);

	switch (kind) {
	case COMMIT_FAIL_IN_USE:
		set_err(msg,
			_("%s: the image is in use by another process (is the VM running?); "
			  "nothing was changed"),
			vm_name);
		break;
	case COMMIT_FAIL_PERMISSION:
		set_err(msg,
			_("%s: permission denied: %s. Nothing was lost: the overlay and the "
			  "base are unchanged"),
			vm_name, line ? line : why);
		break;
	case COMMIT_FAIL_UNTOUCHED:
		set_err(msg,
			_("%s: commit failed: %s. Nothing was lost: the overlay and the base "
			  "are unchanged"),
			vm_name, why);
		break;
	case COMMIT_FAIL_PARTIAL:
		set_err(msg,
			_("%s: commit did not finish: %s. Nothing was lost: the overlay still "
			  "holds every change; resume the commit to finish it"),
			vm_name, why);
		break;
	}
	return kind;
}

/* ---- rebuild ---- */

void imageops_rebuild_clear(struct imageops_rebuild *rb)
{
	if (!rb)
		return;
	free(rb->overlay);
	free(rb->tmp);
	imageops_argv_free(rb->argv);
	free(rb->backing);
	free(rb->backing_format);
	free(rb->options);
	if (rb->locked)
		close(rb->lock_fd); /* releases qemu's lock bytes */
	memset(rb, 0, sizeof *rb);
	rb->lock_fd = -1;
}

/* Temporary overlays (".NAME.vmoverlay-tmp-XXXXXX" beside the overlay,
 * IMAGEOPS_TMP_TAG) left by a rebuild that was killed before its rename.
 * Only that exact pattern is ours: a user's ".NAME.abcdef" is never touched
 * (issue 12). Only called when a new rebuild of the same overlay starts: one
 * operation per image at a time (and one instance per state directory)
 * means no other rebuild can own them. */
void imageops_remove_stale_temps(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t n = strlen(name), tag = strlen(IMAGEOPS_TMP_TAG);
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *s = e->d_name;
		if (s[0] != '.' || strncmp(s + 1, name, n) != 0 ||
		    strncmp(s + 1 + n, IMAGEOPS_TMP_TAG, tag) != 0 || strlen(s + 1 + n + tag) != 6)
			continue;
		bool random_suffix = true;
		for (const char *c = s + 1 + n + tag; *c; c++)
			random_suffix = random_suffix && isalnum((unsigned char)*c);
		struct stat st;
		if (!random_suffix || fstatat(dirfd(d), s, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd(d), s, 0) == 0)
			log_info("imageops: removed %s/%s left by an interrupted rebuild", dir, s);
	}
	closedir(d);
}

/* ---- qemu's image lock ---- */

/* QEMU's file-posix locking (block/file-posix.c, raw_apply_lock_bytes):
 * OFD read locks on byte 100 + i for each permission i an opener holds and
 * on byte 200 + i for each it does not share; before using the image it
 * tests the opposite bytes of other openers. Permission bits: 0 consistent
 * read, 1 write, 2 write unchanged, 3 resize (4 graph-mod before 7.1). */
#define QEMU_LOCK_PERM_BASE       100
#define QEMU_LOCK_SHARED_BASE     200
#define QEMU_LOCK_LEN             200 /* 100..299: every byte any qemu version uses */
#define QEMU_PERM_CONSISTENT_READ 0
#define QEMU_PERM_WRITE           1
#define QEMU_PERM_RESIZE          3

static int ofd_lock(int fd, short type, off_t start, off_t len)
{
	struct flock fl = {
	    .l_type = type,
	    .l_whence = SEEK_SET,
	    .l_start = start,
	    .l_len = len,
	    .l_pid = 0,
	};
	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 if another open file holds a byte of qemu's range, 0 if not. */
int imageops_qemu_lock_others(int fd)
{
	struct flock fl = {
	    .l_type = F_WRLCK,
	    .l_whence = SEEK_SET,
	    .l_start = QEMU_LOCK_PERM_BASE,
	    .l_len = QEMU_LOCK_LEN,
	    .l_pid = 0,
	};
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

int imageops_qemu_lock(int fd)
{
	/* What `qemu-img commit` holds on its image: it may read, write and
	 * resize, and shares neither write nor resize. A qemu starting a VM
	 * then finds byte 201 taken and fails with 'Failed to get "write"
	 * lock'; a reader without -U finds byte 101 ('shared "write" lock'). */
	static const off_t bytes[] = {
	    QEMU_LOCK_PERM_BASE + QEMU_PERM_CONSISTENT_READ,
	    QEMU_LOCK_PERM_BASE + QEMU_PERM_WRITE,
	    QEMU_LOCK_PERM_BASE + QEMU_PERM_RESIZE,
	    QEMU_LOCK_SHARED_BASE + QEMU_PERM_WRITE,
	    QEMU_LOCK_SHARED_BASE + QEMU_PERM_RESIZE,
	};
	int r = 0;
	for (size_t i = 0; i < sizeof bytes / sizeof bytes[0] && r == 0; i++)
		r = ofd_lock(fd, F_RDLCK, bytes[i], 1);
	if (r == 0) {
		int others = imageops_qemu_lock_others(fd);
		r = others < 0 ? others : others ? -EBUSY : 0;
	}
	/* A read lock fails only against a write lock: someone holds it. */
	if (r == -EAGAIN || r == -EACCES)
		r = -EBUSY;
	if (r < 0)
		ofd_lock(fd, F_UNLCK, QEMU_LOCK_PERM_BASE, QEMU_LOCK_LEN);
	return r;
}

/* ---- discard safety net ---- */

char *imageops_discarded_path(const char *overlay)
{
	char *p = NULL;
	if (!overlay || asprintf(&p, "%s.discarded", overlay) < 0)
		return NULL;
	return p;
}

bool imageops_has_discarded(const char *overlay)
{
	char *p = imageops_discarded_path(overlay);
	struct stat st;
	bool r = p && lstat(p, &st) == 0 && S_ISREG(st.st_mode);
	free(p);
	return r;
}

int imageops_undo_discard(const char *overlay, char **err)
{
	char *disc = imageops_discarded_path(overlay);
	if (!disc)
		return -ENOMEM;
	struct stat st;
	int ret = 0;
	if (lstat(disc, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = -ENOENT;
		set_err(err, _("there is no discarded overlay to restore (%s)"), disc);
		goto out;
	}
	/* rename() replaces the fresh overlay atomically: no moment without one. */
	if (rename(disc, overlay) < 0) {
		ret = -errno;
		if (ret == -EACCES || ret == -EPERM)
			set_err(err, _("permission denied: cannot restore %s: %s"), disc,
				strerror(-ret));
		else
			set_err(err, _("cannot restore %s: %s"), disc, strerror(-ret));
		goto out;
	}
	int r = imageops_fsync_dir_of(overlay);
	if (r < 0)
		log_warn("imageops: fsync of the directory of %s: %s", overlay, strerror(-r));
out:
	free(disc);
	return ret;
}

int imageops_drop_discarded(const char *overlay)
{
	char *disc = imageops_discarded_path(overlay);
	if (!disc)
		return -ENOMEM;
	int ret = unlink(disc) < 0 && errno != ENOENT ? -errno : 0;
	if (ret < 0)
		log_warn("imageops: cannot remove %s: %s", disc, strerror(-ret));
	free(disc);
	return ret;
}

bool imageops_locked(const char *path)
{
	/* Never block the loop on a FIFO (O_NONBLOCK); anything but a regular
	 * file cannot be probed truthfully, so it counts as in use. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return true;
	}
	/* QEMU's file-posix driver takes OFD read locks on byte 100 + perm
	 * (permissions held) and 200 + perm (permissions it refuses to
	 * share). Any lock in that range means a QEMU process has it open. */
	struct flock fl = {
	    .l_type = F_WRLCK,
	    .l_whence = SEEK_SET,
	    .l_start = 100,
	    .l_len = 200,
	    .l_pid = 0,
	};
	bool locked = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return locked;
}

/* ---- synchronous wrappers ---- */

int imageops_rebuild_sync(const char *qemu_img, const char *overlay, const char *backing_stored,
			  const char *backing_format, bool keep_discarded,
			  imageops_recheck_fn recheck, void *recheck_data, char **err)
{
	struct imageops_rebuild rb;
	int r =
	    imageops_rebuild_prepare(&rb, qemu_img, overlay, backing_stored, backing_format, err);
	if (r < 0)
		return r;
	rb.recheck = recheck;
	rb.recheck_data = recheck_data;
	struct runner_status st;
	if (!runner_run_sync(rb.argv, NULL, NULL, &st, err)) {
		imageops_rebuild_abort(&rb);
		return -ECHILD;
	}
	if (st.exit_code != 0) {
		struct runner_result res;
		runner_status_view(&st, &res);
		bool perm = false;
		char *msg = imageops_create_failure(&res, &perm);
		if (err)
			*err = msg;
		else
			free(msg);
		runner_status_clear(&st);
		imageops_rebuild_abort(&rb);
		return perm ? -EACCES : -EIO;
	}
	runner_status_clear(&st);
	return imageops_rebuild_finish(&rb, keep_discarded, err);
}

int imageops_commit_sync(const char *qemu_img, const char *overlay, const char *backing_stored,
			 const char *backing_format, const char *vm_name, runner_progress_cb cb,
			 void *data, imageops_recheck_fn recheck, void *recheck_data,
			 enum imageops_commit_failure *failure, bool *committed, char **err)
{
	if (failure)
		*failure = COMMIT_FAIL_UNTOUCHED;
	if (committed)
		*committed = false;
	/* The commit empties the overlay: only start it if the rebuild after
	 * it can run (issue 12, defect 5). */
	char *cerr = NULL;
	int c = imageops_rebuild_check(overlay, backing_stored, backing_format, &cerr);
	if (c < 0) {
		set_err(err, _("%s: cannot commit: %s; nothing was changed"), vm_name,
			cerr ? cerr : strerror(-c));
		free(cerr);
		return c;
	}
	char **argv = imageops_commit_argv(qemu_img, overlay, NULL);
	if (!argv)
		return -ENOMEM;
	struct runner_status st;
	bool ran = runner_run_sync(argv, cb, data, &st, err);
	imageops_argv_free(argv);
	if (!ran)
		return -ECHILD;
	if (st.exit_code != 0) {
		struct runner_result res;
		runner_status_view(&st, &res);
		enum imageops_commit_failure f = imageops_commit_failure(&res, vm_name, err);
		if (failure)
			*failure = f;
		runner_status_clear(&st);
		return f == COMMIT_FAIL_PERMISSION ? -EACCES
		       : f == COMMIT_FAIL_IN_USE   ? -EBUSY
						   : -EIO;
	}
	runner_status_clear(&st);
	if (committed)
		*committed = true;
	/* The commit is complete: the base holds everything; the rebuild only
	 * replaces an overlay that qemu-img already emptied. */
	return imageops_rebuild_sync(qemu_img, overlay, backing_stored, backing_format, false,
				     recheck, recheck_data, err);
}
