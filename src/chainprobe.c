/* Backing chains read in a child process with a timeout (issue 12, defect 7).
 *
 * The child is this executable again: a constructor below recognises the
 * private first argument CHILD_FLAG before main() runs, so every program
 * that links the watcher (the applet, its tests) is its own probe and no
 * extra binary has to be found. The child may block for ever (a dead
 * NFS/CIFS mount, a FIFO nobody writes to: a disk declared qcow2 is opened
 * without O_NONBLOCK on purpose, that is what a hung mount looks like);
 * the parent only ever waits with a deadline, then kills it and reports
 * which file did not answer.
 *
 * Protocol on the child's stdout, one line per record, written unbuffered
 * so a timed-out child still tells how far it got:
 *   I <item>                 starting item
 *   P <item> <path>          about to stat/open path (escaped: \\ and \n)
 *   F <item> <dev> <ino>     a file of the chain
 *   D <item>                 chain complete
 *   U <item> <errno> <path>  could not read path: the rest is unknown */
#include "chainprobe.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "i18n.h"
#include "image.h"
#include "log.h"
#include "loop.h"
#include "runner.h"

#define CHILD_FLAG      "--vmoverlay-chain-probe"
#define CHILD_ENV       "VMO_CHAINPROBE"
/* The disk itself and the files below it that vmoverlay follows (chain.h). */
#define CHAIN_MAX_DEPTH (VMO_CHAIN_MAX + 1)
#define PROBE_OUT_MAX   (16u * 1024u * 1024u)

/* ---------------------------------------------------------------- child */

static void put_path(const char *path)
{
	char buf[512];
	size_t n = 0;
	for (const char *c = path; *c; c++) {
		if (n + 3 >= sizeof buf) {
			ssize_t w = write(1, buf, n);
			(void)w;
			n = 0;
		}
		if (*c == '\\' || *c == '\n') {
			buf[n++] = '\\';
			buf[n++] = *c == '\n' ? 'n' : '\\';
		} else {
			buf[n++] = *c;
		}
	}
	buf[n++] = '\n';
	ssize_t w = write(1, buf, n);
	(void)w;
}

static void probe_item(size_t idx, const char *start, bool qcow2)
{
	dprintf(1, "I %zu\n", idx);
	char *path = strdup(start);
	for (int depth = 0; path; depth++) {
		dprintf(1, "P %zu ", idx);
		put_path(path);
		if (depth >= CHAIN_MAX_DEPTH) {
			dprintf(1, "U %zu %d ", idx, ELOOP);
			put_path(path);
			break;
		}
		struct stat st;
		if (stat(path, &st) < 0) {
			/* A missing file is nobody's base: the chain ends here. */
			if (errno == ENOENT) {
				dprintf(1, "D %zu\n", idx);
			} else {
				dprintf(1, "U %zu %d ", idx, errno);
				put_path(path);
			}
			break;
		}
		dprintf(1, "F %zu %ju %ju\n", idx, (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
		if (!qcow2) {
			dprintf(1, "D %zu\n", idx);
			break;
		}
		/* Blocking open: may hang (see the top of the file). */
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			dprintf(1, "U %zu %d ", idx, errno);
			put_path(path);
			break;
		}
		struct stat fst;
		if (fstat(fd, &fst) < 0 || !(S_ISREG(fst.st_mode) || S_ISBLK(fst.st_mode))) {
			close(fd);
			dprintf(1, "D %zu\n", idx);
			break;
		}
		struct qcow2_info info;
		int r = image_read_qcow2_fd_any(fd, path, &info, NULL);
		close(fd);
		if (r == -EINVAL) {
			/* Not qcow2 (or a version qemu cannot open either): no chain. */
			dprintf(1, "D %zu\n", idx);
			break;
		}
		if (r < 0) {
			dprintf(1, "U %zu %d ", idx, -r);
			put_path(path);
			break;
		}
		if (!info.backing_file) {
			image_info_clear(&info);
			dprintf(1, "D %zu\n", idx);
			break;
		}
		if (strncmp(info.backing_file, "json:", 5) == 0 ||
		    strstr(info.backing_file, "://")) {
			/* Not a local file: what it refers to is unknown here. */
			image_info_clear(&info);
			dprintf(1, "U %zu %d ", idx, EPROTONOSUPPORT);
			put_path(path);
			break;
		}
		char *next = image_resolve_backing(path, info.backing_file);
		/* No recorded format: qemu probes; the magic check above decides. */
		qcow2 = !info.backing_format || strcmp(info.backing_format, "qcow2") == 0;
		image_info_clear(&info);
		free(path);
		path = next;
	}
	free(path);
}

/* The executable to re-execute, resolved at start-up (before an upgrade
 * could replace the file; under valgrind, readlink names the program under
 * test, where exec of /proc/self/exe would start valgrind's tool). */
static char self_exe[4096];

/* glibc passes argc/argv to constructors. Runs before main() of whatever
 * program re-executed itself as the probe, and never returns there. */
__attribute__((constructor)) static void chainprobe_child_entry(int argc, char **argv, char **envp)
{
	(void)envp;
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
	self_exe[n > 0 ? n : 0] = 0;
	if (argc < 2 || !argv || !argv[1] || strcmp(argv[1], CHILD_FLAG) != 0)
		return;
	/* Only a child we started (its environment is ours, see child_exec):
	 * never a file-reading service for whoever runs the privileged helper
	 * through pkexec (rule 10), which clears the environment. */
	const char *env = getenv(CHILD_ENV);
	if (!env || strcmp(env, "1") != 0)
		return;
	size_t idx = 0;
	for (int i = 2; i + 1 < argc; i += 2, idx++)
		probe_item(idx, argv[i + 1], strcmp(argv[i], "q") == 0);
	_exit(0);
}

/* --------------------------------------------------------------- parent */

int chainprobe_timeout_ms(void)
{
	const char *s = getenv("VMO_PROBE_TIMEOUT_MS");
	if (s && *s) {
		char *end;
		long v = strtol(s, &end, 10);
		if (*end == 0 && v > 0 && v < 3600 * 1000)
			return (int)v;
	}
	return CHAINPROBE_TIMEOUT_MS;
}

void chainprobe_outcome_clear(struct chainprobe_outcome *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++) {
		free(o->results[i].ids);
		free(o->results[i].err_path);
	}
	free(o->results);
	free(o->hung_path);
	free(o->spawn_error);
	memset(o, 0, sizeof *o);
}

struct chainprobe {
	struct loop *loop;
	pid_t pid;
	int fd;
	struct loop_fd *fd_w;
	struct loop_timer *timer;
	char *buf;
	size_t len;
	bool eof, reaped;
	struct chainprobe_outcome out;
	chainprobe_done_cb done;
	void *data;
};

static char *unescape(const char *s)
{
	char *o = malloc(strlen(s) + 1), *p = o;
	if (!o)
		return NULL;
	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			*p++ = *s == 'n' ? '\n' : *s;
		} else {
			*p++ = *s;
		}
	}
	*p = 0;
	return o;
}

/* Applies one record to o; cur/cur_path follow the item in progress. */
static void parse_line(struct chainprobe_outcome *o, char *line, long *cur, char **cur_path)
{
	char tag = line[0];
	if (!tag || line[1] != ' ')
		return;
	char *rest = line + 2, *end;
	unsigned long long idx = strtoull(rest, &end, 10);
	if (end == rest || idx >= o->n)
		return;
	struct chainprobe_result *r = &o->results[idx];
	rest = *end == ' ' ? end + 1 : end;
	switch (tag) {
	case 'I':
		*cur = (long)idx;
		break;
	case 'P':
		free(*cur_path);
		*cur_path = unescape(rest);
		break;
	case 'F': {
		unsigned long long dev = strtoull(rest, &end, 10);
		unsigned long long ino = strtoull(end, NULL, 10);
		struct file_id *n = realloc(r->ids, (r->n_ids + 1) * sizeof *n);
		if (!n)
			return;
		r->ids = n;
		r->ids[r->n_ids++] = (struct file_id){(dev_t)dev, (ino_t)ino};
		break;
	}
	case 'D':
		r->state = PROBE_DONE;
		*cur = -1;
		break;
	case 'U': {
		long e = strtol(rest, &end, 10);
		r->state = PROBE_UNKNOWN;
		r->err = (int)e;
		free(r->err_path);
		r->err_path = unescape(*end == ' ' ? end + 1 : end);
		*cur = -1;
		break;
	}
	default:
		break;
	}
}

/* The whole output (and whether it ended in time) into o. */
static void finish_outcome(struct chainprobe_outcome *o, char *buf, size_t len, bool timed_out)
{
	long cur = -1;
	char *cur_path = NULL;
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		buf[i] = 0;
		parse_line(o, buf + start, &cur, &cur_path);
		start = i + 1;
	}
	o->timed_out = timed_out;
	if (cur >= 0) {
		/* Started, never ended: this is the file that did not answer. */
		struct chainprobe_result *r = &o->results[cur];
		r->state = PROBE_UNKNOWN;
		r->err = timed_out ? ETIMEDOUT : EIO;
		free(r->err_path);
		r->err_path = cur_path ? strdup(cur_path) : NULL;
		if (timed_out)
			o->hung_path = cur_path ? strdup(cur_path) : NULL;
	}
	free(cur_path);
}

static void child_exec(char *const argv[], int out_w)
{
	runner_child_signals_default();
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(null, 2) < 0)
		_exit(127);
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
	/* A minimal environment: the marker the constructor wants, nothing
	 * of ours (the probe prints no messages, needs no locale). */
	char *const envp[] = {(char *)CHILD_ENV "=1", NULL};
	execve(self_exe[0] ? self_exe : "/proc/self/exe", argv, envp);
	_exit(127);
}

static char **make_argv(const struct chainprobe_item *items, size_t n)
{
	char **argv = calloc(2 * n + 3, sizeof *argv);
	if (!argv)
		return NULL;
	size_t k = 0;
	argv[k++] = (char *)"vmoverlay-chain-probe";
	argv[k++] = (char *)CHILD_FLAG;
	for (size_t i = 0; i < n; i++) {
		argv[k++] = (char *)(items[i].qcow2 ? "q" : "r");
		argv[k++] = items[i].path;
	}
	return argv;
}

/* fork + exec with stdout on a pipe; -1 and a translated *err on failure. */
static pid_t spawn(const struct chainprobe_item *items, size_t n, int *out_fd, char **err)
{
	int p[2];
	char **argv = make_argv(items, n);
	if (!argv || pipe2(p, O_CLOEXEC) < 0) {
		int e = argv ? errno : ENOMEM;
		free(argv);
		if (err && asprintf(err, _("cannot start the disk check: %s"), strerror(e)) < 0)
			*err = NULL;
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0)
		child_exec(argv, p[1]);
	int e = errno;
	free(argv);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		if (err && asprintf(err, _("cannot start the disk check: %s"), strerror(e)) < 0)
			*err = NULL;
		return -1;
	}
	fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
	*out_fd = p[0];
	return pid;
}

static bool init_outcome(struct chainprobe_outcome *o, size_t n)
{
	memset(o, 0, sizeof *o);
	o->results = n ? calloc(n, sizeof *o->results) : NULL;
	o->n = n;
	return !n || o->results;
}

/* Reads what is there; false at EOF or error. */
static bool drain(int fd, char **buf, size_t *len)
{
	char tmp[4096];
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof tmp);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN;
		if (r == 0)
			return false;
		if (*len + (size_t)r > PROBE_OUT_MAX)
			return false;
		char *nb = realloc(*buf, *len + (size_t)r + 1);
		if (!nb)
			return false;
		memcpy(nb + *len, tmp, (size_t)r);
		*buf = nb;
		*len += (size_t)r;
	}
}

static void on_reaped(struct loop *loop, pid_t pid, int status, void *data)
{
	(void)loop;
	(void)data;
	log_debug("chainprobe: probe %d reaped (status %d)", (int)pid, status);
}

static void probe_free(struct chainprobe *p)
{
	if (p->fd_w)
		loop_fd_remove(p->fd_w);
	if (p->fd >= 0)
		close(p->fd);
	if (p->timer)
		loop_timer_remove(p->timer);
	free(p->buf);
	chainprobe_outcome_clear(&p->out);
	free(p);
}

static void probe_end(struct chainprobe *p, bool timed_out)
{
	if (timed_out) {
		kill(p->pid, SIGKILL);
		log_warn("chainprobe: the disk check (pid %d) did not finish in time", (int)p->pid);
	}
	if (!p->reaped)
		/* The loop reaps it whenever it ends (maybe never: a dead mount). */
		loop_child_unwatch(p->loop, p->pid);
	finish_outcome(&p->out, p->buf, p->len, timed_out);
	chainprobe_done_cb done = p->done;
	void *data = p->data;
	struct chainprobe_outcome o = p->out;
	memset(&p->out, 0, sizeof p->out);
	probe_free(p);
	done(data, &o);
	chainprobe_outcome_clear(&o);
}

static void maybe_done(struct chainprobe *p)
{
	if (p->eof && p->reaped)
		probe_end(p, false);
}

static void on_pipe(struct loop *loop, int fd, short revents, void *data)
{
	(void)loop;
	(void)revents;
	struct chainprobe *p = data;
	if (!drain(fd, &p->buf, &p->len)) {
		p->eof = true;
		loop_fd_remove(p->fd_w);
		p->fd_w = NULL;
		maybe_done(p);
	}
}

static void on_child(struct loop *loop, pid_t pid, int status, void *data)
{
	(void)loop;
	(void)pid;
	(void)status;
	struct chainprobe *p = data;
	p->reaped = true;
	maybe_done(p);
}

static void on_timeout(struct loop *loop, struct loop_timer *t, void *data)
{
	(void)loop;
	(void)t;
	struct chainprobe *p = data;
	if (p->fd >= 0)
		drain(p->fd, &p->buf, &p->len);
	probe_end(p, true);
}

struct chainprobe *chainprobe_start(struct loop *loop, const struct chainprobe_item *items,
				    size_t n, int timeout_ms, chainprobe_done_cb done, void *data,
				    char **err)
{
	struct chainprobe *p = calloc(1, sizeof *p);
	if (!p || !init_outcome(&p->out, n)) {
		free(p);
		if (err)
			*err = strdup(strerror(ENOMEM));
		return NULL;
	}
	p->loop = loop;
	p->fd = -1;
	p->done = done;
	p->data = data;
	p->pid = spawn(items, n, &p->fd, err);
	if (p->pid < 0) {
		probe_free(p);
		return NULL;
	}
	p->fd_w = loop_fd_add(loop, p->fd, POLLIN, on_pipe, p);
	p->timer = loop_timer_add(loop, timeout_ms, 0, on_timeout, p);
	if (!p->fd_w || !p->timer || !loop_child_watch(loop, p->pid, on_child, p)) {
		kill(p->pid, SIGKILL);
		loop_child_watch(loop, p->pid, on_reaped, NULL);
		probe_free(p);
		if (err)
			*err = strdup(_("cannot watch the disk check"));
		return NULL;
	}
	log_debug("chainprobe: probing %zu chains (pid %d)", n, (int)p->pid);
	return p;
}

void chainprobe_cancel(struct chainprobe *p)
{
	if (!p)
		return;
	if (!p->reaped) {
		kill(p->pid, SIGKILL);
		loop_child_unwatch(p->loop, p->pid); /* still reaped by the loop */
	}
	probe_free(p);
}

pid_t chainprobe_pid(const struct chainprobe *p)
{
	return p ? p->pid : -1;
}

bool chainprobe_child_alive(pid_t pid)
{
	return pid > 0 && kill(pid, 0) == 0;
}

void chainprobe_run_sync(struct loop *loop, const struct chainprobe_item *items, size_t n,
			 int timeout_ms, struct chainprobe_outcome *o, pid_t *left_running)
{
	*left_running = -1;
	if (!init_outcome(o, n)) {
		o->spawn_error = strdup(strerror(ENOMEM));
		return;
	}
	int fd = -1;
	char *err = NULL;
	pid_t pid = spawn(items, n, &fd, &err);
	if (pid < 0) {
		o->spawn_error = err ? err : strdup("fork");
		return;
	}
	char *buf = NULL;
	size_t len = 0;
	int64_t deadline = loop_now_ms() + timeout_ms;
	bool eof = false, timed_out = false;
	while (!eof) {
		int64_t left = deadline - loop_now_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && !drain(fd, &buf, &len))
			eof = true;
	}
	close(fd);
	int status;
	if (timed_out)
		kill(pid, SIGKILL);
	/* EOF means the child is exiting; reap it here, or let the loop do it
	 * whenever a killed child stuck in the kernel finally ends. */
	pid_t w = eof ? waitpid(pid, &status, 0) : waitpid(pid, &status, WNOHANG);
	if (w != pid) {
		loop_child_watch(loop, pid, on_reaped, NULL);
		*left_running = pid;
	}
	if (timed_out)
		log_warn("chainprobe: the disk check (pid %d) did not finish within %d ms",
			 (int)pid, timeout_ms);
	finish_outcome(o, buf, len, timed_out);
	free(buf);
}
