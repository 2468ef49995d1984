/* runner: real children (a scripted /bin/sh as the test's own child, and a
 * real `qemu-img commit -p`), progress records split across writes, exit
 * codes, signals, cancel with TERM then KILL, fd hygiene, no zombies. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop.h"
#include "runner.h"
#include "testlib.h"

struct run {
	double pcts[256];
	int n_pcts;
	bool done;
	int exit_code, term_signal;
	bool cancelled;
	char *last_err, *out, *err;
	double max_progress;
	int64_t done_ms;
};

static void on_progress(void *data, double pct)
{
	struct run *r = data;
	if (r->n_pcts < 256)
		r->pcts[r->n_pcts++] = pct;
}

static void on_done(void *data, const struct runner_result *res)
{
	struct run *r = data;
	r->done = true;
	r->exit_code = res->exit_code;
	r->term_signal = res->term_signal;
	r->cancelled = res->cancelled;
	r->last_err = strdup(res->last_stderr);
	r->out = strdup(res->all_stdout);
	r->err = strdup(res->all_stderr);
	r->max_progress = res->max_progress;
	r->done_ms = loop_now_ms();
}

static void run_free(struct run *r)
{
	free(r->last_err);
	free(r->out);
	free(r->err);
}

static bool wait_done(struct loop *loop, struct run *r, int64_t timeout_ms)
{
	int64_t end = loop_now_ms() + timeout_ms;
	while (!r->done && loop_now_ms() < end)
		loop_iterate(loop, 100);
	return r->done;
}

static struct runner *start_sh(struct loop *loop, struct run *r, const char *script)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
	char *err = NULL;
	struct runner *rn = runner_start(loop, argv, on_progress, on_done, r, &err);
	if (!rn)
		fprintf(stderr, "runner_start: %s\n", err ? err : "?");
	free(err);
	return rn;
}

static bool pid_gone(pid_t pid)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d", (int)pid);
	return access(p, F_OK) != 0 && waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD;
}

static void test_parse(void)
{
	double p = -1;
	CHECK(runner_parse_progress("    (62.50/100%)", &p));
	CHECK(p == 62.5);
	CHECK(runner_parse_progress("(0.00/100%)", &p) && p == 0);
	CHECK(runner_parse_progress("    (100.00/100%)", &p) && p == 100);
	CHECK(!runner_parse_progress("    (62.50/100%", &p));
	CHECK(!runner_parse_progress("Image committed.", &p));
	CHECK(!runner_parse_progress("    (162.50/100%)", &p));
	CHECK(!runner_parse_progress("", &p));
}

static void test_scripted_progress(void)
{
	struct loop *loop = loop_create();
	struct run r = {0};
	/* Records split across writes and mixed with text, like a slow pipe. */
	struct runner *rn =
	    start_sh(loop, &r,
		     "printf '    (0.00/100%%)\\r    (12.'; sleep 0.1;"
		     "printf '50/100%%)\\r'; printf 'hello\\n';"
		     "echo first error >&2; printf 'last one  \\n\\n' >&2;"
		     "printf '    (100.00/100%%)\\r\\nImage committed.\\n'; exit 3");
	REQUIRE(rn);
	CHECK(runner_pid(rn) > 0);
	pid_t pid = runner_pid(rn);
	REQUIRE(wait_done(loop, &r, 30000));
	CHECK_INT_EQ(r.exit_code, 3);
	CHECK_INT_EQ(r.term_signal, 0);
	CHECK(!r.cancelled);
	CHECK_INT_EQ(r.n_pcts, 3);
	CHECK(r.pcts[0] == 0 && r.pcts[1] == 12.5 && r.pcts[2] == 100);
	CHECK(r.max_progress == 100);
	CHECK_STR_EQ(r.last_err, "last one");
	CHECK_STR_EQ(r.out, "hello\nImage committed.\n");
	CHECK_STR_EQ(r.err, "first error\nlast one  \n\n");
	CHECK(pid_gone(pid));
	run_free(&r);
	loop_destroy(loop);
}

static void test_qemu_img_commit(void)
{
	test_require_program("qemu-img");
	test_require_program("qemu-io");
	const char *d = test_tmpdir();
	REQUIRE(test_sh("cd %s && qemu-img create -q -f qcow2 rb.qcow2 64M && "
			"qemu-img create -q -f qcow2 -F qcow2 -b rb.qcow2 ro.qcow2 && "
			"qemu-io -c 'write -P 0xab 0 8M' ro.qcow2 >/dev/null",
			d) == 0);
	struct loop *loop = loop_create();
	struct run r = {0};
	char *err = NULL;
	char *qemu_img = runner_find_qemu_img(NULL, &err);
	REQUIRE(qemu_img);
	char path[4096];
	snprintf(path, sizeof path, "%s/ro.qcow2", d);
	char *argv[] = {qemu_img, "commit", "-p", path, NULL};
	struct runner *rn = runner_start(loop, argv, on_progress, on_done, &r, &err);
	REQUIRE(rn);
	REQUIRE(wait_done(loop, &r, 30000));
	CHECK_INT_EQ(r.exit_code, 0);
	CHECK(r.n_pcts >= 2);
	CHECK(r.pcts[r.n_pcts - 1] == 100);
	for (int i = 1; i < r.n_pcts; i++)
		CHECK(r.pcts[i] >= r.pcts[i - 1]);
	CHECK_STR_EQ(r.out, "Image committed.\n");
	CHECK(test_sh("qemu-io -r -c 'read -P 0xab 0 8M' %s/rb.qcow2 >/dev/null", d) == 0);
	run_free(&r);

	/* A failing commit: exit 1 and qemu-img's message kept. */
	struct run f = {0};
	snprintf(path, sizeof path, "%s/rb.qcow2", d);
	char *argv2[] = {qemu_img, "commit", "-p", path, NULL};
	REQUIRE(runner_start(loop, argv2, on_progress, on_done, &f, &err));
	REQUIRE(wait_done(loop, &f, 30000));
	CHECK_INT_EQ(f.exit_code, 1);
	CHECK(strstr(f.last_err, "does not have a backing file") != NULL);
	run_free(&f);
	free(qemu_img);
	loop_destroy(loop);
}

static void test_signal_exit(void)
{
	struct loop *loop = loop_create();
	struct run r = {0};
	REQUIRE(start_sh(loop, &r, "kill -USR1 $$"));
	REQUIRE(wait_done(loop, &r, 30000));
	CHECK_INT_EQ(r.exit_code, -1);
	CHECK_INT_EQ(r.term_signal, SIGUSR1);
	CHECK(!r.cancelled);
	CHECK_STR_EQ(r.last_err, "");
	run_free(&r);
	loop_destroy(loop);
}

static void test_cancel_term(void)
{
	/* The applet blocks SIGTERM for its signalfd; the child must not
	 * inherit that mask, or cancel would always need SIGKILL. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	struct loop *loop = loop_create();
	struct run r = {0};
	struct runner *rn = start_sh(loop, &r, "exec sleep 30");
	REQUIRE(rn);
	runner_set_kill_grace(rn, 10000);
	for (int i = 0; i < 3; i++)
		loop_iterate(loop, 50);
	int64_t t0 = loop_now_ms();
	runner_cancel(rn);
	REQUIRE(wait_done(loop, &r, 30000));
	CHECK(r.cancelled);
	CHECK_INT_EQ(r.term_signal, SIGTERM);
	CHECK(r.done_ms - t0 < 10000); /* SIGTERM did it: no wait for the 10 s grace */
	run_free(&r);
	loop_destroy(loop);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void test_cancel_kill(void)
{
	struct loop *loop = loop_create();
	struct run r = {0};
	struct runner *rn =
	    start_sh(loop, &r, "trap '' TERM; echo ready; while :; do sleep 0.05; done");
	REQUIRE(rn);
	pid_t pid = runner_pid(rn);
	runner_set_kill_grace(rn, 400);
	for (int i = 0; i < 3; i++)
		loop_iterate(loop, 50);
	int64_t t0 = loop_now_ms();
	runner_cancel(rn);
	REQUIRE(wait_done(loop, &r, 30000));
	CHECK(r.cancelled);
	CHECK_INT_EQ(r.term_signal, SIGKILL);
	CHECK(r.done_ms - t0 >= 400);
	CHECK_STR_EQ(r.out, "ready\n");
	CHECK(pid_gone(pid));
	run_free(&r);
	loop_destroy(loop);
}

static void test_fds_not_leaked(void)
{
	/* fds of ours without O_CLOEXEC, as a careless library would leave. */
	int leak1 = open("/dev/null", O_RDONLY);
	int p[2];
	REQUIRE(pipe(p) == 0);
	int high = dup2(leak1, 200);
	REQUIRE(leak1 >= 0 && high == 200);
	struct loop *loop = loop_create();
	struct run r = {0};
	/* ls lists the shell's fds (its own directory fd is in ls). */
	REQUIRE(start_sh(loop, &r, "ls /proc/$$/fd; readlink /proc/$$/fd/0"));
	REQUIRE(wait_done(loop, &r, 30000));
	CHECK_INT_EQ(r.exit_code, 0);
	CHECK_STR_EQ(r.out, "0\n1\n2\n/dev/null\n");
	run_free(&r);

	/* stdin is /dev/null: cat ends at once. */
	struct run c = {0};
	REQUIRE(start_sh(loop, &c, "cat; echo after"));
	REQUIRE(wait_done(loop, &c, 5000));
	CHECK_STR_EQ(c.out, "after\n");
	run_free(&c);
	loop_destroy(loop);
	close(leak1);
	close(high);
	close(p[0]);
	close(p[1]);
}

/* opts.pass_fds: the child gets exactly these as 3, 4 (and nothing else). */
static void test_pass_fds(void)
{
	char path[] = "/tmp/vmorunner.XXXXXX";
	int a = mkstemp(path);
	REQUIRE(a >= 0);
	unlink(path);
	REQUIRE(write(a, "first\n", 6) == 6 && lseek(a, 0, SEEK_SET) == 0);
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	REQUIRE(write(p[1], "second\n", 7) == 7);
	close(p[1]);
	/* Passed in the "wrong" order on purpose: 3 <- the pipe, 4 <- the file. */
	int fds[] = {p[0], a};
	struct runner_opts opts = {.pass_fds = fds, .n_pass_fds = 2, .cancel_fd = -1};
	struct loop *loop = loop_create();
	struct run r = {0};
	char *argv[] = {"/bin/sh", "-c", "cat <&3; cat <&4; ls /proc/$$/fd", NULL};
	char *err = NULL;
	REQUIRE(runner_start_ex(loop, argv, on_progress, on_done, &r, &opts, &err));
	REQUIRE(wait_done(loop, &r, 5000));
	CHECK_INT_EQ(r.exit_code, 0);
	CHECK_STR_EQ(r.out, "second\nfirst\n0\n1\n2\n3\n4\n");
	run_free(&r);
	loop_destroy(loop);
	close(a);
	close(p[0]);
}

/* opts.stdin_pipe: the cancel channel of a child we may not signal (here:
 * one that ignores SIGTERM, as a root helper is out of our reach). Cancel
 * closes its stdin; it ends by itself long before the SIGKILL grace, and
 * its own exit status is what is reported. */
static void test_stdin_channel(void)
{
	struct loop *loop = loop_create();
	struct run r = {0};
	char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; read x; echo \"eof $?\"", NULL};
	struct runner_opts opts = {.stdin_pipe = true, .cancel_fd = -1};
	char *err = NULL;
	struct runner *rn = runner_start_ex(loop, argv, on_progress, on_done, &r, &opts, &err);
	REQUIRE(rn);
	runner_set_kill_grace(rn, 20000);
	for (int i = 0; i < 3; i++)
		loop_iterate(loop, 50);
	int64_t t0 = loop_now_ms();
	CHECK(runner_cancel(rn));
	REQUIRE(wait_done(loop, &r, 10000));
	CHECK(r.cancelled);
	CHECK_INT_EQ(r.exit_code, 0);
	CHECK_INT_EQ(r.term_signal, 0);
	CHECK_STR_EQ(r.out, "ready\neof 1\n");
	CHECK(r.done_ms - t0 < 10000);
	run_free(&r);
	loop_destroy(loop);
}

static void test_exec_failure(void)
{
	struct loop *loop = loop_create();
	struct run r = {0};
	char *err = NULL;
	char *argv[] = {"/nonexistent/qemu-img", "commit", NULL};
	CHECK(runner_start(loop, argv, on_progress, on_done, &r, &err) == NULL);
	CHECK(err && strstr(err, "/nonexistent/qemu-img"));
	free(err);
	err = NULL;
	char *argv2[] = {"vmo-no-such-program-xyz", NULL};
	CHECK(runner_start(loop, argv2, on_progress, on_done, &r, &err) == NULL);
	CHECK(err != NULL);
	free(err);
	err = NULL;

	/* Exists but exec fails (not a valid executable): reported by start. */
	char path[4096];
	snprintf(path, sizeof path, "%s/notexec", test_tmpdir());
	REQUIRE(test_sh("printf '\\177ELFjunk' > %s && chmod 755 %s", path, path) == 0);
	char *argv3[] = {path, NULL};
	CHECK(runner_start(loop, argv3, on_progress, on_done, &r, &err) == NULL);
	CHECK(err && strstr(err, "Exec format error"));
	free(err);
	CHECK(!r.done);
	/* No zombie from the failed exec either. */
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
	loop_destroy(loop);

	setenv("PATH", "/usr/bin:/bin", 1);
	err = NULL;
	char *q = runner_find_qemu_img(NULL, &err);
	CHECK(q && strcmp(q, "/usr/bin/qemu-img") == 0);
	free(q);
}

static void test_many_no_zombies(void)
{
	struct loop *loop = loop_create();
	struct run r[20] = {0};
	pid_t pids[20];
	for (int i = 0; i < 20; i++) {
		char script[64];
		snprintf(script, sizeof script, "exit %d", i);
		struct runner *rn = start_sh(loop, &r[i], script);
		REQUIRE(rn);
		pids[i] = runner_pid(rn);
	}
	for (int i = 0; i < 20; i++) {
		REQUIRE(wait_done(loop, &r[i], 5000));
		CHECK_INT_EQ(r[i].exit_code, i);
		CHECK(pid_gone(pids[i]));
		run_free(&r[i]);
	}
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
	loop_destroy(loop);
}

static void test_detach(void)
{
	struct loop *loop = loop_create();
	struct run r = {0};
	struct runner *rn = start_sh(loop, &r, "exec sleep 30");
	REQUIRE(rn);
	pid_t pid = runner_pid(rn);
	runner_detach(rn);
	kill(pid, SIGKILL);
	int64_t end = loop_now_ms() + 3000;
	while (!pid_gone(pid) && loop_now_ms() < end)
		loop_iterate(loop, 50);
	CHECK(pid_gone(pid));
	CHECK(!r.done);
	loop_destroy(loop);
}

static int n_sync_progress;
static void sync_progress(void *data, double pct)
{
	n_sync_progress++;
}

static void test_sync(void)
{
	char *argv[] = {"/bin/sh", "-c",
			"printf '    (50.00/100%%)\\r'; echo out; echo oops >&2; exit 2", NULL};
	struct runner_status st;
	char *err = NULL;
	REQUIRE(runner_run_sync(argv, sync_progress, NULL, &st, &err));
	CHECK_INT_EQ(st.exit_code, 2);
	CHECK_STR_EQ(st.last_stderr, "oops");
	CHECK_STR_EQ(st.all_stdout, "out\n");
	CHECK(st.max_progress == 50);
	CHECK_INT_EQ(n_sync_progress, 1);
	runner_status_clear(&st);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"parse", test_parse},
	    {"scripted_progress", test_scripted_progress},
	    {"qemu_img_commit", test_qemu_img_commit},
	    {"signal_exit", test_signal_exit},
	    {"cancel_term", test_cancel_term},
	    {"cancel_kill", test_cancel_kill},
	    {"fds_not_leaked", test_fds_not_leaked},
	    {"pass_fds", test_pass_fds},
	    {"stdin_channel", test_stdin_channel},
	    {"exec_failure", test_exec_failure},
	    {"many_no_zombies", test_many_no_zombies},
	    {"detach", test_detach},
	    {"sync", test_sync},
	    {NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
