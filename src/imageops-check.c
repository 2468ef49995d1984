/* imageops-check.c: everything a rebuild needs, checked before an
 * operation that cannot be undone starts (a commit empties the overlay):
 * a regular file, not a symbolic link, a header that names the expected
 * backing file, nothing a fresh overlay could not reproduce (encryption,
 * external data file, internal snapshots, persistent bitmaps), a writable
 * directory; then the prepared rebuild itself. */
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

/* ---- rebuild checks ---- */


/* The message for a file that cannot be made beside the overlay: a
 * permission problem (a privileged helper might) or another error. */
static void cannot_create_beside(const char *overlay, int ret, char **err)
{
	if (ret == -EACCES || ret == -EPERM || ret == -EROFS)
		set_err(err, _("permission denied: cannot create a file next to %s (%s)"), overlay,
			strerror(-ret));
	else
		set_err(err, _("cannot create a file next to %s: %s"), overlay, strerror(-ret));
}

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
		cannot_create_beside(overlay, ret, err);
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
	return imageops_rebuild_prepare_onto(rb, qemu_img, overlay, backing_stored, backing_format,
					     backing_stored, backing_format, err);
}

int imageops_rebuild_prepare_onto(struct imageops_rebuild *rb, const char *qemu_img,
				  const char *overlay, const char *backing_stored,
				  const char *backing_format, const char *new_backing,
				  const char *new_format, char **err)
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
	imageops_remove_stale_temps(dir, name);
	int tfd = mkostemp(tmp, O_CLOEXEC);
	if (tfd < 0) {
		ret = -errno;
		cannot_create_beside(overlay, ret, err);
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
	rb->backing = strdup(new_backing);
	rb->backing_format = strdup(new_format);
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
	rb->argv = imageops_argv_build(qemu_img, "create", "-q", "-f", "qcow2", "-o", options, "-F",
				       new_format, "-b", new_backing, tmp, NULL);
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
	bool perm = imageops_has(res->all_stderr, "Permission denied") ||
		    imageops_has(res->all_stderr, "Operation not permitted");
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
	if (imageops_qemu_lock_others(rb->lock_fd) != 0) {
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
	r = imageops_fsync_dir_of(rb->overlay);
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
