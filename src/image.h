/* qcow2 facts read straight from the image header (QEMU docs/interop/
 * qcow2.txt), no fork: magic, version, backing file name and format
 * (header extension), virtual size, incompatible-feature bits. Every read
 * is bounds-checked: a truncated or bogus file is a clear error. */
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
	bool dirty;               /* incompatible bit 0 */
	bool corrupt;             /* incompatible bit 1 */
};

/* Parses a header from memory (the fuzz target uses this). Returns 0 or a
 * negative errno (-EINVAL bad magic/format, -EPROTO truncated/bogus) and a
 * translated *err. */
int image_parse_qcow2(const uint8_t *buf, size_t len, struct qcow2_info *out, char **err);
/* Reads path (O_NOFOLLOW not implied) and parses it. */
int image_read_qcow2(const char *path, struct qcow2_info *out, char **err);
void image_info_clear(struct qcow2_info *info);

/* backing resolved against the overlay's directory when relative
 * (malloc'd, not canonicalised further). */
char *image_resolve_backing(const char *overlay_path, const char *backing);
/* Allocated bytes (st_blocks * 512), 0 on error. */
uint64_t image_allocated_bytes(const char *path);
/* Same device and inode. */
bool image_same_file(const char *a, const char *b);

#endif
