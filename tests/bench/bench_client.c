/* The benchmarks' measuring client: what a shell cannot time finely enough.
 *
 *   vmo-bench layout SERVICE N
 *       GetLayout(0, -1, []) on SERVICE's /MenuBar, N timed round trips over
 *       one libdbus connection (after 20 untimed warm-up calls).
 *   vmo-bench commit SERVICE VM TIMEOUT_S
 *       Control1.Commit(VM), then Status after every signal the applet emits
 *       until VM's flow state is "clean": prints when the commit ended (state
 *       left "committing") and when the result was in ("clean").
 *   vmo-bench run SECONDS CMD [ARG...]
 *       runs CMD; after SECONDS (0: let it finish) sends it SIGTERM; prints the
 *       context switches and peak RSS of CMD and every descendant it waited
 *       for (wait4's rusage), and the wall time. CMD's stdout goes to /dev/null.
 *
 * Output lines are "key: value" for the shell scripts to pick up. Exit 0 when
 * the measurement was made, 1 when it could not be (never on speed). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dbus/dbus.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static DBusConnection *bus_open(void)
{
	DBusError err;
	dbus_error_init(&err);
	DBusConnection *conn = dbus_bus_get_private(DBUS_BUS_SESSION, &err);
	if (!conn) {
		fprintf(stderr, "vmo-bench: session bus: %s\n", err.message);
		dbus_error_free(&err);
		return NULL;
	}
	dbus_connection_set_exit_on_disconnect(conn, FALSE);
	return conn;
}

static void bus_close(DBusConnection *conn)
{
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
}

/* Counts the items of a (ia{sv}av) layout node and how many have children. */
static void count_items(DBusMessageIter *node, int *items, int *submenus)
{
	DBusMessageIter st, children, v;
	dbus_message_iter_recurse(node, &st);
	dbus_message_iter_next(&st); /* id */
	dbus_message_iter_next(&st); /* properties */
	dbus_message_iter_recurse(&st, &children);
	(*items)++;
	bool any = false;
	while (dbus_message_iter_get_arg_type(&children) == DBUS_TYPE_VARIANT) {
		dbus_message_iter_recurse(&children, &v);
		count_items(&v, items, submenus);
		any = true;
		dbus_message_iter_next(&children);
	}
	if (any)
		(*submenus)++;
}

static DBusMessage *layout_call(const char *service)
{
	DBusMessage *m = dbus_message_new_method_call(service, "/MenuBar", "com.canonical.dbusmenu",
	                                              "GetLayout");
	if (!m)
		return NULL;
	dbus_int32_t parent = 0, depth = -1;
	DBusMessageIter it, arr;
	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_INT32, &parent);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_INT32, &depth);
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr);
	dbus_message_iter_close_container(&it, &arr);
	return m;
}

static int cmd_layout(const char *service, int n)
{
	int rc = 1;
	double *t = calloc((size_t)n, sizeof *t);
	DBusConnection *conn = bus_open();
	DBusMessage *call = layout_call(service);
	if (!t || !conn || !call)
		goto out;
	DBusError err;
	dbus_error_init(&err);
	int items = 0, submenus = 0;
	size_t bytes = 0;
	for (int i = -20; i < n; i++) {
		/* A sent message is locked: each call sends a copy, made
		 * before the clock starts. */
		DBusMessage *m = dbus_message_copy(call);
		if (!m)
			goto out;
		double t0 = now_ms();
		DBusMessage *reply = dbus_connection_send_with_reply_and_block(conn, m, 5000, &err);
		double t1 = now_ms();
		dbus_message_unref(m);
		if (!reply) {
			fprintf(stderr, "vmo-bench: GetLayout: %s\n", err.message);
			dbus_error_free(&err);
			goto out;
		}
		if (i == -20) {
			DBusMessageIter it;
			if (!dbus_message_iter_init(reply, &it) || !dbus_message_has_signature(reply, "u(ia{sv}av)")) {
				fprintf(stderr, "vmo-bench: GetLayout reply has signature %s\n",
				        dbus_message_get_signature(reply));
				dbus_message_unref(reply);
				goto out;
			}
			dbus_message_iter_next(&it);
			count_items(&it, &items, &submenus);
			char *buf;
			int len;
			if (dbus_message_marshal(reply, &buf, &len)) {
				bytes = (size_t)len;
				dbus_free(buf);
			}
		}
		dbus_message_unref(reply);
		if (i >= 0)
			t[i] = t1 - t0;
	}
	qsort(t, (size_t)n, sizeof *t, cmp_double);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += t[i];
	printf("items: %d\nsubmenus: %d\nreply_bytes: %zu\n", items, submenus, bytes);
	printf("n: %d\nmin_ms: %.3f\nmedian_ms: %.3f\np90_ms: %.3f\np99_ms: %.3f\nmax_ms: %.3f\n"
	       "mean_ms: %.3f\n",
	       n, t[0], n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2, t[n * 9 / 10],
	       t[n * 99 / 100], t[n - 1], sum / n);
	rc = 0;
out:
	if (call)
		dbus_message_unref(call);
	if (conn)
		bus_close(conn);
	free(t);
	return rc;
}

/* The flow state of VM in a Status reply a(sssstdasas), or NULL. Also
 * copies the first human-readable line after the summary (the error). */
static const char *status_state(DBusMessage *reply, const char *vm, char *errline, size_t errlen)
{
	DBusMessageIter it, arr, st, lines;
	if (!dbus_message_iter_init(reply, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
		return NULL;
	dbus_message_iter_recurse(&it, &arr);
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRUCT) {
		const char *name, *run, *flow;
		dbus_message_iter_recurse(&arr, &st);
		dbus_message_iter_get_basic(&st, &name);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &run);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &flow);
		if (strcmp(name, vm) == 0) {
			/* policy, bytes, progress, actions, then the lines */
			for (int k = 0; k < 5; k++)
				dbus_message_iter_next(&st);
			errline[0] = '\0';
			if (dbus_message_iter_get_arg_type(&st) == DBUS_TYPE_ARRAY) {
				dbus_message_iter_recurse(&st, &lines);
				for (int k = 0; dbus_message_iter_get_arg_type(&lines) == DBUS_TYPE_STRING;
				     k++) {
					const char *s;
					dbus_message_iter_get_basic(&lines, &s);
					if (k == 1)
						snprintf(errline, errlen, "%s", s);
					dbus_message_iter_next(&lines);
				}
			}
			return flow;
		}
		dbus_message_iter_next(&arr);
	}
	return NULL;
}

static DBusMessage *control_call(DBusConnection *conn, const char *service, const char *method,
                                 const char *vm, DBusError *err)
{
	DBusMessage *m = dbus_message_new_method_call(service, "/io/github/vmoverlay",
	                                              "io.github.vmoverlay.Control1", method);
	if (!m)
		return NULL;
	if (vm)
		dbus_message_append_args(m, DBUS_TYPE_STRING, &vm, DBUS_TYPE_INVALID);
	DBusMessage *r = dbus_connection_send_with_reply_and_block(conn, m, 10000, err);
	dbus_message_unref(m);
	return r;
}

static int cmd_commit(const char *service, const char *vm, int timeout_s)
{
	int rc = 1;
	DBusConnection *conn = bus_open();
	if (!conn)
		return 1;
	DBusError err;
	dbus_error_init(&err);
	/* The applet's unique name: signals carry it as their sender. */
	char rule[512];
	snprintf(rule, sizeof rule, "type='signal',sender='%s'", service);
	dbus_bus_add_match(conn, rule, &err);
	if (dbus_error_is_set(&err)) {
		fprintf(stderr, "vmo-bench: AddMatch: %s\n", err.message);
		goto out;
	}
	char errline[512];
	double t0 = now_ms();
	DBusMessage *r = control_call(conn, service, "Commit", vm, &err);
	double t_accepted = now_ms();
	if (!r) {
		fprintf(stderr, "vmo-bench: Commit refused: %s\n", err.message);
		goto out;
	}
	dbus_message_unref(r);
	double t_commit_end = -1, t_clean = -1;
	int signals = 0, polls = 0;
	while (t_clean < 0) {
		if (now_ms() - t0 > timeout_s * 1000.0) {
			fprintf(stderr, "vmo-bench: no result after %d s\n", timeout_s);
			goto out;
		}
		/* Signals drive the Status calls; a quiet second polls once, so a
		 * missing signal cannot hang us (counted and printed). */
		DBusMessage *msg = NULL;
		double wait_start = now_ms();
		while (!msg && now_ms() - wait_start < 1000) {
			if (!dbus_connection_read_write(conn, 100)) {
				fprintf(stderr, "vmo-bench: bus disconnected\n");
				goto out;
			}
			msg = dbus_connection_pop_message(conn);
			if (msg && dbus_message_get_type(msg) != DBUS_MESSAGE_TYPE_SIGNAL) {
				dbus_message_unref(msg);
				msg = NULL;
			}
		}
		if (msg) {
			signals++;
			dbus_message_unref(msg);
		} else {
			polls++;
		}
		r = control_call(conn, service, "Status", NULL, &err);
		double t = now_ms();
		if (!r) {
			fprintf(stderr, "vmo-bench: Status: %s\n", err.message);
			goto out;
		}
		const char *state = status_state(r, vm, errline, sizeof errline);
		if (!state) {
			fprintf(stderr, "vmo-bench: %s not in Status\n", vm);
			dbus_message_unref(r);
			goto out;
		}
		if (strcmp(state, "failed") == 0 || strcmp(state, "interrupted") == 0) {
			fprintf(stderr, "vmo-bench: commit %s: %s\n", state, errline);
			dbus_message_unref(r);
			goto out;
		}
		if (t_commit_end < 0 && strcmp(state, "committing") != 0)
			t_commit_end = t;
		if (strcmp(state, "clean") == 0)
			t_clean = t;
		dbus_message_unref(r);
	}
	printf("accepted_ms: %.3f\ncommit_ms: %.3f\nresult_ms: %.3f\nsignals: %d\nquiet_polls: %d\n",
	       t_accepted - t0, t_commit_end - t0, t_clean - t0, signals, polls);
	rc = 0;
out:
	dbus_error_free(&err);
	bus_close(conn);
	return rc;
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig)
{
	(void)sig;
	alarmed = 1;
}

static int cmd_run(double seconds, char **argv)
{
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("vmo-bench: fork");
		return 1;
	}
	if (pid == 0) {
		/* Its output (progress bars, lists) is not ours to print. */
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "vmo-bench: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	struct sigaction sa = {.sa_handler = on_alarm};
	sigaction(SIGALRM, &sa, NULL);
	if (seconds > 0) {
		struct itimerval it = {.it_value = {.tv_sec = (time_t)seconds,
		                                    .tv_usec = (suseconds_t)((seconds - (time_t)seconds) * 1e6)}};
		setitimer(ITIMER_REAL, &it, NULL);
	}
	int status;
	struct rusage ru;
	bool termed = false;
	for (;;) {
		pid_t w = wait4(pid, &status, 0, &ru);
		if (w == pid)
			break;
		if (w < 0 && errno == EINTR) {
			if (alarmed && !termed) {
				kill(pid, SIGTERM);
				termed = true;
			}
			continue;
		}
		perror("vmo-bench: wait4");
		return 1;
	}
	double t1 = now_ms();
	printf("voluntary_ctxsw: %ld\ninvoluntary_ctxsw: %ld\nctxsw: %ld\nmaxrss_kib: %ld\n"
	       "wall_ms: %.1f\nexit: %d\n",
	       ru.ru_nvcsw, ru.ru_nivcsw, ru.ru_nvcsw + ru.ru_nivcsw, ru.ru_maxrss, t1 - t0,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	/* Stopped by us is the expected end; otherwise the command must succeed. */
	if (!termed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		return 1;
	return 0;
}

static int usage(void)
{
	fputs("usage: vmo-bench layout SERVICE N\n"
	      "       vmo-bench commit SERVICE VM TIMEOUT_S\n"
	      "       vmo-bench run SECONDS CMD [ARG...]\n",
	      stderr);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "layout") == 0) {
		int n = atoi(argv[3]);
		return n > 0 ? cmd_layout(argv[2], n) : usage();
	}
	if (argc >= 5 && strcmp(argv[1], "commit") == 0)
		return cmd_commit(argv[2], argv[3], atoi(argv[4]));
	if (argc >= 4 && strcmp(argv[1], "run") == 0)
		return cmd_run(atof(argv[2]), argv + 3);
	return usage();
}
