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
	memset(j, 0, sizeof *j);
}
