/* Implementation of the tiny test runner (see testlib.h). */
#include "testlib.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int test_failures_in_case;
static char tmpdir[4096];

static void remove_tmpdir(void)
{
	if (tmpdir[0] && !getenv("VMO_KEEP_TMP")) {
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
}

const char *test_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/vmotest.XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			exit(1);
		}
		atexit(remove_tmpdir);
	}
	return tmpdir;
}

static int vsh(char **out, const char *fmt, va_list ap)
{
	char *cmd = NULL;
	if (vasprintf(&cmd, fmt, ap) < 0)
		return -1;
	int status;
	if (out) {
		FILE *p = popen(cmd, "r");
		if (!p) {
			free(cmd);
			return -1;
		}
		size_t cap = 4096, len = 0;
		char *buf = malloc(cap);
		size_t n;
		while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
			len += n;
			if (cap - len < 2)
				buf = realloc(buf, cap *= 2);
		}
		buf[len] = 0;
		*out = buf;
		status = pclose(p);
	} else {
		status = system(cmd);
	}
	free(cmd);
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int test_sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsh(NULL, fmt, ap);
	va_end(ap);
	return r;
}

int test_sh_out(char **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsh(out, fmt, ap);
	va_end(ap);
	return r;
}

void test_require_program(const char *prog)
{
	if (test_sh("command -v '%s' >/dev/null 2>&1", prog) != 0) {
		fprintf(stderr, "FATAL: required program '%s' is missing; run the README's set-up\n", prog);
		exit(1);
	}
}

int test_main(int argc, char **argv, const struct test_case *cases)
{
	int passed = 0, failed = 0;
	for (const struct test_case *c = cases; c->name; c++) {
		if (argc > 1) {
			bool wanted = false;
			for (int i = 1; i < argc; i++)
				wanted |= strcmp(argv[i], c->name) == 0;
			if (!wanted)
				continue;
		}
		test_failures_in_case = 0;
		c->fn();
		if (test_failures_in_case) {
			failed++;
			printf("FAIL %s\n", c->name);
		} else {
			passed++;
			printf("ok   %s\n", c->name);
		}
		fflush(stdout);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
