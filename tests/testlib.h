/* A tiny test runner: plain asserts that record failures and a main that
 * runs every case and exits non-zero if any failed (so ctest fails). */
#ifndef VMO_TESTLIB_H
#define VMO_TESTLIB_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

extern int test_failures_in_case;

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures_in_case++;                                       \
		}                                                                      \
	} while (0)
/* Stops the current case on failure. */
#define REQUIRE(cond)                                                                  \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures_in_case++;                                       \
			return;                                                        \
		}                                                                      \
	} while (0)
#define CHECK_STR_EQ(a, b)                                                             \
	do {                                                                           \
		const char *a_ = (a), *b_ = (b);                                       \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                               \
			fprintf(stderr, "%s:%d: CHECK_STR_EQ failed: %s = \"%s\", %s = \"%s\"\n", \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)", #b, b_ ? b_ : "(null)"); \
			test_failures_in_case++;                                       \
		}                                                                      \
	} while (0)
#define CHECK_INT_EQ(a, b)                                                             \
	do {                                                                           \
		long long a_ = (long long)(a), b_ = (long long)(b);                    \
		if (a_ != b_) {                                                        \
			fprintf(stderr, "%s:%d: CHECK_INT_EQ failed: %s = %lld, %s = %lld\n", \
				__FILE__, __LINE__, #a, a_, #b, b_);                   \
			test_failures_in_case++;                                       \
		}                                                                      \
	} while (0)

/* Runs the NULL-terminated cases (or only those named in argv[1..]); prints
 * one line per case and "N passed, M failed"; returns the exit code. */
int test_main(int argc, char **argv, const struct test_case *cases);

/* A fresh directory under $TMPDIR, removed (recursively) at exit. */
const char *test_tmpdir(void);
/* Runs a shell command (printf-style); returns its exit status (-1 on
 * failure to run). Tests use it for qemu-img/qemu-io/virsh. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, capturing stdout (malloc'd, NUL-terminated) into *out. */
int test_sh_out(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fails loudly (exit 1) when a required program is missing: a skipped test
 * proves nothing, and the README's set-up installs everything. */
void test_require_program(const char *prog);

#endif
