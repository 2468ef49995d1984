/* image.c against real files made by qemu-img, plus hand-made bogus headers:
 * every malformed input must give a clear error and no out-of-bounds read
 * (run this under -DVMO_SANITIZE=ON). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "imageops.h"
#include "statefile.h"
#include "testlib.h"

static char *path_in_tmp(const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", test_tmpdir(), name) < 0)
		abort();
	return p;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
	*len = fread(buf, 1, (size_t)n, f);
	fclose(f);
	return buf;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(buf, 1, len, f);
	fclose(f);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, (uint32_t)v);
}

static void make_base(void)
{
	static bool done;
	if (done)
		return;
	test_require_program("qemu-img");
	REQUIRE(test_sh("cd '%s' && qemu-img create -q -f qcow2 base.qcow2 64M", test_tmpdir()) == 0);
	done = true;
}

static void test_v3_with_format(void)
{
	make_base();
	REQUIRE(test_sh("cd '%s' && qemu-img create -q -f qcow2 -F qcow2 -b '%s/base.qcow2' ov3.qcow2",
	                test_tmpdir(), test_tmpdir()) == 0);
	char *ov = path_in_tmp("ov3.qcow2"), *base = path_in_tmp("base.qcow2");
	struct qcow2_info info;
	char *err = NULL;
	REQUIRE(image_read_qcow2(ov, &info, &err) == 0);
	CHECK(err == NULL);
	CHECK_INT_EQ(info.version, 3);
	CHECK_INT_EQ(info.virtual_size, 64ull << 20);
	CHECK_INT_EQ(info.cluster_bits, 16);
	CHECK_STR_EQ(info.backing_file, base);
	CHECK_STR_EQ(info.backing_format, "qcow2");
	CHECK(!info.dirty && !info.corrupt);
	char *res = image_resolve_backing(ov, info.backing_file);
	CHECK_STR_EQ(res, base);
	CHECK(image_same_file(res, base));
	CHECK(!image_same_file(ov, base));
	CHECK(image_allocated_bytes(ov) > 0);
	free(res);
	image_info_clear(&info);

	/* The base itself has no backing. */
	REQUIRE(image_read_qcow2(base, &info, &err) == 0);
	CHECK(info.backing_file == NULL);
	CHECK(info.backing_format == NULL);
	image_info_clear(&info);
	free(ov);
	free(base);
}

static void test_v2_relative(void)
{
	make_base();
	REQUIRE(test_sh("cd '%s' && mkdir -p sub && qemu-img create -q -f qcow2 -o compat=0.10 "
	                "-F qcow2 -b ../base.qcow2 sub/ov2.qcow2",
	                test_tmpdir()) == 0);
	char *ov = path_in_tmp("sub/ov2.qcow2"), *base = path_in_tmp("base.qcow2");
	struct qcow2_info info;
	char *err = NULL;
	REQUIRE(image_read_qcow2(ov, &info, &err) == 0);
	CHECK_INT_EQ(info.version, 2);
	CHECK_STR_EQ(info.backing_file, "../base.qcow2");
	CHECK_STR_EQ(info.backing_format, "qcow2");
	char *res = image_resolve_backing(ov, info.backing_file);
	char *want = path_in_tmp("sub/../base.qcow2");
	CHECK_STR_EQ(res, want);
	CHECK(image_same_file(res, base));
	free(want);
	free(res);
	image_info_clear(&info);
	free(ov);
	free(base);
}

static void test_no_backing_format(void)
{
	make_base();
	/* qemu 7.2 refuses -b without -F on create, so older images without
	 * a recorded format are made by hand: the format extension becomes an
	 * unknown one (which readers must skip). */
	REQUIRE(test_sh("cd '%s' && qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 nofmt.qcow2",
	                test_tmpdir()) == 0);
	char *ov = path_in_tmp("nofmt.qcow2");
	size_t len;
	uint8_t *buf = read_file(ov, &len);
	REQUIRE(buf);
	for (size_t off = 104; off + 8 <= len && off < 65536; off += 8) {
		if (buf[off] == 0xe2 && buf[off + 1] == 0x79 && buf[off + 2] == 0x2a &&
		    buf[off + 3] == 0xca) {
			put32(buf + off, 0x12345678);
			break;
		}
	}
	write_file(ov, buf, len);
	struct qcow2_info info;
	char *err = NULL;
	REQUIRE(image_read_qcow2(ov, &info, &err) == 0);
	CHECK_STR_EQ(info.backing_file, "base.qcow2");
	CHECK(info.backing_format == NULL);
	image_info_clear(&info);
	free(buf);
	free(ov);
}

static void expect_error(const char *name, int code, const char *needle)
{
	char *p = path_in_tmp(name);
	struct qcow2_info info;
	char *err = NULL;
	int r = image_read_qcow2(p, &info, &err);
	CHECK_INT_EQ(r, code);
	CHECK(err != NULL);
	if (err && needle && !strstr(err, needle)) {
		fprintf(stderr, "error for %s lacks \"%s\": %s\n", name, needle, err);
		CHECK(0);
	}
	CHECK(info.backing_file == NULL && info.backing_format == NULL);
	free(err);
	free(p);
}

static void test_raw_and_missing(void)
{
	REQUIRE(test_sh("cd '%s' && qemu-img create -q -f raw raw.img 1M", test_tmpdir()) == 0);
	expect_error("raw.img", -EINVAL, "not a qcow2 image");
	REQUIRE(test_sh("head -c 4096 /dev/urandom > '%s/random.bin'", test_tmpdir()) == 0);
	/* 1 in 2^32 the random bytes start with the magic; then it must still
	 * be a clean error, just another one. */
	char *p = path_in_tmp("random.bin");
	struct qcow2_info info;
	char *err = NULL;
	CHECK(image_read_qcow2(p, &info, &err) < 0);
	CHECK(err != NULL);
	free(err);
	free(p);
	expect_error("does-not-exist.qcow2", -ENOENT, "does-not-exist.qcow2");
	REQUIRE(test_sh("mkdir -p '%s/adir'", test_tmpdir()) == 0);
	expect_error("adir", -EINVAL, "not a regular file");
	REQUIRE(test_sh(": > '%s/empty'", test_tmpdir()) == 0);
	expect_error("empty", -EPROTO, "too short");
}

/* Issue 12, defect 7: the loop reads headers itself, so a FIFO (no
 * writer: a blocking open would never return) must fail at once, also
 * behind a symbolic link; a link to an image reads as its target. */
static void test_fifo_and_symlink(void)
{
	make_base();
	char *fifo = path_in_tmp("fifo.qcow2");
	unlink(fifo);
	REQUIRE(mkfifo(fifo, 0600) == 0);
	struct qcow2_info info;
	char *err = NULL;
	/* A blocking open would hang here (ctest's timeout would tell). */
	CHECK_INT_EQ(image_read_qcow2(fifo, &info, &err), -EINVAL);
	CHECK(err && strstr(err, "not a regular file"));
	free(err);
	err = NULL;
	char *link = path_in_tmp("link.qcow2");
	unlink(link);
	REQUIRE(symlink(fifo, link) == 0);
	CHECK_INT_EQ(image_read_qcow2(link, &info, &err), -EINVAL);
	CHECK(err && strstr(err, "not a regular file"));
	free(err);
	unlink(link);
	char *base = path_in_tmp("base.qcow2");
	REQUIRE(symlink(base, link) == 0);
	CHECK_INT_EQ(image_read_qcow2(link, &info, NULL), 0);
	CHECK_INT_EQ(info.virtual_size, 64 << 20);
	image_info_clear(&info);
	/* The fd variants: _fd wants a regular file, _fd_any takes what the
	 * caller accepted. */
	int fd = open(base, O_RDONLY);
	REQUIRE(fd >= 0);
	CHECK_INT_EQ(image_read_qcow2_fd_any(fd, base, &info, NULL), 0);
	CHECK_INT_EQ(info.virtual_size, 64 << 20);
	image_info_clear(&info);
	close(fd);
	unlink(fifo);
	unlink(link);
	free(fifo);
	free(link);
	free(base);
}

static void test_truncated(void)
{
	make_base();
	REQUIRE(test_sh("cd '%s' && qemu-img create -q -f qcow2 -F qcow2 -b '%s/base.qcow2' t.qcow2 && "
	                "head -c 50 t.qcow2 > t50.qcow2 && head -c 100 t.qcow2 > t100.qcow2",
	                test_tmpdir(), test_tmpdir()) == 0);
	expect_error("t50.qcow2", -EPROTO, "truncated");
	expect_error("t100.qcow2", -EPROTO, "truncated");
	/* Cut inside the backing name: header and extensions are there. */
	char *p = path_in_tmp("t.qcow2");
	size_t len;
	uint8_t *buf = read_file(p, &len);
	REQUIRE(buf && len > 200);
	uint64_t boff = ((uint64_t)buf[8] << 56) | ((uint64_t)buf[9] << 48) | ((uint64_t)buf[10] << 40) |
	                ((uint64_t)buf[11] << 32) | ((uint64_t)buf[12] << 24) | (buf[13] << 16) |
	                (buf[14] << 8) | buf[15];
	REQUIRE(boff > 104 && boff < len);
	char *cut = path_in_tmp("tname.qcow2");
	write_file(cut, buf, (size_t)boff + 3);
	expect_error("tname.qcow2", -EPROTO, "backing file name");
	free(cut);
	free(buf);
	free(p);
}

/* A hand-made v3 header in memory, then each field broken in turn. */
static size_t make_header(uint8_t *buf, size_t cap)
{
	memset(buf, 0, cap);
	memcpy(buf, "QFI\xfb", 4);
	put32(buf + 4, 3);
	put32(buf + 20, 16);
	put64(buf + 24, 1 << 30);
	put32(buf + 100, 112);
	/* backing format extension "qcow2", then end */
	put32(buf + 112, 0xe2792aca);
	put32(buf + 116, 5);
	memcpy(buf + 120, "qcow2", 5);
	put32(buf + 128, 0);
	/* backing name at 512 */
	put64(buf + 8, 512);
	put32(buf + 16, 8);
	memcpy(buf + 512, "base.img", 8);
	return 520;
}

static void parse_expect(const uint8_t *buf, size_t len, int code, const char *needle)
{
	struct qcow2_info info;
	char *err = NULL;
	int r = image_parse_qcow2(buf, len, &info, &err);
	CHECK_INT_EQ(r, code);
	if (code < 0) {
		CHECK(err != NULL);
		if (err && needle && !strstr(err, needle)) {
			fprintf(stderr, "error lacks \"%s\": %s\n", needle, err);
			CHECK(0);
		}
	}
	free(err);
	image_info_clear(&info);
}

static void test_bogus_headers(void)
{
	size_t cap = 4096;
	/* Exact-size heap copies so ASan catches any read past len. */
	uint8_t *tmpl = malloc(cap);
	size_t len = make_header(tmpl, cap);
	uint8_t *b = malloc(len);

	memcpy(b, tmpl, len);
	struct qcow2_info info;
	char *err = NULL;
	REQUIRE(image_parse_qcow2(b, len, &info, &err) == 0);
	CHECK_STR_EQ(info.backing_file, "base.img");
	CHECK_STR_EQ(info.backing_format, "qcow2");
	CHECK_INT_EQ(info.virtual_size, 1 << 30);
	image_info_clear(&info);

	memcpy(b, tmpl, len);
	put32(b + 4, 4);
	parse_expect(b, len, -EINVAL, "version 4");

	memcpy(b, tmpl, len);
	put64(b + 8, 1ull << 40); /* backing name far past EOF */
	parse_expect(b, len, -EPROTO, "offset");

	memcpy(b, tmpl, len);
	put64(b + 8, UINT64_MAX - 2); /* offset + size wraps around */
	parse_expect(b, len, -EPROTO, "offset");

	memcpy(b, tmpl, len);
	put32(b + 16, 0xffffffffu); /* huge backing name */
	parse_expect(b, len, -EPROTO, "length");

	memcpy(b, tmpl, len);
	put32(b + 16, 9); /* one byte past the end of the buffer */
	parse_expect(b, len, -EPROTO, "truncated");

	memcpy(b, tmpl, len);
	put64(b + 8, 40); /* inside the header */
	parse_expect(b, len, -EPROTO, "offset");

	memcpy(b, tmpl, len);
	put32(b + 20, 40); /* absurd cluster size */
	parse_expect(b, len, -EPROTO, "cluster");

	memcpy(b, tmpl, len);
	put32(b + 100, 1u << 31); /* header length past everything */
	parse_expect(b, len, -EPROTO, "header length");

	memcpy(b, tmpl, len);
	put32(b + 100, 105); /* not a multiple of 8 */
	parse_expect(b, len, -EPROTO, "header length");

	memcpy(b, tmpl, len);
	put32(b + 116, 0xfffffff0u); /* extension longer than the cluster */
	parse_expect(b, len, -EPROTO, "extension");

	memcpy(b, tmpl, len);
	put32(b + 116, 100); /* format name too long */
	parse_expect(b, len, -EPROTO, "format");

	memcpy(b, tmpl, len);
	b[514] = 0; /* NUL inside the backing name */
	parse_expect(b, len, -EPROTO, "backing file name");

	memcpy(b, tmpl, len);
	put64(b + 72, 3); /* dirty + corrupt */
	REQUIRE(image_parse_qcow2(b, len, &info, &err) == 0);
	CHECK(info.dirty && info.corrupt);
	image_info_clear(&info);

	/* Every prefix of the valid header: an error or success, never a
	 * read past the given length. */
	for (size_t n = 0; n < len; n++) {
		uint8_t *p = malloc(n ? n : 1);
		memcpy(p, tmpl, n);
		int r = image_parse_qcow2(p, n, &info, &err);
		CHECK(r < 0);
		CHECK(err != NULL);
		free(err);
		image_info_clear(&info);
		free(p);
	}
	/* Random noise behind a valid magic. */
	srand(42);
	for (int i = 0; i < 2000; i++) {
		size_t n = 104 + (size_t)(rand() % 600);
		uint8_t *p = malloc(n);
		for (size_t k = 0; k < n; k++)
			p[k] = (uint8_t)rand();
		memcpy(p, "QFI\xfb", 4);
		put32(p + 4, 2 + (rand() & 1));
		if (rand() & 1)
			put32(p + 20, 9 + rand() % 13);
		if (rand() & 1)
			put64(p + 8, (uint64_t)(rand() % (int)n));
		if (rand() & 1)
			put32(p + 16, (uint32_t)(rand() % 64));
		if (rand() & 1)
			put32(p + 100, 104 + 8 * (rand() % 8));
		err = NULL;
		int r = image_parse_qcow2(p, n, &info, &err);
		CHECK(r == 0 || err != NULL);
		free(err);
		image_info_clear(&info);
		free(p);
	}
	free(b);
	free(tmpl);
}

/* Issue 12, defect 10: what a rebuild cannot reproduce, read from real
 * images qemu-img made (LUKS by hand below: its key derivation takes
 * seconds), and the format options a rebuild carries over. */
static struct qcow2_info read_ok(const char *name)
{
	char *p = path_in_tmp(name);
	struct qcow2_info info;
	char *err = NULL;
	if (image_read_qcow2(p, &info, &err) != 0) {
		fprintf(stderr, "%s: %s\n", name, err ? err : "?");
		CHECK(0);
	}
	free(err);
	free(p);
	return info;
}

static void expect_unreproducible(const char *name, const char *needle)
{
	struct qcow2_info info = read_ok(name);
	char *why = NULL;
	CHECK(!image_reproducible(&info, &why));
	if (!why || !strstr(why, needle)) {
		fprintf(stderr, "%s: reason lacks \"%s\": %s\n", name, needle,
			why ? why : "(none)");
		CHECK(0);
	}
	free(why);
	image_info_clear(&info);
}

static void test_unreproducible_overlays(void)
{
	make_base();
	REQUIRE(
	    test_sh("cd '%s' && "
		    "qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 plain.qcow2 && "
		    "qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 snap.qcow2 && "
		    "qemu-img snapshot -c s1 snap.qcow2 && qemu-img snapshot -c s2 snap.qcow2 && "
		    "qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 bmp.qcow2 && "
		    "qemu-img bitmap --add bmp.qcow2 b0 && qemu-img bitmap --add bmp.qcow2 b1 && "
		    "qemu-img create -q -f qcow2 -o data_file=ext.data -F qcow2 -b base.qcow2 "
		    "ext.qcow2",
		    test_tmpdir()) == 0);
	struct qcow2_info info = read_ok("plain.qcow2");
	char *why = NULL;
	CHECK(image_reproducible(&info, &why));
	CHECK(why == NULL);
	CHECK_INT_EQ(info.crypt_method, 0);
	CHECK_INT_EQ(info.nb_snapshots, 0);
	CHECK(!info.bitmaps && !info.external_data_file && !info.crypto_header);
	image_info_clear(&info);

	info = read_ok("snap.qcow2");
	CHECK_INT_EQ(info.nb_snapshots, 2);
	image_info_clear(&info);
	expect_unreproducible("snap.qcow2", "2 internal snapshots");

	info = read_ok("bmp.qcow2");
	CHECK(info.bitmaps);
	CHECK_INT_EQ(info.nb_bitmaps, 2);
	CHECK(info.autoclear_features & 1);
	image_info_clear(&info);
	expect_unreproducible("bmp.qcow2", "bitmaps");

	info = read_ok("ext.qcow2");
	CHECK(info.external_data_file);
	CHECK(info.incompatible_features & 4);
	image_info_clear(&info);
	expect_unreproducible("ext.qcow2", "external data file");

	/* Encryption: the crypt_method field (1 AES, 2 LUKS) or the LUKS
	 * header extension alone is enough to refuse. */
	uint8_t buf[1024];
	size_t len = make_header(buf, sizeof buf);
	for (uint32_t method = 1; method <= 2; method++) {
		put32(buf + 32, method);
		REQUIRE(image_parse_qcow2(buf, len, &info, NULL) == 0);
		CHECK_INT_EQ(info.crypt_method, method);
		CHECK(!image_reproducible(&info, &why));
		CHECK(why && strstr(why, "encrypted"));
		free(why);
		image_info_clear(&info);
	}
	len = make_header(buf, sizeof buf);
	put32(buf + 128, 0x0537be77); /* FDE header pointer after the format ext. */
	put32(buf + 132, 16);
	put32(buf + 152, 0);
	REQUIRE(image_parse_qcow2(buf, len, &info, NULL) == 0);
	CHECK(info.crypto_header);
	CHECK(!image_reproducible(&info, NULL));
	image_info_clear(&info);

	/* An incompatible feature nobody knows yet: refuse, name the bits. */
	len = make_header(buf, sizeof buf);
	put64(buf + 72, 1ull << 9);
	REQUIRE(image_parse_qcow2(buf, len, &info, NULL) == 0);
	CHECK(!image_reproducible(&info, &why));
	CHECK(why && strstr(why, "0x200"));
	free(why);
	image_info_clear(&info);
}

static void test_format_options(void)
{
	make_base();
	REQUIRE(
	    test_sh("cd '%s' && qemu-img create -q -f qcow2 "
		    "-o cluster_size=128k,extended_l2=on,compression_type=zstd,lazy_refcounts=on "
		    "-F qcow2 -b base.qcow2 opts.qcow2 && "
		    "qemu-img create -q -f qcow2 -o refcount_bits=64,cluster_size=4k "
		    "-F qcow2 -b base.qcow2 rc64.qcow2 && "
		    "qemu-img create -q -f qcow2 -o compat=0.10 -F qcow2 -b base.qcow2 v2.qcow2",
		    test_tmpdir()) == 0);
	struct qcow2_info a = read_ok("opts.qcow2");
	CHECK_INT_EQ(a.cluster_bits, 17);
	CHECK(a.extended_l2 && a.lazy_refcounts);
	CHECK_INT_EQ(a.compression_type, 1);
	CHECK_INT_EQ(a.refcount_order, 4);
	CHECK(image_reproducible(&a, NULL));
	char *o = image_create_options(&a);
	CHECK_STR_EQ(o, "compat=1.1,cluster_size=131072,refcount_bits=16,lazy_refcounts=on,"
			"extended_l2=on,compression_type=zstd");
	/* What the rebuild runs gives the same options back. */
	REQUIRE(test_sh("cd '%s' && qemu-img create -q -f qcow2 -o '%s' -F qcow2 -b base.qcow2 "
			"again.qcow2",
			test_tmpdir(), o) == 0);
	struct qcow2_info b = read_ok("again.qcow2");
	CHECK(image_same_format_options(&a, &b));
	image_info_clear(&b);
	free(o);

	b = read_ok("rc64.qcow2");
	CHECK(!image_same_format_options(&a, &b));
	CHECK_INT_EQ(b.refcount_order, 6);
	o = image_create_options(&b);
	CHECK_STR_EQ(o, "compat=1.1,cluster_size=4096,refcount_bits=64");
	free(o);
	image_info_clear(&b);

	b = read_ok("v2.qcow2");
	CHECK_INT_EQ(b.version, 2);
	o = image_create_options(&b);
	CHECK_STR_EQ(o, "compat=0.10,cluster_size=65536");
	free(o);
	image_info_clear(&b);
	image_info_clear(&a);

	/* The compression type field must agree with its feature bit, and the
	 * refcount order stays within the spec. */
	uint8_t buf[1024];
	size_t len = make_header(buf, sizeof buf);
	put64(buf + 72, 1ull << 3);
	parse_expect(buf, len, -EPROTO, "compression type");
	len = make_header(buf, sizeof buf);
	buf[104] = 1;
	parse_expect(buf, len, -EPROTO, "compression type");
	len = make_header(buf, sizeof buf);
	put32(buf + 96, 7);
	parse_expect(buf, len, -EPROTO, "refcount order");
}

static void test_resolve(void)
{
	char *r = image_resolve_backing("/vm/a/ov.qcow2", "base.qcow2");
	CHECK_STR_EQ(r, "/vm/a/base.qcow2");
	free(r);
	r = image_resolve_backing("/ov.qcow2", "base.qcow2");
	CHECK_STR_EQ(r, "/base.qcow2");
	free(r);
	r = image_resolve_backing("/vm/ov.qcow2", "/abs/base.qcow2");
	CHECK_STR_EQ(r, "/abs/base.qcow2");
	free(r);
	CHECK(image_resolve_backing("/vm/ov.qcow2", NULL) == NULL);
	CHECK_INT_EQ(image_allocated_bytes("/nonexistent/x"), 0);
}

#define UUID_A  "11111111-2222-4333-8444-555555555555"
#define UUID_B  "66666666-7777-4888-9999-aaaaaaaaaaaa"
#define SESSION "qemu:///session"
#define SYSTEM  "qemu:///system"

static void test_statefile(void)
{
	char *dir = path_in_tmp("state/deeper/vmoverlay");
	struct statefile *sf = statefile_open(dir);
	REQUIRE(sf);
	CHECK_STR_EQ(statefile_dir(sf), dir);
	struct state_key win10 = {SESSION, UUID_A, "win10"};
	struct state_key tab = {SESSION, UUID_B, "name with\ttab and spaces"};
	struct state_key kiosk = {SYSTEM, UUID_A, "kiosk"};
	struct state_key bad = {SYSTEM, UUID_B, "bad\nname"};
	CHECK(!statefile_get_running(sf, &win10));
	statefile_set_running(sf, &win10, true);
	statefile_set_running(sf, &tab, true);
	statefile_set_policy(sf, &kiosk, POLICY_DISCARD);
	statefile_set_running(sf, &bad, true); /* cannot be stored: ignored */
	/* No identity yet (not connected): nothing is recorded. */
	struct state_key unknown = {NULL, "", "win10"};
	CHECK(!statefile_key_valid(&unknown));
	statefile_set_policy(sf, &unknown, POLICY_KEEP);
	CHECK(!statefile_get_policy(sf, &unknown, NULL));
	CHECK(statefile_save(sf));
	statefile_close(sf);

	sf = statefile_open(dir);
	REQUIRE(sf);
	CHECK(statefile_get_running(sf, &win10));
	CHECK(statefile_get_running(sf, &tab));
	CHECK(!statefile_get_running(sf, &bad));
	CHECK(!statefile_get_running(sf, &kiosk));
	enum vmo_policy p = POLICY_ASK;
	CHECK(statefile_get_policy(sf, &kiosk, &p));
	CHECK_INT_EQ(p, POLICY_DISCARD);
	CHECK(!statefile_get_policy(sf, &win10, &p));
	statefile_set_running(sf, &win10, false);
	statefile_clear_policy(sf, &kiosk);
	CHECK(statefile_save(sf));
	statefile_close(sf);

	sf = statefile_open(dir);
	CHECK(!statefile_get_running(sf, &win10));
	CHECK(!statefile_get_policy(sf, &kiosk, &p));
	CHECK(statefile_get_running(sf, &tab));
	statefile_close(sf);
	/* No temporary left behind; garbage lines are skipped, not fatal. */
	CHECK(test_sh("test ! -e '%s/state.tmp'", dir) == 0);
	CHECK(test_sh("printf 'garbage\\npolicy\\tnope\\tx\\nvm-running\\tonly-uri\\n"
		      "vm-running\\t%s\\t%s\\tok\\n' >> '%s/state'",
		      SESSION, UUID_B, dir) == 0);
	sf = statefile_open(dir);
	struct state_key okk = {SESSION, UUID_B, "ok"};
	CHECK(statefile_get_running(sf, &okk));
	statefile_close(sf);

	/* The fresh overlay a discard left (issue 12, defect 3). */
	sf = statefile_open(dir);
	struct state_key w10 = {SESSION, UUID_A, "win 10"};
	struct statefile_file_id id = {.dev = 2049, .ino = 1234567, .size = 196624,
				       .mtime_s = 1764400000, .mtime_ns = 123456789,
				       .ctime_s = 1764400001, .ctime_ns = 5};
	struct statefile_file_id got = {0};
	CHECK(!statefile_get_discard_mark(sf, &w10, NULL, &got));
	statefile_set_discard_mark(sf, &w10, NULL, &id);
	/* A VM with several disks: one mark per disk (issue 15). */
	struct statefile_file_id id_vdb = id, id_vdc = id;
	id_vdb.ino = 7654321;
	id_vdc.size = 42;
	statefile_set_discard_mark(sf, &w10, "vdb", &id_vdb);
	statefile_set_discard_mark(sf, &w10, "vdc", &id_vdc);
	CHECK(statefile_save(sf));
	statefile_close(sf);
	sf = statefile_open(dir);
	CHECK(statefile_get_discard_mark(sf, &w10, NULL, &got));
	CHECK(statefile_file_id_equal(&got, &id));
	got.mtime_ns++;
	CHECK(!statefile_file_id_equal(&got, &id));
	CHECK(statefile_get_discard_mark(sf, &w10, "vdb", &got));
	CHECK(statefile_file_id_equal(&got, &id_vdb));
	CHECK(statefile_get_discard_mark(sf, &w10, "vdc", &got));
	CHECK(statefile_file_id_equal(&got, &id_vdc));
	CHECK(!statefile_get_discard_mark(sf, &w10, "vdd", &got));
	statefile_set_discard_mark(sf, &w10, NULL, NULL);
	statefile_set_discard_mark(sf, &w10, "vdb", NULL);
	CHECK(statefile_save(sf));
	statefile_close(sf);
	sf = statefile_open(dir);
	CHECK(!statefile_get_discard_mark(sf, &w10, NULL, NULL));
	CHECK(!statefile_get_discard_mark(sf, &w10, "vdb", NULL));
	CHECK(statefile_get_discard_mark(sf, &w10, "vdc", &got));
	CHECK(statefile_file_id_equal(&got, &id_vdc));
	statefile_close(sf);

	/* Memory-only state. */
	sf = statefile_open(NULL);
	REQUIRE(sf);
	statefile_set_running(sf, &win10, true);
	CHECK(statefile_get_running(sf, &win10));
	CHECK(statefile_save(sf));
	statefile_close(sf);
	free(dir);
}

/* Issue 12: records follow the domain (URI + UUID), not its name. */
static void test_statefile_keying(void)
{
	char *dir = path_in_tmp("state-keying");
	struct statefile *sf = statefile_open(dir);
	REQUIRE(sf);
	struct state_key a = {SESSION, UUID_A, "x"};
	statefile_set_running(sf, &a, true);
	statefile_set_policy(sf, &a, POLICY_DISCARD);
	CHECK(statefile_save(sf));
	statefile_close(sf);

	sf = statefile_open(dir);
	enum vmo_policy p = POLICY_ASK;
	/* Another domain under the same name: nothing of A's applies. */
	struct state_key b = {SESSION, UUID_B, "x"};
	CHECK(!statefile_get_running(sf, &b));
	CHECK(!statefile_get_policy(sf, &b, &p));
	/* The same UUID on another connection is another domain. */
	struct state_key a_sys = {SYSTEM, UUID_A, "x"};
	CHECK(!statefile_get_running(sf, &a_sys));
	CHECK(!statefile_get_policy(sf, &a_sys, &p));
	/* A renamed (virsh domrename) keeps its records under the new name. */
	struct state_key a_renamed = {SESSION, UUID_A, "x2"};
	CHECK(statefile_get_running(sf, &a_renamed));
	CHECK(statefile_get_policy(sf, &a_renamed, &p) && p == POLICY_DISCARD);
	statefile_set_policy(sf, &b, POLICY_KEEP);
	CHECK(statefile_save(sf));
	statefile_close(sf);
	char *text = NULL;
	CHECK(test_sh_out(&text, "cat '%s/state'", dir) == 0);
	CHECK(text && strstr(text, "vm-running\t" SESSION "\t" UUID_A "\tx2\n"));
	CHECK(text && strstr(text, "vm-policy\tkeep\t" SESSION "\t" UUID_B "\tx\n"));
	free(text);

	sf = statefile_open(dir);
	CHECK(statefile_get_policy(sf, &b, &p) && p == POLICY_KEEP);
	CHECK(statefile_get_policy(sf, &a, &p) && p == POLICY_DISCARD);
	statefile_close(sf);
	free(dir);
}

/* A state file written before issue 12 (records keyed by name): each
 * record moves to the first domain asked for under its name, once; the
 * others stay as they were until asked for, and survive a save. */
static void test_statefile_migration(void)
{
	char *dir = path_in_tmp("state-legacy");
	CHECK(
	    test_sh("mkdir -p '%s' && printf '# old\\nrunning\\twin10\\npolicy\\tdiscard\\twin10\\n"
		    "policy\\tcommit\\tlater\\n' > '%s/state'",
		    dir, dir) == 0);
	struct statefile *sf = statefile_open(dir);
	REQUIRE(sf);
	struct state_key w = {SESSION, UUID_A, "win10"};
	enum vmo_policy p = POLICY_ASK;
	CHECK(statefile_get_running(sf, &w));
	CHECK(statefile_get_policy(sf, &w, &p) && p == POLICY_DISCARD);
	/* Moved: a second domain under that name does not get it too. */
	struct state_key w2 = {SYSTEM, UUID_B, "win10"};
	CHECK(!statefile_get_running(sf, &w2));
	CHECK(!statefile_get_policy(sf, &w2, &p));
	CHECK(statefile_save(sf));
	statefile_close(sf);
	char *text = NULL;
	CHECK(test_sh_out(&text, "cat '%s/state'", dir) == 0);
	CHECK(text && strstr(text, "vm-running\t" SESSION "\t" UUID_A "\twin10\n"));
	CHECK(text && strstr(text, "vm-policy\tdiscard\t" SESSION "\t" UUID_A "\twin10\n"));
	CHECK(text && strstr(text, "\npolicy\tcommit\tlater\n")); /* not asked for: kept */
	CHECK(text && !strstr(text, "\nrunning\twin10"));
	free(text);

	sf = statefile_open(dir);
	CHECK(statefile_get_running(sf, &w));
	CHECK(!statefile_get_running(sf, &w2));
	struct state_key later = {SYSTEM, UUID_B, "later"};
	CHECK(statefile_get_policy(sf, &later, &p) && p == POLICY_COMMIT);
	statefile_close(sf);
	free(dir);
}

/* One applet per state directory: a second lock fails with the first
 * holder's pid; closing the first releases it. */
static void test_statefile_lock(void)
{
	char *dir = path_in_tmp("state-lock/vmoverlay");
	long holder = -1;
	int fd = statefile_lock(dir, &holder);
	REQUIRE(fd >= 0);
	CHECK_INT_EQ(holder, 0);
	int fd2 = statefile_lock(dir, &holder);
	CHECK(fd2 < 0 && errno == EWOULDBLOCK);
	CHECK_INT_EQ(holder, (long)getpid());
	/* Not inherited by children (qemu-img must not hold it). */
	CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	close(fd);
	fd2 = statefile_lock(dir, &holder);
	CHECK(fd2 >= 0);
	if (fd2 >= 0)
		close(fd2);
	free(dir);
}

/* The rebuild removes stale temporaries of its own pattern only: a user's
 * ".NAME.abcdef" beside the overlay survives (issue 12). */
static void test_rebuild_temps(void)
{
	char *dir = path_in_tmp("temps");
	CHECK(test_sh("mkdir -p '%s' && cd '%s' && qemu-img create -q -f qcow2 base.qcow2 1M && "
		      "qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 ov.qcow2 && "
		      "echo mine > .ov.qcow2.abcdef && echo stale > .ov.qcow2" IMAGEOPS_TMP_TAG
		      "Ab12Cd && echo other > .other.qcow2" IMAGEOPS_TMP_TAG "Zz9999",
		      dir, dir) == 0);
	char *ov = path_in_tmp("temps/ov.qcow2"), *err = NULL;
	struct imageops_rebuild rb;
	REQUIRE(imageops_rebuild_prepare(&rb, "qemu-img", ov, "base.qcow2", "qcow2", &err) == 0);
	CHECK(strstr(rb.tmp, "/.ov.qcow2" IMAGEOPS_TMP_TAG) != NULL);
	CHECK(test_sh("cd '%s' && test \"$(cat .ov.qcow2.abcdef)\" = mine", dir) == 0);
	CHECK(test_sh("cd '%s' && test ! -e .ov.qcow2" IMAGEOPS_TMP_TAG "Ab12Cd", dir) == 0);
	CHECK(test_sh("cd '%s' && test -e .other.qcow2" IMAGEOPS_TMP_TAG "Zz9999", dir) == 0);
	imageops_rebuild_abort(&rb);
	CHECK(test_sh("cd '%s' && test $(ls -A | grep -c vmoverlay-tmp) = 1", dir) == 0);
	free(err);
	free(ov);
	free(dir);
}

/* Journal names: one per domain (URI + UUID), and the names from before. */
static void test_journal_paths(void)
{
	char *a = imageops_journal_path("/s", SESSION, UUID_A);
	char *b = imageops_journal_path("/s", SYSTEM, UUID_A);
	char *c = imageops_journal_path("/s", SESSION, UUID_B);
	CHECK(a && b && c && strcmp(a, b) != 0 && strcmp(a, c) != 0);
	CHECK(a && strncmp(a, "/s/" UUID_A "@", strlen("/s/" UUID_A "@")) == 0);
	CHECK(a && imageops_journal_name(strrchr(a, '/') + 1));
	CHECK(imageops_journal_path("/s", SESSION, "") == NULL);
	CHECK(imageops_journal_path("/s", NULL, UUID_A) == NULL);
	CHECK(imageops_journal_path("/s", SESSION, "../../etc/x") == NULL);
	char *l = imageops_journal_legacy_path("/s", "a/b");
	CHECK_STR_EQ(l, "/s/a_b.commit");
	CHECK(imageops_journal_name("x.commit"));
	CHECK(!imageops_journal_name("x.commit.tmp"));
	CHECK(!imageops_journal_name("state"));

	char *dir = path_in_tmp("journals");
	mkdir(dir, 0700);
	char *jp = imageops_journal_path(dir, SESSION, UUID_A), *err = NULL;
	struct imageops_journal w = {.uri = SESSION,
				     .uuid = UUID_A,
				     .vm = "x",
				     .overlay = "/i/x.qcow2",
				     .base = "/i/b.qcow2",
				     .started = 42};
	REQUIRE(imageops_journal_write(jp, &w, &err) == 0);
	struct imageops_journal r;
	CHECK(imageops_journal_read(jp, &r) == 0);
	CHECK_STR_EQ(r.uri, SESSION);
	CHECK_STR_EQ(r.uuid, UUID_A);
	CHECK_STR_EQ(r.vm, "x");
	CHECK_STR_EQ(r.overlay, "/i/x.qcow2");
	CHECK(r.started == 42);
	imageops_journal_clear(&r);
	free(jp);
	free(dir);
	free(a);
	free(b);
	free(c);
	free(l);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
		{"v3_with_format", test_v3_with_format},
		{"v2_relative", test_v2_relative},
		{"no_backing_format", test_no_backing_format},
		{"raw_and_missing", test_raw_and_missing},
		{"fifo_and_symlink", test_fifo_and_symlink},
		{"truncated", test_truncated},
		{"bogus_headers", test_bogus_headers},
		{"unreproducible_overlays", test_unreproducible_overlays},
		{"format_options", test_format_options},
		{"resolve", test_resolve},
		{"statefile", test_statefile},
		{"statefile_keying", test_statefile_keying},
		{"statefile_migration", test_statefile_migration},
		{"statefile_lock", test_statefile_lock},
		{"rebuild_temps", test_rebuild_temps},
		{"journal_paths", test_journal_paths},
		{NULL, NULL},
	};
	return test_main(argc, argv, cases);
}
