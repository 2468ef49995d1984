/* libFuzzer target: the qcow2 header reader (image_parse_qcow2) on arbitrary
 * bytes. Besides "no crash, no leak, no hang" it checks the contract the
 * watcher relies on: an error always comes with a message and leaves no
 * data behind; a success describes a header that can exist (version 2/3,
 * a sane cluster size, names without NUL and within the spec's limits, and
 * dirty/corrupt mirroring the incompatible-feature bits). */
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
	}
	free(err);
	image_info_clear(&info);
	return 0;
}
