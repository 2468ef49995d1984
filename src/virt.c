/* The libvirt watcher. One connection, lifecycle events for every domain
 * (the managed VMs are picked out here), a close callback that only flags,
 * reconnects with backoff from a timer, and a reconcile (list every domain,
 * compare with what we last saw and with the state file) after each
 * connect and every reconcile_interval seconds: events missed while we
 * were not connected are lost, libvirt does not replay them.
 * Disk facts come from the inactive domain XML (libxml2) and the qcow2
 * headers (image.c); no process is forked. */
#include "virt.h"

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

#include "chainprobe.h"
#include "config.h"
#include "i18n.h"
#include "image.h"
#include "log.h"
#include "loop.h"
#include "statefile.h"

/* Keepalive pings after this many seconds of silence on top of the
 * reconcile interval: the reconcile's own traffic resets the countdown, so
 * the keepalive never adds a wake-up of its own, and a hung daemon is
 * still noticed after about KEEPALIVE_COUNT reconcile periods. */
#define KEEPALIVE_SLACK_S 5
#define KEEPALIVE_COUNT 3
#define BACKOFF_MAX_S 30

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
	int lifecycle_id;     /* -1 when not registered */
	bool close_registered;
	bool closed;          /* set by the close callback, acted on by a timer */
	int backoff_s;
	char *last_error;

	struct loop_timer *reconnect_timer;
	struct loop_timer *reconcile_timer;
	struct loop_timer *rescan_timer; /* coalesces define/undefine events */

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
static void quiet_error(void *data, virErrorPtr err)
{
	if (err && err->message)
		log_debug("libvirt: %s", err->message);
}

static const char *last_virt_error(void)
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown error";
}

static bool cfg_has_override(const struct vm *vm)
{
	return vm->cfg && vm->cfg->overlay;
}

enum vm_stop_kind virt_classify_stop(int state, int reason, bool managed_save, bool snapshots)
{
	/* A saved RAM image or a libvirt-managed chain refers to this overlay:
	 * changing it would corrupt them. */
	if (managed_save || snapshots)
		return STOP_NO_PROMPT;
	if (state == VIR_DOMAIN_CRASHED)
		return STOP_UNCLEAN;
	switch (reason) {
	case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
		return STOP_CLEAN;
	case VIR_DOMAIN_SHUTOFF_SAVED:
	case VIR_DOMAIN_SHUTOFF_MIGRATED:
	case VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT:
		return STOP_NO_PROMPT;
	default:
		/* DESTROYED, CRASHED, FAILED, DAEMON and anything unknown: the guest
		 * did not say it shut down cleanly. */
		return STOP_UNCLEAN;
	}
}

enum vm_stop_kind virt_classify_event(int detail)
{
	switch (detail) {
	case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
		return STOP_CLEAN;
	case VIR_DOMAIN_EVENT_STOPPED_SAVED:
	case VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
	case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
		return STOP_NO_PROMPT;
	default:
		return STOP_UNCLEAN;
	}
}

static const char *stop_kind_name(enum vm_stop_kind k)
{
	switch (k) {
	case STOP_CLEAN:
		return "clean";
	case STOP_UNCLEAN:
		return "unclean";
	case STOP_NO_PROMPT:
		return "no-prompt";
	}
	return "?";
}

static enum vm_run_state run_from_state(virDomainPtr dom, int state)
{
	switch (state) {
	case VIR_DOMAIN_SHUTOFF:
		return RUN_SHUTOFF;
	case VIR_DOMAIN_CRASHED:
		return RUN_CRASHED;
	case VIR_DOMAIN_NOSTATE:
		return virDomainIsActive(dom) == 1 ? RUN_RUNNING : RUN_SHUTOFF;
	default: /* running, blocked, paused, shutting down, pmsuspended */
		return RUN_RUNNING;
	}
}

static void set_unknown(struct vm *vm)
{
	vm->run = RUN_UNKNOWN;
	vm->dom_state = -1;
	vm->dom_reason = 0;
}

/* What libvirt says about a domain right now. */
struct dom_facts {
	char uuid[VIR_UUID_STRING_BUFLEN];
	int state, reason;
	enum vm_run_state run;
	bool managed_save, snapshots;
};

/* False if libvirt could not tell (the domain is gone). */
static bool query_facts(virDomainPtr dom, struct dom_facts *f)
{
	memset(f, 0, sizeof(*f));
	if (virDomainGetState(dom, &f->state, &f->reason, 0) < 0)
		return false;
	if (virDomainGetUUIDString(dom, f->uuid) < 0)
		f->uuid[0] = 0;
	f->run = run_from_state(dom, f->state);
	f->managed_save = virDomainHasManagedSaveImage(dom, 0) > 0;
	f->snapshots = virDomainSnapshotNum(dom, 0) > 0;
	return true;
}

static void apply_facts(struct vm *vm, const struct dom_facts *f)
{
	snprintf(vm->uuid, sizeof(vm->uuid), "%s", f->uuid);
	vm->dom_state = f->state;
	vm->dom_reason = f->reason;
	vm->run = f->run;
	vm->has_managed_save = f->managed_save;
	vm->has_snapshots = f->snapshots;
}

static bool query_domain(struct vm *vm, virDomainPtr dom)
{
	struct dom_facts f;
	if (!query_facts(dom, &f))
		return false;
	apply_facts(vm, &f);
	/* With the uuid, the identity the state dir is keyed by (issue 12). */
	virConnectPtr conn = virDomainGetConnect(dom);
	char *uri = conn ? virConnectGetURI(conn) : NULL;
	vm_set_str(&vm->uri, uri);
	free(uri);
	return true;
}

/* The state file's key for vm: its connection and domain UUID. */
static struct state_key vm_key(const struct vm *vm)
{
	return (struct state_key){.uri = vm->uri, .uuid = vm->uuid, .name = vm->name};
}

/* ---- domain XML ---- */

static xmlNodePtr child_elem(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next) {
		if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
			return c;
	}
	return NULL;
}

static char *prop(xmlNodePtr n, const char *name)
{
	if (!n)
		return NULL;
	xmlChar *v = xmlGetProp(n, BAD_CAST name);
	if (!v)
		return NULL;
	char *s = strdup((const char *)v);
	xmlFree(v);
	return s;
}

static char *volume_path(virConnectPtr conn, const char *pool_name, const char *vol_name)
{
	if (!conn || !pool_name || !vol_name)
		return NULL;
	char *path = NULL;
	virStoragePoolPtr pool = virStoragePoolLookupByName(conn, pool_name);
	if (!pool) {
		log_warn("virt: storage pool %s: %s", pool_name, last_virt_error());
		return NULL;
	}
	virStorageVolPtr vol = virStorageVolLookupByName(pool, vol_name);
	if (vol) {
		path = virStorageVolGetPath(vol);
		virStorageVolFree(vol);
	}
	if (!path)
		log_warn("virt: volume %s/%s: %s", pool_name, vol_name, last_virt_error());
	virStoragePoolFree(pool);
	return path;
}

static void disks_free(struct disk_info *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(d[i].target);
		free(d[i].source);
		free(d[i].local);
		free(d[i].unresolved);
		for (size_t k = 0; k < d[i].n_chain; k++)
			free(d[i].chain[k].path);
		free(d[i].chain);
	}
	free(d);
}

/* raw (libvirt's default) and the read-only image formats have no backing
 * file; anything else might. */
static bool format_may_back(const char *fmt)
{
	return fmt && strcmp(fmt, "raw") != 0 && strcmp(fmt, "iso") != 0 && strcmp(fmt, "fat") != 0;
}

/* libvirt's view of the chain under a disk: <backingStore type=...>
 * <format type=.../><source file|dev=.../><backingStore .../></backingStore>.
 * An empty <backingStore/> ends it; no element at all means libvirt did not
 * say (inactive XML usually), which is not "no backing file". */
static void parse_backing_chain(xmlNodePtr disk, struct disk_info *di)
{
	xmlNodePtr bs = child_elem(disk, "backingStore");
	while (bs) {
		char *type = prop(bs, "type");
		if (!type && !child_elem(bs, "source")) {
			di->chain_complete = true;
			return;
		}
		struct xml_backing *n = realloc(di->chain, (di->n_chain + 1) * sizeof(*n));
		if (!n) {
			free(type);
			return;
		}
		di->chain = n;
		xmlNodePtr src = child_elem(bs, "source");
		char *fmt = prop(child_elem(bs, "format"), "type");
		struct xml_backing *b = &di->chain[di->n_chain++];
		b->path = NULL;
		if (type && strcmp(type, "file") == 0)
			b->path = prop(src, "file");
		else if (type && strcmp(type, "block") == 0)
			b->path = prop(src, "dev");
		b->qcow2 = fmt && strcmp(fmt, "qcow2") == 0;
		free(fmt);
		free(type);
		bs = child_elem(bs, "backingStore");
	}
}

/* Every <disk> of the domain's inactive XML. Returns false (with a log
 * line) when the XML cannot be had or parsed. */
static bool domain_disks_xml(virConnectPtr conn, virDomainPtr dom, unsigned flags,
			     struct disk_info **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	char *xml = virDomainGetXMLDesc(dom, flags);
	if (!xml) {
		log_warn("virt: XML of %s: %s", virDomainGetName(dom), last_virt_error());
		return false;
	}
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
	                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	free(xml);
	if (!doc) {
		log_warn("virt: cannot parse the XML of %s", virDomainGetName(dom));
		return false;
	}
	bool ok = false;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathObjectPtr res =
		ctx ? xmlXPathEvalExpression(BAD_CAST "/domain/devices/disk", ctx) : NULL;
	if (!res)
		goto out;
	int count = res->nodesetval ? res->nodesetval->nodeNr : 0;
	struct disk_info *d = count ? calloc((size_t)count, sizeof(*d)) : NULL;
	if (count && !d)
		goto out;
	for (int i = 0; i < count; i++) {
		xmlNodePtr node = res->nodesetval->nodeTab[i];
		struct disk_info *di = &d[i];
		char *type = prop(node, "type");
		char *device = prop(node, "device");
		char *driver_type = prop(child_elem(node, "driver"), "type");
		xmlNodePtr source = child_elem(node, "source");
		di->target = prop(child_elem(node, "target"), "dev");
		di->is_disk = !device || strcmp(device, "disk") == 0;
		di->qcow2 = driver_type && strcmp(driver_type, "qcow2") == 0;
		di->transient = child_elem(node, "transient") != NULL;
		di->readonly = child_elem(node, "readonly") != NULL;
		di->shareable = child_elem(node, "shareable") != NULL;
		/* libvirt's default format is raw. */
		di->may_back = format_may_back(driver_type ? driver_type : "raw");
		di->has_source = source != NULL;
		if (type && strcmp(type, "file") == 0) {
			di->source = prop(source, "file");
			di->is_file = di->source != NULL;
			di->has_source = di->source != NULL;
			di->local = di->source ? strdup(di->source) : NULL;
		} else if (type && strcmp(type, "block") == 0) {
			di->local = prop(source, "dev");
			di->has_source = di->local != NULL;
		} else if (type && strcmp(type, "volume") == 0) {
			char *pool = prop(source, "pool"), *vol = prop(source, "volume");
			di->source = volume_path(conn, pool, vol);
			di->is_file = di->source != NULL;
			di->local = di->source ? strdup(di->source) : NULL;
			if (!di->local &&
			    asprintf(&di->unresolved, "volume %s/%s cannot be resolved",
				     pool ? pool : "?", vol ? vol : "?") < 0)
				di->unresolved = NULL;
			free(pool);
			free(vol);
		} else if (type && strcmp(type, "network") == 0 && di->has_source) {
			char *proto = prop(source, "protocol");
			if (asprintf(&di->unresolved, "network disk (%s)", proto ? proto : "?") < 0)
				di->unresolved = NULL;
			free(proto);
		} else {
			/* dir (a host directory as a FAT image), nvme, vhostuser...:
			 * no image file that could be backed by ours. */
			di->has_source = false;
		}
		parse_backing_chain(node, di);
		free(type);
		free(device);
		free(driver_type);
	}
	*out = d;
	*n_out = (size_t)count;
	ok = true;
out:
	xmlXPathFreeObject(res);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return ok;
}

/* The disks the watched VM's own definition has (what libvirt boots). */
static bool domain_disks(virConnectPtr conn, virDomainPtr dom, struct disk_info **out,
			 size_t *n_out)
{
	return domain_disks_xml(conn, dom, VIR_DOMAIN_XML_INACTIVE, out, n_out);
}

static bool disk_qualifies(const struct disk_info *d)
{
	return d->is_disk && d->is_file && d->qcow2 && !d->transient && !d->readonly &&
	       !d->shareable;
}

/* ---- facts of images the user cannot read (qemu:///system) ---- */

static char *xpath_string(xmlXPathContextPtr ctx, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
	char *s = NULL;
	if (o && o->type == XPATH_STRING && o->stringval && *o->stringval)
		s = strdup((const char *)o->stringval);
	xmlXPathFreeObject(o);
	return s;
}

/* The volume at path, looked up by path; when no pool lists it yet (a file
 * made outside libvirt, or replaced by a rebuild), the active pools whose
 * directory holds it are refreshed once (needs a read-write connection,
 * which a user who may manage the system daemon has). */
static virStorageVolPtr volume_by_path(virConnectPtr conn, const char *path)
{
	virStorageVolPtr vol = virStorageVolLookupByPath(conn, path);
	if (vol)
		return vol;
	virResetLastError();
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return NULL;
	size_t dirlen = (size_t)(slash - path);
	virStoragePoolPtr *pools = NULL;
	int n = virConnectListAllStoragePools(conn, &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);
	bool refreshed = false;
	for (int i = 0; i < n; i++) {
		char *xml = virStoragePoolGetXMLDesc(pools[i], 0);
		xmlDocPtr doc = xml ? xmlReadMemory(xml, (int)strlen(xml), "pool.xml", NULL,
		                                    XML_PARSE_NONET | XML_PARSE_NOERROR |
		                                            XML_PARSE_NOWARNING)
		                    : NULL;
		free(xml);
		xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
		char *target = ctx ? xpath_string(ctx, "string(/pool/target/path)") : NULL;
		if (target && strlen(target) == dirlen && strncmp(target, path, dirlen) == 0 &&
		    virStoragePoolRefresh(pools[i], 0) == 0)
			refreshed = true;
		free(target);
		xmlXPathFreeContext(ctx);
		xmlFreeDoc(doc);
		virStoragePoolFree(pools[i]);
	}
	free(pools);
	virResetLastError();
	return refreshed ? virStorageVolLookupByPath(conn, path) : NULL;
}

/* What libvirt's storage driver (root, in the daemon) read from the image's
 * header: format, virtual size, the immediate backing store (its path as
 * libvirt resolved it) and that one's format. The applet never opens the
 * file. Returns 0, or -ENOENT when the image is in no storage pool, -EIO
 * when libvirt gave no usable answer (log line). */
static int volume_facts(virConnectPtr conn, const char *path, struct qcow2_info *out)
{
	memset(out, 0, sizeof(*out));
	if (!conn)
		return -ENOENT;
	virStorageVolPtr vol = volume_by_path(conn, path);
	if (!vol) {
		virResetLastError();
		return -ENOENT;
	}
	char *xml = virStorageVolGetXMLDesc(vol, 0);
	virStorageVolFree(vol);
	if (!xml) {
		log_warn("virt: volume XML of %s: %s", path, last_virt_error());
		return -EIO;
	}
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "volume.xml", NULL,
	                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	free(xml);
	xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
	int r = -EIO;
	char *format = ctx ? xpath_string(ctx, "string(/volume/target/format/@type)") : NULL;
	char *capacity = ctx ? xpath_string(ctx, "string(/volume/capacity)") : NULL;
	if (format && strcmp(format, "qcow2") == 0 && capacity) {
		out->virtual_size = strtoull(capacity, NULL, 10);
		out->backing_file = xpath_string(ctx, "string(/volume/backingStore/path)");
		out->backing_format = xpath_string(ctx, "string(/volume/backingStore/format/@type)");
		r = 0;
	} else {
		log_warn("virt: libvirt reports %s as %s, not qcow2", path, format ? format : "?");
	}
	free(format);
	free(capacity);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return r;
}

/* The qcow2 facts of path: from its header, or, when we may not read it
 * (root's images under qemu:///system), from libvirt's storage API.
 * *via_libvirt tells which. Same returns as image_read_qcow2. */
static int read_image(struct virt_watcher *w, const char *path, struct qcow2_info *info,
                      bool *via_libvirt, char **err)
{
	*via_libvirt = false;
	int r = image_read_qcow2(path, info, err);
	if (r != -EACCES && r != -EPERM)
		return r;
	struct qcow2_info v;
	int vr = volume_facts(w ? w->conn : NULL, path, &v);
	if (vr < 0)
		return r; /* keeps the "cannot open: Permission denied" message */
	if (err) {
		free(*err);
		*err = NULL;
	}
	image_info_clear(info);
	*info = v;
	*via_libvirt = true;
	return 0;
}

/* ---- shared bases ---- */

static void uses_free(struct disk_use *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(u[i].domain);
		free(u[i].target);
		free(u[i].ids);
		free(u[i].unknown);
	}
	free(u);
}

static void uses_clear(struct virt_watcher *w)
{
	uses_free(w->uses, w->n_uses);
	w->uses = NULL;
	w->n_uses = 0;
	w->scanned = false;
	free(w->scan_unknown);
	w->scan_unknown = NULL;
}

static void plan_free(struct scan_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_disks; i++) {
		free(p->disks[i].domain);
		free(p->disks[i].target);
		free(p->disks[i].unknown);
	}
	free(p->disks);
	for (size_t i = 0; i < p->n_items; i++)
		free(p->items[i].path);
	free(p->items);
	free(p);
}

static long plan_item(struct scan_plan *p, const char *path, bool qcow2)
{
	struct chainprobe_item *n = realloc(p->items, (p->n_items + 1) * sizeof(*n));
	if (!n)
		return -1;
	p->items = n;
	char *copy = strdup(path);
	if (!copy)
		return -1;
	p->items[p->n_items] = (struct chainprobe_item){copy, qcow2};
	return (long)p->n_items++;
}

static struct plan_disk *plan_disk(struct scan_plan *p, const char *domain, const char *target)
{
	struct plan_disk *n = realloc(p->disks, (p->n_disks + 1) * sizeof(*n));
	if (!n)
		return NULL;
	p->disks = n;
	struct plan_disk *d = &p->disks[p->n_disks];
	memset(d, 0, sizeof(*d));
	d->top = -1;
	d->domain = strdup(domain);
	d->target = target ? strdup(target) : NULL;
	if (!d->domain)
		return NULL;
	p->n_disks++;
	return d;
}

static void plan_set_unknown(struct plan_disk *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void plan_set_unknown(struct plan_disk *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(d->unknown);
	if (vasprintf(&d->unknown, fmt, ap) < 0)
		d->unknown = NULL;
	va_end(ap);
}

/* Every disk of one domain, from the XML libvirt has now (the live one of
 * a running domain carries the chain libvirt detected) and, for a running
 * persistent domain, the definition it boots next time too. */
static void plan_domain(struct scan_plan *p, virConnectPtr conn, virDomainPtr dom)
{
	const char *name = virDomainGetName(dom);
	if (!name)
		return;
	unsigned flags[2] = {0, VIR_DOMAIN_XML_INACTIVE};
	int n_flags = virDomainIsActive(dom) == 1 && virDomainIsPersistent(dom) == 1 ? 2 : 1;
	for (int f = 0; f < n_flags; f++) {
		struct disk_info *d;
		size_t nd;
		if (!domain_disks_xml(conn, dom, flags[f], &d, &nd)) {
			struct plan_disk *pd = plan_disk(p, name, NULL);
			if (pd)
				plan_set_unknown(pd, "%s",
						 _("libvirt did not give its definition"));
			continue;
		}
		for (size_t k = 0; k < nd; k++) {
			const struct disk_info *di = &d[k];
			if (!di->has_source)
				continue;
			if (!di->local && !di->may_back)
				continue; /* a raw network disk: no chain to read */
			struct plan_disk *pd = plan_disk(p, name, di->target);
			if (!pd)
				break;
			if (di->local) {
				pd->top = plan_item(p, di->local, di->qcow2);
				pd->top_partial = di->may_back && !di->qcow2;
			}
			bool paths = di->chain_complete;
			pd->xml_first = p->n_items;
			for (size_t c = 0; c < di->n_chain; c++) {
				if (di->chain[c].path)
					plan_item(p, di->chain[c].path, di->chain[c].qcow2);
				else
					paths = false;
			}
			pd->xml_n = p->n_items - pd->xml_first;
			pd->xml_usable = paths;
			if (!di->local && !paths)
				/* TRANSLATORS: disk target ("vda"), what it is ("network
				 * disk (nbd)", "volume pool/name cannot be resolved") */
				plan_set_unknown(
				    pd,
				    _("disk %s is a %s and libvirt gives no backing chain for it"),
				    di->target ? di->target : "?",
				    di->unresolved ? di->unresolved : "?");
		}
		disks_free(d, nd);
	}
}

static struct scan_plan *plan_scan(virConnectPtr conn, virDomainPtr *doms, int n)
{
	struct scan_plan *p = calloc(1, sizeof(*p));
	for (int i = 0; p && i < n; i++)
		plan_domain(p, conn, doms[i]);
	return p;
}

static bool id_in(const struct file_id *ids, size_t n, const struct file_id *id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i].dev == id->dev && ids[i].ino == id->ino)
			return true;
	return false;
}

static void add_ids(struct disk_use *u, const struct chainprobe_result *r)
{
	for (size_t i = 0; i < r->n_ids; i++) {
		if (id_in(u->ids, u->n_ids, &r->ids[i]))
			continue;
		struct file_id *n = realloc(u->ids, (u->n_ids + 1) * sizeof(*n));
		if (!n)
			return;
		u->ids = n;
		u->ids[u->n_ids++] = r->ids[i];
	}
}

/* Why a probed chain is not known, in the user's words (translated). */
static char *probe_reason(const struct chainprobe_outcome *o, const struct chainprobe_result *r,
			  const char *fallback_path, int timeout_ms)
{
	char *s = NULL;
	const char *path = r->err_path ? r->err_path : fallback_path;
	int rc;
	if (o->spawn_error)
		rc = asprintf(&s, "%s", o->spawn_error);
	else if (r->state == PROBE_NOT_RUN || r->err == ETIMEDOUT)
		/* TRANSLATORS: seconds, the file that did not answer */
		rc = asprintf(&s, _("the check did not finish within %d s (%s does not answer)"),
			      (timeout_ms + 999) / 1000,
			      o->hung_path ? o->hung_path : (path ? path : "?"));
	else if (r->err == EPROTONOSUPPORT)
		rc = asprintf(&s, _("the backing file of %s is not a local file"),
			      path ? path : "?");
	else
		rc = asprintf(&s, "%s: %s", path ? path : "?", strerror(r->err));
	return rc < 0 ? NULL : s;
}

/* The probe's answers per disk. A disk's chain is known when the probe
 * walked it to its end, or libvirt listed it completely (<backingStore>)
 * and every file it names could be identified. */
static struct disk_use *plan_finish(const struct scan_plan *p, const struct chainprobe_outcome *o,
				    int timeout_ms, size_t *n_out)
{
	struct disk_use *uses = p->n_disks ? calloc(p->n_disks, sizeof(*uses)) : NULL;
	*n_out = 0;
	if (!uses)
		return NULL;
	for (size_t i = 0; i < p->n_disks; i++) {
		const struct plan_disk *pd = &p->disks[i];
		struct disk_use *u = &uses[i];
		u->domain = strdup(pd->domain);
		u->target = pd->target ? strdup(pd->target) : NULL;
		const struct chainprobe_result *top =
		    pd->top >= 0 && (size_t)pd->top < o->n ? &o->results[pd->top] : NULL;
		if (top)
			add_ids(u, top);
		bool xml_known = pd->xml_usable;
		const struct chainprobe_result *bad = NULL;
		for (size_t k = 0; k < pd->xml_n && pd->xml_first + k < o->n; k++) {
			const struct chainprobe_result *r = &o->results[pd->xml_first + k];
			add_ids(u, r);
			if (r->n_ids == 0) {
				xml_known = false;
				if (!bad)
					bad = r;
			}
		}
		char *reason = NULL;
		if (pd->unknown) {
			reason = strdup(pd->unknown);
		} else if (top) {
			bool top_known = top->state == PROBE_DONE && !pd->top_partial;
			if (!top_known && !(xml_known && top->n_ids > 0)) {
				if (top->state == PROBE_DONE)
					reason = strdup(_("its image format has a backing file "
							  "vmoverlay cannot read"));
				else
					reason = probe_reason(o, top, p->items[pd->top].path,
							      timeout_ms);
			}
		} else if (!xml_known) {
			reason = bad ? probe_reason(o, bad, NULL, timeout_ms)
				     : strdup(_("libvirt gives no backing chain for it"));
		}
		if (reason || o->spawn_error) {
			/* TRANSLATORS: domain name, the reason (a sentence part) */
			if (asprintf(&u->unknown, _("Could not check the disks of %s: %s"),
				     pd->domain, reason ? reason : o->spawn_error) < 0)
				u->unknown = NULL;
		}
		free(reason);
	}
	*n_out = p->n_disks;
	return uses;
}

static void apply_uses(struct virt_watcher *w, struct vm *vm);

static void add_id(struct disk_use *u, const struct stat *st)
{
	struct file_id id = {st->st_dev, st->st_ino};
	if (id_in(u->ids, u->n_ids, &id))
		return;
	struct file_id *n = realloc(u->ids, (u->n_ids + 1) * sizeof(*n));
	if (!n)
		return;
	u->ids = n;
	u->ids[u->n_ids++] = id;
}

/* On qemu:///system the other VMs' images are root's, 0600: the probe child
 * (this user) cannot read their headers. libvirt's storage driver can (it
 * is root): walk such a chain through the volumes' XML, one backing store
 * at a time, and identify each file with stat() (which needs no read
 * permission, only search permission on the directories). Known only when
 * every link is a pool volume down to a volume without a backing store;
 * anything else stays unknown, and unknown refuses (DESIGN.md §4.9). */
static bool chain_via_libvirt(struct virt_watcher *w, const char *top, struct disk_use *u)
{
	char *path = top ? strdup(top) : NULL;
	bool known = false;
	for (int depth = 0; path && depth < 16; depth++) {
		struct stat st;
		struct qcow2_info info;
		if (stat(path, &st) != 0 || volume_facts(w->conn, path, &info) < 0)
			break;
		add_id(u, &st);
		free(path);
		path = info.backing_file && *info.backing_file ? strdup(info.backing_file) : NULL;
		known = path == NULL;
		image_info_clear(&info);
	}
	free(path);
	return known;
}

static void store_scan(struct virt_watcher *w, const struct scan_plan *p,
		       const struct chainprobe_outcome *o)
{
	size_t n = 0;
	struct disk_use *u = plan_finish(p, o, w->probe_timeout_ms, &n);
	for (size_t i = 0; u && i < n && i < p->n_disks; i++) {
		const struct plan_disk *pd = &p->disks[i];
		const struct chainprobe_result *top =
		    pd->top >= 0 && (size_t)pd->top < o->n ? &o->results[pd->top] : NULL;
		if (!u[i].unknown || pd->unknown || !top || (top->err != EACCES && top->err != EPERM))
			continue;
		if (chain_via_libvirt(w, p->items[pd->top].path, &u[i])) {
			log_debug("virt: chain of %s %s read through libvirt's storage API", pd->domain,
			          pd->target ? pd->target : "");
			free(u[i].unknown);
			u[i].unknown = NULL;
		}
	}
	uses_clear(w);
	w->uses = u;
	w->n_uses = n;
	w->scanned = true;
	if (p->n_disks && !u) {
		w->scanned = false;
		w->scan_unknown = strdup(strerror(ENOMEM));
	}
}

static void scan_failed(struct virt_watcher *w, const char *why)
{
	uses_clear(w);
	if (asprintf(&w->scan_unknown, _("Could not check the disks of the other VMs: %s"), why) <
	    0)
		w->scan_unknown = NULL;
}

static void reapply_all(struct virt_watcher *w)
{
	for (size_t i = 0; i < w->model->n_vms; i++) {
		struct vm *vm = w->model->vms[i];
		apply_uses(w, vm);
		if (w->ev.updated)
			w->ev.updated(w->ev.data, vm);
	}
	model_changed(w->model);
}

/* A child stuck on a dead mount may outlive SIGKILL: never stack another
 * one on top; the last answer ("did not finish") stands until it is gone. */
static bool hung_probe_alive(struct virt_watcher *w)
{
	if (w->hung_pid > 0 && chainprobe_child_alive(w->hung_pid))
		return true;
	w->hung_pid = 0;
	return false;
}

static void on_scan_done(void *data, struct chainprobe_outcome *o)
{
	struct virt_watcher *w = data;
	struct scan_plan *p = w->probe_plan;
	w->probe = NULL;
	w->probe_plan = NULL;
	if (o->timed_out)
		w->hung_pid = w->probe_pid;
	if (p)
		store_scan(w, p, o);
	plan_free(p);
	reapply_all(w);
	if (w->rescan_wanted) {
		w->rescan_wanted = false;
		loop_timer_arm(w->rescan_timer, 0, 0);
	}
}

/* The reconcile's scan: in a child, the loop goes on meanwhile. */
static void scan_start(struct virt_watcher *w, virDomainPtr *doms, int n)
{
	if (w->probe) {
		w->rescan_wanted = true;
		return;
	}
	if (hung_probe_alive(w))
		return;
	struct scan_plan *p = plan_scan(w->conn, doms, n);
	if (!p) {
		scan_failed(w, strerror(ENOMEM));
		return;
	}
	if (p->n_items == 0) {
		struct chainprobe_outcome o = {0};
		store_scan(w, p, &o);
		plan_free(p);
		return;
	}
	char *err = NULL;
	w->probe = chainprobe_start(w->loop, p->items, p->n_items, w->probe_timeout_ms,
				    on_scan_done, w, &err);
	if (!w->probe) {
		struct chainprobe_outcome o = {0};
		o.spawn_error = err;
		o.results = calloc(p->n_items, sizeof(*o.results));
		o.n = o.results ? p->n_items : 0;
		store_scan(w, p, &o);
		chainprobe_outcome_clear(&o);
		plan_free(p);
		return;
	}
	w->probe_pid = chainprobe_pid(w->probe);
	w->probe_plan = p;
}

/* Right before an image operation: a fresh scan, waited for (at most the
 * probe timeout; a few ms normally). */
static void scan_now(struct virt_watcher *w)
{
	if (w->probe) {
		/* Its domain list is older than this request. */
		chainprobe_cancel(w->probe);
		w->probe = NULL;
		plan_free(w->probe_plan);
		w->probe_plan = NULL;
		w->rescan_wanted = false;
	}
	if (hung_probe_alive(w))
		return;
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(w->conn, &doms, 0);
	if (n < 0) {
		log_warn("virt: listing domains: %s", last_virt_error());
		scan_failed(w, last_virt_error());
		return;
	}
	struct scan_plan *p = plan_scan(w->conn, doms, n);
	for (int i = 0; i < n; i++)
		virDomainFree(doms[i]);
	free(doms);
	if (!p) {
		scan_failed(w, strerror(ENOMEM));
		return;
	}
	struct chainprobe_outcome o = {0};
	pid_t left = -1;
	if (p->n_items)
		chainprobe_run_sync(w->loop, p->items, p->n_items, w->probe_timeout_ms, &o, &left);
	if (left > 0)
		w->hung_pid = left;
	store_scan(w, p, &o);
	chainprobe_outcome_clear(&o);
	plan_free(p);
}

static bool same_id(const struct stat *st, const struct file_id *id)
{
	return st->st_dev == id->dev && st->st_ino == id->ino;
}

/* vm's shared facts from the last scan: another disk whose chain holds
 * vm's base (commit would change what that disk reads) or vm's overlay
 * (discard, undo, and the rebuild after a commit would pull it away), or
 * one that could not be checked. vm's own watched disk is the only one
 * left out: its other disks count like another VM's. */
static void apply_uses(struct virt_watcher *w, struct vm *vm)
{
	vm_set_str(&vm->shared_with, NULL);
	vm_set_str(&vm->overlay_used_by, NULL);
	vm_set_str(&vm->check_unknown, NULL);
	vm_set_str(&vm->check_note, NULL);
	if (!w->scanned) {
		vm_set_str(&vm->check_unknown, w->scan_unknown);
		vm_set_str(&vm->check_note, w->scan_unknown);
		return;
	}
	struct stat bst, ost;
	bool hb = vm->base && stat(vm->base, &bst) == 0;
	bool ho = vm->overlay && stat(vm->overlay, &ost) == 0;
	for (size_t i = 0; i < w->n_uses; i++) {
		const struct disk_use *u = &w->uses[i];
		bool own_domain = strcmp(u->domain, vm->name) == 0;
		if (own_domain &&
		    ((vm->disk_target && u->target && strcmp(u->target, vm->disk_target) == 0) ||
		     (ho && u->n_ids && same_id(&ost, &u->ids[0]))))
			continue;
		char *who = NULL;
		if (own_domain && u->target) {
			if (asprintf(&who, "%s (%s)", u->domain, u->target) < 0)
				who = NULL;
		} else {
			who = strdup(u->domain);
		}
		for (size_t k = 0; k < u->n_ids; k++) {
			if (hb && !vm->shared_with && same_id(&bst, &u->ids[k]))
				vm_set_str(&vm->shared_with, who);
			if (ho && !vm->overlay_used_by && same_id(&ost, &u->ids[k]))
				vm_set_str(&vm->overlay_used_by, who);
		}
		free(who);
		if (u->unknown && !vm->check_unknown)
			vm_set_str(&vm->check_unknown, u->unknown);
	}
	char *note = NULL;
	int rc = 0;
	if (vm->overlay_used_by)
		rc = asprintf(&note,
			      _("The overlay %s is also in the disk chain of %s; replacing or "
				"emptying it would corrupt that VM."),
			      vm->overlay, vm->overlay_used_by);
	else if (vm->shared_with)
		rc = asprintf(
		    &note,
		    _("The base %s is also used by %s; committing into it would corrupt that VM."),
		    vm->base, vm->shared_with);
	if (rc < 0)
		note = NULL;
	vm_set_str(&vm->check_note, note ? note : vm->check_unknown);
	free(note);
}

/* ---- disk discovery ---- */

static void clear_image_facts(struct vm *vm)
{
	vm_set_str(&vm->base, NULL);
	vm_set_str(&vm->backing_stored, NULL);
	vm_set_str(&vm->backing_format, NULL);
	vm->overlay_bytes = 0;
	vm->virtual_size = 0;
}

/* The overlay's header: backing, format, size; checks rule 5 (the
 * overlay's backing is the configured base). */
static void fill_image_facts(struct virt_watcher *w, struct vm *vm, const char *cfg_base)
{
	clear_image_facts(vm);
	if (!vm->overlay)
		return;
	vm->overlay_bytes = image_allocated_bytes(vm->overlay);
	struct qcow2_info info;
	char *err = NULL;
	bool via_libvirt = false;
	int rr = read_image(w, vm->overlay, &info, &via_libvirt, &err);
	if (rr == -EACCES || rr == -EPERM) {
		/* Root's image outside every storage pool: libvirt cannot tell
		 * us about it either. */
		vm_add_problem(vm,
		               _("Cannot read the overlay: %s. No libvirt storage pool holds it, so "
		                 "libvirt cannot describe it either: define a pool for its directory "
		                 "(virsh pool-define-as NAME dir --target DIR)."),
		               err ? err : "");
		free(err);
		vm_set_str(&vm->base, cfg_base);
		return;
	}
	if (rr < 0) {
		vm_add_problem(vm, _("Cannot read the overlay: %s"), err ? err : "");
		free(err);
		vm_set_str(&vm->base, cfg_base);
		return;
	}
	if (via_libvirt)
		log_debug("virt: %s: %s is not readable here; facts from libvirt's storage API "
		          "(backing %s, %s)",
		          vm->name, vm->overlay, info.backing_file ? info.backing_file : "-",
		          info.backing_format ? info.backing_format : "-");
	vm->virtual_size = info.virtual_size;
	/* Through libvirt this is the backing path as libvirt resolved it, not
	 * the header's bytes: what the applet itself would write with it is
	 * never run for such an image (it cannot create files there); the
	 * helper reads the header again as root. */
	vm_set_str(&vm->backing_stored, info.backing_file);
	vm_set_str(&vm->backing_format, info.backing_format);
	char *resolved = image_resolve_backing(vm->overlay, info.backing_file);
	vm_set_str(&vm->base, cfg_base ? cfg_base : resolved);
	struct stat st;
	if (!info.backing_file) {
		vm_add_problem(vm, _("The overlay %s has no backing file, so there is no base to commit into."),
		               vm->overlay);
	} else if (cfg_base && stat(cfg_base, &st) < 0) {
		vm_add_problem(vm, _("The base %s does not exist."), cfg_base);
	} else if (cfg_base && !image_same_file(resolved, cfg_base)) {
		vm_add_problem(vm, _("The overlay %s is not backed by the base %s (its backing file is %s)."),
		               vm->overlay, cfg_base, resolved ? resolved : info.backing_file);
	} else if (!cfg_base && (!resolved || stat(resolved, &st) < 0)) {
		vm_add_problem(vm, _("The backing file %s of the overlay %s does not exist."),
		               resolved ? resolved : info.backing_file, vm->overlay);
	}
	if (info.corrupt)
		vm_add_problem(vm, _("The overlay %s is marked corrupt; check it with qemu-img check."),
		               vm->overlay);
	free(resolved);
	image_info_clear(&info);
}

static char *join_targets(const struct disk_info *d, size_t n)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (!disk_qualifies(&d[i]))
			continue;
		fprintf(f, "%s%s", first ? "" : ", ", d[i].target ? d[i].target : "?");
		first = false;
	}
	fclose(f);
	return out;
}

/* Picks the watched disk from the domain XML and fills vm->disk_target and
 * vm->overlay, or adds the problem that prevents it. */
static void discover_disk(struct virt_watcher *w, struct vm *vm, virDomainPtr dom)
{
	const char *want = vm->cfg ? vm->cfg->disk : NULL;
	struct disk_info *d;
	size_t n;
	vm_set_str(&vm->overlay, NULL);
	vm_set_str(&vm->disk_target, NULL);
	if (!domain_disks(w->conn, dom, &d, &n)) {
		vm_add_problem(vm, _("Cannot read the definition of %s from libvirt."), vm->name);
		return;
	}
	const struct disk_info *pick = NULL;
	if (want) {
		for (size_t i = 0; i < n; i++) {
			if (d[i].target && strcmp(d[i].target, want) == 0)
				pick = &d[i];
		}
		if (!pick)
			vm_add_problem(vm, _("%s has no disk %s."), vm->name, want);
		else if (!pick->is_disk || !pick->is_file || !pick->qcow2)
			vm_add_problem(vm, _("Disk %s of %s is not a qcow2 file disk."), want, vm->name);
		else if (pick->transient)
			vm_add_problem(vm, _("Disk %s of %s is transient: libvirt discards it by itself."),
			               want, vm->name);
		else if (pick->readonly || pick->shareable)
			vm_add_problem(vm, _("Disk %s of %s is read-only or shareable; it cannot be a private overlay."),
			               want, vm->name);
		if (pick && !disk_qualifies(pick))
			pick = NULL;
	} else {
		size_t count = 0;
		for (size_t i = 0; i < n; i++) {
			if (disk_qualifies(&d[i])) {
				pick = &d[i];
				count++;
			}
		}
		if (count == 0) {
			vm_add_problem(vm, _("%s has no writable qcow2 file disk to watch."), vm->name);
		} else if (count > 1) {
			char *list = join_targets(d, n);
			vm_add_problem(vm,
			               _("%s has several qcow2 disks (%s); choose one with disk = \"…\" in the configuration."),
			               vm->name, list ? list : "");
			free(list);
			pick = NULL;
		}
	}
	if (pick) {
		vm_set_str(&vm->disk_target, pick->target);
		vm_set_str(&vm->overlay, pick->source);
	}
	disks_free(d, n);
}

/* All disk and image facts of vm (dom may be NULL: no such domain). */
static void discover_vm(struct virt_watcher *w, struct vm *vm, virDomainPtr dom)
{
	vm_clear_problems(vm);
	const char *cfg_base = vm->cfg ? vm->cfg->base : NULL;
	if (!dom)
		vm_add_problem(vm, _("libvirt has no domain named %s."), vm->name);
	if (cfg_has_override(vm)) {
		vm_set_str(&vm->overlay, vm->cfg->overlay);
		vm_set_str(&vm->disk_target, vm->cfg->disk);
	} else if (dom) {
		discover_disk(w, vm, dom);
	} else {
		vm_set_str(&vm->overlay, NULL);
		vm_set_str(&vm->disk_target, NULL);
	}
	fill_image_facts(w, vm, cfg_base);
	apply_uses(w, vm);
}

/* ---- transitions ---- */

static void save_state(struct virt_watcher *w)
{
	if (w->state && !statefile_save(w->state))
		log_warn("virt: could not save the state file");
}

static void report_stopped(struct virt_watcher *w, struct vm *vm, enum vm_stop_kind kind)
{
	struct state_key k = vm_key(vm);
	statefile_set_running(w->state, &k, false);
	save_state(w);
	log_info("virt: %s stopped (%s; state %d reason %d%s%s)", vm->name, stop_kind_name(kind),
	         vm->dom_state, vm->dom_reason, vm->has_managed_save ? ", managed save" : "",
	         vm->has_snapshots ? ", snapshots" : "");
	if (w->ev.stopped)
		w->ev.stopped(w->ev.data, vm, kind);
}

/* Compares vm's fresh facts with what we saw before (prev run state and
 * the persisted "last seen running" bit) and tells the flow. */
static void transition(struct virt_watcher *w, struct vm *vm, enum vm_run_state prev)
{
	struct state_key k = vm_key(vm);
	bool was_running = statefile_get_running(w->state, &k);
	switch (vm->run) {
	case RUN_RUNNING:
		if (!was_running) {
			statefile_set_running(w->state, &k, true);
			save_state(w);
		}
		if (prev != RUN_RUNNING) {
			log_info("virt: %s is running", vm->name);
			if (w->ev.started)
				w->ev.started(w->ev.data, vm);
		}
		break;
	case RUN_SHUTOFF:
	case RUN_CRASHED:
		if (was_running)
			report_stopped(w, vm,
			               virt_classify_stop(vm->dom_state, vm->dom_reason,
			                                  vm->has_managed_save, vm->has_snapshots));
		break;
	case RUN_UNDEFINED:
		/* A transient domain vanishes when it stops; without a domain
		 * there is no reason to classify (update_vm forgot its record). */
		break;
	case RUN_UNKNOWN:
		break;
	}
	if (w->ev.updated)
		w->ev.updated(w->ev.data, vm);
}

/* Fresh facts for one managed VM from libvirt, then the transition. */
static void update_vm(struct virt_watcher *w, struct vm *vm, virDomainPtr dom)
{
	enum vm_run_state prev = vm->run;
	if (!dom || !query_domain(vm, dom)) {
		/* The domain vanished (a transient one stops so): its record goes
		 * with it; the name may come back as another domain. */
		struct state_key k = vm_key(vm);
		if (statefile_get_running(w->state, &k)) {
			log_warn("virt: %s was running and is no longer defined", vm->name);
			statefile_set_running(w->state, &k, false);
			save_state(w);
		}
		vm->uuid[0] = 0;
		vm->run = RUN_UNDEFINED;
		vm->dom_state = -1;
		vm->dom_reason = 0;
		vm->has_managed_save = false;
		vm->has_snapshots = false;
		dom = NULL;
	}
	discover_vm(w, vm, dom);
	transition(w, vm, prev);
}

static void reconcile(struct virt_watcher *w, const char *why)
{
	if (!w->conn)
		return;
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(w->conn, &doms, 0);
	if (n < 0) {
		log_warn("virt: listing domains (%s): %s", why, last_virt_error());
		return;
	}
	log_debug("virt: reconcile (%s): %d domains", why, n);
	scan_start(w, doms, n);
	for (size_t i = 0; i < w->model->n_vms; i++) {
		struct vm *vm = w->model->vms[i];
		virDomainPtr dom = NULL;
		for (int k = 0; k < n && !dom; k++) {
			const char *name = virDomainGetName(doms[k]);
			if (name && strcmp(name, vm->name) == 0)
				dom = doms[k];
		}
		update_vm(w, vm, dom);
	}
	for (int i = 0; i < n; i++)
		virDomainFree(doms[i]);
	free(doms);
	model_changed(w->model);
}

/* ---- events ---- */

/* An event's domain may be gone already (its state unknown to libvirt),
 * but the event still carries its UUID: the key of that domain. Returns
 * the URI to free after k is used. */
static char *event_key(virConnectPtr conn, virDomainPtr dom, const struct vm *vm,
                       char uuid[VIR_UUID_STRING_BUFLEN], struct state_key *k)
{
	if (virDomainGetUUIDString(dom, uuid) < 0)
		uuid[0] = 0;
	char *uri = virConnectGetURI(conn);
	*k = (struct state_key){.uri = uri, .uuid = uuid, .name = vm->name};
	return uri;
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	struct virt_watcher *w = opaque;
	const char *name = virDomainGetName(dom);
	if (event == VIR_DOMAIN_EVENT_DEFINED || event == VIR_DOMAIN_EVENT_UNDEFINED) {
		/* Disks or the set of domains changed: shared bases and
		 * discovery are redone once, from the loop. */
		loop_timer_arm(w->rescan_timer, 0, 0);
	}
	struct vm *vm = name ? model_find(w->model, name) : NULL;
	if (!vm)
		return 0;
	log_debug("virt: event %s %d/%d", name, event, detail);
	enum vm_run_state prev = vm->run;

	switch (event) {
	case VIR_DOMAIN_EVENT_STARTED:
		if (query_domain(vm, dom) && vm->run == RUN_RUNNING) {
			discover_vm(w, vm, dom);
			transition(w, vm, prev);
		} else {
			/* Stopped again before we looked: it did run, so the STOPPED
			 * event that follows must find it recorded as running. */
			struct state_key k;
			char uuid[VIR_UUID_STRING_BUFLEN];
			char *uri = event_key(conn, dom, vm, uuid, &k);
			statefile_set_running(w->state, &k, true);
			free(uri);
			save_state(w);
		}
		break;
	case VIR_DOMAIN_EVENT_STOPPED:
		if (!query_domain(vm, dom)) {
			/* A transient domain is gone by now; the event is all we have. */
			vm->run = RUN_UNDEFINED;
			vm->dom_state = -1;
			struct state_key k;
			char uuid[VIR_UUID_STRING_BUFLEN];
			char *uri = event_key(conn, dom, vm, uuid, &k);
			if (statefile_get_running(w->state, &k)) {
				/* report_stopped keys by vm: it is that domain. */
				snprintf(vm->uuid, sizeof vm->uuid, "%s", uuid);
				vm_set_str(&vm->uri, uri);
				report_stopped(w, vm, virt_classify_event(detail));
			}
			free(uri);
			break;
		}
		/* Trust the state (and reason) over the event. */
		if (vm->run == RUN_RUNNING)
			log_info("virt: %s: stop event, but the domain runs again", vm->name);
		discover_vm(w, vm, dom);
		transition(w, vm, prev);
		break;
	case VIR_DOMAIN_EVENT_UNDEFINED:
		update_vm(w, vm, NULL);
		break;
	default:
		if (query_domain(vm, dom))
			transition(w, vm, prev);
		break;
	}
	model_changed(w->model);
	return 0;
}

/* Only flags: tearing the connection down inside libvirt's callback is
 * not allowed; the reconnect timer does it from the loop. */
static void on_close(virConnectPtr conn, int reason, void *opaque)
{
	struct virt_watcher *w = opaque;
	w->closed = true;
	loop_timer_arm(w->reconnect_timer, 0, 0);
}

/* ---- connection ---- */

static void set_last_error(struct virt_watcher *w, const char *msg)
{
	free(w->last_error);
	w->last_error = msg ? strdup(msg) : NULL;
}

/* announce: false while the watcher is destroyed (the model may go next). */
static void disconnect(struct virt_watcher *w, bool announce)
{
	if (!w->conn)
		return;
	if (w->lifecycle_id >= 0)
		virConnectDomainEventDeregisterAny(w->conn, w->lifecycle_id);
	w->lifecycle_id = -1;
	if (w->close_registered)
		virConnectUnregisterCloseCallback(w->conn, on_close);
	w->close_registered = false;
	virConnectClose(w->conn);
	virResetLastError();
	w->conn = NULL;
	w->closed = false;
	for (size_t i = 0; i < w->model->n_vms; i++)
		set_unknown(w->model->vms[i]);
	if (announce)
		model_changed(w->model);
}

/* Without keepalive a hung daemon is invisible, but a fixed 5 s ping would
 * wake the idle applet every 5 s: it rides on the reconcile interval
 * instead (0 = no periodic wake-up at all, so no keepalive). test:/// has
 * no keepalive; that is not an error. */
static void set_keepalive(struct virt_watcher *w)
{
	int ka = w->cfg ? w->cfg->reconcile_interval : 0;
	if (virConnectSetKeepAlive(w->conn, ka > 0 ? ka + KEEPALIVE_SLACK_S : -1, KEEPALIVE_COUNT) < 0)
		log_debug("virt: keepalive not available on %s", w->uri ? w->uri : "(default)");
	virResetLastError();
}

static bool try_connect(struct virt_watcher *w)
{
	virConnectPtr conn = virConnectOpen(w->uri);
	if (!conn) {
		const char *msg = last_virt_error();
		if (!w->last_error || strcmp(w->last_error, msg) != 0)
			log_warn("virt: cannot connect to %s: %s", w->uri ? w->uri : "(default)", msg);
		set_last_error(w, msg);
		return false;
	}
	w->conn = conn;
	w->closed = false;
	if (virConnectRegisterCloseCallback(conn, on_close, w, NULL) == 0)
		w->close_registered = true;
	else
		log_debug("virt: no close callback: %s", last_virt_error());
	set_keepalive(w);
	w->lifecycle_id = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	                                                   VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
	                                                   w, NULL);
	if (w->lifecycle_id < 0) {
		const char *msg = last_virt_error();
		log_err("virt: cannot register for domain events: %s", msg);
		set_last_error(w, msg);
		disconnect(w, true);
		return false;
	}
	set_last_error(w, NULL);
	w->backoff_s = 1;
	log_info("virt: connected to %s", w->uri ? w->uri : "(default)");
	reconcile(w, "connect");
	return true;
}

static void on_reconnect_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct virt_watcher *w = data;
	if (w->conn && w->closed) {
		log_warn("virt: connection to %s closed; reconnecting", w->uri ? w->uri : "(default)");
		disconnect(w, true);
	}
	if (w->conn)
		return;
	if (try_connect(w))
		return;
	log_debug("virt: next connection attempt in %d s", w->backoff_s);
	loop_timer_arm(t, (int64_t)w->backoff_s * 1000, 0);
	w->backoff_s = w->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : w->backoff_s * 2;
}

static void on_reconcile_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct virt_watcher *w = data;
	if (w->conn && !w->closed)
		reconcile(w, "interval");
}

static void on_rescan_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct virt_watcher *w = data;
	if (w->conn && !w->closed)
		reconcile(w, "domain defined/undefined");
}

static void arm_reconcile(struct virt_watcher *w)
{
	int64_t ms = w->cfg && w->cfg->reconcile_interval > 0
	                     ? (int64_t)w->cfg->reconcile_interval * 1000
	                     : -1;
	loop_timer_arm(w->reconcile_timer, ms, ms > 0 ? ms : 0);
}

struct virt_watcher *virt_watcher_create(struct loop *loop, struct model *model,
                                         const struct config *cfg, struct statefile *state,
                                         const struct virt_events *events)
{
	struct virt_watcher *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->loop = loop;
	w->model = model;
	w->cfg = cfg;
	w->state = state;
	if (events)
		w->ev = *events;
	w->lifecycle_id = -1;
	w->backoff_s = 1;
	w->probe_timeout_ms = chainprobe_timeout_ms();
	if (cfg && cfg->connect && !(w->uri = strdup(cfg->connect)))
		goto error;
	w->reconnect_timer = loop_timer_add(loop, 0, 0, on_reconnect_timer, w);
	w->reconcile_timer = loop_timer_add(loop, -1, 0, on_reconcile_timer, w);
	w->rescan_timer = loop_timer_add(loop, -1, 0, on_rescan_timer, w);
	if (!w->reconnect_timer || !w->reconcile_timer || !w->rescan_timer)
		goto error;
	virSetErrorFunc(NULL, quiet_error);
	arm_reconcile(w);
	return w;
error:
	virt_watcher_destroy(w);
	return NULL;
}

void virt_watcher_destroy(struct virt_watcher *w)
{
	if (!w)
		return;
	disconnect(w, false);
	if (w->reconnect_timer)
		loop_timer_remove(w->reconnect_timer);
	if (w->reconcile_timer)
		loop_timer_remove(w->reconcile_timer);
	if (w->rescan_timer)
		loop_timer_remove(w->rescan_timer);
	chainprobe_cancel(w->probe);
	plan_free(w->probe_plan);
	uses_clear(w);
	free(w->last_error);
	free(w->uri);
	free(w);
}

void virt_watcher_reconfigure(struct virt_watcher *w, const struct config *cfg)
{
	const char *old = w->uri ? w->uri : "";
	const char *new = cfg && cfg->connect ? cfg->connect : "";
	bool uri_changed = strcmp(old, new) != 0;
	w->cfg = cfg;
	arm_reconcile(w);
	if (uri_changed) {
		free(w->uri);
		w->uri = *new ? strdup(new) : NULL;
		disconnect(w, true);
		set_last_error(w, NULL);
		w->backoff_s = 1;
		loop_timer_arm(w->reconnect_timer, 0, 0);
		return;
	}
	if (w->conn && !w->closed) {
		set_keepalive(w);
		reconcile(w, "configuration reloaded");
	}
}

bool virt_watcher_connected(const struct virt_watcher *w)
{
	return w && w->conn && !w->closed;
}

virConnectPtr virt_watcher_conn(const struct virt_watcher *w)
{
	return w ? w->conn : NULL;
}

const char *virt_watcher_last_error(const struct virt_watcher *w)
{
	return w ? w->last_error : NULL;
}

bool virt_watcher_scanning(const struct virt_watcher *w)
{
	return w && w->probe;
}

void virt_watcher_reconcile(struct virt_watcher *w)
{
	if (w && w->conn && !w->closed)
		reconcile(w, "requested");
}

static bool refuse(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool refuse(char **why, const char *fmt, ...)
{
	if (why) {
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(why, fmt, ap) < 0)
			*why = NULL;
		va_end(ap);
	}
	return false;
}

bool virt_watcher_check_idle(struct virt_watcher *w, struct vm *vm, bool for_commit, char **why)
{
	if (why)
		*why = NULL;
	if (!virt_watcher_connected(w))
		return refuse(why, _("Not connected to libvirt, so it cannot confirm that %s is shut off."),
		              vm->name);
	/* The answer is asked afresh but not turned into a start/stop here:
	 * the flow is on the stack. A change is handed to a reconcile from the
	 * loop, which compares against the facts we had. */
	virDomainPtr dom = virDomainLookupByName(w->conn, vm->name);
	struct dom_facts f;
	if (!dom || !query_facts(dom, &f)) {
		if (dom)
			virDomainFree(dom);
		virResetLastError();
		loop_timer_arm(w->rescan_timer, 0, 0);
		return refuse(why, _("libvirt has no domain named %s."), vm->name);
	}
	if (f.run != vm->run)
		loop_timer_arm(w->rescan_timer, 0, 0);
	else
		apply_facts(vm, &f);
	discover_vm(w, vm, dom);
	virDomainFree(dom);
	model_changed(w->model);

	if (f.state != VIR_DOMAIN_SHUTOFF)
		return refuse(why, _("%s is not shut off."), vm->name);
	if (f.managed_save)
		return refuse(why, _("%s has a saved state (managed save) that needs the overlay as it is."),
		              vm->name);
	if (f.snapshots)
		return refuse(why, _("%s has libvirt snapshots; vmoverlay does not change their image chain."),
		              vm->name);
	if (vm->n_problems)
		return refuse(why, "%s", vm->problems[0]);
	if (!vm->overlay || !vm->base)
		return refuse(why, _("The overlay or the base of %s is not known."), vm->name);
	/* Rules 3 and 9, asked afresh: who else reads the base (commit) or the
	 * overlay (every operation replaces or empties it)? */
	scan_now(w);
	apply_uses(w, vm);
	model_changed(w->model);
	if (vm->overlay_used_by)
		return refuse(why, "%s", vm->check_note);
	if (for_commit && vm->shared_with)
		return refuse(why,
		              _("The base %s is also used by %s; committing into it would corrupt that VM."),
		              vm->base, vm->shared_with);
	if (vm->check_unknown)
		return refuse(why,
			      for_commit
				  /* TRANSLATORS: VM name, then why the check failed (a sentence) */
				  ? _("%s: not committing. %s. A base that another VM might use is "
				      "never changed.")
				  /* TRANSLATORS: VM name, then why the check failed (a sentence) */
				  : _("%s: the overlay is left as it is. %s. An overlay that "
				      "another VM might use is never replaced."),
			      vm->name, vm->check_unknown);
	return true;
}

void virt_watcher_refresh_vm(struct virt_watcher *w, struct vm *vm)
{
	if (virt_watcher_connected(w) && !cfg_has_override(vm)) {
		virDomainPtr dom = virDomainLookupByName(w->conn, vm->name);
		virResetLastError();
		discover_vm(w, vm, dom);
		if (dom)
			virDomainFree(dom);
	} else {
		/* Disk facts as last discovered; only the image is re-read. */
		vm_clear_problems(vm);
		if (vm->run == RUN_UNDEFINED)
			vm_add_problem(vm, _("libvirt has no domain named %s."), vm->name);
		fill_image_facts(w, vm, vm->cfg ? vm->cfg->base : NULL);
		apply_uses(w, vm);
	}
	model_changed(w->model);
}
