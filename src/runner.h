/* Runs qemu-img (or any program) with an argv, never through a shell:
 * fork/exec with every other fd closed, stdout/stderr read non-blocking in
 * the loop, `-p` progress parsed from "\r"-separated "(NN.NN/100%)"
 * records, exit status and the last stderr line kept, cancel = SIGTERM then
 * SIGKILL after a grace period. */
#ifndef VMO_RUNNER_H
#define VMO_RUNNER_H

#include <stdbool.h>
#include <sys/types.h>

struct loop;
struct config;
struct runner;

struct runner_result {
	int exit_code;      /* -1 if killed by a signal */
	int term_signal;    /* 0 unless killed */
	bool cancelled;     /* runner_cancel() was called */
	const char *last_stderr; /* last non-empty stderr line, or "" */
	const char *all_stdout;  /* everything printed on stdout (progress stripped) */
};

typedef void (*runner_progress_cb)(void *data, double percent);
/* Called once; the runner is freed right after the callback returns. */
typedef void (*runner_done_cb)(void *data, const struct runner_result *res);

struct runner *runner_start(struct loop *loop, char *const argv[], runner_progress_cb progress,
                            runner_done_cb done, void *data, char **err);
void runner_cancel(struct runner *r);
pid_t runner_pid(const struct runner *r);

/* cfg->qemu_img, else "qemu-img" found on PATH (malloc'd); NULL + *err. */
char *runner_find_qemu_img(const struct config *cfg, char **err);

#endif
