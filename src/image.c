/* qcow2 facts straight from the image header (QEMU docs/interop/qcow2.txt),
 * without forking qemu-img: the watcher reads every disk of every domain on
 * each reconcile. The parser works on a buffer and checks every offset
 * against its length, because the file may be anything. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "i18n.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_MIN_HEADER_LEN 104u
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_BITMAPS           0x23852875u
#define QCOW2_EXT_CRYPTO_HEADER     0x0537be77u
#define QCOW2_EXT_DATA_FILE         0x44415441u
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << 0)
#define QCOW2_COMPRESSION_TYPE_OFF  104u
#define QCOW2_MAX_REFCOUNT_ORDER    6u
#define QCOW2_MAX_BACKING_NAME 1023u /* spec: "must not be longer than 1023 bytes" */
#define QCOW2_MAX_FORMAT_NAME 63u    /* qemu keeps 16; anything longer is bogus */
#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u /* qemu's implementation limit (2 MiB) */
/* What image_read_qcow2 reads first; the header, its extensions and the
 * backing name of every image qemu-img writes fit in it. */
#define IMAGE_READ_CHUNK (64u * 1024u)

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int fail(char **err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(err, fmt, ap) < 0)
			*err = NULL;
		va_end(ap);
	}
	return code;
}

/* A name stored in the image: no NUL inside, copied with a terminator. */
static char *copy_name(const uint8_t *p, size_t len)
{
	if (len == 0 || memchr(p, 0, len))
		return NULL;
	char *s = malloc(len + 1);
	if (!s)
		return NULL;
	memcpy(s, p, len);
	s[len] = 0;
	return s;
}

int image_parse_qcow2(const uint8_t *buf, size_t len, struct qcow2_info *out, char **err)
{
	memset(out, 0, sizeof(*out));
	if (err)
		*err = NULL;
	if (!buf || len < 4)
		return fail(err, -EPROTO, _("the file is too short to be a disk image"));
	if (be32(buf) != QCOW2_MAGIC)
		return fail(err, -EINVAL, _("not a qcow2 image (wrong magic number)"));
	if (len < QCOW2_V2_HEADER_LEN)
		return fail(err, -EPROTO, _("truncated qcow2 header (%zu of %u bytes)"), len,
		            QCOW2_V2_HEADER_LEN);

	uint32_t version = be32(buf + 4);
	if (version != 2 && version != 3)
		return fail(err, -EINVAL, _("unsupported qcow2 version %u"), version);
	uint64_t backing_off = be64(buf + 8);
	uint32_t backing_len = be32(buf + 16);
	uint32_t cluster_bits = be32(buf + 20);
	uint64_t size = be64(buf + 24);
	if (cluster_bits < QCOW2_MIN_CLUSTER_BITS || cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return fail(err, -EPROTO, _("bogus qcow2 header: cluster size 2^%u"), cluster_bits);
	uint64_t cluster_size = 1ull << cluster_bits;

	uint64_t header_len = QCOW2_V2_HEADER_LEN;
	uint64_t incompatible = 0, compatible = 0, autoclear = 0;
	uint32_t refcount_order = 4, compression_type = 0;
	if (version == 3) {
		if (len < QCOW2_V3_MIN_HEADER_LEN)
			return fail(err, -EPROTO, _("truncated qcow2 header (%zu of %u bytes)"), len,
			            QCOW2_V3_MIN_HEADER_LEN);
		incompatible = be64(buf + 72);
		header_len = be32(buf + 100);
		if (header_len < QCOW2_V3_MIN_HEADER_LEN || header_len % 8 ||
		    header_len > cluster_size)
			return fail(err, -EPROTO, _("bogus qcow2 header: header length %llu"),
			            (unsigned long long)header_len);
		compatible = be64(buf + 80);
		autoclear = be64(buf + 88);
		refcount_order = be32(buf + 96);
		if (refcount_order > QCOW2_MAX_REFCOUNT_ORDER)
			return fail(err, -EPROTO, _("bogus qcow2 header: refcount order %u"),
				    refcount_order);
		/* An optional field: present only when the header reaches it. */
		if (header_len > QCOW2_COMPRESSION_TYPE_OFF) {
			if (len <= QCOW2_COMPRESSION_TYPE_OFF)
				return fail(err, -EPROTO,
					    _("truncated qcow2 header (%zu of %u bytes)"), len,
					    (unsigned)header_len);
			compression_type = buf[QCOW2_COMPRESSION_TYPE_OFF];
		}
		if (!!(incompatible & QCOW2_INCOMPAT_COMPRESSION) != (compression_type != 0))
			return fail(err, -EPROTO,
				    _("bogus qcow2 header: compression type %u does not match its "
				      "feature bit"),
				    compression_type);
	}

	/* The backing name lives in the first cluster, after the extensions. */
	if (backing_off) {
		if (backing_len == 0 || backing_len > QCOW2_MAX_BACKING_NAME)
			return fail(err, -EPROTO, _("bogus qcow2 header: backing file name length %u"),
			            backing_len);
		if (backing_off < header_len || backing_off > cluster_size ||
		    backing_off + backing_len > cluster_size)
			return fail(err, -EPROTO,
			            _("bogus qcow2 header: backing file name at offset %llu"),
			            (unsigned long long)backing_off);
		if (backing_off + backing_len > len)
			return fail(err, -EPROTO,
			            _("truncated qcow2 image: the backing file name ends past the end of the file"));
	}

	/* Header extensions run from the end of the header to the backing name
	 * (or the end of the first cluster), ended by type 0. */
	uint64_t ext_end = backing_off ? backing_off : cluster_size;
	if (ext_end > len)
		ext_end = len;
	char *format = NULL;
	bool bitmaps_ext = false, crypto_ext = false, data_file_ext = false;
	uint32_t nb_bitmaps = 0;
	uint64_t off = header_len;
	while (off + 8 <= ext_end) {
		uint32_t type = be32(buf + off);
		uint64_t ext_len = be32(buf + off + 4);
		if (type == QCOW2_EXT_END)
			break;
		if (off + 8 + ext_len > ext_end) {
			free(format);
			return fail(err, -EPROTO,
			            _("bogus qcow2 header: extension 0x%08x at offset %llu is too long"),
			            type, (unsigned long long)off);
		}
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			free(format);
			format = ext_len <= QCOW2_MAX_FORMAT_NAME ? copy_name(buf + off + 8, ext_len) : NULL;
			if (!format)
				return fail(err, -EPROTO, _("bogus qcow2 header: invalid backing format name"));
		} else if (type == QCOW2_EXT_BITMAPS) {
			bitmaps_ext = true;
			if (ext_len >= 4)
				nb_bitmaps = be32(buf + off + 8);
		} else if (type == QCOW2_EXT_CRYPTO_HEADER) {
			crypto_ext = true;
		} else if (type == QCOW2_EXT_DATA_FILE) {
			data_file_ext = true;
		}
		off += 8 + ((ext_len + 7) & ~7ull);
	}

	char *backing = NULL;
	if (backing_off) {
		backing = copy_name(buf + backing_off, backing_len);
		if (!backing) {
			free(format);
			return fail(err, -EPROTO, _("bogus qcow2 header: invalid backing file name"));
		}
	}

	out->version = version;
	out->virtual_size = size;
	out->cluster_bits = cluster_bits;
	out->backing_file = backing;
	out->backing_format = format;
	out->incompatible_features = incompatible;
	out->compatible_features = compatible;
	out->autoclear_features = autoclear;
	out->dirty = incompatible & 1;
	out->corrupt = incompatible & 2;
	out->crypt_method = be32(buf + 32);
	out->crypto_header = crypto_ext;
	out->external_data_file = (incompatible & QCOW2_INCOMPAT_DATA_FILE) || data_file_ext;
	out->nb_snapshots = be32(buf + 60);
	out->nb_bitmaps = nb_bitmaps;
	out->bitmaps = bitmaps_ext || (autoclear & QCOW2_AUTOCLEAR_BITMAPS);
	out->refcount_order = refcount_order;
	out->compression_type = compression_type;
	out->lazy_refcounts = compatible & QCOW2_COMPAT_LAZY_REFCOUNTS;
	out->extended_l2 = incompatible & QCOW2_INCOMPAT_EXTL2;
	return 0;
}

static ssize_t pread_full(int fd, uint8_t *buf, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int image_read_qcow2(const char *path, struct qcow2_info *out, char **err)
{
	memset(out, 0, sizeof(*out));
	if (err)
		*err = NULL;
	/* The applet's loop reads headers itself: a FIFO must not block it
	 * (O_NONBLOCK: open returns at once, fstat then refuses it). A symlink
	 * is followed: what may be done with a symlinked overlay is the
	 * operations' business (imageops refuses to replace one, with that
	 * reason), its facts are still the target's. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		return fail(err, -e, _("cannot open %s: %s"), path, strerror(e));
	}
	int r = image_read_qcow2_fd(fd, path, out, err);
	close(fd);
	return r;
}

int image_read_qcow2_fd(int fd, const char *path, struct qcow2_info *out, char **err)
{
	memset(out, 0, sizeof(*out));
	if (err)
		*err = NULL;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return fail(err, -EINVAL, _("%s is not a regular file"), path);
	return image_read_qcow2_fd_any(fd, path, out, err);
}

int image_read_qcow2_fd_any(int fd, const char *path, struct qcow2_info *out, char **err)
{
	memset(out, 0, sizeof(*out));
	if (err)
		*err = NULL;
	size_t want = IMAGE_READ_CHUNK;
	uint8_t *buf = malloc(want);
	if (!buf)
		return fail(err, -ENOMEM, "%s", strerror(ENOMEM));
	ssize_t got = pread_full(fd, buf, want, 0);
	/* A large cluster may put the backing name past the first chunk: read
	 * up to its end once, bounded by the largest legal cluster. */
	if (got == (ssize_t)want && be32(buf) == QCOW2_MAGIC) {
		uint64_t boff = be64(buf + 8), blen = be32(buf + 16);
		if (boff && boff <= (1ull << QCOW2_MAX_CLUSTER_BITS) && blen <= QCOW2_MAX_BACKING_NAME &&
		    boff + blen <= (1ull << QCOW2_MAX_CLUSTER_BITS) && boff + blen > want) {
			size_t more = (size_t)(boff + blen);
			uint8_t *nbuf = realloc(buf, more);
			if (nbuf) {
				buf = nbuf;
				ssize_t n = pread_full(fd, buf + want, more - want, (off_t)want);
				if (n > 0)
					got += n;
			}
		}
	}
	if (got < 0) {
		int saved = errno;
		free(buf);
		return fail(err, -saved, _("cannot read %s: %s"), path, strerror(saved));
	}

	char *perr = NULL;
	int r = image_parse_qcow2(buf, (size_t)got, out, &perr);
	free(buf);
	if (r < 0) {
		/* The parser's message lacks the path; the user needs both. */
		fail(err, r, _("%s: %s"), path, perr ? perr : "");
		free(perr);
	}
	return r;
}

void image_info_clear(struct qcow2_info *info)
{
	if (!info)
		return;
	free(info->backing_file);
	free(info->backing_format);
	memset(info, 0, sizeof(*info));
}

char *image_resolve_backing(const char *overlay_path, const char *backing)
{
	if (!backing)
		return NULL;
	/* Absolute names and protocol/json: specs are taken as stored. */
	if (backing[0] == '/' || strncmp(backing, "json:", 5) == 0 || strstr(backing, "://"))
		return strdup(backing);
	const char *slash = overlay_path ? strrchr(overlay_path, '/') : NULL;
	char *out = NULL;
	if (!slash) {
		out = strdup(backing);
	} else if (asprintf(&out, "%.*s/%s", (int)(slash - overlay_path), overlay_path, backing) <
	           0) {
		out = NULL;
	}
	return out;
}

uint64_t image_allocated_bytes(const char *path)
{
	struct stat st;
	if (!path || stat(path, &st) < 0)
		return 0;
	return (uint64_t)st.st_blocks * 512u;
}

bool image_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!a || !b || stat(a, &sa) < 0 || stat(b, &sb) < 0)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool image_reproducible(const struct qcow2_info *info, char **why)
{
	if (why)
		*why = NULL;
	if (info->crypt_method != 0 || info->crypto_header) {
		fail(why, 0, "%s",
		     _("the overlay is encrypted, and a fresh overlay would not be: its data "
		       "would come back unencrypted"));
		return false;
	}
	if (info->external_data_file) {
		fail(why, 0, "%s",
		     _("the overlay keeps its data in an external data file, which a fresh "
		       "overlay would not use"));
		return false;
	}
	if (info->nb_snapshots) {
		fail(why, 0,
		     P_("the overlay holds %u internal snapshot (qemu-img snapshot -l), which a "
			"fresh overlay would lose",
			"the overlay holds %u internal snapshots (qemu-img snapshot -l), which a "
			"fresh overlay would lose",
			info->nb_snapshots),
		     info->nb_snapshots);
		return false;
	}
	if (info->bitmaps) {
		fail(why, 0, "%s",
		     _("the overlay holds persistent bitmaps (qemu-img info lists them), which a "
		       "fresh overlay would lose"));
		return false;
	}
	uint64_t unknown = info->incompatible_features & ~IMAGE_QCOW2_KNOWN_INCOMPATIBLE;
	if (unknown || info->compression_type > 1) {
		fail(why, 0,
		     _("the overlay uses qcow2 features vmoverlay does not know (0x%llx, %u)"),
		     (unsigned long long)unknown, info->compression_type);
		return false;
	}
	return true;
}

char *image_create_options(const struct qcow2_info *info)
{
	char *o = NULL;
	/* Everything spelled out, so a qemu-img with other defaults makes the
	 * same image; options a v2 image cannot have are left out. Only
	 * numbers and fixed words: nothing from the file reaches the string. */
	int n;
	if (info->version == 2)
		n = asprintf(&o, "compat=0.10,cluster_size=%llu", 1ull << info->cluster_bits);
	else
		n = asprintf(&o, "compat=1.1,cluster_size=%llu,refcount_bits=%u%s%s%s",
			     1ull << info->cluster_bits, 1u << info->refcount_order,
			     info->lazy_refcounts ? ",lazy_refcounts=on" : "",
			     info->extended_l2 ? ",extended_l2=on" : "",
			     info->compression_type == 1 ? ",compression_type=zstd" : "");
	return n < 0 ? NULL : o;
}

bool image_same_format_options(const struct qcow2_info *a, const struct qcow2_info *b)
{
	return a->version == b->version && a->cluster_bits == b->cluster_bits &&
	       a->refcount_order == b->refcount_order && a->lazy_refcounts == b->lazy_refcounts &&
	       a->extended_l2 == b->extended_l2 && a->compression_type == b->compression_type;
}
