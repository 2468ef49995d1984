/* cli.c: the command line (getopt_long) into struct cli, the verbs that
 * talk to the running instance, and the --help text. */
#include <getopt.h>
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
				return cfg_asprintf(_("option \"--%s\" does not take a value"),
						    o->name);
		}
		/* An ambiguous abbreviation is also reported as '?'. */
		int matches = 0;
		for (const struct option *o = cli_options; o->name; o++)
			matches += strncmp(o->name, arg + 2, n) == 0;
		if (matches > 1) {
			char *name = cfg_asprintf("%.*s", (int)(n + 2), arg);
			char *e = cfg_asprintf(_("option \"%s\" is ambiguous"), name);
			free(name);
			return e;
		}
		char *name = cfg_asprintf("%.*s", (int)(n + 2), arg);
		char *e = cfg_asprintf(_("unknown option \"%s\""), name);
		free(name);
		return e;
	}
	return cfg_asprintf(_("unknown option \"%s\""), arg);
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
			cfg_set_str(&cli->overlay, optarg);
			break;
		case OPT_BASE:
			cfg_set_str(&cli->base, optarg);
			break;
		case OPT_CONNECT:
			cfg_set_str(&cli->connect, optarg);
			break;
		case OPT_CONFIG:
			cfg_set_str(&cli->config_path, optarg);
			break;
		case OPT_POLICY:
			if (!policy_from_name(optarg, &cli->policy)) {
				/* TRANSLATORS: keep the policy names untranslated. */
				char *m =
				    cfg_asprintf(_("unknown policy \"%s\" (expected ask, commit, "
						   "discard or keep)"),
						 optarg);
				error = cfg_asprintf("--policy: %s", m);
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
				error = cfg_asprintf(_("option \"-%c\" needs a value"), optopt);
			else
				error = cfg_asprintf(_("option \"%s\" needs a value"), arg);
			goto error;
		}
		default: /* '?' */
			if (optopt && optopt < 0x100 && strncmp(argv[optind - 1], "--", 2) != 0) {
				char opt[3] = {'-', (char)optopt, '\0'};
				error = cfg_asprintf(_("unknown option \"%s\""), opt);
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
			cfg_set_str(&cli->vm, argv[i++]);
	}
	if (i < argc) {
		error = cfg_asprintf(_("unexpected argument \"%s\""), argv[i]);
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
			error = cfg_asprintf(
			    _("\"%1$s\" needs a VM name, e.g. \"vmoverlay %2$s win10\""), verb,
			    verb);
			goto error;
		}
		if (verb_needs_vm && !cli->vm[0]) {
			error = cfg_strdup(_("the VM name must not be empty"));
			goto error;
		}
		const char *opt = cli_run_only_option(cli);
		if (!opt && check)
			opt = "--check-config";
		if (opt) {
			/* TRANSLATORS: %1$s is an option, %2$s a command ("commit"). */
			error = cfg_asprintf(_("option \"%1$s\" cannot be used with \"%2$s\""), opt,
					     verb);
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
