/* notify-job.c: a commit in Plasma's job tracker. The view is asked for
 * the KF6 way (org.kde.JobViewServerV2.requestView with the immediate
 * hint, then JobViewV3 update/terminate), through V1 only where V2 is
 * missing, and again when the server gets a new owner; cancel counts only
 * from the server itself. */
#include "notify.h"
#include "notify-private.h"
#include <gio/gio.h>
#include <libnotify/notify.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ui.h"
#include "i18n.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "icons.h"

/* ---- Plasma's job view (org.kde.JobViewServer) ----
 *
 * The KF6 way (kjobwidgets' KUiServerV2JobTracker): JobViewServerV2
 * requestView(desktopEntry, capabilities, hints) with "immediate" (Plasma
 * otherwise waits 500 ms, so a short commit would never be shown) and
 * "transient" (no "Finished" popup from the tracker: our result
 * notification is the one result the user gets), then JobViewV3
 * update(a{sv}) and terminate(u, s, a{sv}). Only a server without V2 gets
 * the old JobViewServer.requestView(ssi) and JobViewV2's setters. When the
 * server's owner changes (plasmashell restarted) a running commit asks the
 * new owner for a view, as KF6 does. Facts: research/plasma6-protocol.md. */

static void job_request(struct notifier *n, struct vm_entry *e);

static void job_call(struct notifier *n, struct vm_entry *e, const char *method, GVariant *args)
{
	g_dbus_connection_call(n->conn, JOB_SERVER_NAME, e->job_path,
			       e->job_v3 ? JOB_VIEW_V3 : JOB_VIEW_V2, method, args, NULL,
			       G_DBUS_CALL_FLAGS_NO_AUTO_START, PROBE_TIMEOUT_MS, NULL, NULL, NULL);
}

/* V3: one update() with these properties (NULL title: percent only). */
static void job_update(struct notifier *n, struct vm_entry *e, const char *title)
{
	GVariantBuilder b;
	g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
	if (title) {
		g_variant_builder_add(&b, "{sv}", "title", g_variant_new_string(title));
		g_variant_builder_add(&b, "{sv}", "descriptionLabel1",
				      g_variant_new_string(_("Virtual machine")));
		g_variant_builder_add(&b, "{sv}", "descriptionValue1",
				      g_variant_new_string(e->name));
	}
	g_variant_builder_add(&b, "{sv}", "percent", g_variant_new_uint32(e->job_percent));
	job_call(n, e, "update", g_variant_new("(a{sv})", &b));
}

/* Forgets the view (the server is gone, or the job is over) without a call. */
static void job_drop(struct notifier *n, struct vm_entry *e)
{
	if (e->job_sub)
		g_dbus_connection_signal_unsubscribe(n->conn, e->job_sub);
	e->job_sub = 0;
	if (e->job_cancel) {
		/* A requestView still on its way must not land on this entry. */
		g_cancellable_cancel(e->job_cancel);
		g_object_unref(e->job_cancel);
		e->job_cancel = NULL;
	}
	free(e->job_path);
	e->job_path = NULL;
	e->job = JOB_NONE;
}

/* The commit is over: terminate the view (error 0: finished; 1 is
 * KIO::ERR_USER_CANCELED, which Plasma removes without a word; anything
 * else shows msg). */
void notify_job_finish(struct notifier *n, struct vm_entry *e, unsigned code, const char *msg)
{
	e->job_wanted = false;
	if (e->job == JOB_REQUESTING) {
		e->job_finish_pending = true;
		e->job_finish_code = code;
		free(e->job_finish_msg);
		e->job_finish_msg = strdup(msg ? msg : "");
		return;
	}
	if (e->job == JOB_ACTIVE) {
		if (e->job_v3) {
			job_call(
			    n, e, "terminate",
			    g_variant_new("(us@a{sv})", code, msg ? msg : "",
					  g_variant_new_array(G_VARIANT_TYPE("{sv}"), NULL, 0)));
		} else {
			job_call(n, e, "terminate", g_variant_new("(s)", msg ? msg : ""));
		}
	}
	job_drop(n, e);
}

static void on_job_cancel(GDBusConnection *conn, const char *sender, const char *path,
			  const char *iface, const char *signal, GVariant *params, gpointer data)
{
	struct vm_entry *e = data;
	struct notifier *n = e->note.n;
	struct vm *vm = model_find(n->deps->model, e->name);
	if (!vm || !n->deps->flow)
		return;
	log_info("%s: cancel requested from the job view", vm->name);
	char *why = NULL;
	if (!flow_request(n->deps->flow, vm, ACT_CANCEL, &why))
		log_warn("%s: cancel refused: %s", vm->name, why ? why : "");
	free(why);
}

static bool is_missing_method(const GError *err)
{
	return g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD) ||
	       g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_INTERFACE) ||
	       g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT);
}

static void on_job_view(GObject *src, GAsyncResult *res, gpointer data, bool v3)
{
	GError *err = NULL;
	GVariant *v = g_dbus_connection_call_finish(G_DBUS_CONNECTION(src), res, &err);
	if (!v && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		g_error_free(err);
		return;
	}
	struct vm_entry *e = data;
	struct notifier *n = e->note.n;
	if (!v && v3 && is_missing_method(err)) {
		/* A server from before JobViewServerV2 (KF5 < 5.80): the old one. */
		log_debug("job view server has no V2 (%s): using org.kde.JobViewServer",
			  err->message);
		g_error_free(err);
		n->job_v1_only = true;
		job_request(n, e);
		return;
	}
	if (!v) {
		log_debug("no job view for %s: %s", e->name, err->message);
		g_error_free(err);
		bool finished = e->job_finish_pending;
		e->job_finish_pending = false;
		job_drop(n, e);
		e->job = finished ? JOB_NONE : JOB_UNAVAILABLE;
		/* Nobody shows the progress: our own notification does. */
		if (!finished)
			notify_show_held_progress(n, e);
		return;
	}
	const char *path = NULL;
	g_variant_get(v, "(&o)", &path);
	e->job_path = strdup(path);
	g_variant_unref(v);
	e->job = JOB_ACTIVE;
	e->job_v3 = v3;
	/* The tracker shows the progress now: a progress notification shown
	 * meanwhile (server restarted mid-commit) goes. */
	if (e->note.kind == NOTE_PROGRESS) {
		if (e->note.throttle)
			loop_timer_arm(e->note.throttle, -1, 0);
		e->note.kind = NOTE_NONE;
		e->note.op = e->note.shown ? OP_CLOSE : OP_NONE;
		notify_kick(n);
	}
	/* Only the server's cancel button counts: a signal is a broadcast that
	 * any client can send on any path (another job server's view may even
	 * use the same path), so the sender must be the job server's name. */
	e->job_sub = g_dbus_connection_signal_subscribe(
	    n->conn, JOB_SERVER_NAME, v3 ? JOB_VIEW_V3 : JOB_VIEW_V2, "cancelRequested",
	    e->job_path, NULL, G_DBUS_SIGNAL_FLAGS_NONE, on_job_cancel, e, NULL);
	/* TRANSLATORS: job title in Plasma's job tracker; %s is the VM */
	char *title = notify_strdup_printf(_("Committing %s"), e->name);
	if (v3) {
		job_update(n, e, title ? title : e->name);
	} else {
		job_call(n, e, "setInfoMessage", g_variant_new("(s)", title ? title : e->name));
		job_call(n, e, "setDescriptionField",
			 g_variant_new("(uss)", 0u, _("Virtual machine"), e->name));
		job_call(n, e, "setPercent", g_variant_new("(u)", e->job_percent));
	}
	free(title);
	if (e->job_finish_pending) {
		e->job_finish_pending = false;
		notify_job_finish(n, e, e->job_finish_code, e->job_finish_msg);
		free(e->job_finish_msg);
		e->job_finish_msg = NULL;
	}
}

static void on_job_view_v2(GObject *src, GAsyncResult *res, gpointer data)
{
	on_job_view(src, res, data, true);
}

static void on_job_view_v1(GObject *src, GAsyncResult *res, gpointer data)
{
	on_job_view(src, res, data, false);
}

static void job_request(struct notifier *n, struct vm_entry *e)
{
	e->job = JOB_REQUESTING;
	if (!e->job_cancel)
		e->job_cancel = g_cancellable_new();
	if (n->job_v1_only) {
		g_dbus_connection_call(n->conn, JOB_SERVER_NAME, JOB_SERVER_PATH, JOB_SERVER_V1,
				       "requestView",
				       g_variant_new("(ssi)", APP_NAME, n->icon, JOB_KILLABLE),
				       G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
				       PROBE_TIMEOUT_MS, e->job_cancel, on_job_view_v1, e);
		return;
	}
	GVariantBuilder h;
	g_variant_builder_init(&h, G_VARIANT_TYPE("a{sv}"));
	g_variant_builder_add(&h, "{sv}", "immediate", g_variant_new_boolean(TRUE));
	g_variant_builder_add(&h, "{sv}", "transient", g_variant_new_boolean(TRUE));
	/* Read from the desktop entry when installed; these cover a build-tree
	 * binary, whose entry Plasma cannot find. */
	g_variant_builder_add(&h, "{sv}", "application-display-name",
			      g_variant_new_string(APP_NAME));
	g_variant_builder_add(&h, "{sv}", "application-icon-name", g_variant_new_string(n->icon));
	g_dbus_connection_call(
	    n->conn, JOB_SERVER_NAME, JOB_SERVER_PATH, JOB_SERVER_V2, "requestView",
	    g_variant_new("(sia{sv})", APP_NAME, JOB_KILLABLE, &h), G_VARIANT_TYPE("(o)"),
	    G_DBUS_CALL_FLAGS_NO_AUTO_START, PROBE_TIMEOUT_MS, e->job_cancel, on_job_view_v2, e);
}

void notify_job_progress(struct notifier *n, struct vm_entry *e, unsigned percent)
{
	/* The view already shows job_percent (sent here or in on_job_view);
	 * qemu-img repeats its last record many times. */
	if (e->job == JOB_ACTIVE && percent == e->job_percent)
		return;
	e->job_percent = percent;
	e->job_wanted = true;
	if (e->job == JOB_NONE)
		job_request(n, e);
	else if (e->job == JOB_ACTIVE && e->job_v3)
		job_update(n, e, NULL);
	else if (e->job == JOB_ACTIVE)
		job_call(n, e, "setPercent", g_variant_new("(u)", percent));
}

void notify_on_job_owner_changed(GDBusConnection *conn, const char *sender, const char *path,
				 const char *iface, const char *signal, GVariant *params,
				 gpointer data)
{
	struct notifier *n = data;
	const char *name, *old_owner, *new_owner;
	g_variant_get(params, "(&s&s&s)", &name, &old_owner, &new_owner);
	if (strcmp(name, JOB_SERVER_NAME) != 0)
		return;
	log_info("job view server %s", *new_owner ? "appeared" : "went away");
	n->job_v1_only = false; /* a new owner may speak V2 */
	/* The views lived in the old owner: a running commit asks again. */
	for (struct vm_entry *e = n->vms; e; e = e->next) {
		if (!e->job_wanted)
			continue;
		job_drop(n, e);
		if (*new_owner) {
			job_request(n, e);
		} else {
			e->job = JOB_UNAVAILABLE;
			notify_show_held_progress(n, e);
		}
	}
}
