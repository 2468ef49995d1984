/* The insides of the libvirt watcher shared by virt.c (connection,
 * events, transitions, reconcile), virt-disks.c (the watched disk found in
 * the domain XML and its image facts, from the header or libvirt's storage
 * API) and virt-share.c (which other disks use a base or an overlay: the
 * chain scan in a child process, chainprobe.c). Nothing else includes it. */
#ifndef VMO_VIRT_PRIVATE_H
#define VMO_VIRT_PRIVATE_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "virt.h"
#include "chainprobe.h"
#include "config.h"
#include "i18n.h"
#include "image.h"
#include "log.h"
#include "loop.h"
#include "statefile.h"

#define KEEPALIVE_SLACK_S 5
#define KEEPALIVE_COUNT   3
#define BACKOFF_MAX_S     30

/* What the shared-base scan learnt about one disk of one defined domain:
 * every file of its chain (the disk itself and its backing files), or why
 * that is not fully known. Unknown is never "not shared" (docs/design.md §4
 * rules 3 and 9). */
struct disk_use {
	char *domain;
	char *target;
	struct file_id *ids;
	size_t n_ids;
	char *unknown; /* translated sentence, NULL if the chain is known */
};

/* A scan on its way: the disks, and the chains the probe child walks. */
struct plan_disk {
	char *domain, *target;
	char *unknown;    /* known before probing (translated) */
	long top;         /* item of the disk itself, -1 if none */
	bool top_partial; /* a format whose header the probe cannot follow */
	size_t xml_first, xml_n;
	bool xml_usable; /* libvirt gave a complete chain of local files */
};

struct scan_plan {
	struct plan_disk *disks;
	size_t n_disks;
	struct chainprobe_item *items;
	size_t n_items;
};

struct virt_watcher {
	struct loop *loop;
	struct model *model;
	const struct config *cfg;
	struct statefile *state;
	struct virt_events ev;

	char *uri; /* NULL: libvirt's default */
	virConnectPtr conn;
	int lifecycle_id; /* -1 when not registered */
	bool close_registered;
	bool closed; /* set by the close callback, acted on by a timer */
	int backoff_s;
	char *last_error;

	struct loop_timer *reconnect_timer;
	struct loop_timer *reconcile_timer;
	struct loop_timer *rescan_timer; /* coalesces define/undefine events */
	struct loop_timer *reapply_timer; /* a fresh scan's notes into the model, from the loop */

	/* The last finished shared-base scan. */
	struct disk_use *uses;
	size_t n_uses;
	bool scanned;
	char *scan_unknown;       /* the scan itself failed (translated) */
	struct chainprobe *probe; /* the reconcile's scan, running */
	struct scan_plan *probe_plan;
	bool rescan_wanted;
	pid_t probe_pid;
	pid_t hung_pid; /* a timed-out probe child not gone yet */
	int probe_timeout_ms;
};

/* One element of a <backingStore> chain in the domain XML. */
struct xml_backing {
	char *path; /* file or dev; NULL: not a local file (network, ...) */
	bool qcow2;
};

/* A <disk> of a domain, as far as we care. */
struct disk_info {
	char *target;
	char *source; /* resolved path, NULL if none / not a file */
	bool is_disk; /* device='disk' */
	bool is_file; /* type file or volume (resolved to a path) */
	bool qcow2;
	bool transient, readonly, shareable;
	/* For the shared-base scan (every disk, whatever it is): */
	char *local;               /* file, block device or resolved volume; NULL if none */
	bool has_source;           /* some medium is attached (a network one, too) */
	bool may_back;             /* its format can have a backing file (not raw) */
	char *unresolved;          /* why local is NULL although has_source (English) */
	struct xml_backing *chain; /* libvirt's <backingStore> elements */
	size_t n_chain;
	bool chain_complete; /* ends in an empty <backingStore/> */
};

/* libvirt's default handler prints every error to stderr; we log the ones
 * that matter ourselves, with context. */

struct dom_facts {
	char uuid[VIR_UUID_STRING_BUFLEN];
	int state, reason;
	enum vm_run_state run;
	bool managed_save, snapshots;
};

/* virt.c */
const char *virt_last_error(void);
bool virt_cfg_has_override(const struct vm *vm);
void virt_reconcile(struct virt_watcher *w, const char *why);

/* virt-disks.c */
void virt_discover_vm(struct virt_watcher *w, struct vm *vm, virDomainPtr dom);
void virt_disks_free(struct disk_info *d, size_t n);
bool virt_domain_disks_xml(virConnectPtr conn, virDomainPtr dom, unsigned flags,
			   struct disk_info **out, size_t *n_out);
void virt_fill_image_facts(struct virt_watcher *w, struct vm *vm, const char *cfg_base);
int virt_volume_facts(virConnectPtr conn, const char *path, struct qcow2_info *out);

/* virt-share.c */
void virt_apply_uses(struct virt_watcher *w, struct vm *vm);
struct plan_disk *virt_plan_disk(struct scan_plan *p, const char *domain, const char *target);
void virt_plan_free(struct scan_plan *p);
void virt_scan_now(struct virt_watcher *w);
void virt_scan_start(struct virt_watcher *w, virDomainPtr *doms, int n);
void virt_uses_clear(struct virt_watcher *w);

#endif
