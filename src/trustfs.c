/* The privileged helper's file steps; see trustfs.h for the rules. */
#include "trustfs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "i18n.h"
#include "image.h"
#include "log.h"

#define DEFAULT_QEMU_USER "libvirt-qemu"

static int set_err(char **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char **err, int code, const char *fmt, ...)
{
	if (err) {
		free(*err);
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(err, fmt, ap) < 0)
			*err = NULL;
		va_end(ap);
	}
	return code;
}

/* ---- who may own things ---- */

/* The quoted value of `key = "..."` in qemu.conf, or NULL. */
static char *conf_value(const char *text, const char *key)
{
	char *found = NULL;
	size_t klen = strlen(key);
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, key, klen) == 0) {
			p += klen;
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '=') {
				p++;
				while (*p == ' ' || *p == '\t')
					p++;
				const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
				if (q && (!end || q < end)) {
					free(found); /* the last one wins, as in libvirt */
					found = strndup(p + 1, (size_t)(q - p - 1));
				}
			}
		}
		line = end ? end + 1 : NULL;
	}
	return found;
}

static bool parse_id(const char *s, unsigned long *out)
{
	if (!s || !*s)
		return false;
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > 0x7fffffffUL)
		return false;
	*out = v;
	return true;
}

int trustfs_qemu_ids(const char *qemu_conf, struct trustfs_ids *ids, char **why)
{
	char *text = NULL, *user = NULL, *group = NULL;
	FILE *f = fopen(qemu_conf, "re");
	if (f) {
		size_t len = 0;
		if (getdelim(&text, &len, '\0', f) < 0) {
			free(text);
			text = NULL;
		}
		fclose(f);
	} else if (errno != ENOENT) {
		int e = errno;
		return set_err(why, -e, _("cannot read %s: %s"), qemu_conf, strerror(e));
	}
	if (text) {
		user = conf_value(text, "user");
		group = conf_value(text, "group");
	}
	free(text);
	const char *u = user ? user : DEFAULT_QEMU_USER;
	unsigned long n;
	int ret = 0;
	/* "+N" is a numeric id; a plain name is looked up (libvirt does the same). */
	if (u[0] == '+' && parse_id(u + 1, &n)) {
		ids->uid = (uid_t)n;
		struct passwd *pw = getpwuid(ids->uid);
		ids->gid = pw ? pw->pw_gid : (gid_t)n;
	} else {
		struct passwd *pw = getpwnam(u);
		if (!pw) {
			ret = set_err(why, -ENOENT, _("the qemu user %s (%s) does not exist"), u,
				      qemu_conf);
			goto out;
		}
		ids->uid = pw->pw_uid;
		ids->gid = pw->pw_gid;
	}
	const char *g = group ? group : (user ? NULL : DEFAULT_QEMU_USER);
	if (g) {
		if (g[0] == '+' && parse_id(g + 1, &n)) {
			ids->gid = (gid_t)n;
		} else {
			struct group *gr = getgrnam(g);
			if (!gr) {
				ret = set_err(why, -ENOENT,
					      _("the qemu group %s (%s) does not exist"), g,
					      qemu_conf);
				goto out;
			}
			ids->gid = gr->gr_gid;
		}
	}
out:
	free(user);
	free(group);
	return ret;
}

bool trustfs_trusted(const struct trustfs_ids *ids, const struct stat *st)
{
	if (st->st_uid != 0 && st->st_uid != ids->uid)
		return false;
	if (st->st_mode & S_IWOTH)
		return false;
	if ((st->st_mode & S_IWGRP) && st->st_gid != 0 && st->st_gid != ids->gid)
		return false;
	return true;
}

/* ---- opening ---- */

void trustfs_close(struct trustfs_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->dirfd >= 0)
		close(f->dirfd);
	free(f->name);
	*f = (struct trustfs_file)TRUSTFS_FILE_INIT;
}

static int refuse_stat(const char *path, const struct stat *st, char **why)
{
	struct passwd *pw = getpwuid(st->st_uid);
	struct group *gr = getgrgid(st->st_gid);
	char owner[64], group[64];
	snprintf(owner, sizeof owner, "%s", pw ? pw->pw_name : "?");
	snprintf(group, sizeof group, "%s", gr ? gr->gr_name : "?");
	/* TRANSLATORS: %1$s path, %2$s owner, %3$s group, %4$o mode */
	return set_err(why, -EPERM,
		       _("%1$s is owned by %2$s:%3$s with mode %4$o: only files and directories "
			 "of root or the qemu user that nobody else can write are changed"),
		       path, owner, group, (unsigned)(st->st_mode & 07777));
}

int trustfs_open(const struct trustfs_ids *ids, const char *path, int flags,
		 struct trustfs_file *out, char **why)
{
	*out = (struct trustfs_file)TRUSTFS_FILE_INIT;
	if (!path || path[0] != '/')
		return set_err(why, -EINVAL, _("%s is not an absolute path"), path ? path : "?");
	char *copy = strdup(path);
	if (!copy)
		return set_err(why, -ENOMEM, "%s", strerror(ENOMEM));
	int ret = 0;
	int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *walked = NULL; /* the path so far, for messages */
	size_t wlen = 0;
	FILE *wf = open_memstream(&walked, &wlen);
	struct stat st;
	if (dir < 0 || !wf) {
		ret = set_err(why, -errno, "/: %s", strerror(errno));
		goto out;
	}
	if (fstat(dir, &st) < 0 || !trustfs_trusted(ids, &st)) {
		ret = refuse_stat("/", &st, why);
		goto out;
	}
	char *save = NULL;
	char *comp = strtok_r(copy, "/", &save);
	while (comp) {
		char *next = strtok_r(NULL, "/", &save);
		if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
			ret = set_err(why, -EINVAL, _("%s: '.' or '..' in the path"), path);
			goto out;
		}
		fprintf(wf, "/%s", comp);
		fflush(wf);
		if (!next) {
			/* The file itself. */
			int fd = openat(dir, comp, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
			if (fd < 0) {
				int e = errno;
				if (e == ELOOP)
					ret = set_err(why, -ELOOP, _("%s is a symbolic link"),
						      walked);
				else
					ret = set_err(why, -e, _("cannot open %s: %s"), walked,
						      strerror(e));
				goto out;
			}
			if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
				close(fd);
				ret = set_err(why, -EINVAL, _("%s is not a regular file"), walked);
				goto out;
			}
			if (!trustfs_trusted(ids, &st)) {
				close(fd);
				ret = refuse_stat(walked, &st, why);
				goto out;
			}
			out->fd = fd;
			out->dirfd = dir;
			dir = -1;
			out->st = st;
			if (!(out->name = strdup(comp))) {
				trustfs_close(out);
				ret = set_err(why, -ENOMEM, "%s", strerror(ENOMEM));
			}
			goto out;
		}
		int sub = openat(dir, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			int e = errno;
			/* O_NOFOLLOW | O_DIRECTORY on a link: ENOTDIR or ELOOP. */
			struct stat lst;
			if (fstatat(dir, comp, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(lst.st_mode))
				ret = set_err(why, -ELOOP, _("%s is a symbolic link"), walked);
			else
				ret =
				    set_err(why, -e, _("cannot open %s: %s"), walked, strerror(e));
			goto out;
		}
		close(dir);
		dir = sub;
		if (fstat(dir, &st) < 0 || !trustfs_trusted(ids, &st)) {
			ret = refuse_stat(walked, &st, why);
			goto out;
		}
		comp = next;
	}
	ret = set_err(why, -EINVAL, _("%s names no file"), path);
out:
	if (dir >= 0)
		close(dir);
	if (wf)
		fclose(wf);
	free(walked);
	free(copy);
	return ret;
}

bool trustfs_locked(int fd)
{
	/* As imageops_locked, on the descriptor we checked. */
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 200};
	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

bool trustfs_format_ok(const char *fmt)
{
	size_t n = fmt ? strlen(fmt) : 0;
	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)fmt[i]) && !isdigit((unsigned char)fmt[i]))
			return false;
	return true;
}

/* ---- commit ---- */

bool trustfs_commit(const char *qemu_img, const struct trustfs_file *overlay,
		    const struct trustfs_file *base, const char *base_format,
		    runner_progress_cb progress, void *data, int cancel_fd,
		    struct runner_status *st, char **err)
{
	if (!trustfs_format_ok(base_format)) {
		set_err(err, 0, _("unusable backing format %s"), base_format ? base_format : "-");
		return false;
	}
	/* The child gets overlay->fd as 3 and base->fd as 4; qemu opens
	 * /dev/fd/3 and /dev/fd/4, i.e. exactly these files. The explicit
	 * backing keeps qemu from resolving the header's name. */
	char *spec = NULL;
	if (asprintf(&spec,
		     "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":"
		     "\"/dev/fd/3\"},\"backing\":{\"driver\":\"%s\",\"file\":{\"driver\":\"file\","
		     "\"filename\":\"/dev/fd/4\"}}}",
		     base_format) < 0) {
		set_err(err, 0, "%s", strerror(ENOMEM));
		return false;
	}
	char *argv[] = {(char *)qemu_img, "commit", "-p", spec, NULL};
	int fds[] = {overlay->fd, base->fd};
	struct runner_opts opts = {.pass_fds = fds, .n_pass_fds = 2, .cancel_fd = cancel_fd};
	bool ran = runner_run_sync_ex(argv, progress, data, &opts, st, err);
	free(spec);
	return ran;
}

/* ---- rebuild ---- */

static bool random_name(char *buf, size_t len, const char *name)
{
	static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[6];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		return false;
	char suffix[7];
	for (size_t i = 0; i < 6; i++)
		suffix[i] = set[rnd[i] % (sizeof set - 1)];
	suffix[6] = 0;
	return snprintf(buf, len, ".%s.%s", name, suffix) < (int)len;
}

int trustfs_rebuild(const char *qemu_img, const struct trustfs_file *overlay,
		    const struct qcow2_info *old, bool keep_discarded,
		    imageops_recheck_fn recheck, void *recheck_data, char **err)
{
	const char *backing = old->backing_file, *backing_format = old->backing_format;
	char tmpname[300] = "", discname[300] = "", size[32];
	bool linked_tmp = false, made_disc = false;
	char *options = NULL;
	int ret = 0, tfd = -1;
	if (!backing || !*backing || !trustfs_format_ok(backing_format))
		return set_err(err, -EINVAL,
			       _("%s: the overlay's backing file or format is not known"),
			       overlay->name);
	if (strlen(overlay->name) > 200)
		return set_err(err, -ENAMETOOLONG, "%s", strerror(ENAMETOOLONG));
	char *why = NULL;
	if (!image_reproducible(old, &why)) {
		ret = set_err(err, -EINVAL, "%s: %s", overlay->name, why ? why : "?");
		free(why);
		return ret;
	}
	if (!(options = image_create_options(old)))
		return set_err(err, -ENOMEM, "%s", strerror(ENOMEM));
	/* qemu's own image lock on the old overlay, from now to the end: a VM
	 * start in between fails in qemu instead of racing us (as imageops). */
	int r = imageops_qemu_lock(overlay->fd);
	if (r < 0) {
		ret = set_err(err, r == -EBUSY ? -EBUSY : r,
			      _("%s is in use by another process (is the VM running?)"),
			      overlay->name);
		goto error;
	}

	/* An unnamed file in the checked directory. */
	tfd = openat(overlay->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (tfd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE here: a fresh random name, O_EXCL (never follows
		 * or reuses anything already there). */
		for (int i = 0; i < 20 && tfd < 0; i++) {
			if (!random_name(tmpname, sizeof tmpname, overlay->name))
				break;
			tfd = openat(overlay->dirfd, tmpname,
				     O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (tfd < 0 && errno != EEXIST)
				break;
		}
		if (tfd >= 0)
			linked_tmp = true;
	}
	if (tfd < 0) {
		int e = errno;
		tmpname[0] = 0;
		ret = set_err(err, -e, _("cannot create a file next to %s: %s"), overlay->name,
			      strerror(e));
		goto error;
	}

	/* qemu-img writes through the descriptor (fd 3 in the child). -u: it
	 * must not open the backing file by name (relative names would
	 * resolve against /dev/fd); size and format options are the old
	 * overlay's. */
	snprintf(size, sizeof size, "%llu", (unsigned long long)old->virtual_size);
	char *argv[] = {(char *)qemu_img, "create", "-q", "-f", "qcow2", "-o", options, "-u", "-F",
			(char *)backing_format, "-b", (char *)backing, "/dev/fd/3", size, NULL};
	int fds[] = {tfd};
	struct runner_opts opts = {.pass_fds = fds, .n_pass_fds = 1, .cancel_fd = -1};
	struct runner_status st;
	char *rerr = NULL;
	if (!runner_run_sync_ex(argv, NULL, NULL, &opts, &st, &rerr)) {
		ret = set_err(err, -ECHILD, "%s", rerr ? rerr : "qemu-img");
		free(rerr);
		goto error;
	}
	if (st.exit_code != 0) {
		struct runner_result res;
		runner_status_view(&st, &res);
		char *msg = imageops_create_failure(&res, NULL);
		ret = set_err(err, -EIO, "%s", msg ? msg : _("qemu-img create failed"));
		free(msg);
		runner_status_clear(&st);
		goto error;
	}
	runner_status_clear(&st);

	/* What we are about to put in place: qcow2 on exactly that backing,
	 * with the old overlay's format options. */
	struct qcow2_info info = {0};
	char *perr = NULL;
	bool good = image_read_qcow2_fd(tfd, overlay->name, &info, &perr) == 0 &&
		    info.backing_file && strcmp(info.backing_file, backing) == 0 &&
		    info.backing_format && strcmp(info.backing_format, backing_format) == 0 &&
		    image_same_format_options(old, &info);
	image_info_clear(&info);
	if (!good) {
		ret = set_err(err, -EINVAL, _("the new overlay is not what was asked for: %s"),
			      perr ? perr : _("wrong backing file"));
		free(perr);
		goto error;
	}
	free(perr);
	/* As libvirt expects the overlay after a stop: the old owner and mode. */
	if (fchown(tfd, overlay->st.st_uid, overlay->st.st_gid) < 0 ||
	    fchmod(tfd, overlay->st.st_mode & 07777) < 0 || fsync(tfd) < 0) {
		int e = errno;
		ret = set_err(err, -e, _("cannot write the new overlay: %s; the old overlay is kept"),
			      strerror(e));
		goto error;
	}
	/* The new file is locked before it gets the overlay's name. */
	r = imageops_qemu_lock(tfd);
	if (r < 0) {
		ret = set_err(err, -EBUSY, _("cannot lock the new overlay (%s); the old overlay is kept"),
			      strerror(-r));
		goto error;
	}

	/* Rule 9: the last look before the point of no return: libvirt, the
	 * name still being the file we hold, nobody else having it open. */
	if (recheck && !recheck(recheck_data, &why)) {
		ret = set_err(err, -EBUSY, "%s", why ? why : _("the VM is no longer shut off"));
		free(why);
		goto error;
	}
	struct stat now;
	if (fstatat(overlay->dirfd, overlay->name, &now, AT_SYMLINK_NOFOLLOW) < 0 ||
	    now.st_dev != overlay->st.st_dev || now.st_ino != overlay->st.st_ino) {
		ret = set_err(err, -ESTALE, _("%s changed while being replaced; nothing was changed"),
			      overlay->name);
		goto error;
	}
	if (trustfs_locked(overlay->fd)) {
		ret = set_err(err, -EBUSY,
			      _("%s is in use by another process (is the VM running?)"),
			      overlay->name);
		goto error;
	}

	if (keep_discarded) {
		snprintf(discname, sizeof discname, "%s.discarded", overlay->name);
		if (unlinkat(overlay->dirfd, discname, 0) < 0 && errno != ENOENT) {
			int e = errno;
			discname[0] = 0;
			ret = set_err(err, -e, _("cannot replace %s: %s; the old overlay is kept"),
				      "discarded", strerror(e));
			goto error;
		}
		/* The inode we checked, not whatever the name holds now. */
		if (linkat(overlay->fd, "", overlay->dirfd, discname, AT_EMPTY_PATH) < 0) {
			int e = errno;
			discname[0] = 0;
			ret = set_err(err, -e,
				      _("cannot keep the old overlay as %s.discarded: %s; nothing "
					"was changed"),
				      overlay->name, strerror(e));
			goto error;
		}
		made_disc = true;
	}

	if (!linked_tmp) {
		bool ok = false;
		for (int i = 0; i < 20 && !ok; i++) {
			if (!random_name(tmpname, sizeof tmpname, overlay->name))
				break;
			ok = linkat(tfd, "", overlay->dirfd, tmpname, AT_EMPTY_PATH) == 0;
			if (!ok && errno != EEXIST)
				break;
		}
		if (!ok) {
			int e = errno;
			tmpname[0] = 0;
			ret = set_err(err, -e,
				      _("cannot put the new overlay in place: %s; the old overlay is "
					"kept"),
				      strerror(e));
			goto error;
		}
		linked_tmp = true;
	}
	if (renameat(overlay->dirfd, tmpname, overlay->dirfd, overlay->name) < 0) {
		int e = errno;
		ret = set_err(err, -e,
			      _("cannot put the new overlay in place: %s; the old overlay is kept"),
			      strerror(e));
		goto error;
	}
	if (fsync(overlay->dirfd) < 0)
		log_warn("trustfs: fsync of the directory of %s: %s", overlay->name, strerror(errno));
	close(tfd); /* releases the new file's lock */
	free(options);
	log_info("trustfs: fresh overlay %s in place%s", overlay->name,
		 keep_discarded ? " (old one kept as .discarded)" : "");
	return 0;

error:
	if (linked_tmp && tmpname[0] && unlinkat(overlay->dirfd, tmpname, 0) < 0)
		log_warn("trustfs: cannot remove %s: %s", tmpname, strerror(errno));
	if (made_disc && unlinkat(overlay->dirfd, discname, 0) < 0)
		log_warn("trustfs: cannot remove %s: %s", discname, strerror(errno));
	if (tfd >= 0)
		close(tfd);
	free(options);
	return ret;
}

int trustfs_undo_discard(const struct trustfs_ids *ids, const struct trustfs_file *overlay,
			 char **err)
{
	char discname[300];
	if (snprintf(discname, sizeof discname, "%s.discarded", overlay->name) >=
	    (int)sizeof discname)
		return set_err(err, -ENAMETOOLONG, "%s", strerror(ENAMETOOLONG));
	int fd = openat(overlay->dirfd, discname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0) {
		int e = errno;
		return set_err(err, -e, _("%s.discarded: %s"), overlay->name, strerror(e));
	}
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && trustfs_trusted(ids, &st);
	close(fd);
	if (!ok)
		return refuse_stat(discname, &st, err);
	if (renameat(overlay->dirfd, discname, overlay->dirfd, overlay->name) < 0) {
		int e = errno;
		return set_err(err, -e, _("cannot restore %s.discarded: %s"), overlay->name,
			       strerror(e));
	}
	if (fsync(overlay->dirfd) < 0)
		log_warn("trustfs: fsync of the directory of %s: %s", overlay->name,
			 strerror(errno));
	return 0;
}
