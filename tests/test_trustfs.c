/* trustfs (issue 13): the privileged helper's file steps on real files,
 * as root (CI is root): who may own the directories and files it touches,
 * no symbolic link followed anywhere, the qemu user from qemu.conf, a
 * rebuild through an unnamed temporary file and /dev/fd, a commit through
 * descriptors, its cancel channel. Files live below /var/lib (a trusted
 * path): under /tmp (mode 1777) everything is refused, which is the point. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"
#include "trustfs.h"

static char dir[64];
static const struct trustfs_ids ids = {.uid = 4242, .gid = 4343};

static void remove_dir(void)
{
	if (dir[0])
		test_sh("rm -rf '%s'", dir);
}

static const char *mkdir_trusted(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/var/lib/vmotrust.XXXXXX");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			exit(1);
		}
		chmod(dir, 0711);
		atexit(remove_dir);
	}
	return dir;
}

static char *path_of(const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", mkdir_trusted(), name) < 0)
		exit(1);
	return p;
}

static void test_qemu_ids(void)
{
	char *conf = path_of("qemu.conf");
	FILE *f = fopen(conf, "w");
	REQUIRE(f);
	fputs("# user = \"nobody\"\n  user = \"+1234\"\ngroup=\"+77\"\n", f);
	fclose(f);
	struct trustfs_ids got = {0};
	char *why = NULL;
	CHECK_INT_EQ(trustfs_qemu_ids(conf, &got, &why), 0);
	CHECK_INT_EQ((int)got.uid, 1234);
	CHECK_INT_EQ((int)got.gid, 77);
	f = fopen(conf, "w");
	REQUIRE(f);
	fputs("user = \"root\"\n", f);
	fclose(f);
	CHECK_INT_EQ(trustfs_qemu_ids(conf, &got, &why), 0);
	CHECK_INT_EQ((int)got.uid, 0);
	CHECK_INT_EQ((int)got.gid, 0);
	f = fopen(conf, "w");
	REQUIRE(f);
	fputs("user = \"no-such-user-vmo\"\n", f);
	fclose(f);
	CHECK(trustfs_qemu_ids(conf, &got, &why) == -ENOENT);
	CHECK(why && strstr(why, "no-such-user-vmo"));
	free(why);
	why = NULL;
	/* All commented out (the shipped file): libvirt-qemu. */
	CHECK_INT_EQ(trustfs_qemu_ids("/nonexistent/qemu.conf", &got, &why), 0);
	CHECK(got.uid != 0);
	free(why);
	free(conf);
}

static int try_open(const char *path, char **why)
{
	struct trustfs_file f;
	free(*why);
	*why = NULL;
	int r = trustfs_open(&ids, path, O_RDONLY, &f, why);
	if (r == 0)
		trustfs_close(&f);
	return r;
}

static void test_open_rules(void)
{
	char *why = NULL;
	REQUIRE(test_sh("cd '%s' && mkdir -m 0755 d && echo x >d/f && chmod 0600 d/f",
			mkdir_trusted()) == 0);
	char *f = path_of("d/f"), *d = path_of("d");
	CHECK_INT_EQ(try_open(f, &why), 0);

	/* The qemu user may own files and directories, root's group may write. */
	REQUIRE(chown(f, ids.uid, ids.gid) == 0 && chown(d, ids.uid, 0) == 0);
	REQUIRE(chmod(d, 0775) == 0);
	CHECK_INT_EQ(try_open(f, &why), 0);
	REQUIRE(chmod(f, 0660) == 0); /* group = the qemu group: still fine */
	CHECK_INT_EQ(try_open(f, &why), 0);

	/* Refused: another owner, another group that may write, anyone may write. */
	REQUIRE(chown(f, 1000, ids.gid) == 0);
	CHECK(try_open(f, &why) == -EPERM);
	CHECK(why && strstr(why, "/d/f is owned by"));
	REQUIRE(chown(f, 0, 1000) == 0);
	CHECK(try_open(f, &why) == -EPERM);
	REQUIRE(chown(f, 0, 0) == 0 && chmod(f, 0602) == 0);
	CHECK(try_open(f, &why) == -EPERM);
	REQUIRE(chmod(f, 0600) == 0);
	CHECK_INT_EQ(try_open(f, &why), 0);
	REQUIRE(chown(d, 0, 1000) == 0); /* dir 0775, group 1000 */
	CHECK(try_open(f, &why) == -EPERM);
	CHECK(why && strstr(why, "/d is owned by"));
	REQUIRE(chown(d, 0, 0) == 0 && chmod(d, 01777) == 0);
	CHECK(try_open(f, &why) == -EPERM);
	REQUIRE(chmod(d, 0755) == 0 && chown(d, 1000, 0) == 0);
	CHECK(try_open(f, &why) == -EPERM);
	REQUIRE(chown(d, 0, 0) == 0);
	CHECK_INT_EQ(try_open(f, &why), 0);
	/* Everything under /tmp (1777). */
	CHECK(try_open("/tmp/anything", &why) == -EPERM);
	CHECK(why && strstr(why, "/tmp is owned by"));

	/* Links: the file, a directory on the way. */
	REQUIRE(test_sh("cd '%s' && ln -s d/f lf && ln -s d ld", mkdir_trusted()) == 0);
	char *lf = path_of("lf"), *ld = path_of("ld/f");
	CHECK(try_open(lf, &why) == -ELOOP);
	CHECK(why && strstr(why, "symbolic link"));
	CHECK(try_open(ld, &why) == -ELOOP);
	/* Not a regular file; odd paths. */
	CHECK(try_open(d, &why) < 0);
	char *dotdot = path_of("d/../d/f");
	CHECK(try_open(dotdot, &why) == -EINVAL);
	CHECK(try_open("relative/f", &why) == -EINVAL);
	free(why);
	free(f);
	free(d);
	free(lf);
	free(ld);
	free(dotdot);
}

static char *img_info(const char *path)
{
	char *out = NULL;
	test_sh_out(&out, "qemu-img info -U --output=json '%s'", path);
	return out;
}

static bool say_no(void *data, char **why)
{
	*why = strdup("the VM started meanwhile");
	return false;
}

static void test_rebuild_and_undo(void)
{
	test_require_program("qemu-img");
	test_require_program("qemu-io");
	const char *t = mkdir_trusted();
	REQUIRE(
	    test_sh("cd '%s' && mkdir -m 0711 r && cd r && qemu-img create -q -f qcow2 b.qcow2 "
		    "32M && qemu-img create -q -f qcow2 -F qcow2 -b b.qcow2 o.qcow2 && "
		    "qemu-io -f qcow2 -c 'write -q -P 0x5a 1M 64k' o.qcow2 && chmod 0640 o.qcow2 "
		    "&& chown %d:%d o.qcow2 && echo secret >victim && ln -s victim "
		    "o.qcow2.discarded",
		    t, (int)ids.uid, (int)ids.gid) == 0);
	char *ov = path_of("r/o.qcow2"), *victim = path_of("r/victim");
	struct trustfs_file f;
	char *err = NULL;
	REQUIRE(trustfs_open(&ids, ov, O_RDONLY, &f, &err) == 0);
	ino_t old_ino = f.st.st_ino;
	struct qcow2_info old;
	REQUIRE(image_read_qcow2_fd(f.fd, ov, &old, &err) == 0);
	/* A symbolic link planted at the .discarded name is replaced, never
	 * followed; the relative backing name is kept as stored. */
	CHECK_INT_EQ(trustfs_rebuild("qemu-img", &f, &old, true, NULL, NULL, &err), 0);
	if (err)
		fprintf(stderr, "rebuild: %s\n", err);
	struct stat st, dst;
	REQUIRE(stat(ov, &st) == 0);
	CHECK(st.st_ino != old_ino);
	CHECK_INT_EQ((int)st.st_uid, (int)ids.uid);
	CHECK_INT_EQ((int)st.st_gid, (int)ids.gid);
	CHECK_INT_EQ((int)(st.st_mode & 07777), 0640);
	char *disc = path_of("r/o.qcow2.discarded");
	REQUIRE(lstat(disc, &dst) == 0);
	CHECK(S_ISREG(dst.st_mode) && dst.st_ino == old_ino);
	char *out = NULL;
	CHECK(test_sh_out(&out, "cat '%s'", victim) == 0 && out && strcmp(out, "secret\n") == 0);
	free(out);
	char *info = img_info(ov);
	CHECK(info && strstr(info, "\"backing-filename\": \"b.qcow2\""));
	CHECK(info && strstr(info, "\"virtual-size\": 33554432"));
	free(info);
	CHECK(test_sh("qemu-io -r -f qcow2 -c 'read -q -P 0 1M 64k' '%s'", ov) == 0);
	/* No file but the three images and the victim (no temporary left). */
	CHECK(test_sh("[ $(ls -A '%s/r' | wc -l) = 4 ]", t) == 0);
	trustfs_close(&f);

	/* Undo: the .discarded file comes back. */
	REQUIRE(trustfs_open(&ids, ov, O_RDONLY, &f, &err) == 0);
	CHECK_INT_EQ(trustfs_undo_discard(&ids, &f, &err), 0);
	REQUIRE(stat(ov, &st) == 0);
	CHECK(st.st_ino == old_ino);
	CHECK(test_sh("qemu-io -r -f qcow2 -c 'read -q -P 0x5a 1M 64k' '%s'", ov) == 0);
	trustfs_close(&f);

	/* Rule 9: libvirt says no right before the rename -> abandoned, the
	 * overlay kept, nothing left behind. */
	REQUIRE(trustfs_open(&ids, ov, O_RDONLY, &f, &err) == 0);
	free(err);
	err = NULL;
	CHECK(trustfs_rebuild("qemu-img", &f, &old, false, say_no, NULL, &err) == -EBUSY);
	CHECK(err && strstr(err, "started meanwhile"));
	REQUIRE(stat(ov, &st) == 0);
	CHECK(st.st_ino == old_ino);
	CHECK(test_sh("[ $(ls -A '%s/r' | wc -l) = 3 ]", t) == 0);
	trustfs_close(&f);
	/* qemu's lock held by another open file (a running VM): refused. */
	int holder = open(ov, O_RDONLY | O_CLOEXEC);
	REQUIRE(holder >= 0 && imageops_qemu_lock(holder) == 0);
	REQUIRE(trustfs_open(&ids, ov, O_RDONLY, &f, &err) == 0);
	CHECK(trustfs_rebuild("qemu-img", &f, &old, false, NULL, NULL, &err) == -EBUSY);
	REQUIRE(stat(ov, &st) == 0);
	CHECK(st.st_ino == old_ino);
	trustfs_close(&f);
	close(holder);
	image_info_clear(&old);
	free(err);
	free(ov);
	free(victim);
	free(disc);
}

static void test_commit_by_fd(void)
{
	const char *t = mkdir_trusted();
	REQUIRE(test_sh("cd '%s' && mkdir -m 0711 c && cd c && qemu-img create -q -f qcow2 b.qcow2 "
			"32M && qemu-img create -q -f qcow2 -F qcow2 -b b.qcow2 o.qcow2 && "
			"qemu-io -f qcow2 -c 'write -q -P 0x33 2M 1M' o.qcow2",
			t) == 0);
	char *ov = path_of("c/o.qcow2"), *b = path_of("c/b.qcow2");
	struct trustfs_file fo, fb;
	char *err = NULL;
	REQUIRE(trustfs_open(&ids, ov, O_RDWR, &fo, &err) == 0);
	REQUIRE(trustfs_open(&ids, b, O_RDWR, &fb, &err) == 0);
	/* The names now point elsewhere: qemu-img must still write the files
	 * we hold (it gets /dev/fd/N, never a name). */
	REQUIRE(test_sh("cd '%s/c' && mv b.qcow2 b.held && qemu-img create -q -f qcow2 b.qcow2 32M",
			t) == 0);
	CHECK(!trustfs_locked(fo.fd) && !trustfs_locked(fb.fd));
	struct runner_status st;
	REQUIRE(trustfs_commit("qemu-img", &fo, &fb, "qcow2", NULL, NULL, -1, &st, &err));
	CHECK_INT_EQ(st.exit_code, 0);
	runner_status_clear(&st);
	CHECK(test_sh("qemu-io -r -f qcow2 -c 'read -q -P 0x33 2M 1M' '%s/c/b.held'", t) == 0);
	CHECK(test_sh("qemu-io -r -f qcow2 -c 'read -q -P 0 2M 1M' '%s/c/b.qcow2'", t) == 0);
	trustfs_close(&fo);
	trustfs_close(&fb);

	/* The cancel channel: its EOF cancels qemu-img. It may have finished
	 * already (a small commit); the status says which, truthfully. */
	REQUIRE(
	    test_sh("cd '%s/c' && mv b.held b.qcow2 && qemu-io -f qcow2 -c 'write -q -P 0x44 4M "
		    "8M' o.qcow2",
		    t) == 0);
	REQUIRE(trustfs_open(&ids, ov, O_RDWR, &fo, &err) == 0);
	REQUIRE(trustfs_open(&ids, b, O_RDWR, &fb, &err) == 0);
	int p[2];
	REQUIRE(pipe(p) == 0);
	close(p[1]);
	REQUIRE(trustfs_commit("qemu-img", &fo, &fb, "qcow2", NULL, NULL, p[0], &st, &err));
	close(p[0]);
	CHECK(st.cancelled);
	if (st.exit_code == 0)
		CHECK(test_sh("qemu-io -r -f qcow2 -c 'read -q -P 0x44 4M 8M' '%s'", b) == 0);
	else
		/* Stopped: the chain still reads every change. */
		CHECK(test_sh("qemu-io -r -f qcow2 -c 'read -q -P 0x44 4M 8M' '%s'", ov) == 0);
	fprintf(stderr, "cancelled commit: exit %d signal %d\n", st.exit_code, st.term_signal);
	runner_status_clear(&st);
	trustfs_close(&fo);
	trustfs_close(&fb);
	/* Formats that could break out of the json: spec are refused. */
	CHECK(!trustfs_format_ok("qcow2\",\"x"));
	CHECK(!trustfs_format_ok(""));
	CHECK(trustfs_format_ok("raw"));
	free(err);
	free(ov);
	free(b);
}

int main(int argc, char **argv)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_trustfs must run as root (chown, the helper's world)\n");
		return 1;
	}
	static const struct test_case cases[] = {
	    {"qemu_ids", test_qemu_ids},
	    {"open_rules", test_open_rules},
	    {"rebuild_and_undo", test_rebuild_and_undo},
	    {"commit_by_fd", test_commit_by_fd},
	    {NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
