/* The applet's side of the privileged helper: the command line
 *   pkexec vmoverlay-helper OP VM-NAME DOMAIN-UUID DISK-TARGET [options]
 * that the flow runs (with the runner, in the loop: the polkit dialog may
 * stay open for minutes) only after a plain attempt failed with
 * EACCES/EPERM, and the helper's exit statuses, which the flow reads
 * (pkexec's own 126 = dialog dismissed, 127 = not authorised). */
#ifndef VMO_PRIVHELPER_H
#define VMO_PRIVHELPER_H

#include <stdbool.h>

#include "imageops.h"

struct vm;

/* vmoverlay-helper's exit statuses (doc/vmoverlay-helper.8). 126 and 127
 * are never used by the helper: pkexec reserves them. */
enum {
	PRIVHELPER_EXIT_OK = 0,
	PRIVHELPER_EXIT_FAILED = 1,           /* the operation failed; nothing was lost */
	PRIVHELPER_EXIT_USAGE = 2,            /* bad arguments */
	PRIVHELPER_EXIT_PARTIAL = 3,          /* commit failed after writing part of the base
					       * (= FLOW_HELPER_EXIT_PARTIAL: the journal stays) */
	PRIVHELPER_EXIT_IN_USE = 4,           /* qemu's image lock is held; nothing touched */
	PRIVHELPER_EXIT_REFUSED = 5,          /* a precondition does not hold; nothing touched */
	PRIVHELPER_EXIT_LIBVIRT = 6,          /* cannot connect to libvirt */
	PRIVHELPER_EXIT_NOT_ROOT = 7,         /* not run as root / option not allowed */
	PRIVHELPER_EXIT_COMMITTED = 8,        /* commit done (base holds the session), but the
					       * fresh overlay failed (= FLOW_HELPER_EXIT_COMMITTED) */
	PRIVHELPER_EXIT_DISMISSED = 126,      /* pkexec: the user dismissed the dialog */
	PRIVHELPER_EXIT_NOT_AUTHORIZED = 127, /* pkexec: not authorised, or no agent */
};

struct privhelper_request {
	enum imageops_op op; /* commit (= commit + rebuild), rebuild, discard, undo-discard */
	const char *vm_name; /* the libvirt domain name: shown in the polkit dialog */
	const char *uuid;    /* the domain's UUID (what the helper trusts) */
	const char *target;  /* disk target, "vda" */
	const char *base;    /* optional: the configured base, checked against the header */
	bool keep_discarded; /* discard: keep <overlay>.discarded */
	bool commit_deepest; /* the VM's commit_into = "deepest" (--commit-into deepest) */
};

/* The flow's privileged hook (struct flow_privileged.argv, flow.h): the
 * pkexec command for vm's watched disk, or NULL (logged) when pkexec or
 * the helper is missing, vm's facts cannot be passed, or the watched
 * connection is not the local system daemon. data is the applet's
 * struct virt_watcher: the helper always works on qemu:///system, so a
 * same-name, same-UUID domain of a session daemon must never send it there
 * (issue 13); the URI is the one libvirt reports for the live connection.
 * main.c: flow_set_privileged(flow, &(struct flow_privileged){
 *                                 .argv = privhelper_flow_argv, .data = virt});
 * The flow runs it with the runner and reads the exit statuses above. */
char **privhelper_flow_argv(void *data, const struct vm *vm, size_t disk, enum imageops_op op,
			    bool keep_discarded);
/* The command for vm without the connection check (tests). */
char **privhelper_vm_argv(const struct vm *vm, size_t disk, enum imageops_op op,
			  bool keep_discarded);
/* True for the local system daemon's URI as virConnectGetURI reports it:
 * qemu:///system (or qemu+unix:///system), with no query (a ?socket=
 * could name another daemon). */
bool privhelper_uri_is_system(const char *uri);

/* pkexec HELPER OP NAME UUID TARGET [--base B] [--keep-discarded];
 * malloc'd, free with imageops_argv_free. NULL + translated *err if a
 * value is not acceptable. */
char **privhelper_argv(const char *pkexec, const char *helper, const struct privhelper_request *req,
		       char **err);
/* The helper to run: $VMO_HELPER if set, else the installed one
 * (LIBEXECDIR/vmoverlay/vmoverlay-helper), else the build tree's. malloc'd;
 * NULL if none is executable. */
char *privhelper_path(void);
/* The helper's own argument checks, shared so that the applet never builds a
 * command line the helper would reject. */
bool privhelper_valid_uuid(const char *s);
bool privhelper_valid_target(const char *s);
bool privhelper_valid_name(const char *s);

#endif
