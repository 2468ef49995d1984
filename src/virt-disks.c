/* virt-disks.c: the watched disk of a domain, found in its XML (the
 * configured target, or the one qcow2 overlay), and its image facts: from
 * the qcow2 header, or, for root's images under qemu:///system, from
 * libvirt's storage API without opening the file. */
#include "virt-private.h"
#include "chain.h"

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
		log_warn("virt: storage pool %s: %s", pool_name, virt_last_error());
		return NULL;
	}
	virStorageVolPtr vol = virStorageVolLookupByName(pool, vol_name);
	if (vol) {
		path = virStorageVolGetPath(vol);
		virStorageVolFree(vol);
	}
	if (!path)
		log_warn("virt: volume %s/%s: %s", pool_name, vol_name, virt_last_error());
	virStoragePoolFree(pool);
	return path;
}

void virt_disks_free(struct disk_info *d, size_t n)
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
bool virt_domain_disks_xml(virConnectPtr conn, virDomainPtr dom, unsigned flags,
			   struct disk_info **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	char *xml = virDomainGetXMLDesc(dom, flags);
	if (!xml) {
		log_warn("virt: XML of %s: %s", virDomainGetName(dom), virt_last_error());
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
	return virt_domain_disks_xml(conn, dom, VIR_DOMAIN_XML_INACTIVE, out, n_out);
}

static bool disk_qualifies(const struct disk_info *d)
{
	return d->is_disk && d->is_file && d->qcow2 && !d->transient && !d->readonly &&
	       !d->shareable;
}

/* ---- facts of images the user cannot read (qemu:///system) ---- */

char *virt_xpath_string(xmlXPathContextPtr ctx, const char *expr)
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
		xmlDocPtr doc =
		    xml ? xmlReadMemory(xml, (int)strlen(xml), "pool.xml", NULL,
					XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
			: NULL;
		free(xml);
		xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
		char *target = ctx ? virt_xpath_string(ctx, "string(/pool/target/path)") : NULL;
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
int virt_volume_facts(virConnectPtr conn, const char *path, struct qcow2_info *out)
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
		log_warn("virt: volume XML of %s: %s", path, virt_last_error());
		return -EIO;
	}
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "volume.xml", NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	free(xml);
	xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
	int r = -EIO;
	char *format = ctx ? virt_xpath_string(ctx, "string(/volume/target/format/@type)") : NULL;
	char *capacity = ctx ? virt_xpath_string(ctx, "string(/volume/capacity)") : NULL;
	if (format && strcmp(format, "qcow2") == 0 && capacity) {
		out->virtual_size = strtoull(capacity, NULL, 10);
		out->backing_file = virt_xpath_string(ctx, "string(/volume/backingStore/path)");
		out->backing_format =
		    virt_xpath_string(ctx, "string(/volume/backingStore/format/@type)");
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
	int vr = virt_volume_facts(w ? w->conn : NULL, path, &v);
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

/* ---- disk discovery ---- */

static void chain_add(struct vm_disk *d, const char *path)
{
	char **n = realloc(d->chain, (d->n_chain + 1) * sizeof *n);
	if (!n)
		return;
	d->chain = n;
	char *copy = strdup(path);
	if (copy)
		d->chain[d->n_chain++] = copy;
}

/* d's backing chain below the overlay, nearest first (struct vm_disk's
 * chain): one header read per file (or libvirt's storage API for root's
 * images), at most VMO_CHAIN_MAX files. first is the resolved immediate
 * backing file, first_format the format the overlay records for it.
 * A chain that loops or goes deeper is a problem of vm. Returns true when
 * it was followed to its end (a file without a backing file, or one whose
 * format has none); false when a file could not be read (the chain known
 * so far stays). */
static bool fill_chain(struct virt_watcher *w, struct vm *vm, struct vm_disk *d, const char *first,
		       const char *first_format)
{
	struct stat seen[VMO_CHAIN_MAX + 1];
	size_t n_seen = 0;
	if (stat(d->overlay, &seen[0]) == 0)
		n_seen = 1;
	char *path = first ? strdup(first) : NULL;
	char *format = first_format ? strdup(first_format) : NULL;
	bool complete = false;
	while (path) {
		struct stat st;
		if (stat(path, &st) < 0) {
			if (d->n_chain > 0)
				vm_add_problem(vm,
					       _("The file %s in the backing chain of %s does not "
						 "exist."),
					       path, d->overlay);
			break;
		}
		bool loops = false;
		for (size_t i = 0; i < n_seen; i++)
			loops |= seen[i].st_dev == st.st_dev && seen[i].st_ino == st.st_ino;
		if (loops) {
			vm_add_problem(
			    vm,
			    _("The backing chain of %s loops: %s comes back further down; "
			      "no image operation is possible."),
			    d->overlay, path);
			break;
		}
		if (d->n_chain >= VMO_CHAIN_MAX) {
			vm_add_problem(
			    vm,
			    _("The backing chain of %s is deeper than %d files; vmoverlay "
			      "does not follow it."),
			    d->overlay, VMO_CHAIN_MAX);
			break;
		}
		seen[n_seen++] = st;
		chain_add(d, path);
		if (format && strcmp(format, "qcow2") != 0) {
			complete = true; /* raw and the like: no backing file */
			break;
		}
		struct qcow2_info info;
		bool via = false;
		int r = read_image(w, path, &info, &via, NULL);
		if (r == -EINVAL && !format) {
			complete = true; /* not qcow2, format not recorded: no chain */
			break;
		}
		if (r < 0) {
			log_debug("virt: %s: the chain of %s is not readable past %s (%s)",
				  vm->name, d->overlay, path, strerror(-r));
			break;
		}
		char *next =
		    info.backing_file ? image_resolve_backing(path, info.backing_file) : NULL;
		free(format);
		format = info.backing_format ? strdup(info.backing_format) : NULL;
		image_info_clear(&info);
		free(path);
		path = next;
		complete = path == NULL;
	}
	free(path);
	free(format);
	return complete;
}

/* Where the chain holds the configured base (0: the immediate backing
 * file), -1 if nowhere. */
static int chain_index(const struct vm_disk *d, const char *base)
{
	for (size_t k = 0; k < d->n_chain; k++)
		if (image_same_file(d->chain[k], base))
			return (int)k;
	return -1;
}

/* The overlay's header: backing, format, size, the chain below it; checks
 * rule 5 (the overlay's backing is the configured base, or with
 * commit_into = "deepest" a file further down its chain). d->base is the
 * file a commit writes into. */
static void fill_disk_facts(struct virt_watcher *w, struct vm *vm, struct vm_disk *d,
			    const char *cfg_base)
{
	char *keep_target = d->target, *keep_overlay = d->overlay;
	d->target = d->overlay = NULL;
	vm_disk_clear(d);
	d->target = keep_target;
	d->overlay = keep_overlay;
	if (!d->overlay)
		return;
	d->overlay_bytes = image_allocated_bytes(d->overlay);
	struct qcow2_info info;
	char *err = NULL;
	bool via_libvirt = false;
	int rr = read_image(w, d->overlay, &info, &via_libvirt, &err);
	if (rr == -EACCES || rr == -EPERM) {
		/* Root's image outside every storage pool: libvirt cannot tell
		 * us about it either. */
		vm_add_problem(
		    vm,
		    _("Cannot read the overlay: %s. No libvirt storage pool holds it, so "
		      "libvirt cannot describe it either: define a pool for its directory "
		      "(virsh pool-define-as NAME dir --target DIR)."),
		    err ? err : "");
		free(err);
		vm_set_str(&d->base, cfg_base);
		return;
	}
	if (rr < 0) {
		vm_add_problem(vm, _("Cannot read the overlay: %s"), err ? err : "");
		free(err);
		vm_set_str(&d->base, cfg_base);
		return;
	}
	if (via_libvirt)
		log_debug("virt: %s: %s is not readable here; facts from libvirt's storage API "
			  "(backing %s, %s)",
			  vm->name, d->overlay, info.backing_file ? info.backing_file : "-",
			  info.backing_format ? info.backing_format : "-");
	d->virtual_size = info.virtual_size;
	/* Through libvirt this is the backing path as libvirt resolved it, not
	 * the header's bytes: what the applet itself would write with it is
	 * never run for such an image (it cannot create files there); the
	 * helper reads the header again as root. */
	vm_set_str(&d->backing_stored, info.backing_file);
	vm_set_str(&d->backing_format, info.backing_format);
	char *resolved = image_resolve_backing(d->overlay, info.backing_file);
	bool deepest = vm->cfg && vm->cfg->commit_into == COMMIT_INTO_DEEPEST;
	size_t problems = vm->n_problems;
	bool complete = resolved && fill_chain(w, vm, d, resolved, info.backing_format);
	bool chain_bad = vm->n_problems > problems; /* loops, too deep, a file missing */
	int at = cfg_base ? chain_index(d, cfg_base) : -1;
	vm_set_str(&d->base, cfg_base ? cfg_base : resolved);
	struct stat st;
	if (!info.backing_file) {
		vm_add_problem(
		    vm,
		    _("The overlay %s has no backing file, so there is no base to commit into."),
		    d->overlay);
	} else if (cfg_base && stat(cfg_base, &st) < 0) {
		vm_add_problem(vm, _("The base %s does not exist."), cfg_base);
	} else if (cfg_base && at > 0 && !deepest) {
		/* qemu-img commits into the immediate backing file; a base
		 * further down is changed only when the user asked for it. */
		vm_add_problem(vm,
			       _("The base %s is %d levels down the backing chain of the overlay "
				 "%s (its backing file is %s). A commit goes into the immediate "
				 "backing file only; to commit through the files between into the "
				 "base, set commit_into = \"deepest\" for this VM."),
			       cfg_base, at + 1, d->overlay,
			       resolved ? resolved : info.backing_file);
	} else if (cfg_base && at < 0 && !image_same_file(resolved, cfg_base)) {
		vm_add_problem(
		    vm, _("The overlay %s is not backed by the base %s (its backing file is %s)."),
		    d->overlay, cfg_base, resolved ? resolved : info.backing_file);
	} else if (!cfg_base && (!resolved || stat(resolved, &st) < 0)) {
		vm_add_problem(vm, _("The backing file %s of the overlay %s does not exist."),
			       resolved ? resolved : info.backing_file, d->overlay);
	} else if (deepest && !cfg_base && !chain_bad && d->n_chain > 1) {
		if (complete)
			vm_set_str(&d->base, d->chain[d->n_chain - 1]);
		else
			vm_add_problem(vm,
				       _("The backing chain of %s cannot be read to its end (%s), "
					 "so its deepest file is not known; configure the base."),
				       d->overlay, d->chain[d->n_chain - 1]);
	}
	if (info.corrupt)
		vm_add_problem(vm,
			       _("The overlay %s is marked corrupt; check it with qemu-img check."),
			       d->overlay);
	free(resolved);
	image_info_clear(&info);
}

/* Every watched disk's image facts (the disks' targets and overlays set). */
void virt_fill_image_facts(struct virt_watcher *w, struct vm *vm, const char *cfg_base)
{
	for (size_t i = 0; i < vm->n_disks; i++)
		fill_disk_facts(w, vm, &vm->disks[i], vm->n_disks == 1 ? cfg_base : NULL);
}

/* True if the qcow2 image at path records a backing file (an overlay). */
static bool has_backing(struct virt_watcher *w, const char *path)
{
	struct qcow2_info info;
	bool via = false;
	if (read_image(w, path, &info, &via, NULL) < 0)
		return true; /* unknown: kept, its facts then say what is wrong */
	bool yes = info.backing_file != NULL;
	image_info_clear(&info);
	return yes;
}

static void add_disk(struct vm *vm, const char *target, const char *source)
{
	if (vm->n_disks >= VMO_MAX_DISKS)
		return;
	struct vm_disk *d = &vm->disks[vm->n_disks++];
	vm_set_str(&d->target, target);
	vm_set_str(&d->overlay, source);
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

/* Why disk d (named want) cannot be watched, as a problem of vm; false
 * if it can. */
static bool disk_refused(struct vm *vm, const struct disk_info *pick, const char *want)
{
	if (!pick)
		vm_add_problem(vm, _("%s has no disk %s."), vm->name, want);
	else if (!pick->is_disk || !pick->is_file || !pick->qcow2)
		vm_add_problem(vm, _("Disk %s of %s is not a qcow2 file disk."), want, vm->name);
	else if (pick->transient)
		vm_add_problem(vm, _("Disk %s of %s is transient: libvirt discards it by itself."),
			       want, vm->name);
	else if (pick->readonly || pick->shareable)
		vm_add_problem(vm,
			       _("Disk %s of %s is read-only or shareable; it cannot be a "
				 "private overlay."),
			       want, vm->name);
	else
		return false;
	return true;
}

/* Picks the watched disks from the domain XML: the configured ones (disk
 * or disks), else every qcow2 overlay of the domain (a qcow2 disk without
 * a backing file is left alone when the domain has overlays besides it).
 * Fills their targets and overlays, or adds the problem that prevents it. */
static void discover_disks(struct virt_watcher *w, struct vm *vm, virDomainPtr dom)
{
	const struct vm_config *cfg = vm->cfg;
	struct disk_info *d;
	size_t n;
	vm_clear_disks(vm);
	if (!domain_disks(w->conn, dom, &d, &n)) {
		vm_add_problem(vm, _("Cannot read the definition of %s from libvirt."), vm->name);
		return;
	}
	/* A vm_config built in code may name its one disk by `disk` only. */
	const char *one = cfg ? cfg->disk : NULL;
	size_t n_want = cfg && cfg->n_disks ? cfg->n_disks : one ? 1 : 0;
	if (n_want) {
		for (size_t k = 0; k < n_want; k++) {
			const char *want = cfg->n_disks ? cfg->disks[k] : one;
			const struct disk_info *pick = NULL;
			for (size_t i = 0; i < n; i++)
				if (d[i].target && strcmp(d[i].target, want) == 0)
					pick = &d[i];
			if (!disk_refused(vm, pick, want))
				add_disk(vm, pick->target, pick->source);
		}
		virt_disks_free(d, n);
		return;
	}
	size_t count = 0, overlays = 0;
	bool *is_overlay = calloc(n ? n : 1, sizeof *is_overlay);
	for (size_t i = 0; i < n; i++) {
		if (!disk_qualifies(&d[i]))
			continue;
		count++;
		if (is_overlay && has_backing(w, d[i].source)) {
			is_overlay[i] = true;
			overlays++;
		}
	}
	if (count == 0) {
		vm_add_problem(vm, _("%s has no writable qcow2 file disk to watch."), vm->name);
	} else if ((overlays ? overlays : count) > VMO_MAX_DISKS) {
		char *list = join_targets(d, n);
		vm_add_problem(vm,
			       _("%s has more than %d qcow2 disks (%s); choose the ones to watch "
				 "with disks = [\"…\"] in the configuration."),
			       vm->name, VMO_MAX_DISKS, list ? list : "");
		free(list);
	} else if (overlays == 0 && count > 1) {
		char *list = join_targets(d, n);
		vm_add_problem(vm,
			       _("%s has several qcow2 disks (%s) and none of them is an overlay "
				 "(none has a backing file)."),
			       vm->name, list ? list : "");
		free(list);
	} else {
		for (size_t i = 0; i < n; i++)
			if (disk_qualifies(&d[i]) && (overlays == 0 || (is_overlay && is_overlay[i])))
				add_disk(vm, d[i].target, d[i].source);
	}
	free(is_overlay);
	virt_disks_free(d, n);
}

/* All disk and image facts of vm (dom may be NULL: no such domain). */
void virt_discover_vm(struct virt_watcher *w, struct vm *vm, virDomainPtr dom)
{
	vm_clear_problems(vm);
	const char *cfg_base = vm->cfg ? vm->cfg->base : NULL;
	if (!dom)
		vm_add_problem(vm, _("libvirt has no domain named %s."), vm->name);
	if (virt_cfg_has_override(vm)) {
		vm_clear_disks(vm);
		add_disk(vm, vm->cfg->disk, vm->cfg->overlay);
	} else if (dom) {
		discover_disks(w, vm, dom);
	} else {
		vm_clear_disks(vm);
	}
	virt_fill_image_facts(w, vm, cfg_base);
	virt_apply_uses(w, vm);
}
