/* Helpers shared by imageops.c (rebuild, qemu's image lock, the discard
 * safety net, synchronous wrappers), imageops-check.c (what a rebuild
 * needs, checked before anything irreversible) and imageops-journal.c (the
 * commit journal). Nothing else includes it. */
#ifndef VMO_IMAGEOPS_PRIVATE_H
#define VMO_IMAGEOPS_PRIVATE_H

#include <stdbool.h>

#include "imageops.h"

/* A NULL-terminated argv of strdup'd strings (first, then the rest up to
 * NULL); NULL on ENOMEM. */
char **imageops_argv_build(const char *first, ...) __attribute__((sentinel));
int imageops_fsync_dir_of(const char *path);
bool imageops_has(const char *hay, const char *needle);
int imageops_qemu_lock_others(int fd);
void imageops_remove_stale_temps(const char *dir, const char *name);

#endif
