/* The applet's side of the privileged helper: runs
 *   pkexec vmoverlay-helper OP VM-NAME DOMAIN-UUID DISK-TARGET [options]
 * in the loop (never blocking it: the polkit dialog may stay open for
 * minutes) and maps the exit status, pkexec's 126 (dialog dismissed) and
 * 127 (not authorised) included, to a result and a translated message.
 * The flow calls it only after a plain attempt failed with EACCES/EPERM. */
#ifndef VMO_PRIVHELPER_H
#define VMO_PRIVHELPER_H

#include <stdbool.h>

#include "imageops.h"
#include "runner.h"

struct loop;
struct privhelper;

/* vmoverlay-helper's exit statuses (doc/vmoverlay-helper.8). 126 and 127
 * are never used by the helper: pkexec reserves them. */
enum {
	PRIVHELPER_EXIT_OK = 0,
	PRIVHELPER_EXIT_FAILED = 1,     /* the operation failed; nothing was lost */
	PRIVHELPER_EXIT_USAGE = 2,      /* bad arguments */
	PRIVHELPER_EXIT_REFUSED = 3,    /* a precondition does not hold; nothing touched */
	PRIVHELPER_EXIT_IN_USE = 4,     /* qemu's image lock is held; nothing touched */
	PRIVHELPER_EXIT_PARTIAL = 5,    /* commit failed after writing part of the base */
	PRIVHELPER_EXIT_LIBVIRT = 6,    /* cannot connect to libvirt */
	PRIVHELPER_EXIT_NOT_ROOT = 7,   /* not run as root / option not allowed */
	PRIVHELPER_EXIT_DISMISSED = 126, /* pkexec: the user dismissed the dialog */
	PRIVHELPER_EXIT_NOT_AUTHORIZED = 127, /* pkexec: not authorised, or no agent */
};

enum privhelper_result {
	PRIVHELPER_OK = 0,
	PRIVHELPER_FAILED,         /* operation failed, data kept (msg) */
	PRIVHELPER_REFUSED,        /* precondition failed, nothing touched (msg) */
	PRIVHELPER_IN_USE,         /* image locked by a running qemu */
	PRIVHELPER_PARTIAL,        /* commit interrupted: base half-merged, keep the journal */
	PRIVHELPER_DISMISSED,      /* pkexec 126 */
	PRIVHELPER_NOT_AUTHORIZED, /* pkexec 127 */
	PRIVHELPER_ERROR,          /* helper missing, usage, libvirt, killed... (msg) */
};

struct privhelper_request {
	enum imageops_op op; /* commit (= commit + rebuild), rebuild, discard, undo-discard */
	const char *vm_name; /* the libvirt domain name: shown in the polkit dialog */
	const char *uuid;    /* the domain's UUID (what the helper trusts) */
	const char *target;  /* disk target, "vda" */
	const char *base;    /* optional: the configured base, checked against the header */
	bool keep_discarded; /* discard: keep <overlay>.discarded */
};

/* msg: translated, for the user (never NULL; "" on success). */
typedef void (*privhelper_done_cb)(void *data, enum privhelper_result res, const char *msg);

/* Starts pkexec. progress gets the helper's qemu-img progress (commit).
 * done is called once, from the loop. NULL + translated *err if pkexec or
 * the helper cannot be found or started. */
struct privhelper *privhelper_run_async(struct loop *loop, const struct privhelper_request *req,
                                        runner_progress_cb progress, privhelper_done_cb done,
                                        void *data, char **err);
/* The owner goes away: no callback any more. The root helper cannot be
 * signalled by us and runs to its end (its steps are each atomic or
 * journalled). NULL ok. */
void privhelper_detach(struct privhelper *ph);

/* The argv that privhelper_run_async() runs (tests, --verbose); malloc'd,
 * free with imageops_argv_free. NULL + *err if a value is not acceptable. */
char **privhelper_argv(const char *pkexec, const char *helper, const struct privhelper_request *req,
                       char **err);
/* The helper to run: $VMO_HELPER if set, else the installed one
 * (LIBEXECDIR/vmoverlay/vmoverlay-helper), else the build tree's. malloc'd;
 * NULL if none is executable. */
char *privhelper_path(void);
/* Maps an exit status (as from the runner: exit_code, or -1 and a signal)
 * and the helper's last stderr line to a result and a translated message. */
enum privhelper_result privhelper_classify(int exit_code, int term_signal, const char *last_stderr,
                                           const char *vm_name, char **msg);

/* The helper's own argument checks, shared so that the applet never builds a
 * command line the helper would reject. */
bool privhelper_valid_uuid(const char *s);
bool privhelper_valid_target(const char *s);
bool privhelper_valid_name(const char *s);

#endif
