/* The applet's small persistent state under $XDG_STATE_HOME/vmoverlay/state:
 * which managed VMs were last seen running (so a stop missed while the
 * applet was not running still prompts) and policies changed at run time
 * (never written into the user's config). Saved atomically. */
#ifndef VMO_STATEFILE_H
#define VMO_STATEFILE_H

#include <stdbool.h>

#include "config.h"

struct statefile;

/* Creates dir if needed and loads dir/state (missing file = empty). A
 * directory that cannot be created is logged and the state kept in memory.
 * dir NULL: memory only (save is a no-op); tests use that. NULL on OOM. */
struct statefile *statefile_open(const char *dir);
void statefile_close(struct statefile *sf); /* NULL ok; does not save */
const char *statefile_dir(const struct statefile *sf); /* NULL if memory only */

bool statefile_get_running(const struct statefile *sf, const char *vm);
void statefile_set_running(struct statefile *sf, const char *vm, bool running);
bool statefile_get_policy(const struct statefile *sf, const char *vm, enum vmo_policy *out);
void statefile_set_policy(struct statefile *sf, const char *vm, enum vmo_policy p);
void statefile_clear_policy(struct statefile *sf, const char *vm);
/* Writes tmp + fsync + rename + fsync(dir) if anything changed. */
bool statefile_save(struct statefile *sf);

/* $XDG_STATE_HOME/vmoverlay or ~/.local/state/vmoverlay (malloc'd). */
char *statefile_default_dir(void);

#endif
