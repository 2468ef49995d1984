/* Configuration: the libconfig file, the seed's environment variables and
 * the command line merged into one immutable struct config. Every problem is
 * collected (not only the first) as one "WHERE: message" line, WHERE being
 * FILE:LINE for file values and the option or variable name otherwise. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
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

static char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		abort(); /* out of memory at start-up: nothing sensible to keep */
	return d;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
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

static void set_str(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

/* ---- error collection ---- */

struct errlist {
	char *buf;
	size_t len;
	size_t count;
};

static void errlist_vadd(struct errlist *e, const char *where, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void errlist_vadd(struct errlist *e, const char *where, const char *fmt, va_list ap)
{
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	char *line = where ? xasprintf("%s: %s\n", where, msg) : xasprintf("%s\n", msg);
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

static void errlist_add(struct errlist *e, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errlist_add(struct errlist *e, const char *where, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	errlist_vadd(e, where, fmt, ap);
	va_end(ap);
}

/* Hands the collected lines over without the final newline. */
static char *errlist_take(struct errlist *e)
{
	if (e->len && e->buf[e->len - 1] == '\n')
		e->buf[--e->len] = '\0';
	char *s = e->buf;
	e->buf = NULL;
	e->len = e->count = 0;
	return s;
}

/* ---- command line ---- */

enum {
	OPT_OVERLAY = 0x100,
	OPT_BASE,
	OPT_CONNECT,
	OPT_CONFIG,
	OPT_POLICY,
	OPT_DEMO,
	OPT_TERMINAL,
	OPT_CHECK_CONFIG,
};

static const struct option cli_options[] = {
    {"overlay", required_argument, NULL, OPT_OVERLAY},
    {"base", required_argument, NULL, OPT_BASE},
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"demo", no_argument, NULL, OPT_DEMO},
    {"terminal", no_argument, NULL, OPT_TERMINAL},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct {
	const char *name;
	enum cli_mode mode;
	bool needs_vm;
} cli_verbs[] = {
    {"status", CLI_STATUS, false}, {"commit", CLI_COMMIT, true}, {"discard", CLI_DISCARD, true},
    {"keep", CLI_KEEP, true},      {"quit", CLI_QUIT, false},
};

const char *cli_usage(void)
{
	/* TRANSLATORS: the --help text. Keep option names, verbs, policy
	 * names, variable names and paths untranslated; keep lines under 80
	 * columns. */
	return _("Usage: vmoverlay [VM] [OPTION...]\n"
		 "       vmoverlay status | quit\n"
		 "       vmoverlay commit|discard|keep VM\n"
		 "\n"
		 "Guards libvirt VMs that run on a disposable qcow2 overlay: when a\n"
		 "watched VM shuts down, asks whether to commit its changes into the\n"
		 "base image or to discard them, then prepares a fresh overlay.\n"
		 "\n"
		 "Options:\n"
		 "  VM                 watch this VM (besides those in the config file)\n"
		 "  --overlay PATH     the VM's overlay image (absolute path)\n"
		 "  --base PATH        the overlay's base image (absolute path)\n"
		 "  --policy POLICY    what to do when the VM shuts down: ask (default),\n"
		 "                     commit, discard or keep; without a VM: for all VMs\n"
		 "  --connect URI      libvirt connection (default: qemu:///system)\n"
		 "  --config FILE      configuration file (default:\n"
		 "                     $XDG_CONFIG_HOME/vmoverlay/vmoverlay.conf)\n"
		 "  --check-config     check the configuration, report and exit\n"
		 "  --demo             try it out on a simulated VM (no set-up needed)\n"
		 "  --terminal         ask on this terminal (the default in a terminal\n"
		 "                     when no tray and no notification server answer)\n"
		 "  -v, --verbose      log details to standard error\n"
		 "  -V, --version      print the version and exit\n"
		 "  -h, --help         print this help and exit\n"
		 "\n"
		 "Commands for the running instance:\n"
		 "  status             show the state of every watched VM\n"
		 "  commit VM          commit the VM's changes into its base image\n"
		 "  discard VM         discard the VM's changes, make a fresh overlay\n"
		 "  keep VM            keep the VM's changes for now\n"
		 "  quit               end the running instance\n"
		 "\n"
		 "Environment: VM_NAME, OVERLAY_PATH and BASE_PATH describe one VM like\n"
		 "the VM argument, --overlay and --base do; the command line wins.\n");
}

void cli_free(struct cli *cli)
{
	if (!cli)
		return;
	free(cli->vm);
	free(cli->overlay);
	free(cli->base);
	free(cli->connect);
	free(cli->config_path);
	memset(cli, 0, sizeof *cli);
}

/* getopt reports an unknown "--demo=x" like an unknown option; say what
 * is really wrong when the name before '=' is one of ours. */
static char *cli_unknown_option_error(const char *arg)
{
	if (strncmp(arg, "--", 2) == 0) {
		const char *eq = strchr(arg, '=');
		size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		for (const struct option *o = cli_options; o->name; o++) {
			if (eq && o->has_arg == no_argument && strlen(o->name) == n &&
			    strncmp(o->name, arg + 2, n) == 0)
				return xasprintf(_("option \"--%s\" does not take a value"),
						 o->name);
		}
		/* An ambiguous abbreviation is also reported as '?'. */
		int matches = 0;
		for (const struct option *o = cli_options; o->name; o++)
			matches += strncmp(o->name, arg + 2, n) == 0;
		if (matches > 1) {
			char *name = xasprintf("%.*s", (int)(n + 2), arg);
			char *e = xasprintf(_("option \"%s\" is ambiguous"), name);
			free(name);
			return e;
		}
		char *name = xasprintf("%.*s", (int)(n + 2), arg);
		char *e = xasprintf(_("unknown option \"%s\""), name);
		free(name);
		return e;
	}
	return xasprintf(_("unknown option \"%s\""), arg);
}

static const char *cli_run_only_option(const struct cli *cli)
{
	if (cli->overlay)
		return "--overlay";
	if (cli->base)
		return "--base";
	if (cli->policy_set)
		return "--policy";
	if (cli->demo)
		return "--demo";
	if (cli->terminal)
		return "--terminal";
	if (cli->connect)
		return "--connect";
	return NULL;
}

bool cli_parse(int argc, char **argv, struct cli *cli, char **err)
{
	memset(cli, 0, sizeof *cli);
	*err = NULL;
	bool help = false, version = false, check = false;
	char *error = NULL;

	/* optind = 0 makes GNU getopt start over, so parsing twice in one
	 * process (tests, re-exec) works. Leading ':' reports a missing value
	 * as ':' instead of '?'; opterr = 0 leaves the wording to us. */
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":hVv", cli_options, NULL)) != -1) {
		switch (c) {
		case OPT_OVERLAY:
			set_str(&cli->overlay, optarg);
			break;
		case OPT_BASE:
			set_str(&cli->base, optarg);
			break;
		case OPT_CONNECT:
			set_str(&cli->connect, optarg);
			break;
		case OPT_CONFIG:
			set_str(&cli->config_path, optarg);
			break;
		case OPT_POLICY:
			if (!policy_from_name(optarg, &cli->policy)) {
				/* TRANSLATORS: keep the policy names untranslated. */
				char *m =
				    xasprintf(_("unknown policy \"%s\" (expected ask, commit, "
						"discard or keep)"),
					      optarg);
				error = xasprintf("--policy: %s", m);
				free(m);
				goto error;
			}
			cli->policy_set = true;
			break;
		case OPT_DEMO:
			cli->demo = true;
			break;
		case OPT_TERMINAL:
			cli->terminal = true;
			break;
		case OPT_CHECK_CONFIG:
			check = true;
			break;
		case 'v':
			cli->verbose = true;
			break;
		case 'V':
			version = true;
			break;
		case 'h':
			help = true;
			break;
		case ':': {
			const char *arg = argv[optind - 1];
			if (optopt && optopt < 0x100 && strncmp(arg, "--", 2) != 0)
				error = xasprintf(_("option \"-%c\" needs a value"), optopt);
			else
				error = xasprintf(_("option \"%s\" needs a value"), arg);
			goto error;
		}
		default: /* '?' */
			if (optopt && optopt < 0x100 && strncmp(argv[optind - 1], "--", 2) != 0) {
				char opt[3] = {'-', (char)optopt, '\0'};
				error = xasprintf(_("unknown option \"%s\""), opt);
			} else {
				error = cli_unknown_option_error(argv[optind - 1]);
			}
			goto error;
		}
	}

	/* Operands: an optional verb first, then at most one VM. */
	int i = optind;
	cli->mode = CLI_RUN;
	const char *verb = NULL;
	bool verb_needs_vm = false;
	if (i < argc) {
		for (size_t v = 0; v < sizeof cli_verbs / sizeof cli_verbs[0]; v++) {
			if (strcmp(argv[i], cli_verbs[v].name) == 0) {
				verb = cli_verbs[v].name;
				cli->mode = cli_verbs[v].mode;
				verb_needs_vm = cli_verbs[v].needs_vm;
				i++;
				break;
			}
		}
	}
	if (!verb || verb_needs_vm) {
		if (i < argc)
			set_str(&cli->vm, argv[i++]);
	}
	if (i < argc) {
		error = xasprintf(_("unexpected argument \"%s\""), argv[i]);
		goto error;
	}

	/* --help and --version answer whatever else was given. */
	if (help) {
		cli->mode = CLI_HELP;
		return true;
	}
	if (version) {
		cli->mode = CLI_VERSION;
		return true;
	}
	if (verb) {
		if (verb_needs_vm && !cli->vm) {
			/* TRANSLATORS: %1$s and %2$s are both the command, e.g. "commit". */
			error =
			    xasprintf(_("\"%1$s\" needs a VM name, e.g. \"vmoverlay %2$s win10\""),
				      verb, verb);
			goto error;
		}
		if (verb_needs_vm && !cli->vm[0]) {
			error = xstrdup(_("the VM name must not be empty"));
			goto error;
		}
		const char *opt = cli_run_only_option(cli);
		if (!opt && check)
			opt = "--check-config";
		if (opt) {
			/* TRANSLATORS: %1$s is an option, %2$s a command ("commit"). */
			error =
			    xasprintf(_("option \"%1$s\" cannot be used with \"%2$s\""), opt, verb);
			goto error;
		}
		return true;
	}
	if (check)
		cli->mode = CLI_CHECK_CONFIG;
	return true;

error:
	cli_free(cli);
	*err = error;
	return false;
}

/* ---- configuration ---- */

/* A VM while it is being assembled: where each value came from, so that a
 * problem found after merging names the place the winning value was set. */
struct vm_build {
	struct vm_config c;
	char *at_entry; /* FILE:LINE of the group, or the source of the name */
	char *at_policy;
	char *at_overlay;
	char *at_base;
};

struct loader {
	struct config *cfg;
	struct vm_build *vms;
	size_t n_vms;
	struct errlist errors;
	const char *(*env)(const char *name);
	const char *file; /* the file being read, for settings libconfig did not name */
};

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
		return xasprintf("%s/vmoverlay/vmoverlay.conf", xdg);
	const char *home = env("HOME");
	if (home && *home)
		return xasprintf("%s/.config/vmoverlay/vmoverlay.conf", home);
	return NULL;
}

char *config_default_path(void)
{
	return default_path_env(getenv_const);
}

static char *setting_where(const struct loader *l, const config_setting_t *s)
{
	const char *file = config_setting_source_file(s);
	return xasprintf("%s:%d", file ? file : l->file, (int)config_setting_source_line(s));
}

static void setting_error(struct loader *l, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void setting_error(struct loader *l, const config_setting_t *s, const char *fmt, ...)
{
	char *where = setting_where(l, s);
	va_list ap;
	va_start(ap, fmt);
	errlist_vadd(&l->errors, where, fmt, ap);
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

static struct vm_build *loader_add_vm(struct loader *l, const char *name)
{
	struct vm_build *nv = realloc(l->vms, (l->n_vms + 1) * sizeof *nv);
	if (!nv)
		abort();
	l->vms = nv;
	struct vm_build *b = &l->vms[l->n_vms++];
	memset(b, 0, sizeof *b);
	b->c.name = xstrdup(name);
	b->c.policy = POLICY_ASK;
	return b;
}

static struct vm_build *loader_find_vm(struct loader *l, const char *name)
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

static void load_vm_entry(struct loader *l, const config_setting_t *g)
{
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		setting_error(l, g,
			      _("each entry of \"vms\" must be a group: { name = \"...\"; }"));
		return;
	}
	const char *name = NULL, *policy = NULL, *disk = NULL, *overlay = NULL, *base = NULL;
	const config_setting_t *s_policy = NULL, *s_overlay = NULL, *s_base = NULL;
	bool bad = false;
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		const char *key = config_setting_name(s);
		const char **dst = NULL;
		if (strcmp(key, "name") == 0) {
			dst = &name;
		} else if (strcmp(key, "policy") == 0) {
			dst = &policy;
			s_policy = s;
		} else if (strcmp(key, "disk") == 0) {
			dst = &disk;
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
	if (!name) {
		if (!bad || !config_setting_get_member(g, "name"))
			setting_error(l, g, _("VM entry without \"name\""));
		return;
	}
	if (!*name)
		return;
	struct vm_build *dup = loader_find_vm(l, name);
	if (dup) {
		setting_error(l, g, _("VM \"%s\" is already defined on line %d"), name,
			      dup->c.line);
		return;
	}
	/* An entry with errors is still recorded (the errors already make the
	 * load fail), so that a later entry with the same name is reported
	 * too: every error at once, not one per --check-config run. */
	struct vm_build *b = loader_add_vm(l, name);
	b->c.line = config_setting_source_line(g);
	b->c.policy = pol;
	b->c.disk = xstrdup(disk);
	b->c.overlay = xstrdup(overlay);
	b->c.base = xstrdup(base);
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
				set_str(&cfg->connect, v);
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
				set_str(&cfg->qemu_img, v);
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
	seen->paths[seen->n++] = xstrdup(path);
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
			char *where = xasprintf("%s:%d: @include", path, lineno);
			errlist_add(&l->errors, where, _("cannot read the configuration file: %s"),
				    strerror(EINVAL));
			free(where);
			ok = false;
			break;
		}
		char *name = strndup(p, (size_t)(q - p));
		if (!name)
			abort();
		char *target =
		    name[0] == '/' || !dir ? xstrdup(name) : xasprintf("%s/%s", dir, name);
		struct stat st;
		if (stat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
			char *where = xasprintf("%s:%d: %s", path, lineno, target);
			errlist_add(&l->errors, where, _("cannot read the configuration file: %s"),
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

static bool load_file(struct loader *l, const char *path, bool must_exist)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT && !must_exist)
			return false;
		errlist_add(&l->errors, path, _("cannot read the configuration file: %s"),
			    strerror(errno));
		return true;
	}
	if (S_ISDIR(st.st_mode)) {
		errlist_add(&l->errors, path, _("cannot read the configuration file: %s"),
			    strerror(EISDIR));
		return true;
	}
	l->cfg->path = xstrdup(path);
	l->file = path;

	config_t lc;
	config_init(&lc);
	/* @include "x.conf" is relative to the including file's directory. */
	char *dir = xstrdup(path);
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
			errlist_add(&l->errors, path, _("cannot read the configuration file: %s"),
				    strerror(errno ? errno : EIO));
		} else {
			const char *file = config_error_file(&lc);
			char *where =
			    xasprintf("%s:%d", file ? file : path, config_error_line(&lc));
			errlist_add(&l->errors, where, "%s",
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
			errlist_add(&l->errors, cli->overlay ? "--overlay" : "--base",
				    _("no VM named; use: vmoverlay VM --overlay PATH --base PATH"));
		} else if (env_overlay || env_base) {
			errlist_add(&l->errors, env_overlay ? "OVERLAY_PATH" : "BASE_PATH",
				    _("no VM named; set VM_NAME as well"));
		}
		/* --policy without a VM: for every configured VM. */
		if (cli && cli->policy_set) {
			for (size_t i = 0; i < l->n_vms; i++) {
				l->vms[i].c.policy = cli->policy;
				set_str(&l->vms[i].at_policy, "--policy");
			}
		}
		return;
	}
	if (!*name) {
		errlist_add(&l->errors, name_from, _("the VM name must not be empty"));
		return;
	}

	struct vm_build *b = loader_find_vm(l, name);
	if (!b) {
		b = loader_add_vm(l, name);
		b->at_entry = xstrdup(name_from);
	}
	if (overlay) {
		set_str(&b->c.overlay, overlay);
		set_str(&b->at_overlay, overlay_from);
	}
	if (base) {
		set_str(&b->c.base, base);
		set_str(&b->at_base, base_from);
	}
	if (cli && cli->policy_set) {
		b->c.policy = cli->policy;
		set_str(&b->at_policy, "--policy");
	}
}

enum image_role { IMAGE_OVERLAY, IMAGE_BASE };

static bool check_image(struct loader *l, const char *where, const char *path, enum image_role role,
			struct stat *st)
{
	if (path[0] != '/') {
		if (role == IMAGE_OVERLAY)
			errlist_add(&l->errors, where, _("overlay \"%s\" is not an absolute path"),
				    path);
		else
			errlist_add(&l->errors, where, _("base \"%s\" is not an absolute path"),
				    path);
		return false;
	}
	if (stat(path, st) != 0) {
		int e = errno;
		if (e == ENOENT && role == IMAGE_OVERLAY)
			errlist_add(&l->errors, where, _("overlay image \"%s\" does not exist"),
				    path);
		else if (e == ENOENT)
			errlist_add(&l->errors, where, _("base image \"%s\" does not exist"), path);
		else if (role == IMAGE_OVERLAY)
			errlist_add(&l->errors, where, _("overlay image \"%s\": %s"), path,
				    strerror(e));
		else
			errlist_add(&l->errors, where, _("base image \"%s\": %s"), path,
				    strerror(e));
		return false;
	}
	if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		if (role == IMAGE_OVERLAY)
			errlist_add(&l->errors, where, _("overlay image \"%s\" is not a file"),
				    path);
		else
			errlist_add(&l->errors, where, _("base image \"%s\" is not a file"), path);
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
			errlist_add(&l->errors, b->at_base,
				    _("overlay and base are the same file \"%s\""), b->c.base);
		}
		for (size_t j = 0; j < i && ov_ok[i]; j++) {
			if (ov_ok[j] && ov[i].st_dev == ov[j].st_dev &&
			    ov[i].st_ino == ov[j].st_ino) {
				errlist_add(&l->errors, b->at_overlay,
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
		free(b->c.name);
		free(b->c.disk);
		free(b->c.overlay);
		free(b->c.base);
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
	cfg->connect = xstrdup("qemu:///system");
	cfg->reconcile_interval = 300;
	cfg->keep_discarded = true;

	if (cli && cli->config_path) {
		load_file(&l, cli->config_path, true);
	} else {
		char *path = default_path_env(l.env);
		if (path)
			load_file(&l, path, false);
		free(path);
	}

	apply_single_vm(&l, cli);
	if (cli && cli->connect) {
		if (!*cli->connect)
			errlist_add(&l.errors, "--connect", _("\"connect\" must not be empty"));
		else
			set_str(&cfg->connect, cli->connect);
	}
	validate_vms(&l);
	if (cli) {
		cfg->demo = cli->demo;
		cfg->verbose = cli->verbose;
	}

	if (l.errors.count) {
		*err = errlist_take(&l.errors);
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

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_vms; i++) {
		free(cfg->vms[i].name);
		free(cfg->vms[i].disk);
		free(cfg->vms[i].overlay);
		free(cfg->vms[i].base);
	}
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
