/* Child processes for image operations: fork/exec of an argv (no shell),
 * both output pipes read non-blocking from the loop, qemu-img's `-p`
 * progress records parsed, the child reaped through the loop's pidfd
 * watch. The done callback fires once, after exit and EOF on both pipes. */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "i18n.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#define RUNNER_CAP (64 * 1024)
/* After the child exited, a grandchild could still hold the pipes open;
 * don't wait for it forever. */
#define RUNNER_EOF_GRACE_MS 2000

struct runner_buf {
	char *s;
	size_t len;
};

struct runner {
	struct loop *loop;
	pid_t pid;
	int out_fd, err_fd;
	struct loop_fd *out_w, *err_w;
	struct loop_timer *kill_timer;
	struct loop_timer *eof_timer;
	int64_t kill_grace_ms;
	bool exited;
	int status;
	bool cancelled;
	bool detached;
	bool finished;
	int stdin_w; /* write end of the child's stdin (opts.stdin_pipe), else -1 */

	struct runner_buf out;      /* stdout without progress records */
	struct runner_buf out_rec;  /* current stdout record (up to \r or \n) */
	struct runner_buf err;      /* all stderr */
	struct runner_buf err_line; /* current stderr line */
	char *last_err;
	double max_progress;

	runner_progress_cb progress;
	runner_done_cb done;
	void *data;
};

static void buf_append(struct runner_buf *b, const char *s, size_t n)
{
	if (b->len + n > RUNNER_CAP)
		n = b->len < RUNNER_CAP ? RUNNER_CAP - b->len : 0;
	if (n == 0)
		return;
	char *p = realloc(b->s, b->len + n + 1);
	if (!p)
		return;
	b->s = p;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

static void buf_free(struct runner_buf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = 0;
}

bool runner_parse_progress(const char *rec, double *percent)
{
	double pct;
	char close = 0;
	/* "    (62.50/100%)": the %c makes sure the whole record matched. */
	if (sscanf(rec, " (%lf/100%%%c", &pct, &close) != 2 || close != ')')
		return false;
	if (pct < 0 || pct > 100)
		return false;
	*percent = pct;
	return true;
}

static void finish_out_record(struct runner *r)
{
	if (r->out_rec.len == 0)
		return;
	double pct;
	if (runner_parse_progress(r->out_rec.s, &pct)) {
		if (pct > r->max_progress)
			r->max_progress = pct;
		if (r->progress && !r->detached)
			r->progress(r->data, pct);
	} else {
		buf_append(&r->out, r->out_rec.s, r->out_rec.len);
		buf_append(&r->out, "\n", 1);
	}
	buf_free(&r->out_rec);
}

static void finish_err_line(struct runner *r)
{
	/* Keep the last line that says something; trailing blanks are noise. */
	size_t n = r->err_line.len;
	while (n > 0 && (r->err_line.s[n - 1] == ' ' || r->err_line.s[n - 1] == '\t'))
		n--;
	if (n > 0) {
		r->err_line.s[n] = 0;
		free(r->last_err);
		r->last_err = strdup(r->err_line.s);
	}
	buf_free(&r->err_line);
}

static void feed_stdout(struct runner *r, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n')
			finish_out_record(r);
		else
			buf_append(&r->out_rec, &s[i], 1);
	}
}

static void feed_stderr(struct runner *r, const char *s, size_t n)
{
	buf_append(&r->err, s, n);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n')
			finish_err_line(r);
		else
			buf_append(&r->err_line, &s[i], 1);
	}
}

static void runner_free(struct runner *r)
{
	if (r->out_w)
		loop_fd_remove(r->out_w);
	if (r->err_w)
		loop_fd_remove(r->err_w);
	if (r->out_fd >= 0)
		close(r->out_fd);
	if (r->err_fd >= 0)
		close(r->err_fd);
	if (r->stdin_w >= 0)
		close(r->stdin_w);
	if (r->kill_timer)
		loop_timer_remove(r->kill_timer);
	if (r->eof_timer)
		loop_timer_remove(r->eof_timer);
	buf_free(&r->out);
	buf_free(&r->out_rec);
	buf_free(&r->err);
	buf_free(&r->err_line);
	free(r->last_err);
	free(r);
}

static void maybe_finish(struct runner *r)
{
	if (r->finished || !r->exited || r->out_fd >= 0 || r->err_fd >= 0)
		return;
	r->finished = true;
	finish_out_record(r);
	finish_err_line(r);

	struct runner_result res = {
	    .exit_code = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1,
	    .term_signal = WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0,
	    .cancelled = r->cancelled,
	    .last_stderr = r->last_err ? r->last_err : "",
	    .all_stdout = r->out.s ? r->out.s : "",
	    .all_stderr = r->err.s ? r->err.s : "",
	    .max_progress = r->max_progress,
	};
	log_debug("runner: pid %d done: exit %d signal %d%s", (int)r->pid, res.exit_code,
		  res.term_signal, r->cancelled ? " (cancelled)" : "");
	if (r->done && !r->detached)
		r->done(r->data, &res);
	runner_free(r);
}

static void close_pipe(struct runner *r, int *fd, struct loop_fd **w)
{
	if (*w)
		loop_fd_remove(*w);
	*w = NULL;
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void on_pipe(struct loop *loop, int fd, short revents, void *data)
{
	struct runner *r = data;
	bool is_out = fd == r->out_fd;
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n > 0) {
			if (is_out)
				feed_stdout(r, buf, (size_t)n);
			else
				feed_stderr(r, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		break; /* EOF or a real error: this pipe is done */
	}
	if (is_out)
		close_pipe(r, &r->out_fd, &r->out_w);
	else
		close_pipe(r, &r->err_fd, &r->err_w);
	maybe_finish(r);
}

static void on_eof_timeout(struct loop *loop, struct loop_timer *t, void *data)
{
	struct runner *r = data;
	log_warn("runner: pid %d exited but its output pipes stay open; closing them", (int)r->pid);
	loop_timer_remove(r->eof_timer);
	r->eof_timer = NULL;
	close_pipe(r, &r->out_fd, &r->out_w);
	close_pipe(r, &r->err_fd, &r->err_w);
	maybe_finish(r);
}

static void on_child(struct loop *loop, pid_t pid, int status, void *data)
{
	struct runner *r = data;
	r->exited = true;
	r->status = status;
	if (r->kill_timer) {
		loop_timer_remove(r->kill_timer);
		r->kill_timer = NULL;
	}
	if (r->out_fd >= 0 || r->err_fd >= 0)
		r->eof_timer = loop_timer_add(loop, RUNNER_EOF_GRACE_MS, 0, on_eof_timeout, r);
	maybe_finish(r);
}

static void on_kill_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct runner *r = data;
	loop_timer_remove(r->kill_timer);
	r->kill_timer = NULL;
	if (!r->exited) {
		log_warn("runner: pid %d ignored SIGTERM, sending SIGKILL", (int)r->pid);
		kill(r->pid, SIGKILL);
	}
}

char *runner_which(const char *name)
{
	if (!name || !*name)
		return NULL;
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? strdup(name) : NULL;
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
	const char *p = path;
	while (*p) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char *cand = NULL;
		if (len == 0) {
			/* empty PATH element = current directory; we never want that */
		} else if (asprintf(&cand, "%.*s/%s", (int)len, p, name) >= 0) {
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
				return cand;
			free(cand);
		}
		if (!end)
			break;
		p = end + 1;
	}
	return NULL;
}

char *runner_find_qemu_img(const struct config *cfg, char **err)
{
	const char *want = cfg && cfg->qemu_img && *cfg->qemu_img ? cfg->qemu_img : "qemu-img";
	char *path = runner_which(want);
	if (!path) {
		if (strchr(want, '/'))
			set_err(err, _("qemu-img not found at %s (qemu_img in the configuration)"),
				want);
		else
			set_err(err, _("qemu-img not found on PATH; install qemu-utils or set "
				       "qemu_img in the configuration"));
	}
	return path;
}

/* Closes every fd from first on except keep (keep > first). */
static void close_from_except(int first, int keep)
{
	if (syscall(SYS_close_range, first, keep - 1, 0) == 0 &&
	    syscall(SYS_close_range, keep + 1, ~0U, 0) == 0)
		return;
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = first; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

static void close_other_fds(int keep)
{
	/* close_range is one syscall; fall back to a loop on old kernels. */
	if (keep < 3) {
		if (syscall(SYS_close_range, 3, ~0U, 0) == 0)
			return;
	} else {
		/* keep is the exec-error pipe; it is O_CLOEXEC anyway. */
		if ((keep == 3 || syscall(SYS_close_range, 3, keep - 1, 0) == 0) &&
		    syscall(SYS_close_range, keep + 1, ~0U, 0) == 0)
			return;
	}
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 3; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

void runner_child_signals_default(void)
{
	sigset_t none;
	sigemptyset(&none);
	/* The loop blocks signals for signalfd and may ignore SIGPIPE; both
	 * survive exec and would make cancel (SIGTERM) ineffective. */
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		signal(s, SIG_DFL);
	}
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Runs in the child between fork and exec: async-signal-safe calls only.
 * in_r: the stdin pipe's read end, or -1 for /dev/null. opts->pass_fds
 * become fds 3, 4, ... */
static void child_exec(const char *path, char *const argv[], int in_r, int out_w, int err_w,
		       int errpipe, const struct runner_opts *opts)
{
	runner_child_signals_default();

	size_t n_pass = opts ? opts->n_pass_fds : 0;
	if (n_pass) {
		/* Out of the way first (above every target), then into place;
		 * dup2 clears FD_CLOEXEC on the copies the program gets. */
		int hi[RUNNER_MAX_PASS_FDS];
		if (n_pass > RUNNER_MAX_PASS_FDS)
			goto fail;
		errpipe = fcntl(errpipe, F_DUPFD_CLOEXEC, 100);
		if (errpipe < 0)
			_exit(127);
		for (size_t i = 0; i < n_pass; i++)
			if ((hi[i] = fcntl(opts->pass_fds[i], F_DUPFD_CLOEXEC, 100)) < 0)
				goto fail;
		for (size_t i = 0; i < n_pass; i++)
			if (dup2(hi[i], 3 + (int)i) < 0)
				goto fail;
	}
	int in = in_r >= 0 ? in_r : open("/dev/null", O_RDONLY);
	if (in < 0 || dup2(in, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		goto fail;
	if (n_pass)
		close_from_except(3 + (int)n_pass, errpipe);
	else
		close_other_fds(errpipe);
	execv(path, argv);
fail:;
	int e = errno;
	ssize_t unused = write(errpipe, &e, sizeof e);
	(void)unused;
	_exit(127);
}

struct runner *runner_start(struct loop *loop, char *const argv[], runner_progress_cb progress,
			    runner_done_cb done, void *data, char **err)
{
	return runner_start_ex(loop, argv, progress, done, data, NULL, err);
}

struct runner *runner_start_ex(struct loop *loop, char *const argv[], runner_progress_cb progress,
			       runner_done_cb done, void *data, const struct runner_opts *opts,
			       char **err)
{
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, xp[2] = {-1, -1}, inp[2] = {-1, -1};
	struct runner *r = NULL;
	char *path = NULL;

	if (!argv || !argv[0]) {
		if (err)
			*err = strdup(_("no program to run"));
		return NULL;
	}
	path = runner_which(argv[0]);
	if (!path) {
		set_err(err, _("cannot run %s: program not found"), argv[0]);
		return NULL;
	}
	r = calloc(1, sizeof *r);
	if (!r)
		goto error_errno;
	r->loop = loop;
	r->out_fd = r->err_fd = r->stdin_w = -1;
	r->kill_grace_ms = RUNNER_KILL_GRACE_MS;
	r->max_progress = -1;
	r->progress = progress;
	r->done = done;
	r->data = data;

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(xp, O_CLOEXEC) < 0)
		goto error_errno;
	if (opts && opts->stdin_pipe && pipe2(inp, O_CLOEXEC) < 0)
		goto error_errno;

	pid_t pid = fork();
	if (pid < 0)
		goto error_errno;
	if (pid == 0)
		child_exec(path, argv, inp[0], outp[1], errp[1], xp[1], opts);

	r->pid = pid;
	if (inp[0] >= 0) {
		close(inp[0]);
		inp[0] = -1;
		r->stdin_w = inp[1];
		inp[1] = -1;
	}
	close(outp[1]);
	close(errp[1]);
	close(xp[1]);
	outp[1] = errp[1] = xp[1] = -1;

	/* exec succeeded iff the CLOEXEC error pipe closes without data. */
	int child_errno = 0;
	ssize_t n;
	do
		n = read(xp[0], &child_errno, sizeof child_errno);
	while (n < 0 && errno == EINTR);
	close(xp[0]);
	xp[0] = -1;
	if (n == (ssize_t)sizeof child_errno) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		set_err(err, _("cannot run %s: %s"), path, strerror(child_errno));
		goto error;
	}

	r->out_fd = outp[0];
	r->err_fd = errp[0];
	outp[0] = errp[0] = -1;
	fcntl(r->out_fd, F_SETFL, fcntl(r->out_fd, F_GETFL) | O_NONBLOCK);
	fcntl(r->err_fd, F_SETFL, fcntl(r->err_fd, F_GETFL) | O_NONBLOCK);
	r->out_w = loop_fd_add(loop, r->out_fd, POLLIN, on_pipe, r);
	r->err_w = loop_fd_add(loop, r->err_fd, POLLIN, on_pipe, r);
	if (!r->out_w || !r->err_w || !loop_child_watch(loop, pid, on_child, r)) {
		/* Without a watch we could never report; stop the child now. */
		kill(pid, SIGKILL);
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		set_err(err, _("cannot watch %s (process %d)"), path, (int)pid);
		runner_free(r);
		free(path);
		return NULL;
	}
	log_debug("runner: started %s as pid %d", path, (int)pid);
	free(path);
	return r;

error_errno:
	set_err(err, _("cannot run %s: %s"), argv[0], strerror(errno));
error:
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
		if (xp[i] >= 0)
			close(xp[i]);
		if (inp[i] >= 0)
			close(inp[i]);
	}
	if (r && r->stdin_w >= 0)
		close(r->stdin_w);
	free(r);
	free(path);
	return NULL;
}

bool runner_cancel(struct runner *r)
{
	if (!r || r->exited)
		return true;
	bool channel = false;
	if (r->stdin_w >= 0) {
		/* The cancel channel: a child we may not signal (root, through
		 * pkexec) sees its stdin end and stops by itself. */
		log_info("runner: cancelling pid %d (closing its stdin)", (int)r->pid);
		close(r->stdin_w);
		r->stdin_w = -1;
		channel = true;
	}
	log_info("runner: cancelling pid %d (SIGTERM)", (int)r->pid);
	if (kill(r->pid, SIGTERM) < 0) {
		int e = errno;
		if (!channel) {
			/* Not cancelled: its result stays what it really is. */
			log_warn("runner: cannot signal pid %d: %s", (int)r->pid, strerror(e));
			errno = e;
			return false;
		}
		log_info("runner: cannot signal pid %d (%s); the stdin channel carries the cancel",
			 (int)r->pid, strerror(e));
	}
	r->cancelled = true;
	if (!r->kill_timer)
		r->kill_timer = loop_timer_add(r->loop, r->kill_grace_ms, 0, on_kill_timer, r);
	return true;
}

pid_t runner_pid(const struct runner *r)
{
	return r ? r->pid : -1;
}

void runner_set_kill_grace(struct runner *r, int64_t ms)
{
	if (r)
		r->kill_grace_ms = ms < 0 ? 0 : ms;
}

void runner_detach(struct runner *r)
{
	if (!r)
		return;
	/* The loop keeps reaping the child; our pipe ends close, so a child
	 * that still writes gets EPIPE/SIGPIPE. For qemu-img commit that is an
	 * interruption the journal covers; for create, a stray temp file. */
	r->detached = true;
	if (!r->exited)
		loop_child_unwatch(r->loop, r->pid);
	runner_free(r);
}

/* ---- synchronous use ---- */

struct sync_ctx {
	struct runner_status *out;
	bool done;
	runner_progress_cb progress;
	void *data;
	struct runner *r;
	struct loop_fd *cancel_w;
};

/* opts.cancel_fd became readable: EOF (or an error) means "cancel". */
static void sync_cancel_fd(struct loop *loop, int fd, short revents, void *data)
{
	struct sync_ctx *c = data;
	char buf[64];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN)))
		return;
	log_info("runner: cancel channel closed; cancelling");
	loop_fd_remove(c->cancel_w);
	c->cancel_w = NULL;
	if (c->r && !c->done)
		runner_cancel(c->r);
}

static void sync_progress(void *data, double pct)
{
	struct sync_ctx *c = data;
	if (c->progress)
		c->progress(c->data, pct);
}

static void sync_done(void *data, const struct runner_result *res)
{
	struct sync_ctx *c = data;
	c->out->exit_code = res->exit_code;
	c->out->term_signal = res->term_signal;
	c->out->cancelled = res->cancelled;
	c->out->last_stderr = strdup(res->last_stderr);
	c->out->all_stdout = strdup(res->all_stdout);
	c->out->all_stderr = strdup(res->all_stderr);
	c->out->max_progress = res->max_progress;
	c->done = true;
}

bool runner_run_sync(char *const argv[], runner_progress_cb progress, void *data,
		     struct runner_status *out, char **err)
{
	return runner_run_sync_ex(argv, progress, data, NULL, out, err);
}

bool runner_run_sync_ex(char *const argv[], runner_progress_cb progress, void *data,
			const struct runner_opts *opts, struct runner_status *out, char **err)
{
	memset(out, 0, sizeof *out);
	struct loop *loop = loop_create();
	if (!loop) {
		if (err)
			*err = strdup(_("cannot create an event loop"));
		return false;
	}
	struct sync_ctx c = {.out = out, .progress = progress, .data = data};
	struct runner *r = runner_start_ex(loop, argv, sync_progress, sync_done, &c, opts, err);
	if (!r) {
		loop_destroy(loop);
		return false;
	}
	c.r = r;
	if (opts && opts->cancel_fd >= 0)
		c.cancel_w = loop_fd_add(loop, opts->cancel_fd, POLLIN, sync_cancel_fd, &c);
	while (!c.done && loop_iterate(loop, -1))
		;
	if (c.cancel_w)
		loop_fd_remove(c.cancel_w);
	loop_destroy(loop);
	if (!c.done) {
		if (err)
			*err = strdup(_("the event loop stopped before the program ended"));
		return false;
	}
	return true;
}

void runner_status_clear(struct runner_status *st)
{
	if (!st)
		return;
	free(st->last_stderr);
	free(st->all_stdout);
	free(st->all_stderr);
	memset(st, 0, sizeof *st);
}

void runner_status_view(const struct runner_status *st, struct runner_result *res)
{
	res->exit_code = st->exit_code;
	res->term_signal = st->term_signal;
	res->cancelled = st->cancelled;
	res->last_stderr = st->last_stderr ? st->last_stderr : "";
	res->all_stdout = st->all_stdout ? st->all_stdout : "";
	res->all_stderr = st->all_stderr ? st->all_stderr : "";
	res->max_progress = st->max_progress;
}
