/* Reading the backing chains of other domains' disks off the loop (issue
 * 12, defect 7): a child process (this same executable, re-executed with a
 * private flag) stats and reads every file; the parent waits for it with a
 * timeout, so a dead NFS/CIFS mount or a FIFO with no writer costs a
 * "could not check" answer, never a frozen tray. Unknown means refuse. */
#ifndef VMO_CHAINPROBE_H
#define VMO_CHAINPROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct loop;

/* Default time a probe may take; VMO_PROBE_TIMEOUT_MS overrides it (tests,
 * or a user whose slow network storage needs longer). */
#define CHAINPROBE_TIMEOUT_MS 10000

/* One chain to walk: path, and whether the disk's format is qcow2 (only
 * qcow2 headers are followed; a raw image has no backing file). */
struct chainprobe_item {
	char *path;
	bool qcow2;
};

struct file_id {
	dev_t dev;
	ino_t ino;
};

enum chainprobe_state {
	PROBE_NOT_RUN = 0, /* the probe ended (timeout) before this item */
	PROBE_DONE,        /* every file of the chain is in ids */
	PROBE_UNKNOWN,     /* ids holds the files before err_path */
};

struct chainprobe_result {
	enum chainprobe_state state;
	struct file_id *ids;
	size_t n_ids;
	int err;        /* PROBE_UNKNOWN: errno; ETIMEDOUT when it hung there */
	char *err_path; /* the file it could not read (or hung on) */
};

struct chainprobe_outcome {
	struct chainprobe_result *results; /* one per item */
	size_t n;
	bool timed_out;
	char *hung_path;   /* timed_out: the file the child was on, or NULL */
	char *spawn_error; /* the probe could not run at all (translated) */
};
void chainprobe_outcome_clear(struct chainprobe_outcome *o);

int chainprobe_timeout_ms(void);

struct chainprobe;
/* Called once with the outcome (the callee may keep its contents: it
 * takes them over and clears o with chainprobe_outcome_clear when done);
 * the probe is freed after the callback. */
typedef void (*chainprobe_done_cb)(void *data, struct chainprobe_outcome *o);

/* Starts the child in the loop. NULL + translated *err if it cannot run. */
struct chainprobe *chainprobe_start(struct loop *loop, const struct chainprobe_item *items,
				    size_t n, int timeout_ms, chainprobe_done_cb done, void *data,
				    char **err);
/* Kills the child; no callback any more. NULL ok. */
void chainprobe_cancel(struct chainprobe *p);
/* True while a child of ours (running or timed out, not yet reaped) is
 * alive: a child stuck in the kernel on a dead mount may outlive SIGKILL. */
bool chainprobe_child_alive(pid_t pid);
pid_t chainprobe_pid(const struct chainprobe *p);

/* The same, waiting for the result (at most timeout_ms) without running
 * the main loop: used right before an image operation. Always fills o. A
 * child that outlives its SIGKILL is left to loop to reap; its pid goes to
 * *left_running (else -1). */
void chainprobe_run_sync(struct loop *loop, const struct chainprobe_item *items, size_t n,
			 int timeout_ms, struct chainprobe_outcome *o, pid_t *left_running);

#endif
