/* Configuration: libconfig file + environment + command line merged into one
 * immutable struct config (precedence: command line > environment > file >
 * defaults). Errors carry FILE:LINE and are already translated. */
#ifndef VMO_CONFIG_H
#define VMO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum vmo_policy { POLICY_ASK = 0, POLICY_COMMIT, POLICY_DISCARD, POLICY_KEEP };
#define POLICY_COUNT 4

const char *policy_name(enum vmo_policy p); /* "ask", "commit", ... (not translated) */
bool policy_from_name(const char *s, enum vmo_policy *out);

/* Where a commit goes when the overlay's backing file is itself an
 * overlay (base <- template <- session). */
enum vmo_commit_into {
	COMMIT_INTO_BACKING = 0, /* the immediate backing file (qemu-img's default) */
	COMMIT_INTO_DEEPEST,     /* the chain's last file (qemu-img commit -b) */
};
const char *commit_into_name(enum vmo_commit_into c); /* "backing", "deepest" */

/* More watched disks than this per VM is a configuration error. */
#define VMO_MAX_DISKS 16

struct vm_config {
	char *name;
	enum vmo_policy policy;
	char *disk;    /* target dev ("vda") or NULL: discover */
	/* disks = ["vda", "vdb"]: the watched disks; a `disk` key is a list
	 * of one. NULL/0: discover (every qcow2 overlay of the domain). */
	char **disks;
	size_t n_disks;
	enum vmo_commit_into commit_into;
	char *overlay; /* absolute path or NULL: discover */
	char *base;    /* absolute path or NULL: from the overlay's header */
	int line;      /* line in the config file, 0 if from CLI/env */
};

/* Frees the strings of one VM entry and zeroes it. */
void vm_config_clear(struct vm_config *vc);

struct config {
	char *path;   /* file used, NULL if none existed */
	char *connect;        /* libvirt URI; default "qemu:///system" */
	int reconcile_interval; /* seconds, 0 = off; default 300 */
	char *qemu_img;       /* path or NULL: search PATH for "qemu-img" */
	bool keep_discarded;  /* default true */
	struct vm_config *vms;
	size_t n_vms;
	bool demo;
	bool verbose;
};

enum cli_mode {
	CLI_RUN = 0,
	CLI_CHECK_CONFIG,
	CLI_VERSION,
	CLI_HELP,
	/* verbs talking to the running instance over D-Bus */
	CLI_STATUS,
	CLI_COMMIT,
	CLI_DISCARD,
	CLI_KEEP,
	CLI_QUIT,
};

struct cli {
	enum cli_mode mode;
	char *vm;          /* positional VM (run) or the verb's VM */
	char *overlay;
	char *base;
	char *connect;
	char *config_path; /* --config */
	bool policy_set;
	enum vmo_policy policy;
	bool demo;
	bool terminal;     /* --terminal: ask on the terminal */
	bool verbose;
};

/* Parses argv into cli. On error returns false and sets *err (malloc'd,
 * translated, without trailing newline). */
bool cli_parse(int argc, char **argv, struct cli *cli, char **err);
void cli_free(struct cli *cli);
/* The --help text (translated); matches the man page. */
const char *cli_usage(void);

/* The file that would be used: cli->config_path, else
 * $XDG_CONFIG_HOME/vmoverlay/vmoverlay.conf, else ~/.config/vmoverlay/... */
char *config_default_path(void);

/* Loads and validates. A missing default file is not an error (defaults);
 * a missing --config file is. On error returns NULL and sets *err to
 * "FILE:LINE: message" lines (malloc'd, translated). Warnings (unknown keys,
 * with their line) are logged. env is usually environ-backed getenv; pass
 * NULL to use getenv(). */
struct config *config_load(const struct cli *cli, const char *(*env)(const char *name), char **err);
void config_free(struct config *cfg);

const struct vm_config *config_find_vm(const struct config *cfg, const char *name);

#endif
