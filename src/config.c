/* Configuration: the libconfig file, the seed's environment variables and
 * the command line merged into one immutable struct config. Every problem is
 * collected (not only the first) as one "WHERE: message" line, WHERE being
 * FILE:LINE for file values and the option or variable name otherwise.
 * Reading the file is config-file.c's, parsing the command line cli.c's;
 * this file holds the defaults, the environment, the merge and the
 * validation. */
#include "config-private.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "i18n.h"
#include "log.h"

static const char *const policy_names[POLICY_COUNT] = {
    [POLICY_ASK] = "ask",
    [POLICY_COMMIT] = "commit",
    [POLICY_DISCARD] = "discard",
    [POLICY_KEEP] = "keep",
};

const char *policy_name(enum vmo_policy p)
{
	if ((unsigned)p >= POLICY_COUNT)
		return "ask";
	return policy_names[p];
}

bool policy_from_name(const char *s, enum vmo_policy *out)
{
	if (!s)
		return false;
	for (int i = 0; i < POLICY_COUNT; i++) {
		if (strcmp(s, policy_names[i]) == 0) {
			*out = (enum vmo_policy)i;
			return true;
		}
	}
	return false;
}

/* ---- helpers shared with config-file.c and cli.c ---- */
char *cfg_strdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		abort(); /* out of memory at start-up: nothing sensible to keep */
	return d;
}

char *cfg_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		abort();
	return s;
}

void cfg_set_str(char **field, const char *value)
{
	free(*field);
	*field = cfg_strdup(value);
}

/* ---- error collection ---- */


void cfg_errlist_vadd(struct errlist *e, const char *where, const char *fmt, va_list ap)
{
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	char *line = where ? cfg_asprintf("%s: %s\n", where, msg) : cfg_asprintf("%s\n", msg);
	free(msg);
	size_t n = strlen(line);
	char *nb = realloc(e->buf, e->len + n + 1);
	if (!nb)
		abort();
	memcpy(nb + e->len, line, n + 1);
	e->buf = nb;
	e->len += n;
	e->count++;
	free(line);
}

void cfg_errlist_add(struct errlist *e, const char *where, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_errlist_vadd(e, where, fmt, ap);
	va_end(ap);
}

/* Hands the collected lines over without the final newline. */
char *cfg_errlist_take(struct errlist *e)
{
	if (e->len && e->buf[e->len - 1] == '\n')
		e->buf[--e->len] = '\0';
	char *s = e->buf;
	e->buf = NULL;
	e->len = e->count = 0;
	return s;
}

/* ---- configuration ---- */


static const char *getenv_const(const char *name)
{
	return getenv(name);
}

/* Unset and empty are the same: systemd units often say VM_NAME= */
static const char *env_value(const struct loader *l, const char *name)
{
	const char *v = l->env(name);
	return v && *v ? v : NULL;
}

static char *default_path_env(const char *(*env)(const char *name))
{
	const char *xdg = env("XDG_CONFIG_HOME");
	/* The XDG spec says relative values are to be ignored. */
	if (xdg && xdg[0] == '/')
		return cfg_asprintf("%s/vmoverlay/vmoverlay.conf", xdg);
	const char *home = env("HOME");
	if (home && *home)
		return cfg_asprintf("%s/.config/vmoverlay/vmoverlay.conf", home);
	return NULL;
}

char *config_default_path(void)
{
	return default_path_env(getenv_const);
}

static void apply_single_vm(struct loader *l, const struct cli *cli)
{
	const char *env_name = env_value(l, "VM_NAME");
	const char *env_overlay = env_value(l, "OVERLAY_PATH");
	const char *env_base = env_value(l, "BASE_PATH");
	const char *name = NULL, *name_from = NULL;
	if (cli && cli->vm) {
		name = cli->vm;
		name_from = "VM";
	} else if (env_name) {
		name = env_name;
		name_from = "VM_NAME";
	}
	bool env_applies = !env_name || (name && strcmp(env_name, name) == 0);

	const char *overlay = NULL, *overlay_from = NULL, *base = NULL, *base_from = NULL;
	if (cli && cli->overlay) {
		overlay = cli->overlay;
		overlay_from = "--overlay";
	} else if (env_overlay && env_applies) {
		overlay = env_overlay;
		overlay_from = "OVERLAY_PATH";
	}
	if (cli && cli->base) {
		base = cli->base;
		base_from = "--base";
	} else if (env_base && env_applies) {
		base = env_base;
		base_from = "BASE_PATH";
	}

	if (!name) {
		if (cli && (cli->overlay || cli->base)) {
			cfg_errlist_add(&l->errors, cli->overlay ? "--overlay" : "--base",
				    _("no VM named; use: vmoverlay VM --overlay PATH --base PATH"));
		} else if (env_overlay || env_base) {
			cfg_errlist_add(&l->errors, env_overlay ? "OVERLAY_PATH" : "BASE_PATH",
				    _("no VM named; set VM_NAME as well"));
		}
		/* --policy without a VM: for every configured VM. */
		if (cli && cli->policy_set) {
			for (size_t i = 0; i < l->n_vms; i++) {
				l->vms[i].c.policy = cli->policy;
				cfg_set_str(&l->vms[i].at_policy, "--policy");
			}
		}
		return;
	}
	if (!*name) {
		cfg_errlist_add(&l->errors, name_from, _("the VM name must not be empty"));
		return;
	}

	struct vm_build *b = cfg_loader_find_vm(l, name);
	if (!b) {
		b = cfg_loader_add_vm(l, name);
		b->at_entry = cfg_strdup(name_from);
	}
	if (overlay) {
		cfg_set_str(&b->c.overlay, overlay);
		cfg_set_str(&b->at_overlay, overlay_from);
	}
	if (base) {
		cfg_set_str(&b->c.base, base);
		cfg_set_str(&b->at_base, base_from);
	}
	if (cli && cli->policy_set) {
		b->c.policy = cli->policy;
		cfg_set_str(&b->at_policy, "--policy");
	}
}

enum image_role { IMAGE_OVERLAY, IMAGE_BASE };

static bool check_image(struct loader *l, const char *where, const char *path, enum image_role role,
			struct stat *st)
{
	if (path[0] != '/') {
		if (role == IMAGE_OVERLAY)
			cfg_errlist_add(&l->errors, where, _("overlay \"%s\" is not an absolute path"),
				    path);
		else
			cfg_errlist_add(&l->errors, where, _("base \"%s\" is not an absolute path"),
				    path);
		return false;
	}
	if (stat(path, st) != 0) {
		int e = errno;
		if (e == ENOENT && role == IMAGE_OVERLAY)
			cfg_errlist_add(&l->errors, where, _("overlay image \"%s\" does not exist"),
				    path);
		else if (e == ENOENT)
			cfg_errlist_add(&l->errors, where, _("base image \"%s\" does not exist"), path);
		else if (role == IMAGE_OVERLAY)
			cfg_errlist_add(&l->errors, where, _("overlay image \"%s\": %s"), path,
				    strerror(e));
		else
			cfg_errlist_add(&l->errors, where, _("base image \"%s\": %s"), path,
				    strerror(e));
		return false;
	}
	if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		if (role == IMAGE_OVERLAY)
			cfg_errlist_add(&l->errors, where, _("overlay image \"%s\" is not a file"),
				    path);
		else
			cfg_errlist_add(&l->errors, where, _("base image \"%s\" is not a file"), path);
		return false;
	}
	return true;
}

static void validate_vms(struct loader *l)
{
	struct stat *ov = calloc(l->n_vms ? l->n_vms : 1, sizeof *ov);
	bool *ov_ok = calloc(l->n_vms ? l->n_vms : 1, sizeof *ov_ok);
	if (!ov || !ov_ok)
		abort();
	for (size_t i = 0; i < l->n_vms; i++) {
		struct vm_build *b = &l->vms[i];
		struct stat bst;
		bool base_ok = false;
		if (b->c.overlay)
			ov_ok[i] =
			    check_image(l, b->at_overlay, b->c.overlay, IMAGE_OVERLAY, &ov[i]);
		if (b->c.base)
			base_ok = check_image(l, b->at_base, b->c.base, IMAGE_BASE, &bst);
		if (b->c.overlay && b->c.base &&
		    (strcmp(b->c.overlay, b->c.base) == 0 ||
		     (ov_ok[i] && base_ok && ov[i].st_dev == bst.st_dev &&
		      ov[i].st_ino == bst.st_ino))) {
			/* Committing an image into itself would destroy it. */
			cfg_errlist_add(&l->errors, b->at_base,
				    _("overlay and base are the same file \"%s\""), b->c.base);
		}
		for (size_t j = 0; j < i && ov_ok[i]; j++) {
			if (ov_ok[j] && ov[i].st_dev == ov[j].st_dev &&
			    ov[i].st_ino == ov[j].st_ino) {
				cfg_errlist_add(&l->errors, b->at_overlay,
					    _("overlay \"%s\" is already used by VM \"%s\""),
					    b->c.overlay, l->vms[j].c.name);
				break;
			}
		}
	}
	free(ov);
	free(ov_ok);
}

static void loader_free_vms(struct loader *l)
{
	for (size_t i = 0; i < l->n_vms; i++) {
		struct vm_build *b = &l->vms[i];
		vm_config_clear(&b->c);
		free(b->at_entry);
		free(b->at_policy);
		free(b->at_overlay);
		free(b->at_base);
	}
	free(l->vms);
	l->vms = NULL;
	l->n_vms = 0;
}

struct config *config_load(const struct cli *cli, const char *(*env)(const char *name), char **err)
{
	*err = NULL;
	struct loader l = {.env = env ? env : getenv_const};
	struct config *cfg = calloc(1, sizeof *cfg);
	if (!cfg)
		abort();
	l.cfg = cfg;
	cfg->connect = cfg_strdup("qemu:///system");
	cfg->reconcile_interval = 300;
	cfg->keep_discarded = true;

	if (cli && cli->config_path) {
		cfg_load_file(&l, cli->config_path, true);
	} else {
		char *path = default_path_env(l.env);
		if (path)
			cfg_load_file(&l, path, false);
		free(path);
	}

	apply_single_vm(&l, cli);
	if (cli && cli->connect) {
		if (!*cli->connect)
			cfg_errlist_add(&l.errors, "--connect", _("\"connect\" must not be empty"));
		else
			cfg_set_str(&cfg->connect, cli->connect);
	}
	validate_vms(&l);
	if (cli) {
		cfg->demo = cli->demo;
		cfg->verbose = cli->verbose;
	}

	if (l.errors.count) {
		*err = cfg_errlist_take(&l.errors);
		loader_free_vms(&l);
		config_free(cfg);
		return NULL;
	}

	cfg->vms = calloc(l.n_vms ? l.n_vms : 1, sizeof *cfg->vms);
	if (!cfg->vms)
		abort();
	for (size_t i = 0; i < l.n_vms; i++) {
		/* Ownership of the strings moves to cfg. */
		cfg->vms[i] = l.vms[i].c;
		memset(&l.vms[i].c, 0, sizeof l.vms[i].c);
	}
	cfg->n_vms = l.n_vms;
	loader_free_vms(&l);
	return cfg;
}

void vm_config_clear(struct vm_config *vc)
{
	free(vc->name);
	free(vc->disk);
	for (size_t i = 0; i < vc->n_disks; i++)
		free(vc->disks[i]);
	free(vc->disks);
	free(vc->overlay);
	free(vc->base);
	memset(vc, 0, sizeof *vc);
}

const char *commit_into_name(enum vmo_commit_into c)
{
	return c == COMMIT_INTO_DEEPEST ? "deepest" : "backing";
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_vms; i++)
		vm_config_clear(&cfg->vms[i]);
	free(cfg->vms);
	free(cfg->path);
	free(cfg->connect);
	free(cfg->qemu_img);
	free(cfg);
}

const struct vm_config *config_find_vm(const struct config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_vms; i++)
		if (strcmp(cfg->vms[i].name, name) == 0)
			return &cfg->vms[i];
	return NULL;
}
