/* The pkexec command line for vmoverlay-helper (see privhelper.h). It is
 * what polkit shows in its dialog ($(command_line)), so it carries the
 * VM's name; the helper checks that name against the domain it looks up
 * by UUID, and the same argument checks run on both sides. */
#include "privhelper.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "build-config.h"
#include "i18n.h"
#include "log.h"
#include "model.h"
#include "runner.h"
#include "virt.h"

bool privhelper_valid_uuid(const char *s)
{
	/* 8-4-4-4-12 hex digits, as virDomainGetUUIDString writes them. */
	static const int dash[] = {8, 13, 18, 23};
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (s[i] != '-')
				return false;
			d++;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

bool privhelper_valid_target(const char *s)
{
	/* vda, sdb, hdc, xvda, nvme0n1: letters then letters/digits. */
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 32 || !islower((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]))
			return false;
	return true;
}

bool privhelper_valid_name(const char *s)
{
	/* libvirt allows almost anything in a name; we only keep what cannot
	 * confuse the dialog or a terminal: no control characters, no leading
	 * '-' (it would read as an option), a sane length. */
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 200 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

char *privhelper_path(void)
{
	const char *env = getenv("VMO_HELPER");
	if (env && *env)
		return access(env, X_OK) == 0 ? strdup(env) : NULL;
	static const char *const candidates[] = {
	    VMO_LIBEXECDIR "/vmoverlay/vmoverlay-helper",
	    VMO_BINARY_DIR "/vmoverlay-helper",
	};
	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
		if (access(candidates[i], X_OK) == 0)
			return strdup(candidates[i]);
	return NULL;
}

char **privhelper_argv(const char *pkexec, const char *helper, const struct privhelper_request *req,
		       char **err)
{
	if (!privhelper_valid_name(req->vm_name) || !privhelper_valid_uuid(req->uuid) ||
	    !privhelper_valid_target(req->target)) {
		if (err)
			*err =
			    strdup(_("The virtual machine's name, UUID or disk cannot be passed to "
				     "the privileged helper."));
		return NULL;
	}
	const char *op = imageops_op_name(req->op);
	if (strcmp(op, "?") == 0) {
		if (err)
			*err = strdup(_("Unknown operation for the privileged helper."));
		return NULL;
	}
	/* pkexec HELPER OP NAME UUID TARGET [--base PATH] [--commit-into deepest]
	 * [--keep-discarded] */
	char **argv = calloc(13, sizeof *argv);
	if (!argv)
		goto oom;
	size_t n = 0;
	const char *fixed[] = {pkexec, helper, op, req->vm_name, req->uuid, req->target};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (!(argv[n++] = strdup(fixed[i])))
			goto oom;
	if (req->base && *req->base) {
		if (!(argv[n++] = strdup("--base")) || !(argv[n++] = strdup(req->base)))
			goto oom;
	}
	if (req->commit_deepest)
		if (!(argv[n++] = strdup("--commit-into")) || !(argv[n++] = strdup("deepest")))
			goto oom;
	if (req->op == IMAGEOPS_DISCARD && req->keep_discarded)
		if (!(argv[n++] = strdup("--keep-discarded")))
			goto oom;
	return argv;
oom:
	imageops_argv_free(argv);
	if (err)
		*err = strdup(_("Out of memory."));
	return NULL;
}

bool privhelper_uri_is_system(const char *uri)
{
	return uri &&
	       (strcmp(uri, "qemu:///system") == 0 || strcmp(uri, "qemu+unix:///system") == 0);
}

char **privhelper_flow_argv(void *data, const struct vm *vm, size_t disk, enum imageops_op op,
			    bool keep_discarded)
{
	virConnectPtr conn = data ? virt_watcher_conn(data) : NULL;
	char *uri = conn ? virConnectGetURI(conn) : NULL;
	bool system = privhelper_uri_is_system(uri);
	if (!system) {
		log_warn("privhelper: %s: the watched connection is %s, not qemu:///system; the "
			 "helper (which works on qemu:///system only) is not used",
			 vm->name, uri ? uri : "not open");
		free(uri);
		return NULL;
	}
	free(uri);
	/* No <overlay>.discarded through the helper: in root's directory the
	 * applet could not remove it when the VM runs again, and a stale one
	 * must never be offered for Undo over a newer session (docs/design.md §4). */
	if (keep_discarded)
		log_info("privhelper: %s: the discarded overlay is not kept for root's images",
			 vm->name);
	return privhelper_vm_argv(vm, disk, op, false);
}

char **privhelper_vm_argv(const struct vm *vm, size_t disk, enum imageops_op op,
			  bool keep_discarded)
{
	const char *target = disk < vm->n_disks ? vm->disks[disk].target : NULL;
	char *pkexec = runner_which("pkexec");
	char *helper = privhelper_path();
	char **argv = NULL;
	char *err = NULL;
	if (!pkexec) {
		log_warn("privhelper: %s: pkexec is not installed; no privileged path", vm->name);
		goto out;
	}
	if (!helper) {
		log_warn("privhelper: %s: vmoverlay-helper not found (VMO_HELPER, %s/vmoverlay)",
			 vm->name, VMO_LIBEXECDIR);
		goto out;
	}
	struct privhelper_request req = {
	    .op = op,
	    .vm_name = vm->name,
	    .uuid = vm->uuid,
	    .target = target,
	    /* Only a configured base is a constraint (a VM with one disk); a
	     * discovered one is what the helper finds itself. */
	    .base = vm->cfg && vm->n_disks == 1 ? vm->cfg->base : NULL,
	    .keep_discarded = keep_discarded,
	    /* The helper discovers the same chain and refuses what it cannot
	     * do safely as root (a commit into a deeper base). */
	    .commit_deepest = vm->cfg && vm->cfg->commit_into == COMMIT_INTO_DEEPEST,
	};
	argv = privhelper_argv(pkexec, helper, &req, &err);
	if (!argv)
		log_warn("privhelper: %s: %s", vm->name, err ? err : "cannot build the command");
	else
		log_info("privhelper: %s: %s %s %s %s %s", vm->name, pkexec, helper, argv[2],
			 vm->uuid, target ? target : "?");
out:
	free(err);
	free(pkexec);
	free(helper);
	return argv;
}
