/* imageops-journal.c: the commit journal (DESIGN.md §3, §4.8), written
 * and made durable (file and directory fsync) before qemu-img commit
 * starts, keyed by connection URI + domain UUID, removed only after a
 * commit that exited 0 or by the attempt that provably wrote nothing. */
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

/* ---- journal ---- */

static bool uuid_string(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++, n++)
		if (!isxdigit((unsigned char)*s) && *s != '-')
			return false;
	return n >= 32 && n <= 36;
}

static char *keyed_path(const char *state_dir, const char *uri, const char *uuid, const char *ext)
{
	if (!state_dir || !uri || !*uri || !uuid_string(uuid))
		return NULL;
	/* FNV-1a: a URI may hold '/' and be long; the journal names it inside. */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *c = (const unsigned char *)uri; *c; c++)
		h = (h ^ *c) * 0x100000001b3ULL;
	char *p = NULL;
	if (asprintf(&p, "%s/%s@%016llx.%s", state_dir, uuid, (unsigned long long)h, ext) < 0)
		p = NULL;
	return p;
}

char *imageops_journal_path(const char *state_dir, const char *uri, const char *uuid)
{
	return keyed_path(state_dir, uri, uuid, "commit");
}

char *imageops_set_journal_path(const char *state_dir, const char *uri, const char *uuid)
{
	return keyed_path(state_dir, uri, uuid, "set");
}

const char *imageops_disk_state_name(enum imageops_op op, enum imageops_disk_state s)
{
	static const char *const names[][3] = {
	    [IMAGEOPS_COMMIT] = {"pending", "committing", "committed"},
	    [IMAGEOPS_REBUILD] = {"pending", "rebuilding", "rebuilt"},
	    [IMAGEOPS_DISCARD] = {"pending", "discarding", "discarded"},
	    [IMAGEOPS_UNDO_DISCARD] = {"pending", "restoring", "restored"},
	};
	if ((unsigned)op > IMAGEOPS_UNDO_DISCARD || (unsigned)s > JDISK_DONE)
		return "?";
	return names[op][s];
}

static bool disk_state_from_name(const char *v, enum imageops_disk_state *out)
{
	for (unsigned op = 0; op <= IMAGEOPS_UNDO_DISCARD; op++)
		for (unsigned st = 0; st <= JDISK_DONE; st++)
			if (strcmp(v, imageops_disk_state_name(op, st)) == 0) {
				*out = st;
				return true;
			}
	return false;
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
	size_t tlen = 0;
	FILE *m = open_memstream(&text, &tlen);
	if (!m) {
		close(fd);
		ret = -ENOMEM;
		goto error;
	}
	/* uri/uuid first: a reader sees at once which domain it is about. */
	if (j->op == IMAGEOPS_COMMIT)
		fputs("# vmoverlay commit journal: a qemu-img commit of these overlays into\n"
		      "# their bases started and has not finished. Only the overlays hold a\n"
		      "# consistent disk; do not discard them.\n", m);
	else
		fprintf(m, "# vmoverlay: the %s of a VM's overlays, one disk after the other,\n"
			"# has not finished. The disks left 'pending' still hold the session.\n",
			imageops_op_name(j->op));
	fprintf(m, "version=3\nop=%s\nuri=%s\nuuid=%s\nvm=%s\nstarted=%lld\n",
		imageops_op_name(j->op), j->uri ? j->uri : "", j->uuid ? j->uuid : "",
		j->vm ? j->vm : "", j->started ? j->started : (long long)time(NULL));
	struct imageops_journal_disk one = {.overlay = j->overlay, .base = j->base,
					    .state = JDISK_RUNNING};
	const struct imageops_journal_disk *ds = j->n_disks ? j->disks : &one;
	size_t nd = j->n_disks ? j->n_disks : 1;
	for (size_t i = 0; i < nd; i++)
		fprintf(m, "disk.%zu.target=%s\ndisk.%zu.state=%s\ndisk.%zu.overlay=%s\n"
			"disk.%zu.base=%s\n",
			i, ds[i].target ? ds[i].target : "", i,
			imageops_disk_state_name(j->op, ds[i].state), i,
			ds[i].overlay ? ds[i].overlay : "", i, ds[i].base ? ds[i].base : "");
	/* A reader from before issue 15 finds the first disk here. */
	fprintf(m, "overlay=%s\nbase=%s\n", ds[0].overlay ? ds[0].overlay : "",
		ds[0].base ? ds[0].base : "");
	if (fclose(m) != 0 || !text) {
		free(text);
		close(fd);
		ret = -ENOMEM;
		goto error;
	}
	int n = (int)tlen;
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
	ret = imageops_fsync_dir_of(path);
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

/* "disk.N.key=v" into j->disks[N] (N below VMO_MAX_DISKS). */
static void read_disk_line(struct imageops_journal *j, const char *key, const char *v)
{
	char *end = NULL;
	unsigned long i = strtoul(key + 5, &end, 10);
	if (end == key + 5 || *end != '.' || i >= VMO_MAX_DISKS)
		return;
	struct imageops_journal_disk *d = &j->disks[i];
	const char *k = end + 1;
	if (strcmp(k, "target") == 0 && *v)
		set_str(&d->target, v);
	else if (strcmp(k, "overlay") == 0 && *v)
		set_str(&d->overlay, v);
	else if (strcmp(k, "base") == 0 && *v)
		set_str(&d->base, v);
	else if (strcmp(k, "state") == 0)
		disk_state_from_name(v, &d->state);
	else
		return;
	if (i + 1 > j->n_disks)
		j->n_disks = i + 1;
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
		if (strncmp(line, "disk.", 5) == 0)
			read_disk_line(j, line, v);
		else if (strcmp(line, "op") == 0)
			imageops_op_from_name(v, &j->op);
		else if (strcmp(line, "uri") == 0 && *v)
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
	if (!j->n_disks && j->overlay && *j->overlay) {
		/* version 2: one disk, its commit started */
		j->n_disks = 1;
		set_str(&j->disks[0].overlay, j->overlay);
		if (j->base)
			set_str(&j->disks[0].base, j->base);
		j->disks[0].state = JDISK_RUNNING;
	}
	if (!j->n_disks)
		return -EINVAL;
	for (size_t i = 0; i < j->n_disks; i++)
		if (!j->disks[i].overlay)
			return -EINVAL;
	set_str(&j->overlay, j->disks[0].overlay);
	free(j->base);
	j->base = j->disks[0].base ? strdup(j->disks[0].base) : NULL;
	return 0;
}

int imageops_journal_remove(const char *path)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	imageops_fsync_dir_of(path);
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
	for (size_t i = 0; i < VMO_MAX_DISKS; i++) {
		free(j->disks[i].target);
		free(j->disks[i].overlay);
		free(j->disks[i].base);
	}
	memset(j, 0, sizeof *j);
}
