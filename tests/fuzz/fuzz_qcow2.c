/* libFuzzer target: the qcow2 header reader (image_parse_qcow2) on arbitrary
 * bytes. Besides "no crash, no leak, no hang" it checks the contract the
 * watcher relies on: an error always comes with a message and leaves no
 * data behind; a success describes a header that can exist (version 2/3,
 * a sane cluster size, names without NUL and within the spec's limits, and
 * dirty/corrupt/extended L2/lazy refcounts mirroring their feature bits, a
 * compression type that agrees with its bit); the rebuild's view of it
 * (image_reproducible, image_create_options) never fails silently. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

#define ENSURE(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_qcow2: contract broken: %s\n", #cond);               \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qcow2_info info;
	char *err = NULL;
	int r = image_parse_qcow2(data, size, &info, &err);
	if (r < 0) {
		ENSURE(err && *err);
		ENSURE(!info.backing_file && !info.backing_format);
	} else {
		ENSURE(r == 0);
		ENSURE(!err);
		ENSURE(info.version == 2 || info.version == 3);
		ENSURE(info.cluster_bits >= 9 && info.cluster_bits <= 21);
		ENSURE(info.dirty == !!(info.incompatible_features & 1));
		ENSURE(info.corrupt == !!(info.incompatible_features & 2));
		if (info.backing_file) {
			size_t n = strlen(info.backing_file);
			ENSURE(n > 0 && n <= 1023);
		}
		if (info.backing_format)
			ENSURE(*info.backing_format && strlen(info.backing_format) <= 63);
		ENSURE(info.extended_l2 == !!(info.incompatible_features & 16));
		ENSURE(info.lazy_refcounts == !!(info.compatible_features & 1));
		ENSURE((info.compression_type != 0) == !!(info.incompatible_features & 8));
		ENSURE(info.refcount_order <= 6);
		if (info.version == 2)
			ENSURE(info.refcount_order == 4 && !info.compatible_features &&
			       !info.autoclear_features && !info.compression_type);
		char *why = NULL;
		bool ok = image_reproducible(&info, &why);
		ENSURE(ok ? why == NULL : why && *why);
		if (ok)
			ENSURE(!info.crypt_method && !info.external_data_file &&
			       !info.nb_snapshots && !info.bitmaps);
		free(why);
		char *opts = image_create_options(&info);
		ENSURE(opts && strncmp(opts, "compat=", 7) == 0 && !strchr(opts, ' '));
		free(opts);
		ENSURE(image_same_format_options(&info, &info));
	}
	free(err);
	image_info_clear(&info);
	return 0;
}
