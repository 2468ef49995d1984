/* The shared model: one struct vm per configured VM, and a coalescing
 * change notification so that many updates in one loop iteration cause
 * one UI refresh. */
#include "model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "i18n.h"
#include "loop.h"

static struct vm *vm_create(const struct vm_config *vc)
{
	struct vm *vm = calloc(1, sizeof *vm);
	if (!vm)
		return NULL;
	vm->name = strdup(vc->name);
	if (!vm->name) {
		free(vm);
		return NULL;
	}
	vm->cfg = vc;
	vm->policy = vc->policy;
	vm->dom_state = -1;
	vm->progress = -1;
	vm->shutdown_in_s = -1;
	return vm;
}

static void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_clear_problems(vm);
	free(vm->name);
	vm_clear_disks(vm);
	free(vm->check_unknown);
	free(vm->check_note);
	free(vm->undo_note);
	free(vm->error);
	free(vm->uri);
	free(vm->notice);
	free(vm);
}

void vm_disk_clear(struct vm_disk *d)
{
	free(d->target);
	free(d->overlay);
	free(d->base);
	free(d->backing_stored);
	free(d->backing_format);
	free(d->shared_with);
	free(d->overlay_used_by);
	for (size_t k = 0; k < d->n_chain; k++)
		free(d->chain[k]);
	free(d->chain);
	memset(d, 0, sizeof *d);
}

void vm_clear_disks(struct vm *vm)
{
	for (size_t i = 0; i < VMO_MAX_DISKS; i++)
		vm_disk_clear(&vm->disks[i]);
	vm->n_disks = 0;
}

struct vm_disk *vm_disk_find(struct vm *vm, const char *target)
{
	for (size_t i = 0; target && i < vm->n_disks; i++)
		if (vm->disks[i].target && strcmp(vm->disks[i].target, target) == 0)
			return &vm->disks[i];
	return NULL;
}

uint64_t vm_overlay_bytes(const struct vm *vm)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < vm->n_disks; i++)
		sum += vm->disks[i].overlay_bytes;
	return sum;
}

static char *dup_or_null(const char *s, bool *ok)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*ok = false;
	return d;
}

struct vm *vm_scratch_copy(const struct vm *vm)
{
	struct vm *c = malloc(sizeof *c);
	if (!c)
		return NULL;
	*c = *vm;
	bool ok = true;
	c->name = dup_or_null(vm->name, &ok);
	c->uri = dup_or_null(vm->uri, &ok);
	for (size_t i = 0; i < VMO_MAX_DISKS; i++) {
		const struct vm_disk *d = &vm->disks[i];
		struct vm_disk *e = &c->disks[i];
		e->target = dup_or_null(d->target, &ok);
		e->overlay = dup_or_null(d->overlay, &ok);
		e->base = dup_or_null(d->base, &ok);
		e->backing_stored = dup_or_null(d->backing_stored, &ok);
		e->backing_format = dup_or_null(d->backing_format, &ok);
		e->shared_with = dup_or_null(d->shared_with, &ok);
		e->overlay_used_by = dup_or_null(d->overlay_used_by, &ok);
		e->chain = NULL;
		e->n_chain = 0;
		if (d->n_chain) {
			e->chain = calloc(d->n_chain, sizeof *e->chain);
			if (!e->chain)
				ok = false;
			for (size_t k = 0; e->chain && k < d->n_chain; k++)
				e->chain[k] = dup_or_null(d->chain[k], &ok);
			if (e->chain)
				e->n_chain = d->n_chain;
		}
	}
	c->check_unknown = dup_or_null(vm->check_unknown, &ok);
	c->check_note = dup_or_null(vm->check_note, &ok);
	c->undo_note = dup_or_null(vm->undo_note, &ok);
	c->error = dup_or_null(vm->error, &ok);
	c->notice = dup_or_null(vm->notice, &ok);
	c->problems = NULL;
	c->n_problems = 0;
	for (size_t i = 0; ok && i < vm->n_problems; i++)
		vm_add_problem(c, "%s", vm->problems[i]);
	if (!ok || c->n_problems != vm->n_problems) {
		vm_destroy(c);
		return NULL;
	}
	return c;
}

void vm_scratch_free(struct vm *vm)
{
	vm_destroy(vm);
}

bool model_init(struct model *m, struct loop *loop, const struct config *cfg)
{
	memset(m, 0, sizeof *m);
	m->loop = loop;
	if (cfg->n_vms) {
		m->vms = calloc(cfg->n_vms, sizeof *m->vms);
		if (!m->vms)
			return false;
	}
	for (size_t i = 0; i < cfg->n_vms; i++) {
		m->vms[i] = vm_create(&cfg->vms[i]);
		if (!m->vms[i]) {
			model_finish(m);
			return false;
		}
		m->n_vms++;
	}
	return true;
}

void model_finish(struct model *m)
{
	for (size_t i = 0; i < m->n_vms; i++)
		vm_destroy(m->vms[i]);
	free(m->vms);
	free(m->listeners);
	m->vms = NULL;
	m->n_vms = 0;
	m->listeners = NULL;
	m->n_listeners = 0;
}

static bool vm_is_busy(const struct vm *vm)
{
	return vm->flow == FLOW_COMMITTING || vm->flow == FLOW_REBUILDING;
}

void model_reload(struct model *m, const struct config *cfg)
{
	struct vm **next = calloc(cfg->n_vms + m->n_vms + 1, sizeof *next);
	if (!next)
		return;
	size_t n = 0;
	bool *kept = calloc(m->n_vms + 1, sizeof *kept);
	if (!kept) {
		free(next);
		return;
	}
	for (size_t i = 0; i < cfg->n_vms; i++) {
		const struct vm_config *vc = &cfg->vms[i];
		struct vm *vm = NULL;
		for (size_t j = 0; j < m->n_vms; j++) {
			if (!kept[j] && strcmp(m->vms[j]->name, vc->name) == 0) {
				vm = m->vms[j];
				kept[j] = true;
				break;
			}
		}
		if (vm) {
			/* A policy the user changed at run time wins over the file
			 * only until the file changes it: the file is the user's
			 * newer word. */
			if (!vm->cfg || vm->cfg->policy != vc->policy)
				vm->policy = vc->policy;
			vm->cfg = vc;
		} else {
			vm = vm_create(vc);
			if (!vm)
				continue;
		}
		next[n++] = vm;
	}
	/* A VM dropped from the config while an operation runs stays until the
	 * operation ends (the next reload drops it); its config is gone. */
	for (size_t j = 0; j < m->n_vms; j++) {
		if (kept[j])
			continue;
		if (vm_is_busy(m->vms[j])) {
			m->vms[j]->cfg = NULL;
			next[n++] = m->vms[j];
		} else {
			vm_destroy(m->vms[j]);
		}
	}
	free(kept);
	free(m->vms);
	m->vms = next;
	m->n_vms = n;
	model_changed(m);
}

struct vm *model_find(const struct model *m, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < m->n_vms; i++)
		if (strcmp(m->vms[i]->name, name) == 0)
			return m->vms[i];
	return NULL;
}

struct vm *model_find_uuid(const struct model *m, const char *uuid)
{
	if (!uuid || !*uuid)
		return NULL;
	for (size_t i = 0; i < m->n_vms; i++)
		if (strcmp(m->vms[i]->uuid, uuid) == 0)
			return m->vms[i];
	return NULL;
}

void model_add_listener(struct model *m, model_listener_cb cb, void *data)
{
	struct model_listener *l = realloc(m->listeners, (m->n_listeners + 1) * sizeof *l);
	if (!l)
		return;
	m->listeners = l;
	m->listeners[m->n_listeners++] = (struct model_listener){cb, data};
}

void model_remove_listener(struct model *m, model_listener_cb cb, void *data)
{
	for (size_t i = 0; i < m->n_listeners; i++) {
		if (m->listeners[i].cb == cb && m->listeners[i].data == data) {
			memmove(&m->listeners[i], &m->listeners[i + 1],
				(m->n_listeners - i - 1) * sizeof *m->listeners);
			m->n_listeners--;
			return;
		}
	}
}

static void model_refresh(struct loop *loop, void *data)
{
	struct model *m = data;
	m->refresh_queued = false;
	/* Listeners may add/remove listeners or change the model again (which
	 * queues another refresh): iterate over a snapshot of the count. */
	for (size_t i = 0; i < m->n_listeners; i++)
		m->listeners[i].cb(m->listeners[i].data);
}

void model_changed(struct model *m)
{
	m->serial++;
	if (m->refresh_queued)
		return;
	if (!m->loop) {
		for (size_t i = 0; i < m->n_listeners; i++)
			m->listeners[i].cb(m->listeners[i].data);
		return;
	}
	m->refresh_queued = true;
	loop_defer(m->loop, model_refresh, m);
}

void vm_set_str(char **field, const char *value)
{
	if (*field && value && strcmp(*field, value) == 0)
		return;
	free(*field);
	*field = value ? strdup(value) : NULL;
}

void vm_clear_problems(struct vm *vm)
{
	for (size_t i = 0; i < vm->n_problems; i++)
		free(vm->problems[i]);
	free(vm->problems);
	vm->problems = NULL;
	vm->n_problems = 0;
}

void vm_add_problem(struct vm *vm, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	for (size_t i = 0; i < vm->n_problems; i++) {
		if (strcmp(vm->problems[i], msg) == 0) {
			free(msg);
			return;
		}
	}
	char **p = realloc(vm->problems, (vm->n_problems + 1) * sizeof *p);
	if (!p) {
		free(msg);
		return;
	}
	vm->problems = p;
	vm->problems[vm->n_problems++] = msg;
}

const char *flow_state_label(enum flow_state s)
{
	switch (s) {
	case FLOW_UNKNOWN:
		return _("state unknown");
	case FLOW_RUNNING:
		return _("running");
	case FLOW_CLEAN:
		return _("shut off · clean");
	case FLOW_PENDING:
		return _("shut off · decision pending");
	case FLOW_KEPT:
		return _("shut off · changes kept");
	case FLOW_COMMITTING:
		return _("committing");
	case FLOW_REBUILDING:
		return _("rebuilding overlay");
	case FLOW_FAILED:
		return _("operation failed");
	case FLOW_INTERRUPTED:
		return _("commit interrupted");
	case FLOW_SAVED:
		return _("saved state · untouched");
	case FLOW_MISCONFIGURED:
		return _("misconfigured");
	}
	return "";
}

const char *run_state_label(enum vm_run_state s)
{
	switch (s) {
	case RUN_UNKNOWN:
		return _("unknown");
	case RUN_UNDEFINED:
		return _("not defined");
	case RUN_RUNNING:
		return _("running");
	case RUN_SHUTOFF:
		return _("shut off");
	case RUN_CRASHED:
		return _("crashed");
	}
	return "";
}

/* snprintf cuts at a byte count: drop a UTF-8 sequence cut in half at the
 * end of buf, so the text stays valid on D-Bus (libdbus refuses invalid
 * UTF-8, and a status reply or a notification would be lost with it). */
static char *utf8_whole(char *buf)
{
	size_t end = strlen(buf), lead = end;
	while (lead > 0 && ((unsigned char)buf[lead - 1] & 0xc0) == 0x80)
		lead--;
	if (lead == 0)
		return buf;
	unsigned char c = (unsigned char)buf[lead - 1];
	size_t need = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
	if (lead - 1 + need > end)
		buf[lead - 1] = '\0';
	return buf;
}

char *vm_summary_line(const struct vm *vm, char *buf, size_t len)
{
	char size[64];
	switch (vm->flow) {
	case FLOW_COMMITTING:
		/* TRANSLATORS: tooltip line while a commit runs: VM name, percent */
		snprintf(buf, len, _("%s: committing %.0f %%"), vm->name,
			 vm->progress < 0 ? 0.0 : vm->progress);
		break;
	case FLOW_RUNNING:
		i18n_format_size(size, sizeof size, vm_overlay_bytes(vm));
		if (vm->n_disks > 1) {
			/* The demo (the countdown) has one disk. */
			snprintf(buf, len,
				 /* TRANSLATORS: tooltip line: VM name, the overlays'
				  * total size ("1.5 GiB"), the number of disks (always
				  * more than one) */
				 P_("%s — running · overlay %s on %d disk",
				    "%s — running · overlays %s on %d disks", vm->n_disks),
				 vm->name, size, (int)vm->n_disks);
			break;
		}
		if (vm->shutdown_in_s >= 0) {
			/* TRANSLATORS: demo tooltip: VM name, overlay size, seconds */
			snprintf(buf, len,
				 P_("%s — running · overlay %s · shuts down in %d second",
				    "%s — running · overlay %s · shuts down in %d seconds",
				    vm->shutdown_in_s),
				 vm->name, size, vm->shutdown_in_s);
			break;
		}
		/* TRANSLATORS: tooltip line: VM name, overlay size ("1.2 GiB") */
		snprintf(buf, len, _("%s — running · overlay %s"), vm->name, size);
		break;
	case FLOW_FAILED:
		/* TRANSLATORS: tooltip line: VM name, error message */
		snprintf(buf, len, _("%s — failed: %s"), vm->name, vm->error ? vm->error : "");
		break;
	case FLOW_MISCONFIGURED:
		snprintf(buf, len, _("%s — misconfigured: %s"), vm->name,
			 vm->n_problems ? vm->problems[0] : "");
		break;
	default:
		/* TRANSLATORS: tooltip line: VM name, state ("shut off · clean") */
		snprintf(buf, len, _("%s — %s"), vm->name, flow_state_label(vm->flow));
		break;
	}
	return len ? utf8_whole(buf) : buf;
}

char *vm_disks_total_line(const struct vm *vm, char *buf, size_t len)
{
	char size[64];
	i18n_format_size(size, sizeof size, vm_overlay_bytes(vm));
	/* TRANSLATORS: a menu/status line above the per-disk lines: the
	 * overlays' total size ("1.5 GiB"), the number of disks */
	snprintf(buf, len, P_("overlay %s on %d disk", "overlays %s on %d disks", vm->n_disks),
		 size, (int)vm->n_disks);
	return len ? utf8_whole(buf) : buf;
}

/* The last component of a path; "?" when there is none. */
static const char *file_name(const char *path)
{
	if (!path || !*path)
		return "?";
	const char *slash = strrchr(path, '/');
	return slash && slash[1] ? slash + 1 : path;
}

char *vm_disk_line(const struct vm *vm, size_t i, bool full, char *buf, size_t len)
{
	const struct vm_disk *d = &vm->disks[i];
	char size[64];
	i18n_format_size(size, sizeof size, d->overlay_bytes);
	const char *target = d->target && *d->target ? d->target : NULL;
	if (!target && full)
		/* TRANSLATORS: `vmoverlay status` for a disk named by its overlay
		 * alone (target unknown): size, overlay path, base path */
		snprintf(buf, len, _("%s · %s · base %s"), size, d->overlay ? d->overlay : "?",
			 d->base ? d->base : "?");
	else if (!target)
		/* TRANSLATORS: menu/terminal line for a disk named by its overlay
		 * alone (target unknown): size, overlay file name */
		snprintf(buf, len, _("%s · %s"), size, file_name(d->overlay));
	else if (full)
		/* TRANSLATORS: `vmoverlay status`, one line per disk: target
		 * ("vda"), the overlay's allocated size ("1.2 GiB"), the overlay's
		 * path, its base's path */
		snprintf(buf, len, _("%s: %s · %s · base %s"), target, size,
			 d->overlay ? d->overlay : "?", d->base ? d->base : "?");
	else
		/* TRANSLATORS: menu/terminal line per disk: target ("vda"), the
		 * overlay's allocated size ("1.2 GiB"), the overlay's file name */
		snprintf(buf, len, _("%s: %s · %s"), target, size, file_name(d->overlay));
	return len ? utf8_whole(buf) : buf;
}

char *vm_disk_bases(const struct vm *vm, const char *sep, char *buf, size_t len)
{
	size_t used = 0;
	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < vm->n_disks && used < len; i++) {
		const struct vm_disk *d = &vm->disks[i];
		int n = snprintf(buf + used, len - used, "%s%s → %s", i ? sep : "",
				 d->target && *d->target ? d->target : "?", file_name(d->base));
		if (n < 0)
			break;
		used += (size_t)n;
	}
	return len ? utf8_whole(buf) : buf;
}

char *vm_disk_chain_text(const struct vm_disk *d)
{
	if (!d || !d->overlay || d->n_chain < 2)
		return NULL;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	for (size_t k = d->n_chain; k-- > 0;)
		/* TRANSLATORS: between two file names of a backing chain, deepest
		 * first: the left file is the backing file of the right one */
		fprintf(f, "%s%s", file_name(d->chain[k]), _(" ← "));
	fputs(file_name(d->overlay), f);
	fclose(f);
	return out;
}

char *vm_chain_text(const struct vm *vm)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = NULL;
	for (size_t i = 0; i < vm->n_disks; i++) {
		char *t = vm_disk_chain_text(&vm->disks[i]);
		if (!t)
			continue;
		if (!f && !(f = open_memstream(&out, &len))) {
			free(t);
			return NULL;
		}
		if (len)
			fputs("; ", f);
		if (vm->n_disks > 1)
			fprintf(f, "%s: ", vm->disks[i].target ? vm->disks[i].target : "?");
		fputs(t, f);
		fflush(f);
		free(t);
	}
	if (f)
		fclose(f);
	return out;
}
