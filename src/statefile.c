/* The applet's persistent state: which managed VMs were last seen running
 * and policies changed at run time. One record a line, keyed by the libvirt
 * URI and the domain UUID, the VM name (display only) last so it may hold
 * any character but a newline:
 *     vm-running<TAB>URI<TAB>UUID<TAB>NAME
 *     vm-policy<TAB>ask<TAB>URI<TAB>UUID<TAB>NAME
 * Files from before issue 12 hold name-keyed records:
 *     running<TAB>NAME
 *     policy<TAB>ask<TAB>NAME
 * They are kept (and written back as they are) until a key with that name
 * asks for them; then they move to that key (statefile.h). And the fresh
 * overlay a discard left (statefile.h, issue 12 defect 3):
 *     vm-discarded<TAB>DEV<TAB>INO<TAB>SIZE<TAB>MTIME_S<TAB>MTIME_NS<TAB>CTIME_S<TAB>CTIME_NS<TAB>URI<TAB>UUID<TAB>NAME
 * and, for a VM that watches several disks, one per disk (issue 15):
 *     vm-discarded-disk<TAB>TARGET<TAB>DEV<TAB>...<TAB>CTIME_NS<TAB>URI<TAB>UUID<TAB>NAME
 * Saved atomically (tmp + fsync + rename + fsync dir), so a crash leaves
 * the old or the new file. A NULL dir keeps the state in memory only. */
#include "statefile.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct state_entry {
	char *uri;  /* NULL: a name-keyed record from before issue 12 */
	char *uuid; /* NULL with uri */
	char *name;
	bool running;
	bool has_policy;
	enum vmo_policy policy;
	bool has_mark;
	struct statefile_file_id mark;
	struct disk_mark {
		char target[33];
		struct statefile_file_id id;
	} dmarks[VMO_MAX_DISKS];
	size_t n_dmarks;
};

/* Where target's mark is in e->dmarks, or -1. */
static int dmark_index(const struct state_entry *e, const char *target)
{
	for (size_t i = 0; target && i < e->n_dmarks; i++)
		if (strcmp(e->dmarks[i].target, target) == 0)
			return (int)i;
	return -1;
}

struct statefile {
	char *dir;  /* NULL: memory only */
	char *path; /* dir/state */
	struct state_entry *entries;
	size_t n_entries;
	bool dirty;
};

#define TARGET_MAX (sizeof(((struct state_entry *)0)->dmarks[0].target) - 1)

/* Sets (id) or forgets (NULL) the mark of target (NULL: the VM's own) in e. */
static void statefile_set_mark(struct statefile *sf, struct state_entry *e, const char *target,
			       const struct statefile_file_id *id)
{
	if (!target) {
		if (!id && !e->has_mark)
			return;
		e->has_mark = id != NULL;
		if (id)
			e->mark = *id;
		sf->dirty = true;
		return;
	}
	int i = dmark_index(e, target);
	if (!id) {
		if (i < 0)
			return;
		e->dmarks[i] = e->dmarks[--e->n_dmarks];
		sf->dirty = true;
		return;
	}
	if (i < 0) {
		if (strlen(target) > TARGET_MAX || e->n_dmarks >= VMO_MAX_DISKS)
			return;
		i = (int)e->n_dmarks++;
		snprintf(e->dmarks[i].target, sizeof e->dmarks[i].target, "%s", target);
	}
	e->dmarks[i].id = *id;
	sf->dirty = true;
}

static bool storable(const char *s, bool allow_tab)
{
	return s && *s && !strchr(s, '\n') && (allow_tab || !strchr(s, '\t'));
}

bool statefile_key_valid(const struct state_key *k)
{
	return k && storable(k->uri, false) && storable(k->uuid, false) &&
	       (!k->name || !strchr(k->name, '\n'));
}

static bool legacy(const struct state_entry *e)
{
	return !e->uri;
}

static bool set_field(char **field, const char *v)
{
	char *n = strdup(v ? v : "");
	if (!n)
		return false;
	free(*field);
	*field = n;
	return true;
}

/* The record of k: an exact (uri, uuid) match, else a name-keyed one from
 * an old file, which now becomes k's (migrate). The display name follows
 * the domain's (a rename). NULL if none. */
static struct state_entry *find_entry(struct statefile *sf, const struct state_key *k)
{
	if (!statefile_key_valid(k))
		return NULL;
	struct state_entry *e = NULL;
	for (size_t i = 0; i < sf->n_entries && !e; i++) {
		struct state_entry *c = &sf->entries[i];
		if (!legacy(c) && strcmp(c->uri, k->uri) == 0 && strcmp(c->uuid, k->uuid) == 0)
			e = c;
	}
	for (size_t i = 0; i < sf->n_entries && !e && k->name; i++) {
		struct state_entry *c = &sf->entries[i];
		if (legacy(c) && strcmp(c->name, k->name) == 0) {
			if (!set_field(&c->uri, k->uri) || !set_field(&c->uuid, k->uuid)) {
				free(c->uri);
				c->uri = NULL;
				return NULL;
			}
			log_info(
			    "state: record of %s (from before keying by domain) is now %s on %s",
			    k->name, k->uuid, k->uri);
			sf->dirty = true;
			e = c;
		}
	}
	if (e && k->name && strcmp(e->name, k->name) != 0 && set_field(&e->name, k->name))
		sf->dirty = true;
	return e;
}

static struct state_entry *add_entry(struct statefile *sf, const char *uri, const char *uuid,
				     const char *name)
{
	if (!name || strchr(name, '\n'))
		return NULL; /* cannot be stored in a line */
	struct state_entry *n = realloc(sf->entries, (sf->n_entries + 1) * sizeof(*n));
	if (!n)
		return NULL;
	sf->entries = n;
	struct state_entry *e = &sf->entries[sf->n_entries];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	e->uri = uri ? strdup(uri) : NULL;
	e->uuid = uuid ? strdup(uuid) : NULL;
	if (!e->name || (uri && !e->uri) || (uuid && !e->uuid)) {
		free(e->name);
		free(e->uri);
		free(e->uuid);
		return NULL;
	}
	sf->n_entries++;
	return e;
}

/* A record to write k's facts into (made if needed); NULL if k is not valid. */
static struct state_entry *get_entry(struct statefile *sf, const struct state_key *k)
{
	struct state_entry *e = find_entry(sf, k);
	if (e || !statefile_key_valid(k))
		return e;
	return add_entry(sf, k->uri, k->uuid, k->name ? k->name : "");
}

/* While loading: the record of exactly (uri, uuid), or the name-keyed
 * record of name when uri is NULL. */
static struct state_entry *load_entry(struct statefile *sf, const char *uri, const char *uuid,
				      const char *name)
{
	for (size_t i = 0; i < sf->n_entries; i++) {
		struct state_entry *c = &sf->entries[i];
		if (uri ? !legacy(c) && strcmp(c->uri, uri) == 0 && strcmp(c->uuid, uuid) == 0
			: legacy(c) && strcmp(c->name, name) == 0)
			return c;
	}
	return add_entry(sf, uri, uuid, name);
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

/* Splits off the next TAB-separated field of *rest (NULL if none). */
static char *field(char **rest)
{
	char *f = *rest, *tab = f ? strchr(f, '\t') : NULL;
	if (!tab)
		return NULL;
	*tab = 0;
	*rest = tab + 1;
	return f;
}

static void parse_line(struct statefile *sf, char *line, int lineno)
{
	if (!*line || *line == '#')
		return;
	char *rest = line;
	char *tag = field(&rest);
	if (!tag)
		goto bad;
	if (strcmp(tag, "vm-discarded") == 0 || strcmp(tag, "vm-discarded-disk") == 0) {
		char *target = NULL;
		if (strcmp(tag, "vm-discarded-disk") == 0) {
			target = field(&rest);
			if (!target || !*target || strlen(target) > TARGET_MAX)
				goto bad;
		}
		unsigned long long v[3];
		long long ms, cs;
		long mns, cns;
		int used = 0;
		if (sscanf(rest, "%llu\t%llu\t%llu\t%lld\t%ld\t%lld\t%ld\t%n", &v[0], &v[1], &v[2],
			   &ms, &mns, &cs, &cns, &used) != 7 ||
		    !used)
			goto bad;
		rest += used;
		char *uri = field(&rest);
		char *uuid = field(&rest);
		if (!uri || !*uri || !uuid || !*uuid)
			goto bad;
		struct state_entry *e = load_entry(sf, uri, uuid, rest);
		struct statefile_file_id id = {v[0], v[1], v[2], (int64_t)ms, mns, (int64_t)cs, cns};
		if (e)
			statefile_set_mark(sf, e, target, &id);
		return;
	}
	enum vmo_policy p = POLICY_ASK;
	bool policy = false;
	if (strcmp(tag, "policy") == 0 || strcmp(tag, "vm-policy") == 0) {
		char *pname = field(&rest);
		if (!pname || !policy_from_name(pname, &p))
			goto bad;
		policy = true;
	} else if (strcmp(tag, "running") != 0 && strcmp(tag, "vm-running") != 0) {
		goto bad;
	}
	char *uri = NULL, *uuid = NULL;
	if (strncmp(tag, "vm-", 3) == 0) {
		uri = field(&rest);
		uuid = field(&rest);
		if (!uri || !*uri || !uuid || !*uuid)
			goto bad;
	} else if (!*rest) {
		goto bad;
	}
	struct state_entry *e = load_entry(sf, uri, uuid, rest);
	if (!e)
		return;
	if (policy) {
		e->has_policy = true;
		e->policy = p;
	} else {
		e->running = true;
	}
	return;
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
	for (size_t i = 0; i < sf->n_entries; i++) {
		free(sf->entries[i].uri);
		free(sf->entries[i].uuid);
		free(sf->entries[i].name);
	}
	free(sf->entries);
	free(sf->path);
	free(sf->dir);
	free(sf);
}

const char *statefile_dir(const struct statefile *sf)
{
	return sf ? sf->dir : NULL;
}

bool statefile_get_running(struct statefile *sf, const struct state_key *k)
{
	const struct state_entry *e = sf ? find_entry(sf, k) : NULL;
	return e && e->running;
}

void statefile_set_running(struct statefile *sf, const struct state_key *k, bool running)
{
	if (!sf || statefile_get_running(sf, k) == running)
		return;
	struct state_entry *e = get_entry(sf, k);
	if (!e)
		return;
	e->running = running;
	sf->dirty = true;
}

bool statefile_get_policy(struct statefile *sf, const struct state_key *k, enum vmo_policy *out)
{
	const struct state_entry *e = sf ? find_entry(sf, k) : NULL;
	if (!e || !e->has_policy)
		return false;
	if (out)
		*out = e->policy;
	return true;
}

void statefile_set_policy(struct statefile *sf, const struct state_key *k, enum vmo_policy p)
{
	if (!sf)
		return;
	struct state_entry *e = get_entry(sf, k);
	if (!e || (e->has_policy && e->policy == p))
		return;
	e->has_policy = true;
	e->policy = p;
	sf->dirty = true;
}

void statefile_clear_policy(struct statefile *sf, const struct state_key *k)
{
	struct state_entry *e = sf ? find_entry(sf, k) : NULL;
	if (!e || !e->has_policy)
		return;
	e->has_policy = false;
	sf->dirty = true;
}

bool statefile_get_discard_mark(struct statefile *sf, const struct state_key *k,
				const char *target, struct statefile_file_id *out)
{
	const struct state_entry *e = sf ? find_entry(sf, k) : NULL;
	int i = e && target ? dmark_index(e, target) : -1;
	if (!e || (target ? i < 0 : !e->has_mark))
		return false;
	if (out)
		*out = target ? e->dmarks[i].id : e->mark;
	return true;
}

void statefile_set_discard_mark(struct statefile *sf, const struct state_key *k,
				const char *target, const struct statefile_file_id *id)
{
	if (!sf)
		return;
	struct state_entry *e = id ? get_entry(sf, k) : find_entry(sf, k);
	if (e)
		statefile_set_mark(sf, e, target, id);
}

void statefile_file_id_of(const struct stat *st, struct statefile_file_id *out)
{
	*out = (struct statefile_file_id){
	    .dev = (uint64_t)st->st_dev,
	    .ino = (uint64_t)st->st_ino,
	    .size = (uint64_t)st->st_size,
	    .mtime_s = (int64_t)st->st_mtim.tv_sec,
	    .mtime_ns = st->st_mtim.tv_nsec,
	    .ctime_s = (int64_t)st->st_ctim.tv_sec,
	    .ctime_ns = st->st_ctim.tv_nsec,
	};
}

bool statefile_file_id_equal(const struct statefile_file_id *a, const struct statefile_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_s == b->mtime_s && a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s &&
	       a->ctime_ns == b->ctime_ns;
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
		if (legacy(e)) {
			/* Not asked for yet: kept as it was. */
			if (e->running)
				fprintf(mem, "running\t%s\n", e->name);
			if (e->has_policy)
				fprintf(mem, "policy\t%s\t%s\n", policy_name(e->policy), e->name);
			continue;
		}
		if (e->running)
			fprintf(mem, "vm-running\t%s\t%s\t%s\n", e->uri, e->uuid, e->name);
		if (e->has_policy)
			fprintf(mem, "vm-policy\t%s\t%s\t%s\t%s\n", policy_name(e->policy), e->uri,
				e->uuid, e->name);
		if (e->has_mark)
			fprintf(mem, "vm-discarded\t%llu\t%llu\t%llu\t%lld\t%ld\t%lld\t%ld\t%s\t%s\t%s\n",
				(unsigned long long)e->mark.dev, (unsigned long long)e->mark.ino,
				(unsigned long long)e->mark.size, (long long)e->mark.mtime_s,
				e->mark.mtime_ns, (long long)e->mark.ctime_s, e->mark.ctime_ns, e->uri,
				e->uuid, e->name);
		for (size_t k = 0; k < e->n_dmarks; k++) {
			const struct statefile_file_id *m = &e->dmarks[k].id;
			fprintf(mem,
				"vm-discarded-disk\t%s\t%llu\t%llu\t%llu\t%lld\t%ld\t%lld\t%ld\t%s\t%s\t%s\n",
				e->dmarks[k].target, (unsigned long long)m->dev,
				(unsigned long long)m->ino, (unsigned long long)m->size,
				(long long)m->mtime_s, m->mtime_ns, (long long)m->ctime_s, m->ctime_ns,
				e->uri, e->uuid, e->name);
		}
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

int statefile_lock(const char *dir, long *holder)
{
	if (holder)
		*holder = 0;
	char *path = NULL;
	if (!dir || asprintf(&path, "%s/lock", dir) < 0) {
		errno = ENOMEM;
		return -1;
	}
	int fd = -1;
	if (!make_dirs(dir) ||
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		int e = errno;
		free(path);
		errno = e;
		return -1;
	}
	free(path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char buf[32] = "";
		ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
		if (n > 0 && holder) {
			buf[n] = 0;
			*holder = strtol(buf, NULL, 10);
		}
		close(fd);
		errno = e;
		return -1;
	}
	/* For the message a second instance shows; the lock itself is what
	 * counts (a stale pid in a file nobody has locked means nothing). */
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
		log_warn("cannot record our pid in %s/lock: %s", dir, strerror(errno));
	return fd;
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
