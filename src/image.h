/* qcow2 facts read straight from the image header (QEMU docs/interop/
 * qcow2.txt), no fork: magic, version, backing file name and format
 * (header extension), virtual size, feature bits, and what a rebuild must
 * reproduce or refuse (encryption, external data file, internal snapshots,
 * persistent bitmaps, the creation options). Every read is bounds-checked:
 * a truncated or bogus file is a clear error. */
#ifndef VMO_IMAGE_H
#define VMO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qcow2_info {
	uint32_t version;         /* 2 or 3 */
	uint64_t virtual_size;
	uint32_t cluster_bits;
	char *backing_file;       /* as stored, or NULL */
	char *backing_format;     /* header extension 0xe2792aca, or NULL */
	uint64_t incompatible_features;
	uint64_t compatible_features; /* v3 */
	uint64_t autoclear_features;  /* v3 */
	bool dirty;               /* incompatible bit 0 */
	bool corrupt;             /* incompatible bit 1 */
	/* What `qemu-img create` cannot give a fresh overlay back. */
	uint32_t crypt_method;   /* 0 none, 1 AES, 2 LUKS */
	bool crypto_header;      /* full disk encryption header extension */
	bool external_data_file; /* incompatible bit 2 or the data file name extension */
	uint32_t nb_snapshots;   /* internal snapshots */
	uint32_t nb_bitmaps;     /* from the bitmaps extension */
	bool bitmaps;            /* bitmaps extension or autoclear bit 0 */
	/* Creation options a rebuild carries over (-o). */
	uint32_t refcount_order;   /* refcount_bits = 1 << order; 4 for v2 */
	uint32_t compression_type; /* 0 zlib, 1 zstd */
	bool lazy_refcounts;       /* compatible bit 0 */
	bool extended_l2;          /* incompatible bit 4 */
};

/* Incompatible feature bits this parser knows (dirty, corrupt, external
 * data file, compression type, extended L2). */
#define IMAGE_QCOW2_KNOWN_INCOMPATIBLE 0x1full

/* Parses a header from memory (the fuzz target uses this). Returns 0 or a
 * negative errno (-EINVAL bad magic/format, -EPROTO truncated/bogus) and a
 * translated *err. */
int image_parse_qcow2(const uint8_t *buf, size_t len, struct qcow2_info *out, char **err);
/* Opens path with O_NONBLOCK (never blocks on a FIFO), requires a regular
 * file (fstat of what was opened), reads and parses it. */
int image_read_qcow2(const char *path, struct qcow2_info *out, char **err);
/* The same from an open descriptor (path only names it in *err). */
int image_read_qcow2_fd(int fd, const char *path, struct qcow2_info *out, char **err);
/* The same without the regular-file check: the caller accepted the file
 * type (the chain probe reads qcow2 headers on block devices too). */
int image_read_qcow2_fd_any(int fd, const char *path, struct qcow2_info *out, char **err);
void image_info_clear(struct qcow2_info *info);

/* True if `qemu-img create -f qcow2 -o <image_create_options> -b ...`
 * makes an overlay equivalent to this one's empty state: not encrypted, no
 * external data file, no internal snapshots, no persistent bitmaps, no
 * feature this parser does not know. Else false and a translated *why
 * (one sentence: what the overlay has and what a rebuild would lose). */
bool image_reproducible(const struct qcow2_info *info, char **why);
/* The -o value that recreates info's format options: compat, cluster
 * size, refcount bits, lazy refcounts, extended L2, compression type
 * (malloc'd; NULL on ENOMEM). */
char *image_create_options(const struct qcow2_info *info);
/* Same version, cluster size, refcount width, lazy refcounts, extended L2
 * and compression type: the check that a rebuilt overlay came out as asked. */
bool image_same_format_options(const struct qcow2_info *a, const struct qcow2_info *b);

/* backing resolved against the overlay's directory when relative
 * (malloc'd, not canonicalised further). */
char *image_resolve_backing(const char *overlay_path, const char *backing);
/* Allocated bytes (st_blocks * 512), 0 on error. */
uint64_t image_allocated_bytes(const char *path);
/* Same device and inode. */
bool image_same_file(const char *a, const char *b);

#endif
