/* The terminal front end's text (term.c) written into a pipe: the question
 * names what it applies to, each disk with its size and, for several
 * disks, their total (issue 15); the commit's result names the base each
 * disk went into. Answers through a real pseudo-terminal and a real VM are
 * tested by tests/integration/terminal.sh. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "model.h"
#include "term.h"
#include "testlib.h"

static struct vm_config vcs[1] = {{.name = "pair", .policy = POLICY_ASK}};

/* Everything the terminal wrote so far. */
static char *drain(int fd)
{
	static char buf[16384];
	size_t n = 0;
	ssize_t r;
	while (n + 1 < sizeof buf && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	return buf;
}

static void test_question_and_result(void)
{
	struct loop *loop = loop_create();
	REQUIRE(loop);
	struct config cfg = {.vms = vcs, .n_vms = 1};
	struct model m;
	REQUIRE(model_init(&m, loop, &cfg));
	struct vm *vm = model_find(&m, "pair");
	REQUIRE(vm);
	vm_set_str(&vm->disks[0].target, "vda");
	vm_set_str(&vm->disks[0].overlay, "/images/pair.qcow2");
	vm_set_str(&vm->disks[0].base, "/images/pair-base.qcow2");
	vm->disks[0].overlay_bytes = 1288490189ull;
	vm_set_str(&vm->disks[1].target, "vdb");
	vm_set_str(&vm->disks[1].overlay, "/data/pair-data.qcow2");
	vm_set_str(&vm->disks[1].base, "/data/pair-data-base.qcow2");
	vm->disks[1].overlay_bytes = 300ull << 20;
	vm->n_disks = 2;
	vm->flow = FLOW_PENDING;
	vm->actions = ACT_BIT(ACT_COMMIT) | ACT_BIT(ACT_DISCARD) | ACT_BIT(ACT_KEEP);

	int in[2], outp[2];
	REQUIRE(pipe(in) == 0 && pipe(outp) == 0);
	REQUIRE(fcntl(outp[0], F_SETFL, O_NONBLOCK) == 0);
	struct term *t = term_create(loop, &m, NULL, in[0], outp[1], true, NULL);
	REQUIRE(t);

	term_prompt(t, vm);
	const char *text = drain(outp[0]);
	CHECK(strstr(text, "\npair — shut off · decision pending\n"
			   "overlays 1.5 GiB on 2 disks\n"
			   "  vda: 1.2 GiB · pair.qcow2\n"
			   "  vdb: 300 MiB · pair-data.qcow2\n"
			   "pair shut down — Keep the changes made in this session?\n") != NULL);
	if (!strstr(text, "overlays 1.5 GiB"))
		fprintf(stderr, "terminal wrote:\n%s\n", text);

	term_result(t, vm, RESULT_COMMITTED, 1288490189ull + (300ull << 20), NULL);
	text = drain(outp[0]);
	CHECK(strstr(text,
		     "pair: 1.5 GiB committed into the bases of 2 disks; fresh overlays "
		     "ready\n  vda → pair-base.qcow2\n  vdb → pair-data-base.qcow2\n") != NULL);
	term_result(t, vm, RESULT_CANCELLED, 0, NULL);
	text = drain(outp[0]);
	CHECK(strstr(text, "pair: commit cancelled Nothing was lost: the overlays still hold your "
			   "changes.\n") != NULL);

	/* One disk: its line alone, and the commit names its base. */
	vm_disk_clear(&vm->disks[1]);
	vm->n_disks = 1;
	term_prompt(t, vm);
	text = drain(outp[0]);
	CHECK(strstr(text, "\npair — shut off · decision pending\n"
			   "  vda: 1.2 GiB · pair.qcow2\n"
			   "pair shut down") != NULL);
	CHECK(strstr(text, "overlays") == NULL);
	term_result(t, vm, RESULT_COMMITTED, 1288490189ull, NULL);
	text = drain(outp[0]);
	CHECK(strstr(text, "pair: 1.2 GiB committed into pair-base.qcow2; fresh overlay ready\n") !=
	      NULL);

	term_destroy(t);
	model_finish(&m);
	loop_destroy(loop);
	close(in[0]);
	close(in[1]);
	close(outp[0]);
	close(outp[1]);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"question_and_result", test_question_and_result},
	    {0},
	};
	return test_main(argc, argv, cases);
}
