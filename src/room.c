/* Free space before a commit or a rebuild (room.h). Free space is
 * statvfs's f_bavail (what an unprivileged writer may use) of the directory
 * the operation writes into; two paths on one filesystem (same st_dev) add
 * their needs. The estimate errs on the large side: a refusal costs the user
 * a message with the numbers, a commit that runs out of room costs a
 * half-merged base. */
#include "room.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "i18n.h"
#include "image.h"
#include "log.h"
#include "util.h"

uint64_t room_commit_bytes(uint64_t overlay_allocated)
{
	return overlay_allocated + overlay_allocated / 64 + (2ull << 20);
}

struct place {
	char *dir;      /* the directory written into */
	dev_t dev;      /* its filesystem */
	uint64_t avail; /* bytes free for us there */
	uint64_t need;  /* bytes the operation writes there */
	bool known;     /* stat + statvfs worked */
};

static void place_init(struct place *p, const char *file, uint64_t need)
{
	memset(p, 0, sizeof *p);
	p->need = need;
	char *copy = strdup(file);
	if (!copy)
		return;
	p->dir = strdup(dirname(copy));
	free(copy);
	struct stat st;
	struct statvfs vfs;
	if (!p->dir || stat(p->dir, &st) < 0 || statvfs(p->dir, &vfs) < 0) {
		log_warn("room: cannot read the free space of %s; going ahead",
			 p->dir ? p->dir : file);
		return;
	}
	p->dev = st.st_dev;
	p->avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
	p->known = true;
}

/* Sets *why for the first place whose needs (its own, plus those of later
 * places on the same filesystem) exceed its free space. */
static bool places_fit(const char *vm_name, const char *fmt, struct place *ps, int n, char **why)
{
	bool fits = true;
	for (int i = 0; i < n && fits; i++) {
		if (!ps[i].known || !ps[i].need)
			continue;
		uint64_t need = ps[i].need;
		for (int j = i + 1; j < n; j++) {
			if (ps[j].known && ps[j].dev == ps[i].dev) {
				need += ps[j].need;
				ps[j].need = 0; /* counted here */
			}
		}
		log_debug("room: %s: %llu bytes needed in %s, %llu free", vm_name,
			  (unsigned long long)need, ps[i].dir, (unsigned long long)ps[i].avail);
		if (need > ps[i].avail) {
			char a[64], b[64];
			set_err(why, fmt, vm_name, i18n_format_size(a, sizeof a, need), ps[i].dir,
				i18n_format_size(b, sizeof b, ps[i].avail));
			fits = false;
		}
	}
	for (int i = 0; i < n; i++)
		free(ps[i].dir);
	return fits;
}

bool room_for_commits(const char *vm_name, const char *const *overlays, const char *const *bases,
		      size_t n, char **why)
{
	struct place *ps = calloc(2 * n + 1, sizeof *ps);
	if (!ps)
		return true; /* as unknown free space: logged, going ahead */
	for (size_t i = 0; i < n; i++) {
		place_init(&ps[2 * i], bases[i], room_commit_bytes(image_allocated_bytes(overlays[i])));
		place_init(&ps[2 * i + 1], overlays[i], ROOM_REBUILD_BYTES);
	}
	bool fits = places_fit(vm_name,
			       _("%s: not enough room to commit: it needs about %s on %s, %s free. "
				 "Nothing was changed; make room there and commit again"),
			       ps, (int)(2 * n), why);
	free(ps);
	return fits;
}

bool room_for_commit(const char *vm_name, const char *overlay, const char *base, char **why)
{
	return room_for_commits(vm_name, &overlay, &base, 1, why);
}

bool room_for_rebuild(const char *vm_name, const char *overlay, char **why)
{
	struct place p;
	place_init(&p, overlay, ROOM_REBUILD_BYTES);
	return places_fit(vm_name,
			  _("%s: not enough room for a fresh overlay: it needs about %s on %s, %s "
			    "free. Nothing was changed; make room there and try again"),
			  &p, 1, why);
}
