/* privhelper: the applet's side of the privileged helper. Argument checks
 * (shared with the helper), the pkexec command line, the flow's hook, and a
 * real run through the real pkexec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "privhelper.h"
#include "runner.h"
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
	char **argv = privhelper_argv("/usr/bin/pkexec", "/usr/libexec/vmoverlay/vmoverlay-helper",
				      &req, &err);
	REQUIRE(argv);
	const char *want[] = {"/usr/bin/pkexec",
			      "/usr/libexec/vmoverlay/vmoverlay-helper",
			      "discard",
			      "win10",
			      "6a8e759c-8f90-416e-86bd-a37cfdec1b60",
			      "vda",
			      "--base",
			      "/var/lib/libvirt/images/base.qcow2",
			      "--keep-discarded",
			      NULL};
	size_t i = 0;
	for (; want[i]; i++)
		CHECK_STR_EQ(argv[i], want[i]);
	CHECK(argv[i] == NULL);
	imageops_argv_free(argv);

	/* commit_into = "deepest": said, so the helper sees the same chain */
	req.commit_deepest = true;
	argv = privhelper_argv("pkexec", "helper", &req, &err);
	REQUIRE(argv);
	CHECK_STR_EQ(argv[6], "--base");
	CHECK_STR_EQ(argv[8], "--commit-into");
	CHECK_STR_EQ(argv[9], "deepest");
	CHECK_STR_EQ(argv[10], "--keep-discarded");
	CHECK(argv[11] == NULL);
	imageops_argv_free(argv);
	req.commit_deepest = false;

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

/* The flow's hook: the command for a model VM, with the real pkexec and
 * helper; then that command run for real. This machine runs no polkit
 * daemon (no system bus), so pkexec cannot get an authorisation and exits
 * 127, which the flow reports as "not authorised". Where a system bus
 * exists the outcome depends on its polkit set-up, but it is never a
 * change: the UUID below names no domain. */
static void test_flow_argv_and_pkexec(void)
{
	test_require_program("pkexec");
	const char *helper = getenv("VMO_HELPER");
	REQUIRE(helper && access(helper, X_OK) == 0);
	struct vm_config vc = {.name = "nosuchvm", .base = "/nonexistent/base.qcow2"};
	struct vm vm = {.name = "nosuchvm", .cfg = &vc, .disks = {{.target = "vda"}}, .n_disks = 1};
	snprintf(vm.uuid, sizeof vm.uuid, "%s", "00000000-1111-2222-3333-444444444444");

	/* No watched connection (or not the system daemon's): no helper. */
	CHECK(privhelper_flow_argv(NULL, &vm, 0, IMAGEOPS_COMMIT, false) == NULL);

	char **argv = privhelper_vm_argv(&vm, 0, IMAGEOPS_COMMIT, false);
	REQUIRE(argv);
	CHECK(strstr(argv[0], "pkexec") != NULL);
	CHECK_STR_EQ(argv[1], helper);
	CHECK_STR_EQ(argv[2], "commit");
	CHECK_STR_EQ(argv[3], "nosuchvm");
	CHECK_STR_EQ(argv[4], vm.uuid);
	CHECK_STR_EQ(argv[5], "vda");
	CHECK_STR_EQ(argv[6], "--base");
	CHECK_STR_EQ(argv[7], "/nonexistent/base.qcow2");
	CHECK(argv[8] == NULL);

	struct runner_status st;
	char *err = NULL;
	REQUIRE(runner_run_sync(argv, NULL, NULL, &st, &err));
	fprintf(stderr, "pkexec run: exit %d: %s\n", st.exit_code, st.last_stderr);
	if (access("/run/dbus/system_bus_socket", F_OK) != 0) {
		CHECK_INT_EQ(st.exit_code, PRIVHELPER_EXIT_NOT_AUTHORIZED);
	} else {
		CHECK(st.exit_code == PRIVHELPER_EXIT_NOT_AUTHORIZED ||
		      st.exit_code == PRIVHELPER_EXIT_DISMISSED ||
		      st.exit_code == PRIVHELPER_EXIT_REFUSED ||
		      st.exit_code == PRIVHELPER_EXIT_LIBVIRT);
	}
	runner_status_clear(&st);
	imageops_argv_free(argv);

	/* Facts that cannot be passed: no command at all. */
	vm.uuid[0] = 0;
	CHECK(privhelper_vm_argv(&vm, 0, IMAGEOPS_DISCARD, true) == NULL);
}

/* The helper works on qemu:///system; only that connection may use it. */
static void test_uri_is_system(void)
{
	CHECK(privhelper_uri_is_system("qemu:///system"));
	CHECK(privhelper_uri_is_system("qemu+unix:///system"));
	CHECK(!privhelper_uri_is_system("qemu:///session"));
	CHECK(!privhelper_uri_is_system("qemu:///system?socket=/tmp/other-sock"));
	CHECK(!privhelper_uri_is_system("qemu+ssh://host/system"));
	CHECK(!privhelper_uri_is_system("test:///default"));
	CHECK(!privhelper_uri_is_system(NULL));
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"valid", test_valid},
	    {"argv", test_argv},
	    {"flow_argv_and_pkexec", test_flow_argv_and_pkexec},
	    {"uri_is_system", test_uri_is_system},
	    {NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
