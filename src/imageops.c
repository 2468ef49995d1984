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

static char **argv_build(const char *first, ...)
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

char **imageops_commit_argv(const char *qemu_img, const char *overlay)
{
	return argv_build(qemu_img, "commit", "-p", overlay, NULL);
}

static int fsync_dir_of(const char *path)
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

static bool has(const char *hay, const char *needle)
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
	else if (has(se, "\"write\" lock") || has(se, "Is another process using the image"))
		kind = COMMIT_FAIL_IN_USE;
	else if (has(se, "Could not open") || has(se, "does not have a backing file")) {
		if (has(se, "Permission denied") || has(se, "Operation not permitted"))
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
static void remove_stale_temps(const char *dir, const char *name)
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
static int qemu_lock_others(int fd)
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
		int others = qemu_lock_others(fd);
		r = others < 0 ? others : others ? -EBUSY : 0;
	}
	/* A read lock fails only against a write lock: someone holds it. */
	if (r == -EAGAIN || r == -EACCES)
		r = -EBUSY;
	if (r < 0)
		ofd_lock(fd, F_UNLCK, QEMU_LOCK_PERM_BASE, QEMU_LOCK_LEN);
	return r;
}

/* ---- rebuild checks ---- */

/* Opens overlay the way every later step sees it: never through a
 * symbolic link, never blocking (a FIFO), and the header parsed from that
 * very descriptor. On success *fd_out is open and info filled. */
static int open_overlay(const char *overlay, const char *backing_stored, const char *backing_format,
			int *fd_out, struct qcow2_info *info, struct stat *st_out, char **err)
{
	*fd_out = -1;
	memset(info, 0, sizeof *info);
	if (!overlay || !backing_stored || !*backing_stored) {
		set_err(err, _("%s: the overlay's backing file is not known"),
			overlay ? overlay : "?");
		return -EINVAL;
	}
	if (!backing_format || !*backing_format) {
		/* qemu >= 6.1 refuses -b without -F, and guessing is unsafe. */
		set_err(err, _("%s: the overlay does not record its backing file's format"),
			overlay);
		return -EINVAL;
	}
	struct stat lst, st;
	if (lstat(overlay, &lst) < 0) {
		int e = errno;
		set_err(err, _("%s: %s"), overlay, strerror(e));
		return -e;
	}
	if (S_ISLNK(lst.st_mode)) {
		set_err(err, _("%s is a symbolic link; refusing to replace it"), overlay);
		return -ELOOP;
	}
	if (!S_ISREG(lst.st_mode)) {
		set_err(err, _("%s is not a regular file"), overlay);
		return -EINVAL;
	}
	int fd = open(overlay, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;
		if (e == EACCES || e == EPERM)
			set_err(err, _("permission denied: cannot read %s (%s)"), overlay,
				strerror(e));
		else
			set_err(err, _("%s: %s"), overlay, strerror(e));
		return -e;
	}
	int ret = 0;
	char *ierr = NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != lst.st_dev ||
	    st.st_ino != lst.st_ino) {
		set_err(err, _("%s changed while being checked; nothing was changed"), overlay);
		ret = -EAGAIN;
		goto error;
	}
	ret = image_read_qcow2_fd(fd, overlay, info, &ierr);
	if (ret < 0) {
		set_err(err, "%s", ierr ? ierr : strerror(-ret));
		goto error;
	}
	/* Rule 5 and 10: the file we opened is the one the caller checked. */
	if (!info->backing_file || strcmp(info->backing_file, backing_stored) != 0 ||
	    !info->backing_format || strcmp(info->backing_format, backing_format) != 0) {
		set_err(err, _("%s changed while being checked (its backing file is now %s, %s)"),
			overlay, info->backing_file ? info->backing_file : "-",
			info->backing_format ? info->backing_format : "-");
		ret = -EAGAIN;
		goto error;
	}
	char *why = NULL;
	if (!image_reproducible(info, &why)) {
		set_err(err, _("%s: %s"), overlay, why ? why : "");
		free(why);
		ret = -ENOTSUP;
		goto error;
	}
	free(ierr);
	*fd_out = fd;
	if (st_out)
		*st_out = st;
	return 0;

error:
	free(ierr);
	image_info_clear(info);
	close(fd);
	return ret;
}

static int check_dir_writable(const char *overlay, char **err)
{
	char *copy = strdup(overlay);
	if (!copy) {
		set_err(err, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	int ret = 0;
	if (access(dirname(copy), W_OK | X_OK) < 0) {
		ret = -errno;
		if (ret == -EACCES || ret == -EPERM || ret == -EROFS)
			set_err(err, _("permission denied: cannot create a file next to %s (%s)"),
				overlay, strerror(-ret));
		else
			set_err(err, _("cannot create a file next to %s: %s"), overlay,
				strerror(-ret));
	}
	free(copy);
	return ret;
}

int imageops_rebuild_check(const char *overlay, const char *backing_stored,
			   const char *backing_format, char **err)
{
	int fd;
	struct qcow2_info info;
	int r = open_overlay(overlay, backing_stored, backing_format, &fd, &info, NULL, err);
	if (r < 0)
		return r;
	close(fd);
	image_info_clear(&info);
	return check_dir_writable(overlay, err);
}

int imageops_rebuild_prepare(struct imageops_rebuild *rb, const char *qemu_img, const char *overlay,
			     const char *backing_stored, const char *backing_format, char **err)
{
	memset(rb, 0, sizeof *rb);
	rb->lock_fd = -1;
	int fd = -1;
	struct qcow2_info info;
	struct stat st;
	int ret = open_overlay(overlay, backing_stored, backing_format, &fd, &info, &st, err);
	if (ret < 0)
		return ret;
	/* From here to the end of finish, qemu cannot open the overlay: the
	 * caller's "shut off + lock free" check cannot go stale. */
	ret = imageops_qemu_lock(fd);
	if (ret == -EBUSY) {
		set_err(err,
			_("%s is in use by another process (qemu's image lock is held; is the VM "
			  "running?)"),
			overlay);
		goto error;
	} else if (ret < 0) {
		set_err(err,
			_("cannot take qemu's image lock on %s (%s), so a VM start during the "
			  "operation could not be prevented"),
			overlay, strerror(-ret));
		goto error;
	}

	char *copy1 = strdup(overlay), *copy2 = strdup(overlay);
	char *tmp = NULL;
	char *options = image_create_options(&info);
	const char *dir = copy1 ? dirname(copy1) : NULL;
	const char *name = copy2 ? basename(copy2) : NULL;
	if (!dir || !name || !options ||
	    asprintf(&tmp, "%s/.%s" IMAGEOPS_TMP_TAG "XXXXXX", dir, name) < 0) {
		tmp = NULL;
		free(copy1);
		free(copy2);
		free(options);
		set_err(err, "%s", strerror(ENOMEM));
		ret = -ENOMEM;
		goto error;
	}
	remove_stale_temps(dir, name);
	int tfd = mkostemp(tmp, O_CLOEXEC);
	if (tfd < 0) {
		ret = -errno;
		if (ret == -EACCES || ret == -EPERM || ret == -EROFS)
			set_err(err, _("permission denied: cannot create a file next to %s (%s)"),
				overlay, strerror(-ret));
		else
			set_err(err, _("cannot create a file next to %s: %s"), overlay,
				strerror(-ret));
		free(tmp);
		free(copy1);
		free(copy2);
		free(options);
		goto error;
	}
	close(tfd);
	free(copy1);
	free(copy2);

	rb->locked = true;
	rb->lock_fd = fd;
	fd = -1;
	rb->overlay = strdup(overlay);
	rb->tmp = tmp;
	rb->backing = strdup(backing_stored);
	rb->backing_format = strdup(backing_format);
	rb->options = options;
	rb->uid = st.st_uid;
	rb->gid = st.st_gid;
	rb->mode = st.st_mode & 07777;
	rb->version = info.version;
	rb->cluster_bits = info.cluster_bits;
	rb->refcount_order = info.refcount_order;
	rb->compression_type = info.compression_type;
	rb->lazy_refcounts = info.lazy_refcounts;
	rb->extended_l2 = info.extended_l2;
	image_info_clear(&info);
	/* The backing name exactly as stored (relative names resolve against
	 * the same directory, where the temp file lives too); the format
	 * options of the old overlay, so a rebuild never changes them. */
	rb->argv = argv_build(qemu_img, "create", "-q", "-f", "qcow2", "-o", options, "-F",
			      backing_format, "-b", backing_stored, tmp, NULL);
	if (!rb->overlay || !rb->backing || !rb->backing_format || !rb->argv) {
		set_err(err, "%s", strerror(ENOMEM));
		imageops_rebuild_abort(rb);
		return -ENOMEM;
	}
	return 0;

error:
	image_info_clear(&info);
	if (fd >= 0)
		close(fd);
	return ret;
}

void imageops_rebuild_abort(struct imageops_rebuild *rb)
{
	if (rb->tmp && unlink(rb->tmp) < 0 && errno != ENOENT)
		log_warn("imageops: cannot remove %s: %s", rb->tmp, strerror(errno));
	imageops_rebuild_clear(rb);
}

char *imageops_create_failure(const struct runner_result *res, bool *is_perm)
{
	const char *line = res->last_stderr && *res->last_stderr ? res->last_stderr : NULL;
	bool perm = has(res->all_stderr, "Permission denied") ||
		    has(res->all_stderr, "Operation not permitted");
	if (is_perm)
		*is_perm = perm;
	char *msg = NULL;
	if (res->term_signal)
		set_err(&msg,
			_("creating the new overlay was stopped (signal %d); the old overlay "
			  "is kept"),
			res->term_signal);
	else if (perm)
		set_err(&msg, _("permission denied: %s; the old overlay is kept"),
			line ? line : "qemu-img create");
	else
		set_err(&msg, _("creating the new overlay failed: %s; the old overlay is kept"),
			line ? line : _("qemu-img create failed"));
	return msg;
}

int imageops_rebuild_finish(struct imageops_rebuild *rb, bool keep_discarded, char **err)
{
	struct qcow2_info info = {0};
	char *ierr = NULL, *disc = NULL;
	bool made_link = false;
	int ret = 0, fd = -1;

	/* Rule 5 for the file we are about to put in place: it must be a qcow2
	 * backed by exactly the old overlay's backing file and format, with
	 * the old overlay's format options. */
	int r = image_read_qcow2(rb->tmp, &info, &ierr);
	if (r < 0) {
		set_err(err, _("the new overlay is unreadable: %s"), ierr ? ierr : strerror(-r));
		ret = r;
		goto error;
	}
	if (!info.backing_file || strcmp(info.backing_file, rb->backing) != 0 ||
	    !info.backing_format || strcmp(info.backing_format, rb->backing_format) != 0) {
		set_err(err, _("the new overlay has the wrong backing file (%s, %s)"),
			info.backing_file ? info.backing_file : "-",
			info.backing_format ? info.backing_format : "-");
		ret = -EINVAL;
		goto error;
	}
	struct qcow2_info want = {
	    .version = rb->version,
	    .cluster_bits = rb->cluster_bits,
	    .refcount_order = rb->refcount_order,
	    .compression_type = rb->compression_type,
	    .lazy_refcounts = rb->lazy_refcounts,
	    .extended_l2 = rb->extended_l2,
	};
	if (!image_same_format_options(&want, &info)) {
		set_err(err,
			_("qemu-img made the new overlay with other format options than the old "
			  "one (%s); the old overlay is kept"),
			rb->options);
		ret = -EINVAL;
		goto error;
	}

	fd = open(rb->tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		set_err(err, _("cannot open the new overlay: %s"), strerror(-ret));
		goto error;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_uid != rb->uid || st.st_gid != rb->gid) &&
	    fchown(fd, rb->uid, rb->gid) < 0)
		log_info("imageops: keeping owner %d:%d for %s (%s)", (int)st.st_uid,
			 (int)st.st_gid, rb->overlay, strerror(errno));
	if (fchmod(fd, rb->mode) < 0)
		log_info("imageops: cannot set mode %o on %s: %s", (unsigned)rb->mode, rb->tmp,
			 strerror(errno));
	if (fsync(fd) < 0) {
		ret = -errno;
		set_err(err, _("cannot write the new overlay: %s; the old overlay is kept"),
			strerror(-ret));
		goto error;
	}
	/* The new file is locked too before its name becomes the overlay's: a
	 * start right after the rename waits for the end of this function
	 * (fails, and can be retried) instead of racing the last steps. */
	r = imageops_qemu_lock(fd);
	if (r < 0) {
		ret = -EBUSY;
		set_err(err, _("cannot lock the new overlay (%s); the old overlay is kept"),
			strerror(-r));
		goto error;
	}

	/* Rule 9: the last look before the point of no return. libvirt first
	 * (a start that got past qemu's lock, e.g. an image opened with
	 * locking=off), then the lock bytes, then the name still being the
	 * file we locked. */
	char *why = NULL;
	if (rb->recheck && !rb->recheck(rb->recheck_data, &why)) {
		set_err(err, "%s", why ? why : _("the VM is no longer shut off"));
		free(why);
		ret = -EBUSY;
		goto error;
	}
	struct stat now, held;
	if (!rb->locked || fstat(rb->lock_fd, &held) < 0 || stat(rb->overlay, &now) < 0 ||
	    now.st_dev != held.st_dev || now.st_ino != held.st_ino) {
		set_err(err,
			_("%s was replaced by another program during the operation; it is "
			  "left as it is"),
			rb->overlay);
		ret = -EBUSY;
		goto error;
	}
	if (qemu_lock_others(rb->lock_fd) != 0) {
		set_err(err,
			_("%s was opened by another process during the operation (is the "
			  "VM running?); it is left as it is"),
			rb->overlay);
		ret = -EBUSY;
		goto error;
	}

	if (keep_discarded) {
		disc = imageops_discarded_path(rb->overlay);
		if (!disc) {
			ret = -ENOMEM;
			goto error;
		}
		/* One generation: the previous safety net goes. A hard link, made
		 * before the rename, keeps the old overlay reachable at every
		 * moment. */
		if (unlink(disc) < 0 && errno != ENOENT) {
			ret = -errno;
			set_err(err, _("cannot replace %s: %s; the old overlay is kept"), disc,
				strerror(-ret));
			goto error;
		}
		if (link(rb->overlay, disc) < 0) {
			ret = -errno;
			set_err(err,
				_("cannot keep the old overlay as %s: %s; nothing was changed"),
				disc, strerror(-ret));
			goto error;
		}
		made_link = true;
	}

	if (rename(rb->tmp, rb->overlay) < 0) {
		ret = -errno;
		set_err(err, _("cannot put the new overlay in place: %s; the old overlay is kept"),
			strerror(-ret));
		goto error;
	}
	r = fsync_dir_of(rb->overlay);
	if (r < 0)
		log_warn("imageops: fsync of the directory of %s: %s", rb->overlay, strerror(-r));
	log_info("imageops: fresh overlay %s in place%s", rb->overlay,
		 keep_discarded ? " (old one kept as .discarded)" : "");
	close(fd); /* releases the new overlay's lock; clear releases the old one's */
	image_info_clear(&info);
	free(ierr);
	free(disc);
	imageops_rebuild_clear(rb);
	return 0;

error:
	if (fd >= 0)
		close(fd);
	if (made_link && unlink(disc) < 0)
		log_warn("imageops: cannot remove %s: %s", disc, strerror(errno));
	image_info_clear(&info);
	free(ierr);
	free(disc);
	imageops_rebuild_abort(rb);
	return ret;
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
	int r = fsync_dir_of(overlay);
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

/* ---- journal ---- */

static bool uuid_string(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++, n++)
		if (!isxdigit((unsigned char)*s) && *s != '-')
			return false;
	return n >= 32 && n <= 36;
}

char *imageops_journal_path(const char *state_dir, const char *uri, const char *uuid)
{
	if (!state_dir || !uri || !*uri || !uuid_string(uuid))
		return NULL;
	/* FNV-1a: a URI may hold '/' and be long; the journal names it inside. */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *c = (const unsigned char *)uri; *c; c++)
		h = (h ^ *c) * 0x100000001b3ULL;
	char *p = NULL;
	if (asprintf(&p, "%s/%s@%016llx.commit", state_dir, uuid, (unsigned long long)h) < 0)
		p = NULL;
	return p;
}

char *imageops_journal_legacy_path(const char *state_dir, const char *vm)
{
	char *name = strdup(vm), *p = NULL;
	if (!name)
		return NULL;
	for (char *c = name; *c; c++)
		if (*c == '/')
			*c = '_';
	if (asprintf(&p, "%s/%s.commit", state_dir, name) < 0)
		p = NULL;
	free(name);
	return p;
}

bool imageops_journal_name(const char *file_name)
{
	size_t n = file_name ? strlen(file_name) : 0;
	return n > 7 && strcmp(file_name + n - 7, ".commit") == 0;
}

int imageops_journal_write(const char *path, const struct imageops_journal *j, char **err)
{
	char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	int ret = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		goto error;
	}
	char *text = NULL;
	/* uri/uuid first: a reader sees at once which domain it is about. */
	int n = asprintf(&text,
			 "# vmoverlay commit journal: a qemu-img commit of this overlay into\n"
			 "# its base started and has not finished. Only the overlay holds a\n"
			 "# consistent disk; do not discard it.\n"
			 "version=2\nuri=%s\nuuid=%s\nvm=%s\noverlay=%s\nbase=%s\nstarted=%lld\n",
			 j->uri ? j->uri : "", j->uuid ? j->uuid : "", j->vm ? j->vm : "",
			 j->overlay ? j->overlay : "", j->base ? j->base : "",
			 j->started ? j->started : (long long)time(NULL));
	if (n < 0) {
		close(fd);
		ret = -ENOMEM;
		goto error;
	}
	ssize_t w = write(fd, text, (size_t)n);
	free(text);
	if (w != n) {
		ret = w < 0 ? -errno : -ENOSPC;
		close(fd);
		goto error;
	}
	if (fsync(fd) < 0) {
		ret = -errno;
		close(fd);
		goto error;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		ret = -errno;
		goto error;
	}
	/* The journal counts only once its directory entry is durable: a
	 * crash must not lose it while qemu-img writes into the base. The
	 * caller then does not start the commit (and removes a journal of
	 * its own). */
	ret = fsync_dir_of(path);
	if (ret < 0)
		goto error;
	free(tmp);
	return 0;

error:
	set_err(err, _("cannot write the commit journal %s: %s"), path, strerror(-ret));
	unlink(tmp);
	free(tmp);
	return ret;
}

static void set_str(char **field, const char *v)
{
	free(*field);
	*field = strdup(v);
}

int imageops_journal_read(const char *path, struct imageops_journal *j)
{
	memset(j, 0, sizeof *j);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = 0;
		if (line[0] == '#' || !line[0])
			continue;
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		const char *v = eq + 1;
		if (strcmp(line, "uri") == 0 && *v)
			set_str(&j->uri, v);
		else if (strcmp(line, "uuid") == 0 && *v)
			set_str(&j->uuid, v);
		else if (strcmp(line, "vm") == 0)
			set_str(&j->vm, v);
		else if (strcmp(line, "overlay") == 0)
			set_str(&j->overlay, v);
		else if (strcmp(line, "base") == 0)
			set_str(&j->base, v);
		else if (strcmp(line, "started") == 0)
			j->started = atoll(v);
	}
	free(line);
	fclose(f);
	return j->overlay && *j->overlay ? 0 : -EINVAL;
}

int imageops_journal_remove(const char *path)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	fsync_dir_of(path);
	return 0;
}

void imageops_journal_clear(struct imageops_journal *j)
{
	if (!j)
		return;
	free(j->uri);
	free(j->uuid);
	free(j->vm);
	free(j->overlay);
	free(j->base);
	memset(j, 0, sizeof *j);
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
	char **argv = imageops_commit_argv(qemu_img, overlay);
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
