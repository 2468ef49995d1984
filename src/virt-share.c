/* virt-share.c: does another disk use this VM's base, or this overlay?
 * Every defined domain's disks, their chains walked by a child process
 * (chainprobe.c) so a dead mount never freezes the loop, libvirt's own
 * <backingStore> and storage API where a file cannot be read; unknown
 * always refuses (DESIGN.md §4.9). */
#include "virt-private.h"
#include "chain.h"

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

void virt_uses_clear(struct virt_watcher *w)
{
	uses_free(w->uses, w->n_uses);
	w->uses = NULL;
	w->n_uses = 0;
	w->scanned = false;
	free(w->scan_unknown);
	w->scan_unknown = NULL;
}

void virt_plan_free(struct scan_plan *p)
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

struct plan_disk *virt_plan_disk(struct scan_plan *p, const char *domain, const char *target)
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
		if (!virt_domain_disks_xml(conn, dom, flags[f], &d, &nd)) {
			struct plan_disk *pd = virt_plan_disk(p, name, NULL);
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
			struct plan_disk *pd = virt_plan_disk(p, name, di->target);
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
		virt_disks_free(d, nd);
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
	else if (r->err == ELOOP)
		/* TRANSLATORS: the file where the probe stopped */
		rc = asprintf(&s, _("the backing chain loops or is deeper than %d files (at %s)"),
			      VMO_CHAIN_MAX, path ? path : "?");
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
	for (int depth = 0; path && depth <= VMO_CHAIN_MAX; depth++) {
		struct stat st;
		struct qcow2_info info;
		if (stat(path, &st) != 0 || virt_volume_facts(w->conn, path, &info) < 0)
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
		if (!u[i].unknown || pd->unknown || !top ||
		    (top->err != EACCES && top->err != EPERM))
			continue;
		if (chain_via_libvirt(w, p->items[pd->top].path, &u[i])) {
			log_debug("virt: chain of %s %s read through libvirt's storage API",
				  pd->domain, pd->target ? pd->target : "");
			free(u[i].unknown);
			u[i].unknown = NULL;
		}
	}
	virt_uses_clear(w);
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
	virt_uses_clear(w);
	if (asprintf(&w->scan_unknown, _("Could not check the disks of the other VMs: %s"), why) <
	    0)
		w->scan_unknown = NULL;
}

static void reapply_all(struct virt_watcher *w)
{
	for (size_t i = 0; i < w->model->n_vms; i++) {
		struct vm *vm = w->model->vms[i];
		virt_apply_uses(w, vm);
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
	virt_plan_free(p);
	reapply_all(w);
	if (w->rescan_wanted) {
		w->rescan_wanted = false;
		loop_timer_arm(w->rescan_timer, 0, 0);
	}
}

/* The reconcile's scan: in a child, the loop goes on meanwhile. */
void virt_scan_start(struct virt_watcher *w, virDomainPtr *doms, int n)
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
		virt_plan_free(p);
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
		virt_plan_free(p);
		return;
	}
	w->probe_pid = chainprobe_pid(w->probe);
	w->probe_plan = p;
}

/* Right before an image operation: a fresh scan, waited for (at most the
 * probe timeout; a few ms normally). */
void virt_scan_now(struct virt_watcher *w)
{
	if (w->probe) {
		/* Its domain list is older than this request. */
		chainprobe_cancel(w->probe);
		w->probe = NULL;
		virt_plan_free(w->probe_plan);
		w->probe_plan = NULL;
		w->rescan_wanted = false;
	}
	if (hung_probe_alive(w))
		return;
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(w->conn, &doms, 0);
	if (n < 0) {
		log_warn("virt: listing domains: %s", virt_last_error());
		scan_failed(w, virt_last_error());
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
	virt_plan_free(p);
}

static bool same_id(const struct stat *st, const struct file_id *id)
{
	return st->st_dev == id->dev && st->st_ino == id->ino;
}

/* One watched disk's shared facts from the last scan: another disk whose
 * chain holds its base (commit would change what that disk reads) or its
 * overlay (discard, undo, and the rebuild after a commit would pull it
 * away). The disk itself is the only one left out: the VM's other disks
 * count like another VM's. */
static void apply_disk_uses(struct virt_watcher *w, struct vm *vm, struct vm_disk *d)
{
	vm_set_str(&d->shared_with, NULL);
	vm_set_str(&d->overlay_used_by, NULL);
	struct stat bst, ost;
	bool hb = d->base && stat(d->base, &bst) == 0;
	bool ho = d->overlay && stat(d->overlay, &ost) == 0;
	/* A commit into a base further down (commit_into = "deepest") changes
	 * what every file between reads too: another disk on one of them
	 * counts like one on the base. (Such a disk also reads the base
	 * below them, so it is found there as well; this does not rely on
	 * that.) */
	struct stat mid[VMO_CHAIN_MAX];
	size_t n_mid = 0;
	int depth = chain_base_depth(d);
	for (int k = 0; k < depth && n_mid < VMO_CHAIN_MAX; k++)
		if (stat(d->chain[k], &mid[n_mid]) == 0)
			n_mid++;
	for (size_t i = 0; i < w->n_uses; i++) {
		const struct disk_use *u = &w->uses[i];
		bool own_domain = strcmp(u->domain, vm->name) == 0;
		if (own_domain &&
		    ((d->target && u->target && strcmp(u->target, d->target) == 0) ||
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
			if (hb && !d->shared_with && same_id(&bst, &u->ids[k]))
				vm_set_str(&d->shared_with, who);
			for (size_t m = 0; m < n_mid && !d->shared_with; m++)
				if (same_id(&mid[m], &u->ids[k]))
					vm_set_str(&d->shared_with, who);
			if (ho && !d->overlay_used_by && same_id(&ost, &u->ids[k]))
				vm_set_str(&d->overlay_used_by, who);
		}
		free(who);
		if (u->unknown && !vm->check_unknown)
			vm_set_str(&vm->check_unknown, u->unknown);
	}
}

/* vm's shared facts from the last scan, disk by disk, or why they are not
 * known; check_note is the first sentence the menu and status show. */
void virt_apply_uses(struct virt_watcher *w, struct vm *vm)
{
	vm_set_str(&vm->check_unknown, NULL);
	vm_set_str(&vm->check_note, NULL);
	if (!w->scanned) {
		for (size_t i = 0; i < vm->n_disks; i++) {
			vm_set_str(&vm->disks[i].shared_with, NULL);
			vm_set_str(&vm->disks[i].overlay_used_by, NULL);
		}
		vm_set_str(&vm->check_unknown, w->scan_unknown);
		vm_set_str(&vm->check_note, w->scan_unknown);
		return;
	}
	for (size_t i = 0; i < vm->n_disks; i++)
		apply_disk_uses(w, vm, &vm->disks[i]);
	char *note = NULL;
	int rc = 0;
	/* An overlay in another chain first: it refuses every operation. */
	for (size_t i = 0; i < vm->n_disks && !note; i++)
		if (vm->disks[i].overlay_used_by)
			rc = asprintf(&note,
				      _("The overlay %s is also in the disk chain of %s; replacing or "
					"emptying it would corrupt that VM."),
				      vm->disks[i].overlay, vm->disks[i].overlay_used_by);
	for (size_t i = 0; i < vm->n_disks && !note && rc >= 0; i++)
		if (vm->disks[i].shared_with)
			rc = asprintf(&note,
				      _("The base %s is also used by %s; committing into it would "
					"corrupt that VM."),
				      vm->disks[i].base, vm->disks[i].shared_with);
	if (rc < 0)
		note = NULL;
	vm_set_str(&vm->check_note, note ? note : vm->check_unknown);
	free(note);
}
