/* Runs qemu-img (or any program) with an argv, never through a shell:
 * fork/exec with every other fd closed, stdout/stderr read non-blocking in
 * the loop, `-p` progress parsed from "\r"-separated "(NN.NN/100%)"
 * records, exit status and the last stderr line kept, cancel = SIGTERM then
 * SIGKILL after a grace period. */
#ifndef VMO_RUNNER_H
#define VMO_RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct loop;
struct config;
struct runner;

#define RUNNER_KILL_GRACE_MS 5000

struct runner_result {
	int exit_code;           /* -1 if killed by a signal */
	int term_signal;         /* 0 unless killed */
	bool cancelled;          /* runner_cancel() was called */
	const char *last_stderr; /* last non-empty stderr line, or "" */
	const char *all_stdout;  /* everything printed on stdout (progress stripped) */
	const char *all_stderr;  /* everything printed on stderr (capped at 64 KiB) */
	double max_progress;     /* highest progress record seen, -1 if none */
};

typedef void (*runner_progress_cb)(void *data, double percent);
/* Called once; the runner is freed right after the callback returns. */
typedef void (*runner_done_cb)(void *data, const struct runner_result *res);

/* argv[0] is an absolute path or a name looked up on PATH (before fork).
 * The child gets stdin from /dev/null, an empty signal mask and default
 * signal dispositions, and no other fd of ours. Exec failures are reported
 * here (NULL + translated *err), not through done. done runs only after the
 * child was reaped and both pipes reached EOF. */
struct runner *runner_start(struct loop *loop, char *const argv[], runner_progress_cb progress,
			    runner_done_cb done, void *data, char **err);
/* Extras (NULL = none). */
#define RUNNER_MAX_PASS_FDS 4
struct runner_opts {
	const int *pass_fds; /* the child gets these as fds 3, 4, ... (≤ RUNNER_MAX_PASS_FDS) */
	size_t n_pass_fds;
	/* The child's stdin is a pipe instead of /dev/null; the runner holds
	 * the write end and closes it on runner_cancel: the cancel channel of
	 * a child we may not signal (vmoverlay-helper as root under pkexec). */
	bool stdin_pipe;
	/* runner_run_sync_ex only: when this fd reaches EOF (or fails), the
	 * child is cancelled (the helper passes its own stdin). -1 = none;
	 * 0 is a valid fd, so set it explicitly. */
	int cancel_fd;
};
struct runner *runner_start_ex(struct loop *loop, char *const argv[], runner_progress_cb progress,
			       runner_done_cb done, void *data, const struct runner_opts *opts,
			       char **err);
/* Closes the stdin pipe (opts.stdin_pipe), SIGTERM now, SIGKILL after the
 * grace period if it still runs. False (errno set) if the cancel cannot
 * reach the child: no stdin channel and no signal allowed (EPERM); true if
 * one of them carries it, or the child had already exited. */
bool runner_cancel(struct runner *r);
pid_t runner_pid(const struct runner *r);
/* Grace between SIGTERM and SIGKILL (default RUNNER_KILL_GRACE_MS). */
void runner_set_kill_grace(struct runner *r, int64_t ms);
/* The owner goes away while the child still runs (shutdown): frees the
 * runner now, no callback runs any more; the loop still reaps the child.
 * Our pipe ends close, so the child sees EPIPE at its next output (a
 * commit so interrupted is covered by its journal). NULL ok. */
void runner_detach(struct runner *r);

/* cfg->qemu_img, else "qemu-img" found on PATH (malloc'd); NULL + *err. */
char *runner_find_qemu_img(const struct config *cfg, char **err);
/* An executable named name on PATH (or name itself if it has a '/'),
 * malloc'd; NULL if none. */
char *runner_which(const char *name);

/* Synchronous use (the privileged helper, tests): runs argv to completion
 * in a private loop. Owned copies of the result. */
struct runner_status {
	int exit_code;
	int term_signal;
	bool cancelled;
	char *last_stderr;
	char *all_stdout;
	char *all_stderr;
	double max_progress;
};
/* In a forked child before exec (async-signal-safe): every signal back to
 * its default action and none blocked, whatever the loop had set. */
void runner_child_signals_default(void);
bool runner_run_sync(char *const argv[], runner_progress_cb progress, void *data,
		     struct runner_status *out, char **err);
bool runner_run_sync_ex(char *const argv[], runner_progress_cb progress, void *data,
			const struct runner_opts *opts, struct runner_status *out, char **err);
void runner_status_clear(struct runner_status *st);
/* A runner_result view of a runner_status (strings borrowed). */
void runner_status_view(const struct runner_status *st, struct runner_result *res);
/* Parses one progress record such as "    (62.50/100%)"; false if it is
 * not one. */
bool runner_parse_progress(const char *rec, double *percent);

#endif
