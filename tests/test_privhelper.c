/* privhelper: the applet's side of the privileged helper. Argument checks
 * (shared with the helper), the pkexec command line, the mapping of exit
 * statuses (pkexec's 126/127 included) to results and messages, and a real
 * run through the real pkexec from the loop. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "privhelper.h"
#include "testlib.h"

static void test_valid(void)
{
	CHECK(privhelper_valid_uuid("6a8e759c-8f90-416e-86bd-a37cfdec1b60"));
	CHECK(privhelper_valid_uuid("6A8E759C-8F90-416E-86BD-A37CFDEC1B60"));
	CHECK(!privhelper_valid_uuid("6a8e759c8f90416e86bda37cfdec1b60"));
	CHECK(!privhelper_valid_uuid("6a8e759c-8f90-416e-86bd-a37cfdec1b6g"));
	CHECK(!privhelper_valid_uuid("6a8e759c-8f90-416e-86bd-a37cfdec1b60;"));
	CHECK(!privhelper_valid_uuid(""));
	CHECK(!privhelper_valid_uuid(NULL));

	CHECK(privhelper_valid_target("vda"));
	CHECK(privhelper_valid_target("nvme0n1"));
	CHECK(!privhelper_valid_target("../vda"));
	CHECK(!privhelper_valid_target("Vda"));
	CHECK(!privhelper_valid_target("0vda"));
	CHECK(!privhelper_valid_target(""));
	CHECK(!privhelper_valid_target("vda vdb"));

	CHECK(privhelper_valid_name("win10"));
	CHECK(privhelper_valid_name("Windows 10 (lab)"));
	CHECK(privhelper_valid_name("Grüße"));
	CHECK(!privhelper_valid_name("--connect"));
	CHECK(!privhelper_valid_name("a\nb"));
	CHECK(!privhelper_valid_name(""));
}

static void test_argv(void)
{
	struct privhelper_request req = {
		.op = IMAGEOPS_DISCARD,
		.vm_name = "win10",
		.uuid = "6a8e759c-8f90-416e-86bd-a37cfdec1b60",
		.target = "vda",
		.base = "/var/lib/libvirt/images/base.qcow2",
		.keep_discarded = true,
	};
	char *err = NULL;
	char **argv = privhelper_argv("/usr/bin/pkexec", "/usr/libexec/vmoverlay/vmoverlay-helper", &req,
	                              &err);
	REQUIRE(argv);
	const char *want[] = {"/usr/bin/pkexec", "/usr/libexec/vmoverlay/vmoverlay-helper", "discard",
	                      "win10", "6a8e759c-8f90-416e-86bd-a37cfdec1b60", "vda", "--base",
	                      "/var/lib/libvirt/images/base.qcow2", "--keep-discarded", NULL};
	size_t i = 0;
	for (; want[i]; i++)
		CHECK_STR_EQ(argv[i], want[i]);
	CHECK(argv[i] == NULL);
	imageops_argv_free(argv);

	/* commit: no --keep-discarded even if asked; no --base when unset */
	req.op = IMAGEOPS_COMMIT;
	req.base = NULL;
	argv = privhelper_argv("pkexec", "helper", &req, &err);
	REQUIRE(argv);
	CHECK_STR_EQ(argv[2], "commit");
	CHECK(argv[6] == NULL);
	imageops_argv_free(argv);

	/* a name the helper would take for an option is never passed */
	req.vm_name = "--connect";
	argv = privhelper_argv("pkexec", "helper", &req, &err);
	CHECK(argv == NULL);
	CHECK(err && *err);
	free(err);
	err = NULL;
	req.vm_name = "win10";
	req.uuid = "not-a-uuid";
	CHECK(privhelper_argv("pkexec", "helper", &req, &err) == NULL);
	free(err);
}

static void test_classify(void)
{
	char *msg = NULL;
	CHECK_INT_EQ(privhelper_classify(0, 0, "", "win10", &msg), PRIVHELPER_OK);
	CHECK_STR_EQ(msg, "");
	free(msg);

	CHECK_INT_EQ(privhelper_classify(126, 0, "", "win10", &msg), PRIVHELPER_DISMISSED);
	CHECK(msg && strstr(msg, "win10") && strstr(msg, "dismissed"));
	free(msg);

	CHECK_INT_EQ(privhelper_classify(127, 0, "Error executing command as another user: Not authorized",
	                                 "win10", &msg),
	             PRIVHELPER_NOT_AUTHORIZED);
	CHECK(msg && strstr(msg, "win10") && strstr(msg, "not authorised"));
	free(msg);

	const char *refusal = "win10: refusing: win10 is not shut off.";
	CHECK_INT_EQ(privhelper_classify(PRIVHELPER_EXIT_REFUSED, 0, refusal, "win10", &msg),
	             PRIVHELPER_REFUSED);
	CHECK_STR_EQ(msg, refusal);
	free(msg);

	CHECK_INT_EQ(privhelper_classify(PRIVHELPER_EXIT_IN_USE, 0, "in use", "win10", &msg),
	             PRIVHELPER_IN_USE);
	free(msg);
	CHECK_INT_EQ(privhelper_classify(PRIVHELPER_EXIT_PARTIAL, 0, "half", "win10", &msg),
	             PRIVHELPER_PARTIAL);
	free(msg);

	/* a silent failure still says something, with the VM's name */
	CHECK_INT_EQ(privhelper_classify(PRIVHELPER_EXIT_FAILED, 0, "", "win10", &msg),
	             PRIVHELPER_FAILED);
	CHECK(msg && strstr(msg, "win10") && strstr(msg, "1"));
	free(msg);

	CHECK_INT_EQ(privhelper_classify(-1, 9, "", "win10", &msg), PRIVHELPER_ERROR);
	CHECK(msg && strstr(msg, "signal 9"));
	free(msg);
	CHECK_INT_EQ(privhelper_classify(PRIVHELPER_EXIT_LIBVIRT, 0, "no daemon", "win10", &msg),
	             PRIVHELPER_ERROR);
	CHECK(msg && strstr(msg, "no daemon"));
	free(msg);
}

struct run_state {
	bool done;
	enum privhelper_result res;
	char *msg;
	struct loop *loop;
};

static void on_done(void *data, enum privhelper_result res, const char *msg)
{
	struct run_state *st = data;
	st->done = true;
	st->res = res;
	st->msg = strdup(msg);
	loop_quit(st->loop, 0);
}

/* The real pkexec with the real helper, from the loop. This machine runs
 * no polkit daemon (there is no system bus), so pkexec cannot get an
 * authorisation: it exits 127 and the applet must say "not authorised".
 * Where a system bus exists the outcome depends on its polkit set-up,
 * but it is never a change: the UUID below names no domain. */
static void test_run_through_pkexec(void)
{
	test_require_program("pkexec");
	const char *helper = getenv("VMO_HELPER");
	REQUIRE(helper && access(helper, X_OK) == 0);
	struct run_state st = {0};
	st.loop = loop_create();
	REQUIRE(st.loop);
	struct privhelper_request req = {
		.op = IMAGEOPS_COMMIT,
		.vm_name = "nosuchvm",
		.uuid = "00000000-1111-2222-3333-444444444444",
		.target = "vda",
	};
	char *err = NULL;
	struct privhelper *ph = privhelper_run_async(st.loop, &req, NULL, on_done, &st, &err);
	REQUIRE(ph);
	int64_t deadline = loop_now_ms() + 30000;
	while (!st.done && loop_now_ms() < deadline && loop_iterate(st.loop, 1000))
		;
	REQUIRE(st.done);
	fprintf(stderr, "pkexec run: result %d: %s\n", (int)st.res, st.msg);
	bool system_bus = access("/run/dbus/system_bus_socket", F_OK) == 0;
	if (!system_bus) {
		CHECK_INT_EQ(st.res, PRIVHELPER_NOT_AUTHORIZED);
		CHECK(st.msg && strstr(st.msg, "nosuchvm") && strstr(st.msg, "not authorised"));
	} else {
		CHECK(st.res == PRIVHELPER_NOT_AUTHORIZED || st.res == PRIVHELPER_DISMISSED ||
		      st.res == PRIVHELPER_REFUSED || st.res == PRIVHELPER_ERROR);
		CHECK(st.msg && *st.msg);
	}
	free(st.msg);
	loop_destroy(st.loop);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
		{"valid", test_valid},
		{"argv", test_argv},
		{"classify", test_classify},
		{"run_through_pkexec", test_run_through_pkexec},
		{NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
