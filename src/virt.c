/* The libvirt watcher. One connection, lifecycle events for every domain
 * (the managed VMs are picked out here), a close callback that only flags,
 * reconnects with backoff from a timer, and a reconcile (list every domain,
 * compare with what we last saw and with the state file) after each
 * connect and every reconcile_interval seconds: events missed while we
 * were not connected are lost, libvirt does not replay them.
 * Disk facts: virt-disks.c (domain XML, qcow2 headers, libvirt's storage
 * API); who else uses a disk: virt-share.c (a child process walks the
 * chains, chainprobe.c). */
#include "util.h"
#include "virt-private.h"

static void quiet_error(void *data, virErrorPtr err)
{
	if (err && err->message)
		log_debug("libvirt: %s", err->message);
}

const char *virt_last_error(void)
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown error";
}

bool virt_cfg_has_override(const struct vm *vm)
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
	virt_discover_vm(w, vm, dom);
	transition(w, vm, prev);
}

void virt_reconcile(struct virt_watcher *w, const char *why)
{
	if (!w->conn)
		return;
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(w->conn, &doms, 0);
	if (n < 0) {
		log_warn("virt: listing domains (%s): %s", why, virt_last_error());
		return;
	}
	log_debug("virt: virt_reconcile (%s): %d domains", why, n);
	virt_scan_start(w, doms, n);
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
			virt_discover_vm(w, vm, dom);
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
		virt_discover_vm(w, vm, dom);
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
		const char *msg = virt_last_error();
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
		log_debug("virt: no close callback: %s", virt_last_error());
	set_keepalive(w);
	w->lifecycle_id = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	                                                   VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
	                                                   w, NULL);
	if (w->lifecycle_id < 0) {
		const char *msg = virt_last_error();
		log_err("virt: cannot register for domain events: %s", msg);
		set_last_error(w, msg);
		disconnect(w, true);
		return false;
	}
	set_last_error(w, NULL);
	w->backoff_s = 1;
	log_info("virt: connected to %s", w->uri ? w->uri : "(default)");
	virt_reconcile(w, "connect");
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
		virt_reconcile(w, "interval");
}

static void on_reapply_timer(struct loop *loop, struct loop_timer *t, void *data);

static void on_rescan_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct virt_watcher *w = data;
	if (w->conn && !w->closed)
		virt_reconcile(w, "domain defined/undefined");
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
	w->reapply_timer = loop_timer_add(loop, -1, 0, on_reapply_timer, w);
	if (!w->reconnect_timer || !w->reconcile_timer || !w->rescan_timer || !w->reapply_timer)
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
	if (w->reapply_timer)
		loop_timer_remove(w->reapply_timer);
	chainprobe_cancel(w->probe);
	virt_plan_free(w->probe_plan);
	virt_uses_clear(w);
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
		virt_reconcile(w, "configuration reloaded");
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
		virt_reconcile(w, "requested");
}


/* Does what the model shows for vm still hold? Compares what an operation
 * relies on: the disk and its chain, the problems, who else uses them. */
static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool facts_differ(const struct vm *shown, const struct vm *now)
{
	if (shown->run != now->run || shown->n_problems != now->n_problems)
		return true;
	for (size_t i = 0; i < now->n_problems; i++)
		if (!str_same(shown->problems[i], now->problems[i]))
			return true;
	if (shown->n_disks != now->n_disks || !str_same(shown->check_unknown, now->check_unknown))
		return true;
	for (size_t i = 0; i < now->n_disks; i++) {
		const struct vm_disk *a = &shown->disks[i], *b = &now->disks[i];
		if (!str_same(a->target, b->target) || !str_same(a->overlay, b->overlay) ||
		    !str_same(a->base, b->base) || !str_same(a->backing_stored, b->backing_stored) ||
		    !str_same(a->backing_format, b->backing_format) ||
		    !str_same(a->shared_with, b->shared_with) ||
		    !str_same(a->overlay_used_by, b->overlay_used_by) || a->n_chain != b->n_chain)
			return true;
		for (size_t k = 0; k < a->n_chain; k++)
			if (!str_same(a->chain[k], b->chain[k]))
				return true;
	}
	return false;
}

static void on_reapply_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	(void)loop;
	(void)t;
	struct virt_watcher *w = data;
	for (size_t i = 0; i < w->model->n_vms; i++)
		virt_apply_uses(w, w->model->vms[i]);
	model_changed(w->model);
}

bool virt_watcher_query(struct virt_watcher *w, const struct vm *vm, struct virt_now *now)
{
	memset(now, 0, sizeof *now);
	now->state = -1;
	now->connected = virt_watcher_connected(w);
	if (!now->connected)
		return false;
	virDomainPtr dom = virDomainLookupByName(w->conn, vm->name);
	struct dom_facts f;
	if (!dom || !query_facts(dom, &f)) {
		if (dom)
			virDomainFree(dom);
		virResetLastError();
		loop_timer_arm(w->rescan_timer, 0, 0);
		return true;
	}
	now->defined = true;
	now->state = f.state;
	now->managed_save = f.managed_save;
	now->snapshots = f.snapshots;
	/* The disk and its users as they are now, in a scratch copy: the
	 * model is written by the watcher's own paths only (events, reconcile),
	 * never from inside an operation's check. */
	now->facts = vm_scratch_copy(vm);
	if (!now->facts) {
		virDomainFree(dom);
		return false;
	}
	apply_facts(now->facts, &f);
	virt_discover_vm(w, now->facts, dom);
	virDomainFree(dom);
	/* Rules 3 and 9, asked afresh: who else reads the base (commit) or the
	 * overlay (every operation replaces or empties it)? */
	virt_scan_now(w);
	virt_apply_uses(w, now->facts);
	now->changed = facts_differ(vm, now->facts);
	if (now->changed)
		loop_timer_arm(w->rescan_timer, 0, 0); /* the model catches up from the loop */
	else
		loop_timer_arm(w->reapply_timer, 0, 0); /* other VMs' notes, from the new scan */
	return true;
}

void virt_now_clear(struct virt_now *now)
{
	vm_scratch_free(now->facts);
	memset(now, 0, sizeof *now);
}

/* A refusal must never turn into "no refusal" because memory ran out. */
static char *refusal(char *s)
{
	if (!s)
		s = strdup("?");
	if (!s)
		abort();
	return s;
}

char *virt_now_refusal(const struct virt_now *now, const struct vm *vm, bool for_commit)
{
	if (!now->connected)
		return refusal(str_printf(_("Not connected to libvirt, so it cannot confirm that %s is shut off."),
		              vm->name));
	if (!now->defined || !now->facts)
		return refusal(str_printf(_("libvirt has no domain named %s."), vm->name));
	const struct vm *f = now->facts;
	if (now->state != VIR_DOMAIN_SHUTOFF)
		return refusal(str_printf(_("%s is not shut off."), vm->name));
	if (now->managed_save)
		return refusal(str_printf(_("%s has a saved state (managed save) that needs the overlay as it is."),
		              vm->name));
	if (now->snapshots)
		return refusal(str_printf(_("%s has libvirt snapshots; vmoverlay does not change their image chain."),
		              vm->name));
	if (f->n_problems)
		return refusal(str_printf("%s", f->problems[0]));
	if (!f->n_disks)
		return refusal(str_printf(_("The overlay or the base of %s is not known."), vm->name));
	for (size_t i = 0; i < f->n_disks; i++) {
		const struct vm_disk *d = &f->disks[i];
		if (!d->overlay || !d->base)
			return refusal(str_printf(_("The overlay or the base of %s is not known."),
			                          vm->name));
		if (d->overlay_used_by)
			return refusal(str_printf("%s", f->check_note ? f->check_note : d->overlay_used_by));
		if (for_commit && d->shared_with)
			return refusal(str_printf(
			    _("The base %s is also used by %s; committing into it would corrupt that VM."),
			    d->base, d->shared_with));
	}
	if (f->check_unknown)
		return refusal(str_printf(for_commit
		                  /* TRANSLATORS: VM name, then why the check failed (a sentence) */
		                  ? _("%s: not committing. %s. A base that another VM might use is "
		                      "never changed.")
		                  /* TRANSLATORS: VM name, then why the check failed (a sentence) */
		                  : _("%s: the overlay is left as it is. %s. An overlay that "
		                      "another VM might use is never replaced."),
		              vm->name, f->check_unknown));
	return NULL;
}

bool virt_watcher_check_idle(struct virt_watcher *w, const struct vm *vm, bool for_commit,
                             char **why)
{
	if (why)
		*why = NULL;
	struct virt_now now;
	virt_watcher_query(w, vm, &now);
	char *r = virt_now_refusal(&now, vm, for_commit);
	virt_now_clear(&now);
	if (!r)
		return true;
	if (why)
		*why = r;
	else
		free(r);
	return false;
}

void virt_watcher_refresh_vm(struct virt_watcher *w, struct vm *vm)
{
	if (virt_watcher_connected(w) && !virt_cfg_has_override(vm)) {
		virDomainPtr dom = virDomainLookupByName(w->conn, vm->name);
		virResetLastError();
		virt_discover_vm(w, vm, dom);
		if (dom)
			virDomainFree(dom);
	} else {
		/* Disk facts as last discovered; only the image is re-read. */
		vm_clear_problems(vm);
		if (vm->run == RUN_UNDEFINED)
			vm_add_problem(vm, _("libvirt has no domain named %s."), vm->name);
		virt_fill_image_facts(w, vm, vm->cfg ? vm->cfg->base : NULL);
		virt_apply_uses(w, vm);
	}
	model_changed(w->model);
}
