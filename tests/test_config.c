/* Configuration, command line and translations: every valid key, every
 * error with its exact line, precedence (command line > environment > file
 * > defaults) through real environment variables and the env callback, and
 * the messages in German and Chinese from the .mo files the build made. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "i18n.h"
#include "testlib.h"

/* ---- helpers ---- */

static char *tmp_path(const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", test_tmpdir(), name) < 0)
		abort();
	return p;
}

/* Writes a file under the test's directory; returns its path (malloc'd). */
static char *write_file(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *write_file(const char *name, const char *fmt, ...)
{
	char *path = tmp_path(name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		abort();
	}
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	return path;
}

/* Two image-sized files standing in for overlay/base: config only checks
 * that they exist and are files; the image module reads their headers. */
static const char *img(const char *name)
{
	static char paths[16][PATH_MAX];
	static int n;
	char *p = tmp_path(name);
	if (access(p, F_OK) != 0) {
		int fd = open(p, O_CREAT | O_WRONLY, 0644);
		if (fd < 0 || ftruncate(fd, 65536) != 0)
			abort();
		close(fd);
	}
	char *slot = paths[n++ % 16];
	snprintf(slot, PATH_MAX, "%s", p);
	free(p);
	return slot;
}

/* A fake environment for the env callback: NAME=VALUE pairs. */
static const char *fake_env[16];

static const char *fake_getenv(const char *name)
{
	size_t n = strlen(name);
	for (int i = 0; fake_env[i]; i++)
		if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=')
			return fake_env[i] + n + 1;
	return NULL;
}

static void set_fake_env(const char *first, ...)
{
	va_list ap;
	va_start(ap, first);
	int i = 0;
	for (const char *s = first; s && i < 15; s = va_arg(ap, const char *))
		fake_env[i++] = s;
	fake_env[i] = NULL;
	va_end(ap);
}

static void clear_seed_env(void)
{
	unsetenv("VM_NAME");
	unsetenv("OVERLAY_PATH");
	unsetenv("BASE_PATH");
}

/* Loads FILE (as --config) with the fake environment. */
static struct config *load(const char *file, char **err)
{
	struct cli cli = {0};
	cli.config_path = (char *)file;
	set_fake_env(NULL);
	return config_load(&cli, fake_getenv, err);
}

/* Loads a file that must fail and checks the complete error text. */
static void expect_error(const char *content, const char *expected_fmt)
{
	char *path = write_file("bad.conf", "%s", content);
	char *err = NULL;
	struct config *cfg = load(path, &err);
	char *expected = NULL;
	if (asprintf(&expected, expected_fmt, path) < 0)
		abort();
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, expected);
	config_free(cfg);
	free(err);
	free(expected);
	free(path);
}

static void use_locale(const char *lang)
{
	unsetenv("LC_ALL");
	unsetenv("LC_MESSAGES");
	unsetenv("LANGUAGE");
	setenv("LANG", lang, 1);
	i18n_init();
}

/* ---- valid files ---- */

static void test_defaults_without_file(void)
{
	use_locale("C.UTF-8");
	char *dir = tmp_path("xdg-empty");
	mkdir(dir, 0755);
	char *xdg = NULL;
	if (asprintf(&xdg, "XDG_CONFIG_HOME=%s", dir) < 0)
		abort();
	set_fake_env(xdg, NULL);
	struct cli cli = {0};
	char *err = NULL;
	struct config *cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	CHECK(err == NULL);
	CHECK(cfg->path == NULL);
	CHECK_STR_EQ(cfg->connect, "qemu:///system");
	CHECK_INT_EQ(cfg->reconcile_interval, 300);
	CHECK(cfg->qemu_img == NULL);
	CHECK(cfg->keep_discarded);
	CHECK_INT_EQ(cfg->n_vms, 0);
	CHECK(!cfg->demo && !cfg->verbose);
	config_free(cfg);
	/* cli == NULL is allowed too (reload paths). */
	cfg = config_load(NULL, fake_getenv, &err);
	CHECK(cfg != NULL);
	config_free(cfg);
	free(xdg);
	free(dir);
}

static void test_default_path(void)
{
	setenv("XDG_CONFIG_HOME", "/xdg/home", 1);
	setenv("HOME", "/home/u", 1);
	char *p = config_default_path();
	CHECK_STR_EQ(p, "/xdg/home/vmoverlay/vmoverlay.conf");
	free(p);
	/* The XDG spec: a relative value is ignored. */
	setenv("XDG_CONFIG_HOME", "relative/dir", 1);
	p = config_default_path();
	CHECK_STR_EQ(p, "/home/u/.config/vmoverlay/vmoverlay.conf");
	free(p);
	unsetenv("XDG_CONFIG_HOME");
	p = config_default_path();
	CHECK_STR_EQ(p, "/home/u/.config/vmoverlay/vmoverlay.conf");
	free(p);
}

static void test_file_from_xdg_and_home(void)
{
	use_locale("C.UTF-8");
	char *dir = tmp_path("xdg");
	char *sub = tmp_path("xdg/vmoverlay");
	mkdir(dir, 0755);
	mkdir(sub, 0755);
	char *file = write_file("xdg/vmoverlay/vmoverlay.conf", "reconcile_interval = 7;\n");
	char *xdg = NULL;
	if (asprintf(&xdg, "XDG_CONFIG_HOME=%s", dir) < 0)
		abort();
	set_fake_env(xdg, NULL);
	struct cli cli = {0};
	char *err = NULL;
	struct config *cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	CHECK_STR_EQ(cfg->path, file);
	CHECK_INT_EQ(cfg->reconcile_interval, 7);
	config_free(cfg);

	/* No XDG_CONFIG_HOME: ~/.config, through the real environment. */
	char *home = tmp_path("home");
	mkdir(home, 0755);
	char *cdir = tmp_path("home/.config");
	mkdir(cdir, 0755);
	char *vdir = tmp_path("home/.config/vmoverlay");
	mkdir(vdir, 0755);
	char *hfile =
	    write_file("home/.config/vmoverlay/vmoverlay.conf", "reconcile_interval = 9;\n");
	unsetenv("XDG_CONFIG_HOME");
	setenv("HOME", home, 1);
	cfg = config_load(&cli, NULL, &err);
	REQUIRE(cfg != NULL);
	CHECK_STR_EQ(cfg->path, hfile);
	CHECK_INT_EQ(cfg->reconcile_interval, 9);
	config_free(cfg);
	free(home);
	free(cdir);
	free(vdir);
	free(hfile);
	free(xdg);
	free(file);
	free(sub);
	free(dir);
}

static void test_every_valid_key(void)
{
	use_locale("C.UTF-8");
	const char *ov = img("lab.qcow2"), *base = img("lab-base.qcow2");
	char *path = write_file("all.conf",
				"# every key\n"
				"connect = \"qemu:///session\";\n"
				"reconcile_interval = 0;\n"
				"qemu_img = \"/bin/sh\";\n"
				"keep_discarded = false;\n"
				"vms = (\n"
				"  { name = \"win10\"; policy = \"ask\"; },\n"
				"  { name = \"kiosk\"; policy = \"discard\"; disk = \"vda\"; },\n"
				"  { name = \"lab\";   overlay = \"%s\";\n"
				"    base = \"%s\"; policy = \"commit\"; },\n"
				"  { name = \"old\"; policy = \"keep\"; disk = \"hdb\"; },\n"
				"  { name = \"x\"; disk = \"sda\"; },\n"
				"  { name = \"two\"; disks = [\"vda\", \"vdb\"];\n"
				"    commit_into = \"deepest\"; }\n"
				");\n",
				ov, base);
	char *err = NULL;
	struct config *cfg = load(path, &err);
	if (!cfg)
		fprintf(stderr, "unexpected: %s\n", err);
	REQUIRE(cfg != NULL);
	CHECK(err == NULL);
	CHECK_STR_EQ(cfg->path, path);
	CHECK_STR_EQ(cfg->connect, "qemu:///session");
	CHECK_INT_EQ(cfg->reconcile_interval, 0);
	CHECK_STR_EQ(cfg->qemu_img, "/bin/sh");
	CHECK(!cfg->keep_discarded);
	REQUIRE(cfg->n_vms == 6);
	const struct vm_config *w = config_find_vm(cfg, "win10");
	REQUIRE(w != NULL);
	CHECK_INT_EQ(w->policy, POLICY_ASK);
	CHECK(w->disk == NULL && w->overlay == NULL && w->base == NULL);
	CHECK_INT_EQ(w->line, 7);
	const struct vm_config *k = config_find_vm(cfg, "kiosk");
	REQUIRE(k != NULL);
	CHECK_INT_EQ(k->policy, POLICY_DISCARD);
	CHECK_STR_EQ(k->disk, "vda");
	CHECK_INT_EQ(k->line, 8);
	const struct vm_config *l = config_find_vm(cfg, "lab");
	REQUIRE(l != NULL);
	CHECK_INT_EQ(l->policy, POLICY_COMMIT);
	CHECK_STR_EQ(l->overlay, ov);
	CHECK_STR_EQ(l->base, base);
	CHECK_INT_EQ(l->line, 9);
	const struct vm_config *o = config_find_vm(cfg, "old");
	REQUIRE(o != NULL);
	CHECK_INT_EQ(o->policy, POLICY_KEEP);
	CHECK_STR_EQ(o->disk, "hdb");
	CHECK_STR_EQ(config_find_vm(cfg, "x")->disk, "sda");
	CHECK_INT_EQ(config_find_vm(cfg, "x")->n_disks, 1);
	CHECK_INT_EQ(config_find_vm(cfg, "x")->commit_into, COMMIT_INTO_BACKING);
	CHECK_INT_EQ(w->n_disks, 0);
	const struct vm_config *two = config_find_vm(cfg, "two");
	REQUIRE(two && two->n_disks == 2);
	CHECK_STR_EQ(two->disks[0], "vda");
	CHECK_STR_EQ(two->disks[1], "vdb");
	CHECK(two->disk == NULL);
	CHECK_INT_EQ(two->commit_into, COMMIT_INTO_DEEPEST);
	CHECK(config_find_vm(cfg, "nope") == NULL);
	/* Order is the file's order. */
	CHECK_STR_EQ(cfg->vms[0].name, "win10");
	CHECK_STR_EQ(cfg->vms[4].name, "x");
	config_free(cfg);
	free(path);
}

static void test_int64_and_include(void)
{
	use_locale("C.UTF-8");
	/* 64-bit literal within int range, and @include relative to the file. */
	char *inc = write_file("part.conf", "keep_discarded = true;\n");
	char *path =
	    write_file("main.conf", "reconcile_interval = 600L;\n@include \"part.conf\"\n");
	char *err = NULL;
	struct config *cfg = load(path, &err);
	REQUIRE(cfg != NULL);
	CHECK_INT_EQ(cfg->reconcile_interval, 600);
	CHECK(cfg->keep_discarded);
	config_free(cfg);
	free(path);
	free(inc);
}

static void test_policy_names(void)
{
	enum vmo_policy p;
	for (int i = 0; i < POLICY_COUNT; i++) {
		CHECK(policy_from_name(policy_name((enum vmo_policy)i), &p));
		CHECK_INT_EQ(p, i);
	}
	CHECK_STR_EQ(policy_name(POLICY_DISCARD), "discard");
	CHECK(!policy_from_name("Ask", &p));
	CHECK(!policy_from_name("", &p));
	CHECK(!policy_from_name(NULL, &p));
}

/* ---- errors, each with its exact line ---- */

static void test_error_syntax(void)
{
	use_locale("C.UTF-8");
	expect_error("connect = \"qemu:///system\";\n\nreconcile_interval = ;\n",
		     "%s:3: syntax error");
	expect_error("vms = (\n  { name = \"a\"; }\n  { name = \"b\"; }\n);\n",
		     "%s:3: syntax error");
	expect_error("connect = \"a\";\nconnect = \"b\";\n", "%s:2: duplicate setting name");
	/* libconfig reports an unterminated string where it hit the end. */
	expect_error("connect = \"unterminated;\n", "%s:2: syntax error");
}

static void test_error_unknown_policy(void)
{
	use_locale("C.UTF-8");
	expect_error("vms = (\n  { name = \"a\";\n    policy = \"sometimes\"; }\n);\n",
		     "%s:3: unknown policy \"sometimes\" (expected ask, commit, discard or keep)");
}

static void test_error_types(void)
{
	use_locale("C.UTF-8");
	expect_error("connect = 5;\n", "%s:1: \"connect\" must be a string in double quotes");
	expect_error("\nreconcile_interval = \"300\";\n",
		     "%s:2: \"reconcile_interval\" must be a whole number of seconds");
	expect_error("reconcile_interval = 1.5;\n",
		     "%s:1: \"reconcile_interval\" must be a whole number of seconds");
	expect_error("keep_discarded = 1;\n", "%s:1: \"keep_discarded\" must be true or false");
	expect_error("qemu_img = true;\n", "%s:1: \"qemu_img\" must be a string in double quotes");
	expect_error("vms = { name = \"a\"; };\n",
		     "%s:1: \"vms\" must be a list: vms = ( { name = \"...\"; }, ... );");
	expect_error("vms = ( \"a\" );\n",
		     "%s:1: each entry of \"vms\" must be a group: { name = \"...\"; }");
	expect_error("vms = (\n { name = 3; }\n);\n",
		     "%s:2: \"name\" must be a string in double quotes");
	expect_error("vms = (\n { name = \"a\";\n   disk = 1; }\n);\n",
		     "%s:3: \"disk\" must be a string in double quotes");
	expect_error("vms = (\n { name = \"a\";\n   disk = \"../vda\"; }\n);\n",
		     "%s:3: \"../vda\" is not a disk target name such as vda, sda or hdb");
	expect_error("connect = \"\";\n", "%s:1: \"connect\" must not be empty");
	expect_error("vms = (\n { name = \"a\";\n   disks = \"vda\"; }\n);\n",
		     "%s:3: \"disks\" must be a list of disk targets: [\"vda\", \"vdb\"]");
	expect_error("vms = (\n { name = \"a\";\n   disks = [ ]; }\n);\n",
		     "%s:3: \"disks\" is empty; name at least one disk or leave it out");
	expect_error("vms = (\n { name = \"a\";\n   disks = [\"vda\", \"vda\"]; }\n);\n",
		     "%s:3: disk vda is listed twice in \"disks\"");
	expect_error("vms = (\n { name = \"a\";\n   disks = [\"vda\", \"x/y\"]; }\n);\n",
		     "%s:3: \"x/y\" is not a disk target name such as vda, sda or hdb");
	expect_error("vms = (\n { name = \"a\"; disk = \"vda\";\n   disks = [\"vdb\"]; }\n);\n",
		     "%s:3: use either \"disk\" or \"disks\", not both");
	expect_error("vms = (\n { name = \"a\"; disks = [\"vda\", \"vdb\"];\n"
		     "   base = \"/b.qcow2\"; }\n);\n",
		     "%s:3: \"overlay\" and \"base\" name one disk; leave them out when \"disks\" "
		     "lists several");
	expect_error("vms = (\n { name = \"a\";\n   commit_into = \"top\"; }\n);\n",
		     "%s:3: unknown commit_into \"top\" (expected backing or deepest)");
	expect_error("vms = (\n { name = \"a\";\n   disks = [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\","
		     "\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]; }\n);\n",
		     "%s:3: \"disks\" lists 17 disks; at most 16 are supported");
}

static void test_error_paths(void)
{
	use_locale("C.UTF-8");
	const char *ov = img("p-ov.qcow2"), *base = img("p-base.qcow2");
	char *content = NULL, *expected = NULL;

	expect_error("vms = (\n { name = \"a\";\n   overlay = \"rel/ov.qcow2\"; }\n);\n",
		     "%s:3: overlay \"rel/ov.qcow2\" is not an absolute path");
	if (asprintf(&content,
		     "vms = (\n { name = \"a\"; overlay = \"%s\";\n   base = \"b.qcow2\"; }\n);\n",
		     ov) < 0)
		abort();
	expect_error(content, "%s:3: base \"b.qcow2\" is not an absolute path");
	free(content);

	/* Missing overlay; missing base (only checked when given). */
	char *missing = tmp_path("missing.qcow2");
	if (asprintf(&content, "vms = (\n\n { name = \"a\"; overlay = \"%s\"; }\n);\n", missing) <
		0 ||
	    asprintf(&expected, "%%s:3: overlay image \"%s\" does not exist", missing) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);
	if (asprintf(&content,
		     "vms = (\n { name = \"a\"; overlay = \"%s\";\n\n\n   base = \"%s\"; }\n);\n",
		     ov, missing) < 0 ||
	    asprintf(&expected, "%%s:5: base image \"%s\" does not exist", missing) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);

	/* A directory is not an image. */
	if (asprintf(&content, "vms = ( { name = \"a\"; overlay = \"%s\"; } );\n", test_tmpdir()) <
		0 ||
	    asprintf(&expected, "%%s:1: overlay image \"%s\" is not a file", test_tmpdir()) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);

	/* overlay == base: same string, and the same file under another name. */
	if (asprintf(&content,
		     "vms = (\n { name = \"a\"; overlay = \"%s\";\n   base = \"%s\"; }\n);\n", ov,
		     ov) < 0 ||
	    asprintf(&expected, "%%s:3: overlay and base are the same file \"%s\"", ov) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);
	char *link = tmp_path("ov-link.qcow2");
	unlink(link);
	REQUIRE(symlink(ov, link) == 0);
	if (asprintf(&content,
		     "vms = (\n { name = \"a\"; overlay = \"%s\";\n   base = \"%s\"; }\n);\n", ov,
		     link) < 0 ||
	    asprintf(&expected, "%%s:3: overlay and base are the same file \"%s\"", link) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);

	/* Two VMs on one overlay would fight over it. */
	if (asprintf(&content,
		     "vms = (\n { name = \"a\"; overlay = \"%s\"; },\n { name = \"b\";\n overlay = "
		     "\"%s\"; }\n);\n",
		     ov, link) < 0 ||
	    asprintf(&expected, "%%s:4: overlay \"%s\" is already used by VM \"a\"", link) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);

	expect_error("qemu_img = \"qemu-img\";\n",
		     "%s:1: qemu_img \"qemu-img\" is not an absolute path");
	char *nox = write_file("not-executable", "x");
	chmod(nox, 0644);
	if (geteuid() != 0) { /* root may execute anything with an x bit only */
		if (asprintf(&content, "qemu_img = \"%s\";\n", nox) < 0 ||
		    asprintf(&expected, "%%s:1: qemu_img \"%s\" cannot be run: Permission denied",
			     nox) < 0)
			abort();
		expect_error(content, expected);
		free(content);
		free(expected);
	}
	if (asprintf(&content, "\nqemu_img = \"%s\";\n", missing) < 0 ||
	    asprintf(&expected, "%%s:2: qemu_img \"%s\" cannot be run: No such file or directory",
		     missing) < 0)
		abort();
	expect_error(content, expected);
	free(content);
	free(expected);
	free(nox);
	free(link);
	free(missing);
	(void)base;
}

static void test_error_duplicate_and_name(void)
{
	use_locale("C.UTF-8");
	expect_error("vms = (\n  { name = \"win10\"; },\n  { name = \"lab\"; },\n\n  { name = "
		     "\"win10\"; }\n);\n",
		     "%s:5: VM \"win10\" is already defined on line 2");
	/* The first entry's own error does not hide the duplicate. */
	expect_error("vms = (\n  { name = \"a\"; policy = \"sometimes\"; },\n  { name = \"a\"; }\n);\n",
		     "%1$s:2: unknown policy \"sometimes\" (expected ask, commit, discard or keep)\n"
		     "%1$s:3: VM \"a\" is already defined on line 2");
	expect_error("vms = (\n  { policy = \"ask\"; }\n);\n", "%s:2: VM entry without \"name\"");
	expect_error("vms = (\n  { name = \"\"; }\n);\n", "%s:2: the VM name must not be empty");
}

static void test_error_reconcile(void)
{
	use_locale("C.UTF-8");
	expect_error("reconcile_interval = -1;\n",
		     "%s:1: \"reconcile_interval\" must not be negative");
	expect_error("reconcile_interval = 99999999999L;\n",
		     "%s:1: \"reconcile_interval\" is too large");
}

static void test_errors_all_collected(void)
{
	use_locale("C.UTF-8");
	expect_error("connect = 1;\n"
		     "reconcile_interval = -5;\n"
		     "vms = (\n"
		     "  { name = \"a\"; policy = \"never\"; },\n"
		     "  { name = \"b\"; overlay = \"x.qcow2\"; },\n"
		     "  { name = \"b\"; }\n"
		     ");\n",
		     "%1$s:1: \"connect\" must be a string in double quotes\n"
		     "%1$s:2: \"reconcile_interval\" must not be negative\n"
		     "%1$s:4: unknown policy \"never\" (expected ask, commit, discard or keep)\n"
		     "%1$s:6: VM \"b\" is already defined on line 5\n"
		     "%1$s:5: overlay \"x.qcow2\" is not an absolute path");
}

static void test_missing_config_file(void)
{
	use_locale("C.UTF-8");
	char *missing = tmp_path("nope.conf");
	char *err = NULL;
	struct config *cfg = load(missing, &err);
	CHECK(cfg == NULL);
	char *expected = NULL;
	if (asprintf(&expected, "%s: cannot read the configuration file: No such file or directory",
		     missing) < 0)
		abort();
	CHECK_STR_EQ(err, expected);
	free(expected);
	free(err);
	/* A directory given as the file. */
	cfg = load(test_tmpdir(), &err);
	CHECK(cfg == NULL);
	CHECK(err && strstr(err, "cannot read the configuration file: Is a directory"));
	free(err);
	free(missing);
}

/* Runs fn with stderr going to a file; returns what was written. */
static char *capture_stderr(struct config *(*fn)(const char *, char **), const char *arg,
			    struct config **cfg, char **err)
{
	char *out = tmp_path("stderr.txt");
	fflush(stderr);
	int saved = dup(2);
	int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	dup2(fd, 2);
	close(fd);
	*cfg = fn(arg, err);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char *text = NULL;
	test_sh_out(&text, "cat '%s'", out);
	free(out);
	return text;
}

static void test_unknown_keys_warn(void)
{
	use_locale("C.UTF-8");
	char *path = write_file("warn.conf", "connect = \"test:///default\";\n"
					     "colour = \"blue\";\n"
					     "vms = (\n"
					     "  { name = \"a\";\n"
					     "    polciy = \"commit\"; }\n"
					     ");\n");
	struct config *cfg = NULL;
	char *err = NULL;
	char *log = capture_stderr(load, path, &cfg, &err);
	REQUIRE(cfg != NULL); /* warnings are not fatal */
	CHECK(err == NULL);
	CHECK_STR_EQ(cfg->connect, "test:///default");
	CHECK_INT_EQ(cfg->vms[0].policy, POLICY_ASK);
	char *w1 = NULL, *w2 = NULL;
	if (asprintf(&w1, "%s:2: unknown setting \"colour\" ignored", path) < 0 ||
	    asprintf(&w2, "%s:5: unknown setting \"polciy\" ignored", path) < 0)
		abort();
	CHECK(log && strstr(log, w1));
	CHECK(log && strstr(log, w2));
	if (log && (!strstr(log, w1) || !strstr(log, w2)))
		fprintf(stderr, "log was: %s\n", log);
	free(w1);
	free(w2);
	free(log);
	config_free(cfg);
	free(path);
}

/* ---- precedence ---- */

static void test_precedence(void)
{
	use_locale("C.UTF-8");
	clear_seed_env();
	const char *f_ov = img("f-ov.qcow2"), *f_base = img("f-base.qcow2");
	const char *e_ov = img("e-ov.qcow2"), *e_base = img("e-base.qcow2");
	const char *c_ov = img("c-ov.qcow2");
	char *path = write_file("prec.conf",
				"connect = \"qemu:///session\";\n"
				"vms = (\n"
				"  { name = \"lab\"; policy = \"discard\"; disk = \"vdb\";\n"
				"    overlay = \"%s\"; base = \"%s\"; },\n"
				"  { name = \"other\"; }\n"
				");\n",
				f_ov, f_base);
	struct cli cli = {0};
	cli.config_path = path;
	char *err = NULL;

	/* file over defaults */
	struct config *cfg = config_load(&cli, NULL, &err);
	REQUIRE(cfg != NULL);
	CHECK_STR_EQ(cfg->connect, "qemu:///session");
	CHECK_STR_EQ(config_find_vm(cfg, "lab")->overlay, f_ov);
	config_free(cfg);

	/* environment over file (real environment variables) */
	setenv("VM_NAME", "lab", 1);
	setenv("OVERLAY_PATH", e_ov, 1);
	cfg = config_load(&cli, NULL, &err);
	REQUIRE(cfg != NULL);
	const struct vm_config *v = config_find_vm(cfg, "lab");
	CHECK_STR_EQ(v->overlay, e_ov);
	CHECK_STR_EQ(v->base, f_base); /* not overridden: the file's */
	CHECK_STR_EQ(v->disk, "vdb");
	CHECK_INT_EQ(v->policy, POLICY_DISCARD);
	CHECK_INT_EQ(v->line, 3);
	CHECK_INT_EQ(cfg->n_vms, 2);
	config_free(cfg);

	/* command line over environment */
	cli.overlay = (char *)c_ov;
	cli.connect = "test:///default";
	cli.policy_set = true;
	cli.policy = POLICY_KEEP;
	setenv("BASE_PATH", e_base, 1);
	cfg = config_load(&cli, NULL, &err);
	REQUIRE(cfg != NULL);
	v = config_find_vm(cfg, "lab");
	CHECK_STR_EQ(v->overlay, c_ov);
	CHECK_STR_EQ(v->base, e_base);
	CHECK_INT_EQ(v->policy, POLICY_KEEP);
	CHECK_STR_EQ(cfg->connect, "test:///default");
	CHECK_INT_EQ(config_find_vm(cfg, "other")->policy, POLICY_ASK);
	config_free(cfg);
	clear_seed_env();

	/* the same through the env callback, real environment ignored */
	setenv("VM_NAME", "ignored", 1);
	char *e1 = NULL, *e2 = NULL;
	if (asprintf(&e1, "OVERLAY_PATH=%s", e_ov) < 0 || asprintf(&e2, "BASE_PATH=%s", e_base) < 0)
		abort();
	set_fake_env("VM_NAME=lab", e1, e2, NULL);
	cli.overlay = NULL;
	cli.connect = NULL;
	cli.policy_set = false;
	cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	v = config_find_vm(cfg, "lab");
	CHECK_STR_EQ(v->overlay, e_ov);
	CHECK_STR_EQ(v->base, e_base);
	CHECK(config_find_vm(cfg, "ignored") == NULL);
	config_free(cfg);
	clear_seed_env();

	/* a VM only in the environment is added (line 0); empty = unset */
	set_fake_env("VM_NAME=envvm", e1, "BASE_PATH=", NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	REQUIRE(cfg->n_vms == 3);
	v = config_find_vm(cfg, "envvm");
	REQUIRE(v != NULL);
	CHECK_STR_EQ(v->overlay, e_ov);
	CHECK(v->base == NULL);
	CHECK_INT_EQ(v->line, 0);
	CHECK_INT_EQ(v->policy, POLICY_ASK);
	config_free(cfg);

	/* The command line's VM replaces VM_NAME: the environment's paths
	 * belong to the other VM and are not applied. */
	cli.vm = "cli";
	cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	CHECK(config_find_vm(cfg, "envvm") == NULL);
	v = config_find_vm(cfg, "cli");
	REQUIRE(v != NULL);
	CHECK(v->overlay == NULL);
	config_free(cfg);

	/* OVERLAY_PATH without VM_NAME belongs to the command line's VM. */
	set_fake_env(e1, NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	CHECK_STR_EQ(config_find_vm(cfg, "cli")->overlay, e_ov);
	config_free(cfg);

	/* --policy without any VM applies to every configured VM. */
	set_fake_env(NULL);
	cli.vm = NULL;
	cli.policy_set = true;
	cli.policy = POLICY_COMMIT;
	cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	CHECK_INT_EQ(config_find_vm(cfg, "lab")->policy, POLICY_COMMIT);
	CHECK_INT_EQ(config_find_vm(cfg, "other")->policy, POLICY_COMMIT);
	config_free(cfg);

	/* demo/verbose come from the command line */
	cli.policy_set = false;
	cli.demo = cli.verbose = true;
	cfg = config_load(&cli, fake_getenv, &err);
	REQUIRE(cfg != NULL);
	CHECK(cfg->demo && cfg->verbose);
	config_free(cfg);

	free(e1);
	free(e2);
	free(path);
}

static void test_cli_env_errors(void)
{
	use_locale("C.UTF-8");
	char *dir = tmp_path("xdg-none");
	mkdir(dir, 0755);
	char *xdg = NULL;
	if (asprintf(&xdg, "XDG_CONFIG_HOME=%s", dir) < 0)
		abort();
	struct cli cli = {0};
	char *err = NULL;
	struct config *cfg;

	cli.vm = "a";
	cli.overlay = "rel.qcow2";
	set_fake_env(xdg, NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, "--overlay: overlay \"rel.qcow2\" is not an absolute path");
	free(err);

	char *missing = tmp_path("gone.qcow2"), *expected = NULL, *e = NULL;
	if (asprintf(&e, "OVERLAY_PATH=%s", missing) < 0 ||
	    asprintf(&expected,
		     "OVERLAY_PATH: overlay image \"%s\" does not exist\n"
		     "BASE_PATH: base \"b\" is not an absolute path",
		     missing) < 0)
		abort();
	cli.overlay = NULL;
	set_fake_env(xdg, e, "BASE_PATH=b", NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, expected);
	free(err);

	/* paths without a VM */
	cli.vm = NULL;
	cli.base = "/x";
	set_fake_env(xdg, NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, "--base: no VM named; use: vmoverlay VM --overlay PATH --base PATH");
	free(err);
	cli.base = NULL;
	set_fake_env(xdg, "OVERLAY_PATH=/x", NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, "OVERLAY_PATH: no VM named; set VM_NAME as well");
	free(err);

	cli.vm = "";
	set_fake_env(xdg, NULL);
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, "VM: the VM name must not be empty");
	free(err);

	cli.vm = NULL;
	cli.connect = "";
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg == NULL);
	CHECK_STR_EQ(err, "--connect: \"connect\" must not be empty");
	free(err);

	/* The command line fixes what the file got wrong: only the winning
	 * value is checked. */
	char *path =
	    write_file("fixme.conf", "vms = ( { name = \"a\"; overlay = \"%s\"; } );\n", missing);
	cli.connect = NULL;
	cli.config_path = path;
	cli.vm = "a";
	cli.overlay = (char *)img("fix.qcow2");
	cfg = config_load(&cli, fake_getenv, &err);
	CHECK(cfg != NULL);
	config_free(cfg);

	free(path);
	free(e);
	free(expected);
	free(missing);
	free(xdg);
	free(dir);
}

/* ---- command line parsing ---- */

static bool parse(struct cli *cli, char **err, ...)
{
	char *argv[32] = {"vmoverlay"};
	int argc = 1;
	va_list ap;
	va_start(ap, err);
	for (char *a; (a = va_arg(ap, char *)) && argc < 31;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return cli_parse(argc, argv, cli, err);
}

static void test_cli_options(void)
{
	use_locale("C.UTF-8");
	struct cli cli;
	char *err = NULL;

	REQUIRE(parse(&cli, &err, NULL));
	CHECK_INT_EQ(cli.mode, CLI_RUN);
	CHECK(!cli.vm && !cli.overlay && !cli.base && !cli.connect && !cli.config_path);
	CHECK(!cli.policy_set && !cli.demo && !cli.verbose);
	cli_free(&cli);

	/* --opt value and --opt=value, options before and after the VM. */
	REQUIRE(parse(&cli, &err, "--overlay", "/o.qcow2", "win10", "--base=/b.qcow2", "--connect",
		      "qemu:///session", "--config=/c.conf", "--policy", "discard", "--demo",
		      "--verbose", NULL));
	CHECK_INT_EQ(cli.mode, CLI_RUN);
	CHECK_STR_EQ(cli.vm, "win10");
	CHECK_STR_EQ(cli.overlay, "/o.qcow2");
	CHECK_STR_EQ(cli.base, "/b.qcow2");
	CHECK_STR_EQ(cli.connect, "qemu:///session");
	CHECK_STR_EQ(cli.config_path, "/c.conf");
	CHECK(cli.policy_set);
	CHECK_INT_EQ(cli.policy, POLICY_DISCARD);
	CHECK(cli.demo && cli.verbose);
	cli_free(&cli);

	REQUIRE(parse(&cli, &err, "--policy=keep", "--connect=test:///default", "--overlay=/o",
		      "--base", "/b", "--config", "c.conf", "-v", NULL));
	CHECK_INT_EQ(cli.policy, POLICY_KEEP);
	CHECK_STR_EQ(cli.connect, "test:///default");
	CHECK_STR_EQ(cli.config_path, "c.conf");
	CHECK(cli.verbose);
	cli_free(&cli);

	REQUIRE(parse(&cli, &err, "--check-config", "--config", "bad.conf", NULL));
	CHECK_INT_EQ(cli.mode, CLI_CHECK_CONFIG);
	CHECK_STR_EQ(cli.config_path, "bad.conf");
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "--version", NULL));
	CHECK_INT_EQ(cli.mode, CLI_VERSION);
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "-V", NULL));
	CHECK_INT_EQ(cli.mode, CLI_VERSION);
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "--help", NULL));
	CHECK_INT_EQ(cli.mode, CLI_HELP);
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "-h", "--version", "--check-config", NULL));
	CHECK_INT_EQ(cli.mode, CLI_HELP);
	cli_free(&cli);
	/* An unambiguous abbreviation, as getopt_long allows. */
	REQUIRE(parse(&cli, &err, "--over=/o", "vm", NULL));
	CHECK_STR_EQ(cli.overlay, "/o");
	cli_free(&cli);
	/* "--" ends options: a VM that looks like an option. */
	REQUIRE(parse(&cli, &err, "--", "--weird", NULL));
	CHECK_STR_EQ(cli.vm, "--weird");
	cli_free(&cli);
	/* parsing again in the same process starts over */
	REQUIRE(parse(&cli, &err, "--demo", NULL));
	CHECK(cli.demo);
	CHECK(!cli.vm);
	cli_free(&cli);
}

static void test_cli_verbs(void)
{
	use_locale("C.UTF-8");
	struct cli cli;
	char *err = NULL;
	REQUIRE(parse(&cli, &err, "status", NULL));
	CHECK_INT_EQ(cli.mode, CLI_STATUS);
	CHECK(!cli.vm);
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "quit", NULL));
	CHECK_INT_EQ(cli.mode, CLI_QUIT);
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "commit", "win10", NULL));
	CHECK_INT_EQ(cli.mode, CLI_COMMIT);
	CHECK_STR_EQ(cli.vm, "win10");
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "discard", "--config", "/c", "lab", NULL));
	CHECK_INT_EQ(cli.mode, CLI_DISCARD);
	CHECK_STR_EQ(cli.vm, "lab");
	CHECK_STR_EQ(cli.config_path, "/c");
	cli_free(&cli);
	REQUIRE(parse(&cli, &err, "keep", "kiosk", "-v", NULL));
	CHECK_INT_EQ(cli.mode, CLI_KEEP);
	CHECK_STR_EQ(cli.vm, "kiosk");
	cli_free(&cli);
	/* A VM named like a verb needs "--" ... no: the first operand is the
	 * verb; the VM after it may be called anything. */
	REQUIRE(parse(&cli, &err, "commit", "status", NULL));
	CHECK_INT_EQ(cli.mode, CLI_COMMIT);
	CHECK_STR_EQ(cli.vm, "status");
	cli_free(&cli);
	/* Not a verb: the VM to watch. */
	REQUIRE(parse(&cli, &err, "statuses", NULL));
	CHECK_INT_EQ(cli.mode, CLI_RUN);
	CHECK_STR_EQ(cli.vm, "statuses");
	cli_free(&cli);
	CHECK(cli_usage() && strstr(cli_usage(), "--check-config") &&
	      strstr(cli_usage(), "commit VM"));
}

static void expect_cli_error(const char *expected, ...)
{
	char *argv[32] = {"vmoverlay"};
	int argc = 1;
	va_list ap;
	va_start(ap, expected);
	for (char *a; (a = va_arg(ap, char *)) && argc < 31;)
		argv[argc++] = a;
	va_end(ap);
	struct cli cli;
	char *err = NULL;
	CHECK(!cli_parse(argc, argv, &cli, &err));
	CHECK_STR_EQ(err, expected);
	/* cli is left empty */
	CHECK(!cli.vm && !cli.overlay && !cli.config_path);
	free(err);
}

static void test_cli_errors(void)
{
	use_locale("C.UTF-8");
	expect_cli_error("unknown option \"--frobnicate\"", "--frobnicate", NULL);
	expect_cli_error("unknown option \"--frob\"", "--frob=1", NULL);
	expect_cli_error("unknown option \"-x\"", "-x", NULL);
	expect_cli_error("unknown option \"-x\"", "-vx", NULL);
	expect_cli_error("option \"--overlay\" needs a value", "win10", "--overlay", NULL);
	expect_cli_error("option \"--config\" needs a value", "--check-config", "--config", NULL);
	expect_cli_error("option \"--demo\" does not take a value", "--demo=yes", NULL);
	expect_cli_error("option \"--c\" is ambiguous", "--c", "x", NULL);
	expect_cli_error(
	    "--policy: unknown policy \"maybe\" (expected ask, commit, discard or keep)",
	    "--policy", "maybe", NULL);
	expect_cli_error("\"commit\" needs a VM name, e.g. \"vmoverlay commit win10\"", "commit",
			 NULL);
	expect_cli_error("\"discard\" needs a VM name, e.g. \"vmoverlay discard win10\"", "discard",
			 NULL);
	expect_cli_error("\"keep\" needs a VM name, e.g. \"vmoverlay keep win10\"", "keep", "-v",
			 NULL);
	expect_cli_error("the VM name must not be empty", "commit", "", NULL);
	expect_cli_error("unexpected argument \"extra\"", "win10", "extra", NULL);
	expect_cli_error("unexpected argument \"lab\"", "status", "lab", NULL);
	expect_cli_error("unexpected argument \"b\"", "commit", "a", "b", NULL);
	expect_cli_error("option \"--overlay\" cannot be used with \"commit\"", "commit", "a",
			 "--overlay", "/o", NULL);
	expect_cli_error("option \"--check-config\" cannot be used with \"quit\"", "quit",
			 "--check-config", NULL);
}

/* ---- translations ---- */

static char *policy_error(void)
{
	char *path =
	    write_file("i18n.conf", "vms = (\n  { name = \"a\";\n    policy = \"x\"; }\n);\n");
	char *err = NULL;
	struct config *cfg = load(path, &err);
	config_free(cfg);
	free(path);
	return err;
}

static void test_translated_messages(void)
{
	char *expected = NULL, *err = NULL;
	char *path = tmp_path("i18n.conf");

	use_locale("de_DE.UTF-8");
	REQUIRE(strcmp(gettext("syntax error"), "Syntaxfehler") == 0);
	err = policy_error();
	if (asprintf(&expected,
		     "%s:3: unbekannte Richtlinie „x“ (erwartet: ask, commit, discard oder keep)",
		     path) < 0)
		abort();
	CHECK_STR_EQ(err, expected);
	free(err);
	free(expected);
	CHECK(strncmp(cli_usage(), "Aufruf: vmoverlay", 17) == 0);

	use_locale("zh_CN.UTF-8");
	err = policy_error();
	if (asprintf(&expected, "%s:3: 未知策略“x”（应为 ask、commit、discard 或 keep）", path) < 0)
		abort();
	CHECK_STR_EQ(err, expected);
	free(err);
	free(expected);
	CHECK(strncmp(cli_usage(), "用法：vmoverlay", strlen("用法：vmoverlay")) == 0);
	struct cli cli;
	CHECK(!parse(&cli, &err, "commit", NULL));
	CHECK_STR_EQ(err, "“commit”需要虚拟机名称，例如“vmoverlay commit win10”");
	free(err);

	/* LANGUAGE picks the language when the locale itself is not C. */
	unsetenv("LC_ALL");
	setenv("LANG", "en_US.UTF-8", 1);
	setenv("LANGUAGE", "de", 1);
	i18n_init();
	err = policy_error();
	CHECK(err && strstr(err, "unbekannte Richtlinie"));
	free(err);

	/* C: English, whatever LANGUAGE says (gettext ignores it for C). */
	setenv("LANG", "C", 1);
	i18n_init();
	err = policy_error();
	CHECK(err && strstr(err, "unknown policy \"x\""));
	free(err);
	unsetenv("LANGUAGE");

	/* Unknown strings fall back to English. */
	use_locale("de_DE.UTF-8");
	CHECK_STR_EQ(gettext("no such message"), "no such message");
	CHECK_STR_EQ(C_("menu", "no such message"), "no such message");
	free(path);
	use_locale("C.UTF-8");
}

static void test_format_size(void)
{
	char buf[64];
	use_locale("C.UTF-8");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 0), "0 bytes");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1), "1 byte");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 512), "512 bytes");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1023), "1023 bytes");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1024), "1.0 KiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 12 * 1024 + 100), "12 KiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 340ull << 20), "340 MiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, (1ull << 20) - 10), "1.0 MiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1288490189ull), "1.2 GiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 3ull << 40), "3.0 TiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, UINT64_MAX), "16 EiB");
	/* truncation is safe */
	char tiny[4];
	CHECK_STR_EQ(i18n_format_size(tiny, sizeof tiny, 1288490189ull), "1.2");

	use_locale("de_DE.UTF-8");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1288490189ull), "1,2 GiB");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1), "1 Byte");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 512), "512 Byte");
	/* The process keeps C numbers: parsing qemu-img's progress must not
	 * depend on the user's decimal comma. */
	CHECK(strtod("12.5", NULL) == 12.5);
	snprintf(buf, sizeof buf, "%.1f", 2.5);
	CHECK_STR_EQ(buf, "2.5");

	use_locale("zh_CN.UTF-8");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 512), "512 字节");
	CHECK_STR_EQ(i18n_format_size(buf, sizeof buf, 1288490189ull), "1.2 GiB");
	use_locale("C.UTF-8");
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"defaults_without_file", test_defaults_without_file},
	    {"default_path", test_default_path},
	    {"file_from_xdg_and_home", test_file_from_xdg_and_home},
	    {"every_valid_key", test_every_valid_key},
	    {"int64_and_include", test_int64_and_include},
	    {"policy_names", test_policy_names},
	    {"error_syntax", test_error_syntax},
	    {"error_unknown_policy", test_error_unknown_policy},
	    {"error_types", test_error_types},
	    {"error_paths", test_error_paths},
	    {"error_duplicate_and_name", test_error_duplicate_and_name},
	    {"error_reconcile", test_error_reconcile},
	    {"errors_all_collected", test_errors_all_collected},
	    {"missing_config_file", test_missing_config_file},
	    {"unknown_keys_warn", test_unknown_keys_warn},
	    {"precedence", test_precedence},
	    {"cli_env_errors", test_cli_env_errors},
	    {"cli_options", test_cli_options},
	    {"cli_verbs", test_cli_verbs},
	    {"cli_errors", test_cli_errors},
	    {"translated_messages", test_translated_messages},
	    {"format_size", test_format_size},
	    {NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
