/* The tray item: org.kde.StatusNotifierItem at /StatusNotifierItem under the
 * bus name org.kde.StatusNotifierItem-PID-1, registered with the watcher
 * (Plasma's kded module) asynchronously and again whenever the watcher gets
 * a new owner. Facts and their sources: research/sni-dbusmenu.md §1-2, §4.
 *
 * Status is Active or NeedsAttention, never Passive: Plasma moves Passive
 * items into the hidden "Status and Notifications" popup and swaybar does
 * not draw them, and a guard the user cannot see is no guard. Users who
 * want it hidden can say so in the tray settings (keyed by our stable Id). */
#include <dbus/dbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "bus.h"
#include "i18n.h"
#include "icon-pixmaps.h"
#include "icons.h"
#include "log.h"
#include "loop.h"
#include "menu.h"
#include "model.h"
#include "sni.h"
#include "ui.h"

#define SNI_WATCHER_INTERFACE "org.kde.StatusNotifierWatcher"
#define SNI_RETRY_MIN_MS 250
#define SNI_RETRY_MAX_MS 30000

/* What the item currently shows; signals are emitted for the differences. */
struct sni_view {
	const char *status;
	const char *icon;
	const char *attention_icon;
	char *tooltip; /* subtitle */
};

struct sni {
	struct bus *bus;
	const struct ui_deps *deps;
	char *service;
	char *icon_theme_path;
	bool send_pixmaps; /* a host cannot find our icons by name */
	struct sni_view view;
	bool exported;
	bool listening;
	unsigned watch_id;
	struct bus_call *reg_call;
	struct loop_timer *retry_timer;
	struct loop_timer *activate_timer;
	int retry_ms;
	bool registered;
	bool told_no_watcher;
	char *token; /* xdg-activation token from the host, until used */
	int64_t token_ms;
};

/* -------------------------------------------------------------- view */

static void view_compute(const struct sni *sni, struct sni_view *v)
{
	const struct model *m = sni->deps->model;
	bool busy = false, error = false, pending = false, running = false, attention = false;
	bool failed = false;
	for (size_t i = 0; i < m->n_vms; i++) {
		const struct vm *vm = m->vms[i];
		switch (vm->flow) {
		case FLOW_COMMITTING:
		case FLOW_REBUILDING:
			busy = true;
			break;
		case FLOW_FAILED:
		case FLOW_INTERRUPTED:
			error = failed = attention = true;
			break;
		case FLOW_MISCONFIGURED:
			error = true;
			break;
		case FLOW_PENDING:
			pending = attention = true;
			break;
		case FLOW_RUNNING:
			running = true;
			break;
		default:
			break;
		}
		if (vm->run == RUN_RUNNING)
			running = true;
	}
	v->status = attention ? "NeedsAttention" : "Active";
	if (busy)
		v->icon = "vmoverlay-busy";
	else if (error)
		v->icon = "vmoverlay-error";
	else if (pending)
		v->icon = "vmoverlay-attention";
	else if (running)
		v->icon = "vmoverlay-active";
	else
		v->icon = "vmoverlay";
	v->attention_icon = failed ? "vmoverlay-error" : "vmoverlay-attention";

	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	if (!f) {
		v->tooltip = NULL;
		return;
	}
	if (m->n_vms == 0)
		fputs(_("No virtual machines are configured"), f);
	for (size_t i = 0; i < m->n_vms; i++) {
		const struct vm *vm = m->vms[i];
		char line[512];
		/* A running VM's overlay grows all the time and the reconcile
		 * timer re-reads its size: in the tooltip it would change the
		 * tooltip on a timer, and Plasma re-reads GetAll on every
		 * NewToolTip. The size is read on demand instead (Activate's
		 * summary, `vmoverlay status`); the demo's countdown is the one
		 * line that changes by itself. */
		if (vm->flow == FLOW_RUNNING && vm->shutdown_in_s < 0)
			snprintf(line, sizeof line, _("%s — %s"), vm->name, flow_state_label(vm->flow));
		else
			vm_summary_line(vm, line, sizeof line);
		fprintf(f, "%s%s", i ? "\n" : "", line);
	}
	if (fclose(f) != 0) {
		free(text);
		text = NULL;
	}
	v->tooltip = text;
}

static bool str_differs(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

static bool append_status(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &sni->view.status);
}

static void emit(struct sni *sni, const char *member, bus_append_fn append)
{
	if (!bus_emit_signal(sni->bus, SNI_OBJECT_PATH, SNI_INTERFACE, member, append, sni))
		log_warn("sni: cannot emit %s", member);
}

static void sni_refresh(void *data)
{
	struct sni *sni = data;
	struct sni_view next;
	view_compute(sni, &next);
	struct sni_view old = sni->view;
	sni->view = next;
	if (str_differs(old.icon, next.icon))
		emit(sni, "NewIcon", NULL);
	if (str_differs(old.attention_icon, next.attention_icon))
		emit(sni, "NewAttentionIcon", NULL);
	if (str_differs(old.tooltip, next.tooltip))
		emit(sni, "NewToolTip", NULL);
	if (str_differs(old.status, next.status))
		emit(sni, "NewStatus", append_status);
	free(old.tooltip);
}

/* ------------------------------------------------------- properties */

static bool put_str(DBusMessageIter *it, const char *s)
{
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &s);
}

static bool get_category(void *data, DBusMessageIter *it)
{
	return put_str(it, "SystemServices");
}

static bool get_id(void *data, DBusMessageIter *it)
{
	return put_str(it, "vmoverlay");
}

static bool get_title(void *data, DBusMessageIter *it)
{
	/* TRANSLATORS: the tray item's name in Plasma's tray settings */
	return put_str(it, _("vmoverlay"));
}

static bool get_status(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return put_str(it, sni->view.status);
}

static bool get_window_id(void *data, DBusMessageIter *it)
{
	dbus_int32_t zero = 0;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_INT32, &zero);
}

static bool get_icon_theme_path(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return put_str(it, sni->icon_theme_path);
}

static bool get_menu(void *data, DBusMessageIter *it)
{
	const char *path = MENU_OBJECT_PATH;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_OBJECT_PATH, &path);
}

static bool get_false(void *data, DBusMessageIter *it)
{
	dbus_bool_t no = FALSE;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_BOOLEAN, &no);
}

static bool get_empty_str(void *data, DBusMessageIter *it)
{
	return put_str(it, "");
}

static bool get_icon_name(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return put_str(it, sni->view.icon);
}

static bool get_attention_icon_name(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return put_str(it, sni->view.attention_icon);
}

/* a(iiay): every rendered size of one icon (none when name is NULL). */
static bool put_pixmaps(DBusMessageIter *it, const char *name)
{
	DBusMessageIter arr, st = DBUS_MESSAGE_ITER_INIT_CLOSED, bytes = DBUS_MESSAGE_ITER_INIT_CLOSED;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "(iiay)", &arr))
		return false;
	for (const struct vmo_icon_pixmap *p = vmo_icon_pixmaps; name && p->name; p++) {
		if (strcmp(p->name, name) != 0)
			continue;
		dbus_int32_t size = p->size;
		const unsigned char *px = p->argb;
		if (!dbus_message_iter_open_container(&arr, DBUS_TYPE_STRUCT, NULL, &st) ||
		    !dbus_message_iter_append_basic(&st, DBUS_TYPE_INT32, &size) ||
		    !dbus_message_iter_append_basic(&st, DBUS_TYPE_INT32, &size) ||
		    !dbus_message_iter_open_container(&st, DBUS_TYPE_ARRAY, "y", &bytes) ||
		    !dbus_message_iter_append_fixed_array(&bytes, DBUS_TYPE_BYTE, &px,
		                                          size * size * 4) ||
		    !dbus_message_iter_close_container(&st, &bytes) ||
		    !dbus_message_iter_close_container(&arr, &st)) {
			dbus_message_iter_abandon_container_if_open(&st, &bytes);
			dbus_message_iter_abandon_container_if_open(&arr, &st);
			dbus_message_iter_abandon_container(it, &arr);
			return false;
		}
	}
	return dbus_message_iter_close_container(it, &arr);
}

/* Pixmaps only where the names do not resolve: Plasma re-reads GetAll on
 * every NewToolTip, and six sizes of two icons made that reply ~70 KB. */
static bool get_icon_pixmap(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return put_pixmaps(it, sni->send_pixmaps ? sni->view.icon : NULL);
}

static bool get_attention_icon_pixmap(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	return put_pixmaps(it, sni->send_pixmaps ? sni->view.attention_icon : NULL);
}

static bool get_no_pixmap(void *data, DBusMessageIter *it)
{
	return put_pixmaps(it, NULL);
}

static bool get_tooltip(void *data, DBusMessageIter *it)
{
	struct sni *sni = data;
	DBusMessageIter st;
	/* An empty title would drop the whole tooltip in Plasma. */
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_STRUCT, NULL, &st))
		return false;
	if (!put_str(&st, sni->view.icon) || !put_pixmaps(&st, NULL) ||
	    /* TRANSLATORS: tooltip title */
	    !put_str(&st, _("vmoverlay")) ||
	    !put_str(&st, sni->view.tooltip ? sni->view.tooltip : "")) {
		dbus_message_iter_abandon_container(it, &st);
		return false;
	}
	return dbus_message_iter_close_container(it, &st);
}

/* ----------------------------------------------------------- methods */

static void activate_later(struct loop *loop, struct loop_timer *t, void *data)
{
	struct sni *sni = data;
	if (sni->deps->actions.show_summary)
		sni->deps->actions.show_summary(sni->deps->actions.data);
}

static DBusMessage *on_activate(void *data, DBusMessage *msg)
{
	struct sni *sni = data;
	/* Reply first; the summary may talk to the notification server. An
	 * error reply would make Plasma open the menu instead. */
	loop_timer_arm(sni->activate_timer, 0, 0);
	return dbus_message_new_method_return(msg);
}

static DBusMessage *on_secondary_activate(void *data, DBusMessage *msg)
{
	log_debug("sni: SecondaryActivate");
	return dbus_message_new_method_return(msg);
}

static DBusMessage *on_context_menu(void *data, DBusMessage *msg)
{
	/* Only hosts without DBusMenu support call this; the menu is ours. */
	log_debug("sni: ContextMenu (host without DBusMenu support)");
	return dbus_message_new_method_return(msg);
}

static DBusMessage *on_scroll(void *data, DBusMessage *msg)
{
	return dbus_message_new_method_return(msg);
}

/* Plasma calls this before Activate, SecondaryActivate and ContextMenu and,
 * from 6.6, before a menu click; the token is "" on X11 up to 6.5. */
static DBusMessage *on_activation_token(void *data, DBusMessage *msg)
{
	struct sni *sni = data;
	const char *token = NULL;
	dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &token, DBUS_TYPE_INVALID);
	/* "" (X11 before Plasma 6.6) is no token: keep none rather than an
	 * older one, which KWin has invalidated anyway. */
	free(sni->token);
	sni->token = token && *token ? strdup(token) : NULL;
	sni->token_ms = loop_now_ms();
	return dbus_message_new_method_return(msg);
}

static const struct bus_method sni_methods[] = {
	{"ProvideXdgActivationToken", on_activation_token},
	{"ContextMenu", on_context_menu},
	{"Activate", on_activate},
	{"SecondaryActivate", on_secondary_activate},
	{"Scroll", on_scroll},
	{NULL, NULL},
};

static const struct bus_property sni_properties[] = {
	{"Category", get_category},
	{"Id", get_id},
	{"Title", get_title},
	{"Status", get_status},
	{"WindowId", get_window_id},
	{"IconThemePath", get_icon_theme_path},
	{"Menu", get_menu},
	{"ItemIsMenu", get_false},
	{"IconName", get_icon_name},
	{"IconPixmap", get_icon_pixmap},
	{"OverlayIconName", get_empty_str},
	{"OverlayIconPixmap", get_no_pixmap},
	{"AttentionIconName", get_attention_icon_name},
	{"AttentionIconPixmap", get_attention_icon_pixmap},
	{"AttentionMovieName", get_empty_str},
	{"ToolTip", get_tooltip},
	{NULL, NULL},
};

static const struct bus_interface sni_iface = {
	.name = SNI_INTERFACE,
	.methods = sni_methods,
	.properties = sni_properties,
};
static const struct bus_interface *const sni_ifaces[] = {&sni_iface, NULL};

/* ------------------------------------------------------ registration */

static void sni_register(struct sni *sni);

static void retry_later(struct sni *sni)
{
	sni->retry_ms = sni->retry_ms ? sni->retry_ms * 2 : SNI_RETRY_MIN_MS;
	if (sni->retry_ms > SNI_RETRY_MAX_MS)
		sni->retry_ms = SNI_RETRY_MAX_MS;
	loop_timer_arm(sni->retry_timer, sni->retry_ms, 0);
}

static void on_register_reply(void *data, DBusMessage *reply)
{
	struct sni *sni = data;
	sni->reg_call = NULL;
	if (dbus_message_get_type(reply) != DBUS_MESSAGE_TYPE_ERROR) {
		sni->registered = true;
		sni->retry_ms = 0;
		sni->told_no_watcher = false;
		log_info("tray item registered with %s as %s", SNI_WATCHER_NAME, sni->service);
		return;
	}
	const char *name = dbus_message_get_error_name(reply);
	if (dbus_message_is_error(reply, DBUS_ERROR_SERVICE_UNKNOWN) ||
	    dbus_message_is_error(reply, DBUS_ERROR_NAME_HAS_NO_OWNER)) {
		/* Nothing to retry: the NameOwnerChanged watch starts us again. */
		if (!sni->told_no_watcher)
			log_info("no %s on the session bus; the tray item appears when one starts",
			         SNI_WATCHER_NAME);
		sni->told_no_watcher = true;
		return;
	}
	/* E.g. UnknownObject while kded owns the name but has not loaded its
	 * module yet, or a timeout: try again with backoff. */
	const char *text = NULL;
	dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID);
	retry_later(sni);
	log_warn("RegisterStatusNotifierItem failed (%s: %s); retrying in %d ms", name,
	         text ? text : "", sni->retry_ms);
}

static void sni_register(struct sni *sni)
{
	bus_call_cancel(sni->reg_call);
	sni->reg_call = NULL;
	loop_timer_arm(sni->retry_timer, -1, 0);
	DBusMessage *msg = dbus_message_new_method_call(SNI_WATCHER_NAME, SNI_WATCHER_PATH,
	                                                SNI_WATCHER_INTERFACE,
	                                                "RegisterStatusNotifierItem");
	if (!msg || !dbus_message_append_args(msg, DBUS_TYPE_STRING, &sni->service,
	                                      DBUS_TYPE_INVALID)) {
		if (msg)
			dbus_message_unref(msg);
		retry_later(sni);
		return;
	}
	sni->reg_call = bus_call_async(sni->bus, msg, 10000, on_register_reply, sni);
	dbus_message_unref(msg);
	if (!sni->reg_call)
		retry_later(sni);
}

static void on_retry(struct loop *loop, struct loop_timer *t, void *data)
{
	sni_register(data);
}

static void on_watcher_owner(void *data, const char *name, const char *new_owner)
{
	struct sni *sni = data;
	sni->registered = false;
	if (!new_owner || !*new_owner) {
		log_info("%s left the bus; waiting for it to come back", SNI_WATCHER_NAME);
		bus_call_cancel(sni->reg_call);
		sni->reg_call = NULL;
		loop_timer_arm(sni->retry_timer, -1, 0);
		return;
	}
	/* A (re)started watcher has an empty list: register again now. */
	sni->retry_ms = 0;
	sni_register(sni);
}

/* ----------------------------------------------------------- create */

struct sni *sni_create(struct bus *bus, const struct ui_deps *deps, char **err)
{
	struct sni *sni = calloc(1, sizeof(*sni));
	if (!sni)
		goto nomem;
	sni->bus = bus;
	sni->deps = deps;
	struct loop *loop = bus_loop(bus);
	sni->retry_timer = loop_timer_add(loop, -1, 0, on_retry, sni);
	sni->activate_timer = loop_timer_add(loop, -1, 0, activate_later, sni);
	sni->icon_theme_path = icons_theme_dir();
	if (asprintf(&sni->service, "org.kde.StatusNotifierItem-%ld-1", (long)getpid()) < 0)
		sni->service = NULL;
	if (!sni->retry_timer || !sni->activate_timer || !sni->icon_theme_path || !sni->service)
		goto nomem;
	/* Hosts look names up in IconThemePath (Plasma, KStatusNotifierItem
	 * hosts, waybar, the GNOME extension): pixmaps only when it lacks one. */
	sni->send_pixmaps = !icons_complete(sni->icon_theme_path);
	log_debug("sni: icons from %s%s", sni->icon_theme_path,
	          sni->send_pixmaps ? " are incomplete: sending IconPixmap" : " (no pixmaps)");
	view_compute(sni, &sni->view);

	char *xerr = NULL;
	if (!bus_export(bus, SNI_OBJECT_PATH, sni_ifaces, sni, &xerr)) {
		if (err && asprintf(err, _("cannot export the tray item: %s"), xerr ? xerr : "") < 0)
			*err = NULL;
		free(xerr);
		goto error;
	}
	sni->exported = true;

	/* The watcher checks that the name has an owner, and the host reads
	 * our properties right away: own it and export everything first. */
	DBusError derr;
	dbus_error_init(&derr);
	int r = dbus_bus_request_name(bus_connection(bus), sni->service, DBUS_NAME_FLAG_DO_NOT_QUEUE,
	                              &derr);
	if (r != DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
		if (err && asprintf(err, _("cannot own the bus name %s: %s"), sni->service,
		                    derr.message ? derr.message : _("already taken")) < 0)
			*err = NULL;
		dbus_error_free(&derr);
		goto error;
	}
	model_add_listener(deps->model, sni_refresh, sni);
	sni->listening = true;
	/* The match is added before the first call so a watcher that starts
	 * in between is not missed. */
	sni->watch_id = bus_watch_name(bus, SNI_WATCHER_NAME, on_watcher_owner, sni);
	sni_register(sni);
	return sni;

nomem:
	if (err)
		*err = strdup(_("out of memory"));
error:
	sni_destroy(sni);
	return NULL;
}

void sni_destroy(struct sni *sni)
{
	if (!sni)
		return;
	if (sni->listening)
		model_remove_listener(sni->deps->model, sni_refresh, sni);
	if (sni->watch_id)
		bus_unwatch_name(sni->bus, sni->watch_id);
	bus_call_cancel(sni->reg_call);
	if (sni->exported)
		bus_unexport(sni->bus, SNI_OBJECT_PATH);
	if (sni->retry_timer)
		loop_timer_remove(sni->retry_timer);
	if (sni->activate_timer)
		loop_timer_remove(sni->activate_timer);
	free(sni->view.tooltip);
	free(sni->icon_theme_path);
	free(sni->service);
	free(sni->token);
	free(sni);
}

const char *sni_service_name(const struct sni *sni)
{
	return sni->service;
}

bool sni_registered(const struct sni *sni)
{
	return sni->registered;
}

char *sni_take_activation_token(struct sni *sni, int64_t *when_ms)
{
	if (!sni)
		return NULL;
	char *t = sni->token;
	sni->token = NULL;
	if (when_ms)
		*when_ms = sni->token_ms;
	return t;
}
