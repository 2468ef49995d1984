/* config-file.c: the libconfig file into the loader: settings, VM
 * groups, @include targets checked before libconfig opens them; every
 * problem as "FILE:LINE: message". Merging with the environment and the
 * command line, and validation, are config.c's. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-private.h"
#include "i18n.h"
#include "log.h"

static char *setting_where(const struct loader *l, const config_setting_t *s)
{
	const char *file = config_setting_source_file(s);
	return cfg_asprintf("%s:%d", file ? file : l->file, (int)config_setting_source_line(s));
}

static void setting_error(struct loader *l, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void setting_error(struct loader *l, const config_setting_t *s, const char *fmt, ...)
{
	char *where = setting_where(l, s);
	va_list ap;
	va_start(ap, fmt);
	cfg_errlist_vadd(&l->errors, where, fmt, ap);
	va_end(ap);
	free(where);
}

static void setting_warn_unknown(struct loader *l, const config_setting_t *s)
{
	char *where = setting_where(l, s);
	/* Not fatal: a newer file read by an older program keeps working. */
	log_warn(_("%s: unknown setting \"%s\" ignored"), where, config_setting_name(s));
	free(where);
}

static const char *setting_string(struct loader *l, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		/* TRANSLATORS: %s is a setting name such as "connect". */
		setting_error(l, s, _("\"%s\" must be a string in double quotes"),
			      config_setting_name(s));
		return NULL;
	}
	return config_setting_get_string(s);
}

struct vm_build *cfg_loader_add_vm(struct loader *l, const char *name)
{
	struct vm_build *nv = realloc(l->vms, (l->n_vms + 1) * sizeof *nv);
	if (!nv)
		abort();
	l->vms = nv;
	struct vm_build *b = &l->vms[l->n_vms++];
	memset(b, 0, sizeof *b);
	b->c.name = cfg_strdup(name);
	b->c.policy = POLICY_ASK;
	return b;
}

struct vm_build *cfg_loader_find_vm(struct loader *l, const char *name)
{
	for (size_t i = 0; i < l->n_vms; i++)
		if (strcmp(l->vms[i].c.name, name) == 0)
			return &l->vms[i];
	return NULL;
}

/* libvirt target names: vda, sdb, hdc, xvda, nvme0n1, ... */
static bool disk_target_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 32 || s[0] < 'a' || s[0] > 'z')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

/* disks = ["vda", "vdb"]: targets, each once, at most VMO_MAX_DISKS. */
static bool load_disk_list(struct loader *l, const config_setting_t *s, const char **out,
			   size_t *n_out)
{
	*n_out = 0;
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
		setting_error(l, s, _("\"disks\" must be a list of disk targets: [\"vda\", \"vdb\"]"));
		return false;
	}
	int n = config_setting_length(s);
	if (n == 0) {
		setting_error(l, s, _("\"disks\" is empty; name at least one disk or leave it out"));
		return false;
	}
	if (n > VMO_MAX_DISKS) {
		setting_error(l, s, _("\"disks\" lists %d disks; at most %d are supported"), n,
			      VMO_MAX_DISKS);
		return false;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = e && config_setting_type(e) == CONFIG_TYPE_STRING
				    ? config_setting_get_string(e)
				    : NULL;
		if (!v) {
			setting_error(l, s, _("\"disks\" must be a list of disk targets: [\"vda\", \"vdb\"]"));
			return false;
		}
		if (!disk_target_valid(v)) {
			setting_error(l, s,
				      _("\"%s\" is not a disk target name such as vda, sda or hdb"), v);
			return false;
		}
		for (size_t k = 0; k < *n_out; k++)
			if (strcmp(out[k], v) == 0) {
				setting_error(l, s, _("disk %s is listed twice in \"disks\""), v);
				return false;
			}
		out[(*n_out)++] = v;
	}
	return true;
}

static void load_vm_entry(struct loader *l, const config_setting_t *g)
{
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		setting_error(l, g,
			      _("each entry of \"vms\" must be a group: { name = \"...\"; }"));
		return;
	}
	const char *name = NULL, *policy = NULL, *disk = NULL, *overlay = NULL, *base = NULL;
	const char *into = NULL;
	const config_setting_t *s_policy = NULL, *s_overlay = NULL, *s_base = NULL;
	const config_setting_t *s_disks = NULL, *s_into = NULL, *s_disk = NULL;
	const char *disks[VMO_MAX_DISKS];
	size_t n_disks = 0;
	bool bad = false;
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		const char *key = config_setting_name(s);
		const char **dst = NULL;
		if (strcmp(key, "disks") == 0) {
			s_disks = s;
			if (!load_disk_list(l, s, disks, &n_disks))
				bad = true;
			continue;
		}
		if (strcmp(key, "name") == 0) {
			dst = &name;
		} else if (strcmp(key, "policy") == 0) {
			dst = &policy;
			s_policy = s;
		} else if (strcmp(key, "disk") == 0) {
			dst = &disk;
			s_disk = s;
		} else if (strcmp(key, "commit_into") == 0) {
			dst = &into;
			s_into = s;
		} else if (strcmp(key, "overlay") == 0) {
			dst = &overlay;
			s_overlay = s;
		} else if (strcmp(key, "base") == 0) {
			dst = &base;
			s_base = s;
		} else {
			setting_warn_unknown(l, s);
			continue;
		}
		const char *v = setting_string(l, s);
		if (!v) {
			bad = true;
			continue;
		}
		*dst = v;
		if (dst == &name && !*v) {
			setting_error(l, s, _("the VM name must not be empty"));
			bad = true;
		} else if (dst == &disk && !disk_target_valid(v)) {
			setting_error(
			    l, s, _("\"%s\" is not a disk target name such as vda, sda or hdb"), v);
			bad = true;
		}
	}
	enum vmo_policy pol = POLICY_ASK;
	if (policy && !policy_from_name(policy, &pol)) {
		setting_error(l, s_policy,
			      _("unknown policy \"%s\" (expected ask, commit, discard or keep)"),
			      policy);
		bad = true;
	}
	enum vmo_commit_into commit_into = COMMIT_INTO_BACKING;
	if (into && strcmp(into, "deepest") == 0) {
		commit_into = COMMIT_INTO_DEEPEST;
	} else if (into && strcmp(into, "backing") != 0) {
		setting_error(l, s_into,
			      _("unknown commit_into \"%s\" (expected backing or deepest)"), into);
		bad = true;
	}
	if (s_disk && s_disks) {
		setting_error(l, s_disks, _("use either \"disk\" or \"disks\", not both"));
		bad = true;
	}
	if (n_disks > 1 && (s_overlay || s_base)) {
		setting_error(l, s_overlay ? s_overlay : s_base,
			      _("\"overlay\" and \"base\" name one disk; leave them out when "
				"\"disks\" lists several"));
		bad = true;
		overlay = base = NULL; /* not checked as images: one error is enough */
		s_overlay = s_base = NULL;
	}
	if (!name) {
		if (!bad || !config_setting_get_member(g, "name"))
			setting_error(l, g, _("VM entry without \"name\""));
		return;
	}
	if (!*name)
		return;
	struct vm_build *dup = cfg_loader_find_vm(l, name);
	if (dup) {
		setting_error(l, g, _("VM \"%s\" is already defined on line %d"), name,
			      dup->c.line);
		return;
	}
	/* An entry with errors is still recorded (the errors already make the
	 * load fail), so that a later entry with the same name is reported
	 * too: every error at once, not one per --check-config run. */
	struct vm_build *b = cfg_loader_add_vm(l, name);
	b->c.line = config_setting_source_line(g);
	b->c.policy = pol;
	b->c.disk = cfg_strdup(disk ? disk : n_disks == 1 ? disks[0] : NULL);
	b->c.commit_into = commit_into;
	if (disk) {
		n_disks = 1;
		disks[0] = disk;
	}
	if (n_disks) {
		b->c.disks = calloc(n_disks, sizeof *b->c.disks);
		if (!b->c.disks)
			abort();
		for (size_t i = 0; i < n_disks; i++)
			b->c.disks[i] = cfg_strdup(disks[i]);
		b->c.n_disks = n_disks;
	}
	b->c.overlay = cfg_strdup(overlay);
	b->c.base = cfg_strdup(base);
	b->at_entry = setting_where(l, g);
	b->at_policy = s_policy ? setting_where(l, s_policy) : NULL;
	b->at_overlay = s_overlay ? setting_where(l, s_overlay) : NULL;
	b->at_base = s_base ? setting_where(l, s_base) : NULL;
}

static void load_settings(struct loader *l, const config_setting_t *root)
{
	struct config *cfg = l->cfg;
	int n = config_setting_length(root);
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(root, i);
		const char *key = config_setting_name(s);
		int type = config_setting_type(s);
		if (strcmp(key, "connect") == 0) {
			const char *v = setting_string(l, s);
			if (v && !*v)
				setting_error(l, s, _("\"connect\" must not be empty"));
			else if (v)
				cfg_set_str(&cfg->connect, v);
		} else if (strcmp(key, "reconcile_interval") == 0) {
			if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
				/* TRANSLATORS: %s is a setting name. */
				setting_error(l, s, _("\"%s\" must be a whole number of seconds"),
					      key);
				continue;
			}
			long long v = config_setting_get_int64(s);
			if (v < 0)
				setting_error(l, s,
					      _("\"reconcile_interval\" must not be negative"));
			else if (v > INT_MAX)
				setting_error(l, s, _("\"reconcile_interval\" is too large"));
			else
				cfg->reconcile_interval = (int)v;
		} else if (strcmp(key, "qemu_img") == 0) {
			const char *v = setting_string(l, s);
			if (!v)
				continue;
			if (v[0] != '/') {
				setting_error(l, s, _("qemu_img \"%s\" is not an absolute path"),
					      v);
			} else if (access(v, X_OK) != 0) {
				setting_error(l, s, _("qemu_img \"%s\" cannot be run: %s"), v,
					      strerror(errno));
			} else {
				cfg_set_str(&cfg->qemu_img, v);
			}
		} else if (strcmp(key, "keep_discarded") == 0) {
			if (type != CONFIG_TYPE_BOOL) {
				/* TRANSLATORS: %s is a setting name; true and false stay English.
				 */
				setting_error(l, s, _("\"%s\" must be true or false"), key);
				continue;
			}
			cfg->keep_discarded = config_setting_get_bool(s);
		} else if (strcmp(key, "vms") == 0) {
			if (type != CONFIG_TYPE_LIST) {
				setting_error(l, s,
					      _("\"vms\" must be a list: vms = ( { name = \"...\"; "
						"}, ... );"));
				continue;
			}
			int m = config_setting_length(s);
			for (int j = 0; j < m; j++)
				load_vm_entry(l, config_setting_get_elem(s, j));
		} else {
			setting_warn_unknown(l, s);
		}
	}
}

/* libconfig's messages are fixed English; these are the ones it has. */
static const char *libconfig_error_text(const char *text)
{
	static const char *const known[] = {
	    N_("syntax error"),
	    N_("duplicate setting name"),
	    N_("file I/O error"),
	    N_("cannot open include file"),
	    N_("include file nesting too deep"),
	};
	if (!text)
		return _("syntax error");
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcmp(text, known[i]) == 0)
			return _(known[i]);
	return text;
}

/* Returns false when the file does not exist and that is fine. */
/* libconfig 1.5 opens an @include target with fopen() and, when reading it
 * fails (a directory, `@include ""`), its scanner calls exit(2): the applet
 * would die on SIGHUP. So every target is checked first, recursively (as
 * libconfig resolves them: relative to the top file's directory), and
 * anything that is not a regular file is an error at the @include line.
 * Missing files are left to libconfig ("cannot open include file"). */
struct include_seen {
	char **paths;
	size_t n;
};

static bool includes_ok(struct loader *l, const char *path, const char *dir, int depth,
			struct include_seen *seen)
{
	if (depth > 10)
		return true; /* libconfig reports the nesting itself */
	/* Each file once: a file including itself several times would
	 * otherwise cost (includes per file)^depth reads. */
	for (size_t i = 0; i < seen->n; i++)
		if (strcmp(seen->paths[i], path) == 0)
			return true;
	char **grown = realloc(seen->paths, (seen->n + 1) * sizeof *grown);
	if (!grown)
		abort();
	seen->paths = grown;
	seen->paths[seen->n++] = cfg_strdup(path);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	bool ok = true;
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0;
	ssize_t len;
	while (ok && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		const char *end = line + len;
		const char *p = line + strspn(line, " \t");
		if (strncmp(p, "@include", 8) != 0)
			continue;
		p += 8 + strspn(p + 8, " \t");
		if (p >= end || *p++ != '"')
			continue;
		/* Escapes, control bytes or NUL in the name: what libconfig would
		 * open cannot be known for sure, so it is refused. */
		const char *q = p;
		bool odd = false;
		for (; q < end && *q != '"'; q++)
			odd = odd || (unsigned char)*q < 0x20 || *q == '\\';
		if (odd || q >= end) {
			char *where = cfg_asprintf("%s:%d: @include", path, lineno);
			cfg_errlist_add(&l->errors, where,
					_("cannot read the configuration file: %s"),
					strerror(EINVAL));
			free(where);
			ok = false;
			break;
		}
		char *name = strndup(p, (size_t)(q - p));
		if (!name)
			abort();
		char *target =
		    name[0] == '/' || !dir ? cfg_strdup(name) : cfg_asprintf("%s/%s", dir, name);
		struct stat st;
		if (stat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
			char *where = cfg_asprintf("%s:%d: %s", path, lineno, target);
			cfg_errlist_add(&l->errors, where,
					_("cannot read the configuration file: %s"),
					strerror(S_ISDIR(st.st_mode) ? EISDIR : EINVAL));
			free(where);
			ok = false;
		} else if (stat(target, &st) == 0) {
			ok = includes_ok(l, target, dir, depth + 1, seen);
		}
		free(target);
		free(name);
	}
	free(line);
	fclose(f);
	return ok;
}

bool cfg_load_file(struct loader *l, const char *path, bool must_exist)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT && !must_exist)
			return false;
		cfg_errlist_add(&l->errors, path, _("cannot read the configuration file: %s"),
				strerror(errno));
		return true;
	}
	if (S_ISDIR(st.st_mode)) {
		cfg_errlist_add(&l->errors, path, _("cannot read the configuration file: %s"),
				strerror(EISDIR));
		return true;
	}
	l->cfg->path = cfg_strdup(path);
	l->file = path;

	config_t lc;
	config_init(&lc);
	/* @include "x.conf" is relative to the including file's directory. */
	char *dir = cfg_strdup(path);
	char *slash = strrchr(dir, '/');
	if (slash) {
		slash[slash == dir ? 1 : 0] = '\0';
		config_set_include_dir(&lc, dir);
	}
	struct include_seen seen = {0};
	bool includes_fine = includes_ok(l, path, slash ? dir : NULL, 0, &seen);
	for (size_t i = 0; i < seen.n; i++)
		free(seen.paths[i]);
	free(seen.paths);
	if (!includes_fine) {
		/* reported at the @include line */
	} else if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
			cfg_errlist_add(&l->errors, path,
					_("cannot read the configuration file: %s"),
					strerror(errno ? errno : EIO));
		} else {
			const char *file = config_error_file(&lc);
			char *where =
			    cfg_asprintf("%s:%d", file ? file : path, config_error_line(&lc));
			cfg_errlist_add(&l->errors, where, "%s",
					libconfig_error_text(config_error_text(&lc)));
			free(where);
		}
	} else {
		load_settings(l, config_root_setting(&lc));
	}
	config_destroy(&lc);
	free(dir);
	return true;
}

/* The environment's VM and the command line's VM are one VM described in
 * two layers (the seed took it from either): the command line wins field
 * by field. Env paths apply only when VM_NAME is unset or names that VM. */
