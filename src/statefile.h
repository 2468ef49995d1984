/* The applet's small persistent state under $XDG_STATE_HOME/vmoverlay/state:
 * which managed VMs were last seen running (so a stop missed while the
 * applet was not running still prompts) and policies changed at run time
 * (never written into the user's config). Saved atomically. Records are
 * keyed by the libvirt connection's URI + the domain's UUID (issue 12): a
 * renamed domain keeps its records, another domain given the same name, or
 * the same name on another connection, gets none. Also the instance lock
 * of the state directory. */
#ifndef VMO_STATEFILE_H
#define VMO_STATEFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "config.h"

struct statefile;

/* Creates dir if needed and loads dir/state (missing file = empty). A
 * directory that cannot be created is logged and the state kept in memory.
 * dir NULL: memory only (save is a no-op); tests use that. NULL on OOM. */
struct statefile *statefile_open(const char *dir);
void statefile_close(struct statefile *sf);            /* NULL ok; does not save */
const char *statefile_dir(const struct statefile *sf); /* NULL if memory only */

/* Who a record is about. uri (virConnectGetURI of the connection) + uuid
 * are the identity; name is kept for display, and to migrate the records
 * of files written before issue 12 (keyed by name): such a record moves to
 * the first key asked for with its name, then is keyed like any other. A
 * key without uri or uuid (domain not known yet) has no records, and
 * setting one is ignored. */
struct state_key {
	const char *uri;
	const char *uuid;
	const char *name;
};
bool statefile_key_valid(const struct state_key *k);

bool statefile_get_running(struct statefile *sf, const struct state_key *k);
void statefile_set_running(struct statefile *sf, const struct state_key *k, bool running);
bool statefile_get_policy(struct statefile *sf, const struct state_key *k, enum vmo_policy *out);
void statefile_set_policy(struct statefile *sf, const struct state_key *k, enum vmo_policy p);
void statefile_clear_policy(struct statefile *sf, const struct state_key *k);
/* The fresh overlay a discard left (issue 12, defect 3). The discarded
 * one may be put back only while the overlay is still exactly that file:
 * a session the applet did not see (the VM ran, or something wrote to it,
 * while vmoverlay was not running) changes its size, mtime or ctime (or
 * it is another inode), and Undo would throw that session away. */
struct statefile_file_id {
	uint64_t dev, ino, size;
	int64_t mtime_s;
	long mtime_ns;
	int64_t ctime_s;
	long ctime_ns;
};
void statefile_file_id_of(const struct stat *st, struct statefile_file_id *out);
bool statefile_file_id_equal(const struct statefile_file_id *a, const struct statefile_file_id *b);
/* target: the disk ("vdb") of a VM that watches several, NULL for a VM
 * with one (the record files from before issue 15 hold). */
bool statefile_get_discard_mark(struct statefile *sf, const struct state_key *k,
				const char *target, struct statefile_file_id *out);
/* id NULL: forget it. */
void statefile_set_discard_mark(struct statefile *sf, const struct state_key *k,
				const char *target, const struct statefile_file_id *id);

/* Writes tmp + fsync + rename + fsync(dir) if anything changed. */
bool statefile_save(struct statefile *sf);

/* One applet per state directory, whatever bus it runs on (the bus name
 * only guards one bus): takes flock(LOCK_EX|LOCK_NB) on dir/lock (made if
 * needed) and writes our pid into it. Returns the descriptor, to keep open
 * for the life of the process (O_CLOEXEC: children do not inherit it), or
 * -1: errno EWOULDBLOCK when another process holds it (*holder = its pid
 * as recorded, 0 if unknown), another errno when the lock file cannot be
 * made. The CLI verbs and --check-config do not take it. */
int statefile_lock(const char *dir, long *holder);

/* $XDG_STATE_HOME/vmoverlay or ~/.local/state/vmoverlay (malloc'd). */
char *statefile_default_dir(void);

#endif
