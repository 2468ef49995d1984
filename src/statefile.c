/* The applet's persistent state: which managed VMs were last seen running
 * and policies changed at run time. One record a line, the VM name last so
 * it may hold any character but a newline:
 *     running<TAB>NAME
 *     policy<TAB>ask<TAB>NAME
 * Saved atomically (tmp + fsync + rename + fsync dir), so a crash leaves
 * the old or the new file. A NULL dir keeps the state in memory only. */
#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct state_entry {
	char *vm;
	bool running;
	bool has_policy;
	enum vmo_policy policy;
};

struct statefile {
	char *dir;  /* NULL: memory only */
	char *path; /* dir/state */
	struct state_entry *entries;
	size_t n_entries;
	bool dirty;
};

static struct state_entry *find_entry(const struct statefile *sf, const char *vm)
{
	for (size_t i = 0; i < sf->n_entries; i++) {
		if (strcmp(sf->entries[i].vm, vm) == 0)
			return &sf->entries[i];
	}
	return NULL;
}

static struct state_entry *get_entry(struct statefile *sf, const char *vm)
{
	struct state_entry *e = find_entry(sf, vm);
	if (e)
		return e;
	if (strchr(vm, '\n'))
		return NULL; /* cannot be stored in a line */
	struct state_entry *n = realloc(sf->entries, (sf->n_entries + 1) * sizeof(*n));
	if (!n)
		return NULL;
	sf->entries = n;
	e = &sf->entries[sf->n_entries];
	memset(e, 0, sizeof(*e));
	e->vm = strdup(vm);
	if (!e->vm)
		return NULL;
	sf->n_entries++;
	return e;
}

/* mkdir -p with mode 0700 for the parts it creates. */
static bool make_dirs(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		return false;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			free(p);
			return false;
		}
		*s = '/';
	}
	bool ok = mkdir(p, 0700) == 0 || errno == EEXIST;
	free(p);
	return ok;
}

static void parse_line(struct statefile *sf, char *line, int lineno)
{
	if (!*line || *line == '#')
		return;
	char *tab = strchr(line, '\t');
	if (!tab)
		goto bad;
	*tab = 0;
	char *rest = tab + 1;
	if (strcmp(line, "running") == 0 && *rest) {
		struct state_entry *e = get_entry(sf, rest);
		if (e)
			e->running = true;
		return;
	}
	if (strcmp(line, "policy") == 0) {
		char *tab2 = strchr(rest, '\t');
		enum vmo_policy p;
		if (!tab2 || !tab2[1])
			goto bad;
		*tab2 = 0;
		if (!policy_from_name(rest, &p))
			goto bad;
		struct state_entry *e = get_entry(sf, tab2 + 1);
		if (e) {
			e->has_policy = true;
			e->policy = p;
		}
		return;
	}
bad:
	log_warn("%s:%d: ignoring unreadable state line", sf->path, lineno);
}

static void load(struct statefile *sf)
{
	FILE *f = fopen(sf->path, "re");
	if (!f) {
		if (errno != ENOENT)
			log_warn("cannot read %s: %s", sf->path, strerror(errno));
		return;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			line[n - 1] = 0;
		parse_line(sf, line, lineno);
	}
	free(line);
	fclose(f);
}

struct statefile *statefile_open(const char *dir)
{
	struct statefile *sf = calloc(1, sizeof(*sf));
	if (!sf)
		return NULL;
	if (!dir)
		return sf;
	sf->dir = strdup(dir);
	if (!sf->dir || asprintf(&sf->path, "%s/state", dir) < 0) {
		sf->path = NULL;
		statefile_close(sf);
		return NULL;
	}
	/* A directory we cannot create only costs persistence: keep going
	 * in memory, saving will log why it fails. */
	if (!make_dirs(dir))
		log_warn("cannot create state directory %s: %s", dir, strerror(errno));
	load(sf);
	return sf;
}

void statefile_close(struct statefile *sf)
{
	if (!sf)
		return;
	for (size_t i = 0; i < sf->n_entries; i++)
		free(sf->entries[i].vm);
	free(sf->entries);
	free(sf->path);
	free(sf->dir);
	free(sf);
}

const char *statefile_dir(const struct statefile *sf)
{
	return sf ? sf->dir : NULL;
}

bool statefile_get_running(const struct statefile *sf, const char *vm)
{
	const struct state_entry *e = sf ? find_entry(sf, vm) : NULL;
	return e && e->running;
}

void statefile_set_running(struct statefile *sf, const char *vm, bool running)
{
	if (!sf || statefile_get_running(sf, vm) == running)
		return;
	struct state_entry *e = get_entry(sf, vm);
	if (!e)
		return;
	e->running = running;
	sf->dirty = true;
}

bool statefile_get_policy(const struct statefile *sf, const char *vm, enum vmo_policy *out)
{
	const struct state_entry *e = sf ? find_entry(sf, vm) : NULL;
	if (!e || !e->has_policy)
		return false;
	if (out)
		*out = e->policy;
	return true;
}

void statefile_set_policy(struct statefile *sf, const char *vm, enum vmo_policy p)
{
	if (!sf)
		return;
	struct state_entry *e = get_entry(sf, vm);
	if (!e || (e->has_policy && e->policy == p))
		return;
	e->has_policy = true;
	e->policy = p;
	sf->dirty = true;
}

void statefile_clear_policy(struct statefile *sf, const char *vm)
{
	struct state_entry *e = sf ? find_entry(sf, vm) : NULL;
	if (!e || !e->has_policy)
		return;
	e->has_policy = false;
	sf->dirty = true;
}

static bool write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		s += n;
		len -= (size_t)n;
	}
	return true;
}

bool statefile_save(struct statefile *sf)
{
	if (!sf)
		return false;
	if (!sf->dirty || !sf->dir)
		return true;

	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (!mem)
		return false;
	fputs("# vmoverlay state: written by the applet, do not edit while it runs\n", mem);
	for (size_t i = 0; i < sf->n_entries; i++) {
		const struct state_entry *e = &sf->entries[i];
		if (e->running)
			fprintf(mem, "running\t%s\n", e->vm);
		if (e->has_policy)
			fprintf(mem, "policy\t%s\t%s\n", policy_name(e->policy), e->vm);
	}
	if (fclose(mem) != 0) {
		free(buf);
		return false;
	}

	char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp", sf->path) < 0) {
		free(buf);
		return false;
	}
	bool ok = false;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (!write_all(fd, buf, len) || fsync(fd) < 0) {
		log_warn("cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, sf->path) < 0) {
		log_warn("cannot rename %s to %s: %s", tmp, sf->path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	int dfd = open(sf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	sf->dirty = false;
	ok = true;
out:
	free(tmp);
	free(buf);
	return ok;
}

char *statefile_default_dir(void)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	char *out = NULL;
	/* The base directory spec says relative values are to be ignored. */
	if (xdg && xdg[0] == '/') {
		if (asprintf(&out, "%s/vmoverlay", xdg) < 0)
			return NULL;
		return out;
	}
	const char *home = getenv("HOME");
	if (!home || home[0] != '/')
		return NULL;
	if (asprintf(&out, "%s/.local/state/vmoverlay", home) < 0)
		return NULL;
	return out;
}
