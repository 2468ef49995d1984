/* Runs vmoverlay-helper through pkexec from the loop (see privhelper.h).
 * The command line is what polkit shows in its dialog ($(command_line)),
 * so it carries the VM's name; the helper checks that name against the
 * domain it looks up by UUID. */
#include "privhelper.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "i18n.h"
#include "log.h"
#include "runner.h"

struct privhelper {
	struct runner *runner;
	privhelper_done_cb done;
	runner_progress_cb progress;
	void *data;
	char *vm_name;
};

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
			*err = strdup(_("The virtual machine's name, UUID or disk cannot be passed to "
			                "the privileged helper."));
		return NULL;
	}
	const char *op = imageops_op_name(req->op);
	if (strcmp(op, "?") == 0) {
		if (err)
			*err = strdup(_("Unknown operation for the privileged helper."));
		return NULL;
	}
	/* pkexec HELPER OP NAME UUID TARGET [--base PATH] [--keep-discarded] */
	char **argv = calloc(11, sizeof *argv);
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

enum privhelper_result privhelper_classify(int exit_code, int term_signal, const char *last_stderr,
                                           const char *vm_name, char **msg)
{
	const char *why = last_stderr && *last_stderr ? last_stderr : "";
	enum privhelper_result res;
	char *m = NULL;
	int r = 0;
	switch (exit_code) {
	case PRIVHELPER_EXIT_OK:
		res = PRIVHELPER_OK;
		m = strdup("");
		break;
	case PRIVHELPER_EXIT_DISMISSED:
		res = PRIVHELPER_DISMISSED;
		/* TRANSLATORS: %s is the VM name */
		r = asprintf(&m, _("%s: the administrator password dialog was dismissed; nothing was "
		                   "changed."),
		             vm_name);
		break;
	case PRIVHELPER_EXIT_NOT_AUTHORIZED:
		res = PRIVHELPER_NOT_AUTHORIZED;
		/* TRANSLATORS: %s is the VM name; pkexec exit status 127 */
		r = asprintf(&m, _("%s: not authorised to change the system's disk images (wrong "
		                   "password, or no polkit authentication agent running); nothing "
		                   "was changed."),
		             vm_name);
		break;
	case PRIVHELPER_EXIT_FAILED:
		res = PRIVHELPER_FAILED;
		m = strdup(why);
		break;
	case PRIVHELPER_EXIT_REFUSED:
		res = PRIVHELPER_REFUSED;
		m = strdup(why);
		break;
	case PRIVHELPER_EXIT_IN_USE:
		res = PRIVHELPER_IN_USE;
		m = strdup(why);
		break;
	case PRIVHELPER_EXIT_PARTIAL:
		res = PRIVHELPER_PARTIAL;
		m = strdup(why);
		break;
	default:
		res = PRIVHELPER_ERROR;
		if (exit_code < 0)
			/* TRANSLATORS: %1$s VM name, %2$d signal number */
			r = asprintf(&m, _("%1$s: the privileged helper was killed by signal %2$d."),
			             vm_name, term_signal);
		else
			/* TRANSLATORS: %1$s VM name, %2$d exit status, %3$s its message */
			r = asprintf(&m, _("%1$s: the privileged helper failed (exit status %2$d): %3$s"),
			             vm_name, exit_code, why);
		break;
	}
	if (r < 0)
		m = NULL;
	/* A helper that died without a word still leaves a message. */
	if (m && !*m && res != PRIVHELPER_OK) {
		free(m);
		/* TRANSLATORS: %1$s VM name, %2$d exit status */
		if (asprintf(&m, _("%1$s: the privileged helper failed (exit status %2$d)."), vm_name,
		             exit_code) < 0)
			m = NULL;
	}
	*msg = m;
	return res;
}

static void on_progress(void *data, double percent)
{
	struct privhelper *ph = data;
	if (ph->progress)
		ph->progress(ph->data, percent);
}

static void on_done(void *data, const struct runner_result *res)
{
	struct privhelper *ph = data;
	char *msg = NULL;
	enum privhelper_result r =
	    privhelper_classify(res->exit_code, res->term_signal, res->last_stderr, ph->vm_name, &msg);
	log_info("privileged helper for %s: exit %d signal %d -> result %d%s%s", ph->vm_name,
	         res->exit_code, res->term_signal, (int)r, res->last_stderr[0] ? ": " : "",
	         res->last_stderr);
	ph->runner = NULL; /* freed by the runner after we return */
	if (ph->done)
		ph->done(ph->data, r, msg ? msg : "");
	free(msg);
	free(ph->vm_name);
	free(ph);
}

struct privhelper *privhelper_run_async(struct loop *loop, const struct privhelper_request *req,
                                        runner_progress_cb progress, privhelper_done_cb done,
                                        void *data, char **err)
{
	char *pkexec = runner_which("pkexec");
	char *helper = privhelper_path();
	char **argv = NULL;
	struct privhelper *ph = NULL;
	if (!pkexec) {
		if (err)
			*err = strdup(_("pkexec is not installed: the disk images cannot be changed with "
			                "administrator rights (Debian package: pkexec)."));
		goto error;
	}
	if (!helper) {
		if (err)
			*err = strdup(_("The privileged helper vmoverlay-helper is not installed."));
		goto error;
	}
	argv = privhelper_argv(pkexec, helper, req, err);
	if (!argv)
		goto error;
	ph = calloc(1, sizeof *ph);
	if (!ph || !(ph->vm_name = strdup(req->vm_name))) {
		if (err)
			*err = strdup(_("Out of memory."));
		goto error;
	}
	ph->done = done;
	ph->progress = progress;
	ph->data = data;
	log_info("running %s %s %s %s %s through pkexec", helper, argv[2], req->vm_name, req->uuid,
	         req->target);
	ph->runner = runner_start(loop, argv, on_progress, on_done, ph, err);
	if (!ph->runner)
		goto error;
	imageops_argv_free(argv);
	free(pkexec);
	free(helper);
	return ph;
error:
	if (ph)
		free(ph->vm_name);
	free(ph);
	imageops_argv_free(argv);
	free(pkexec);
	free(helper);
	return NULL;
}

void privhelper_detach(struct privhelper *ph)
{
	if (!ph)
		return;
	runner_detach(ph->runner);
	free(ph->vm_name);
	free(ph);
}
