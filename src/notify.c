/* Desktop notifications: the commit/discard question, commit progress,
 * results, the Activate summary and errors, through libnotify on GLib's
 * default context (iterated by our loop), plus Plasma's job tracker.
 *
 * Keeping a hung server off the loop's critical path: every libnotify call
 * that talks to the server (show, close, and the first proxy creation with
 * its GetServerInformation) is a SYNCHRONOUS GDBus call with GDBus's default
 * 25 s timeout, and libnotify offers no way to shorten it. So no hook calls
 * libnotify directly. A hook only records what the notification should look
 * like and queues an operation; then an ASYNCHRONOUS probe
 * (GetServerInformation + GetCapabilities, each with a 2 s timeout) goes to
 * the server, and only when both answered do we flush the queue through
 * libnotify, from the probe's reply callback. A server that owns the name but
 * never answers therefore costs us nothing but a failed probe: the queue
 * waits, the loop keeps iterating, the tray keeps answering. The remaining
 * window (a server that answers the probe and then stops answering within
 * the same millisecond) is as small as libnotify allows without a thread.
 * NotifyNotification objects are also only created in the flush, because
 * libnotify's dispose creates its proxy synchronously when none exists yet.
 *
 * Without a server (none on the bus, or the probe failed) we log once and
 * keep the operations queued; the question waits in the tray menu. When a
 * server appears (NameOwnerChanged) we probe again and show what is still
 * relevant. */
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

void notify_kick(struct notifier *n);

/* ---- slots ---- */

static void note_init(struct note *note, struct notifier *n, const char *vm_name)
{
	note->n = n;
	note->vm_name = vm_name ? strdup(vm_name) : NULL;
	note->value = -1;
	note->urgency = NOTIFY_URGENCY_NORMAL;
}

static void note_finish(struct note *note)
{
	if (note->throttle)
		loop_timer_remove(note->throttle);
	if (note->nn) {
		g_signal_handlers_disconnect_matched(note->nn, G_SIGNAL_MATCH_DATA, 0, 0, NULL,
						     NULL, note);
		g_object_unref(note->nn);
	}
	free(note->vm_name);
	free(note->summary);
	free(note->body);
	memset(note, 0, sizeof *note);
}

static void note_set(struct note *note, enum note_kind kind, const char *summary, const char *body)
{
	/* The question was answered (withdrawn) but not closed yet: close it
	 * before showing what comes next, so the server sees CloseNotification
	 * rather than the question silently turning into something else. */
	if (note->op == OP_CLOSE && note->shown)
		note->close_first = true;
	note->kind = kind;
	free(note->summary);
	free(note->body);
	note->summary = strdup(summary);
	note->body = strdup(body ? body : "");
	note->actions = false;
	note->resident = false;
	note->transient = false;
	note->persistent = kind == NOTE_PROMPT || kind == NOTE_PROGRESS;
	note->value = -1;
	note->urgency = NOTIFY_URGENCY_NORMAL;
	note->op = OP_SHOW;
}

static struct vm_entry *entry_get(struct notifier *n, const char *name)
{
	for (struct vm_entry *e = n->vms; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	struct vm_entry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->name = strdup(name);
	if (!e->name) {
		free(e);
		return NULL;
	}
	note_init(&e->note, n, name);
	e->next = n->vms;
	n->vms = e;
	return e;
}

char *notify_strdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* ---- libnotify side (only ever called from a successful probe) ---- */

static void on_note_closed(NotifyNotification *nn, gpointer data)
{
	struct note *note = data;
	note->shown = false;
	log_debug("notification for %s closed (reason %d)", note->vm_name ? note->vm_name : "-",
		  notify_notification_get_closed_reason(nn));
}

static void on_action(NotifyNotification *nn, char *action, gpointer data)
{
	struct note *note = data;
	struct notifier *n = note->n;
	enum vm_action act;
	/* Plasma emits ActivationToken right before ActionInvoked; libnotify
	 * hands it out only inside this callback. Kept for the next program we
	 * start (Wayland lets only a window with a token take focus). */
	const char *token = notify_notification_get_activation_token(nn);
	if (token && *token) {
		free(n->token);
		n->token = strdup(token);
		n->token_ms = loop_now_ms();
	}
	if (strcmp(action, "commit") == 0) {
		act = ACT_COMMIT;
	} else if (strcmp(action, "discard") == 0) {
		act = ACT_DISCARD;
	} else if (strcmp(action, "keep") == 0) {
		act = ACT_KEEP;
	} else {
		/* "default" (a click on the body): nothing destructive. The
		 * choice stays pending in the tray menu; just close. */
		if (note->kind == NOTE_PROMPT && note->shown) {
			note->op = OP_CLOSE;
			notify_kick(n);
		}
		return;
	}
	/* Look the VM up now: a config reload may have replaced it. */
	struct vm *vm = note->vm_name ? model_find(n->deps->model, note->vm_name) : NULL;
	if (!vm || !n->deps->flow) {
		log_warn("notification action %s for unknown VM %s", action,
			 note->vm_name ? note->vm_name : "-");
		return;
	}
	log_info("%s: \"%s\" chosen in the notification", vm->name, action);
	char *why = NULL;
	if (!flow_request(n->deps->flow, vm, act, &why)) {
		log_warn("%s: request %s refused: %s", vm->name, action, why ? why : "");
		/* TRANSLATORS: notification summary when a choice cannot be done; %s is the VM */
		char *sum = notify_strdup_printf(_("%s: cannot do that now"), vm->name);
		notifier_error(n, sum ? sum : vm->name, why ? why : "");
		free(sum);
	}
	free(why);
}

static char *render_body(struct notifier *n, const struct note *note)
{
	const char *hint = "";
	if (note->actions && !n->cap_actions)
		/* TRANSLATORS: appended when the notification server cannot show buttons */
		hint = _("Answer from the vmoverlay icon's menu in the system tray.");
	char *raw = notify_strdup_printf("%s%s%s", note->body, *hint && *note->body ? "\n" : "", hint);
	if (!raw || !n->cap_markup)
		return raw;
	/* Servers with body-markup parse the body: a VM called "a<b" or an
	 * error message with '&' must not break it. */
	char *esc = g_markup_escape_text(raw, -1);
	free(raw);
	char *out = esc ? strdup(esc) : NULL;
	g_free(esc);
	return out;
}

static bool is_timeout(const GError *err)
{
	return err && (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ||
		       g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
		       g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_TIMEOUT));
}

static void note_flush(struct notifier *n, struct note *note)
{
	GError *err = NULL;
	enum note_op op = note->op;
	note->op = OP_NONE;
	if (op == OP_CLOSE || note->close_first) {
		note->close_first = false;
		if (note->nn && note->shown) {
			if (!notify_notification_close(note->nn, &err)) {
				log_warn("closing a notification failed: %s", err->message);
				if (is_timeout(err))
					n->server_ok = false;
				g_clear_error(&err);
			}
			note->shown = false;
		}
		/* A closed notification's id is dead: what comes next in this
		 * slot gets a new object (and id), and the server's late
		 * NotificationClosed for the old id cannot touch it. */
		if (note->nn) {
			g_signal_handlers_disconnect_matched(note->nn, G_SIGNAL_MATCH_DATA, 0, 0,
							     NULL, NULL, note);
			g_object_unref(note->nn);
			note->nn = NULL;
		}
		if (op == OP_CLOSE)
			return;
	}
	if (op != OP_SHOW || !note->summary)
		return;
	char *body = render_body(n, note);
	if (!note->nn) {
		note->nn = notify_notification_new(note->summary, body, n->icon);
		g_signal_connect(note->nn, "closed", G_CALLBACK(on_note_closed), note);
	} else {
		notify_notification_update(note->nn, note->summary, body, n->icon);
	}
	free(body);
	NotifyNotification *nn = note->nn;
	notify_notification_set_app_name(nn, APP_NAME);
	notify_notification_clear_hints(nn);
	notify_notification_clear_actions(nn);
	notify_notification_set_category(nn, "device");
	notify_notification_set_urgency(nn, note->urgency);
	notify_notification_set_hint(nn, "desktop-entry", g_variant_new_string(APP_NAME));
	if (note->resident)
		notify_notification_set_hint(nn, "resident", g_variant_new_boolean(TRUE));
	if (note->transient)
		notify_notification_set_hint(nn, "transient", g_variant_new_boolean(TRUE));
	if (note->value >= 0 && n->cap_value)
		notify_notification_set_hint(nn, "value", g_variant_new_int32(note->value));
	if (note->actions && n->cap_actions) {
		/* TRANSLATORS: notification button: merge the session's changes into the base image
		 */
		notify_notification_add_action(nn, "commit", _("Commit"), on_action, note, NULL);
		/* TRANSLATORS: notification button: throw the session's changes away */
		notify_notification_add_action(nn, "discard", _("Discard"), on_action, note, NULL);
		/* TRANSLATORS: notification button: decide later from the tray menu */
		notify_notification_add_action(nn, "keep", _("Keep for now"), on_action, note,
					       NULL);
		/* TRANSLATORS: the notification's default action (clicking its body) */
		notify_notification_add_action(nn, "default", _("Show in the tray menu"), on_action,
					       note, NULL);
	}
	/* A question that guards someone's disk, a running operation and a
	 * failure stay until answered, replaced or closed (expire_timeout 0;
	 * the server's default, -1, let Plasma 6 drop the prompt after ~9 s).
	 * Everything else expires as the server likes. */
	notify_notification_set_timeout(nn, note->persistent ? NOTIFY_EXPIRES_NEVER
							     : NOTIFY_EXPIRES_DEFAULT);
	int64_t t0 = loop_now_ms();
	if (!notify_notification_show(nn, &err)) {
		log_warn("showing a notification failed: %s", err->message);
		if (is_timeout(err))
			n->server_ok = false;
		g_clear_error(&err);
		/* Keep it queued: a server that appears later shows it. */
		note->op = OP_SHOW;
		return;
	}
	note->shown = true;
	note->last_show_ms = loop_now_ms();
	int id = 0;
	g_object_get(nn, "id", &id, NULL);
	log_debug("notification %d shown for %s in %lld ms", id,
		  note->vm_name ? note->vm_name : "-", (long long)(note->last_show_ms - t0));
}

static void flush_all(struct notifier *n)
{
	if (!n->inited) {
		notify_init(APP_NAME);
		n->inited = true;
	}
	for (struct vm_entry *e = n->vms; e && n->server_ok; e = e->next)
		if (e->note.op != OP_NONE)
			note_flush(n, &e->note);
	if (n->server_ok && n->summary.op != OP_NONE)
		note_flush(n, &n->summary);
	if (n->server_ok && n->error.op != OP_NONE)
		note_flush(n, &n->error);
}

/* ---- the asynchronous probe ---- */

static bool any_pending(const struct notifier *n)
{
	for (const struct vm_entry *e = n->vms; e; e = e->next)
		if (e->note.op != OP_NONE)
			return true;
	return n->summary.op != OP_NONE || n->error.op != OP_NONE;
}

static void probe_done(struct notifier *n)
{
	n->probing = false;
	if (n->probe_ok) {
		if (!n->server_ok || n->logged_absent)
			log_info("notification server %s answers (actions: %s)",
				 n->server_name ? n->server_name : "?",
				 n->cap_actions ? "yes" : "no");
		n->server_ok = true;
		n->logged_absent = false;
		flush_all(n);
	} else {
		n->server_ok = false;
		n->last_fail_ms = loop_now_ms();
		if (!n->logged_absent)
			log_warn(
			    "no usable notification server (%s): choices are offered in the tray "
			    "menu only",
			    n->probe_err ? n->probe_err : "?");
		n->logged_absent = true;
	}
	free(n->probe_err);
	n->probe_err = NULL;
	if (n->reprobe) {
		n->reprobe = false;
		n->last_fail_ms = 0;
	}
	/* Operations queued by the flush itself (or during the probe). */
	if (any_pending(n) && (n->server_ok || n->last_fail_ms == 0))
		notify_kick(n);
}

static void probe_part_failed(struct notifier *n, const char *what, GError *err)
{
	n->probe_ok = false;
	if (!n->probe_err)
		n->probe_err = notify_strdup_printf("%s: %s", what, err ? err->message : "bad reply");
}

static void on_probe_info(GObject *src, GAsyncResult *res, gpointer data)
{
	GError *err = NULL;
	GVariant *v = g_dbus_connection_call_finish(G_DBUS_CONNECTION(src), res, &err);
	if (!v && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		g_error_free(err); /* the notifier is gone */
		return;
	}
	struct notifier *n = data;
	if (v) {
		const char *name = NULL, *vendor = NULL, *version = NULL, *spec = NULL;
		g_variant_get(v, "(&s&s&s&s)", &name, &vendor, &version, &spec);
		free(n->server_name);
		n->server_name = notify_strdup_printf("%s %s (%s, spec %s)", name, version, vendor, spec);
		g_variant_unref(v);
	} else {
		probe_part_failed(n, "GetServerInformation", err);
		g_error_free(err);
	}
	if (--n->probe_left == 0)
		probe_done(n);
}

static void on_probe_caps(GObject *src, GAsyncResult *res, gpointer data)
{
	GError *err = NULL;
	GVariant *v = g_dbus_connection_call_finish(G_DBUS_CONNECTION(src), res, &err);
	if (!v && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		g_error_free(err);
		return;
	}
	struct notifier *n = data;
	if (v) {
		GVariantIter *it = NULL;
		const char *cap;
		n->cap_actions = n->cap_markup = n->cap_value = false;
		g_variant_get(v, "(as)", &it);
		while (g_variant_iter_loop(it, "&s", &cap)) {
			if (strcmp(cap, "actions") == 0)
				n->cap_actions = true;
			else if (strcmp(cap, "body-markup") == 0)
				n->cap_markup = true;
			/* No capability announces the "value" hint; Plasma, which
			 * draws it as a progress bar, announces x-kde-* ones. */
			else if (strncmp(cap, "x-kde-", 6) == 0 ||
				 strcmp(cap, "x-vmoverlay-value") == 0)
				n->cap_value = true;
		}
		g_variant_iter_free(it);
		g_variant_unref(v);
	} else {
		probe_part_failed(n, "GetCapabilities", err);
		g_error_free(err);
	}
	if (--n->probe_left == 0)
		probe_done(n);
}

void notify_kick(struct notifier *n)
{
	if (!n->conn || n->probing || !any_pending(n))
		return;
	if (!n->server_ok && n->last_fail_ms && loop_now_ms() - n->last_fail_ms < PROBE_RETRY_MS)
		return; /* wait for an owner change or the retry interval */
	n->probing = true;
	n->probe_ok = true;
	n->probe_left = 2;
	g_dbus_connection_call(n->conn, NOTIFY_NAME, NOTIFY_PATH, NOTIFY_IFACE,
			       "GetServerInformation", NULL, G_VARIANT_TYPE("(ssss)"),
			       G_DBUS_CALL_FLAGS_NONE, PROBE_TIMEOUT_MS, n->cancel, on_probe_info,
			       n);
	g_dbus_connection_call(n->conn, NOTIFY_NAME, NOTIFY_PATH, NOTIFY_IFACE, "GetCapabilities",
			       NULL, G_VARIANT_TYPE("(as)"), G_DBUS_CALL_FLAGS_NONE,
			       PROBE_TIMEOUT_MS, n->cancel, on_probe_caps, n);
}

static void reshow_open_questions(struct notifier *n)
{
	for (struct vm_entry *e = n->vms; e; e = e->next) {
		e->note.shown = false;
		if (e->note.kind == NOTE_PROMPT)
			e->note.op = OP_SHOW;
		else if (e->note.op == OP_CLOSE)
			e->note.op = OP_NONE;
	}
	n->summary.shown = n->error.shown = false;
}

static void on_owner_changed(GDBusConnection *conn, const char *sender, const char *path,
			     const char *iface, const char *signal, GVariant *params, gpointer data)
{
	struct notifier *n = data;
	const char *name, *old_owner, *new_owner;
	g_variant_get(params, "(&s&s&s)", &name, &old_owner, &new_owner);
	if (strcmp(name, NOTIFY_NAME) != 0)
		return;
	log_info("notification server %s", *new_owner ? "appeared" : "went away");
	/* A new (or no) server knows nothing of our notifications: the open
	 * questions are asked again there. */
	n->server_ok = false;
	reshow_open_questions(n);
	if (!*new_owner)
		return;
	n->last_fail_ms = 0;
	if (n->probing)
		n->reprobe = true;
	else
		notify_kick(n);
}

/* ---- the hooks ---- */

void notifier_prompt(void *data, struct vm *vm)
{
	struct notifier *n = data;
	if (!n)
		return;
	struct vm_entry *e = entry_get(n, vm->name);
	if (!e)
		return;
	/* TRANSLATORS: notification summary; %s is the VM name */
	char *summary = notify_strdup_printf(_("%s shut down"), vm->name);
	char *body;
	if (vm->last_stop == STOP_UNCLEAN)
		body = notify_strdup_printf("%s\n%s", _("Keep the changes made in this session?"),
				     _("The guest did not shut down cleanly."));
	else
		body = strdup(_("Keep the changes made in this session?"));
	if (summary && body) {
		/* Same slot as before: a second prompt replaces the first in place. */
		if (e->note.throttle)
			loop_timer_arm(e->note.throttle, -1, 0);
		note_set(&e->note, NOTE_PROMPT, summary, body);
		e->note.actions = true;
		e->note.resident = true;
		e->note.urgency =
		    vm->last_stop == STOP_UNCLEAN ? NOTIFY_URGENCY_CRITICAL : NOTIFY_URGENCY_NORMAL;
	}
	free(summary);
	free(body);
	notify_kick(n);
}

void notifier_withdraw(void *data, struct vm *vm)
{
	struct notifier *n = data;
	if (!n)
		return;
	struct vm_entry *e = entry_get(n, vm->name);
	if (!e || e->note.kind != NOTE_PROMPT)
		return;
	e->note.kind = NOTE_NONE;
	e->note.op = e->note.shown ? OP_CLOSE : OP_NONE;
	notify_kick(n);
}

static void on_throttle(struct loop *loop, struct loop_timer *t, void *data)
{
	struct note *note = data;
	if (note->kind == NOTE_PROGRESS) {
		note->op = OP_SHOW;
		notify_kick(note->n);
	}
}

void notify_show_held_progress(struct notifier *n, struct vm_entry *e)
{
	struct vm *vm = model_find(n->deps->model, e->name);
	if (vm && (vm->flow == FLOW_COMMITTING || vm->flow == FLOW_REBUILDING))
		notifier_progress(n, vm);
}

void notifier_progress(void *data, struct vm *vm)
{
	struct notifier *n = data;
	if (!n)
		return;
	struct vm_entry *e = entry_get(n, vm->name);
	if (!e)
		return;
	int pct = vm->progress < 0 ? 0 : vm->progress > 100 ? 100 : (int)(vm->progress + 0.5);
	if (vm->flow == FLOW_COMMITTING && n->conn)
		notify_job_progress(n, e, (unsigned)pct);
	/* One progress display per commit: while the job tracker shows it (or
	 * is being asked to), no notification of ours. If the tracker says no,
	 * on_job_view calls us again. */
	if (e->job == JOB_ACTIVE || e->job == JOB_REQUESTING) {
		notify_kick(n);
		return;
	}
	char *summary, *body;
	if (vm->flow == FLOW_REBUILDING) {
		/* TRANSLATORS: progress notification summary; %s is the VM */
		summary = notify_strdup_printf(P_("%s: preparing a fresh overlay",
						  "%s: preparing fresh overlays",
						  vm->n_disks > 1 ? vm->n_disks : 1),
					       vm->name);
		body = strdup("");
	} else {
		/* TRANSLATORS: progress notification summary; %s is the VM */
		summary = notify_strdup_printf(_("%s: committing changes"), vm->name);
		/* The percentage is in the text: Plasma 6 does not draw the
		 * "value" hint. */
		/* TRANSLATORS: progress notification body; %d is a percentage */
		body = notify_strdup_printf(_("%d %% done"), pct);
	}
	if (summary && body) {
		/* At most one update every PROGRESS_INTERVAL_MS; the last value
		 * always gets out through the throttle timer. An open question in
		 * the slot is replaced at once. */
		int64_t wait = e->note.last_show_ms + PROGRESS_INTERVAL_MS - loop_now_ms();
		bool due = e->note.kind != NOTE_PROGRESS || e->note.op == OP_SHOW || wait <= 0;
		note_set(&e->note, NOTE_PROGRESS, summary, body);
		e->note.value = pct;
		if (!due) {
			e->note.op = OP_NONE;
			if (!e->note.throttle)
				e->note.throttle =
				    loop_timer_add(n->deps->loop, -1, 0, on_throttle, &e->note);
			if (e->note.throttle)
				loop_timer_arm(e->note.throttle, wait, 0);
		}
	}
	free(summary);
	free(body);
	notify_kick(n);
}

void notifier_result(void *data, struct vm *vm, enum flow_result res, unsigned long long bytes,
		     const char *msg)
{
	struct notifier *n = data;
	if (!n)
		return;
	struct vm_entry *e = entry_get(n, vm->name);
	if (!e)
		return;
	char size[64], bases[2048];
	char *summary = NULL, *body = NULL;
	NotifyUrgency urgency = NOTIFY_URGENCY_NORMAL;
	/* One disk: its base's file name; several: which base each went into. */
	unsigned long nd = vm->n_disks > 1 ? (unsigned long)vm->n_disks : 1;
	const char *base = vm->disks[0].base ? strrchr(vm->disks[0].base, '/') : NULL;
	base = base ? base + 1 : vm->disks[0].base ? vm->disks[0].base : "?";
	const char *nothing_lost =
	    P_("Nothing was lost: the overlay still holds your changes.",
	       "Nothing was lost: the overlays still hold your changes.", nd);
	switch (res) {
	case RESULT_COMMITTED:
		i18n_format_size(size, sizeof size, bytes);
		/* TRANSLATORS: result notification summary; %s is the VM */
		summary = notify_strdup_printf(_("%s: changes committed"), vm->name);
		if (nd > 1) {
			char *head = notify_strdup_printf(
			    /* TRANSLATORS: VM name, total size ("1.5 GiB"), number
			     * of disks (always more than one); a list "vda →
			     * base.qcow2" follows */
			    P_("%s: %s committed into the bases of %d disk; fresh overlay ready",
			       "%s: %s committed into the bases of %d disks; fresh overlays ready",
			       nd),
			    vm->name, size, (int)nd);
			if (head)
				body = notify_strdup_printf(
				    "%s\n%s", head, vm_disk_bases(vm, "\n", bases, sizeof bases));
			free(head);
		} else
			/* TRANSLATORS: VM name, size ("1.2 GiB"), base image file name */
			body =
			    notify_strdup_printf(_("%s: %s committed into %s; fresh overlay ready"),
						 vm->name, size, base);
		break;
	case RESULT_DISCARDED:
		summary = notify_strdup_printf(_("%s: changes discarded"), vm->name);
		if (vm->has_discarded)
			body = notify_strdup_printf(
			    _("%s: changes discarded (undo available until next start)"), vm->name);
		else
			body = notify_strdup_printf(
			    P_("%s: changes discarded; fresh overlay ready",
			       "%s: changes discarded; fresh overlays ready", nd),
			    vm->name);
		break;
	case RESULT_UNDONE:
		summary = notify_strdup_printf(_("%s: discard undone"), vm->name);
		body = notify_strdup_printf(P_("%s: the discarded changes are back in the overlay",
					       "%s: the discarded changes are back in the overlays",
					       nd),
					    vm->name);
		break;
	case RESULT_CANCELLED:
		summary = notify_strdup_printf(_("%s: commit cancelled"), vm->name);
		body = notify_strdup_printf("%s", nothing_lost);
		break;
	case RESULT_FAILED:
	default:
		urgency = NOTIFY_URGENCY_CRITICAL;
		summary = notify_strdup_printf(_("%s: operation failed"), vm->name);
		body = notify_strdup_printf("%s\n%s", msg && *msg ? msg : _("Unknown error."),
					    nothing_lost);
		break;
	}
	if (summary && body) {
		if (e->note.throttle)
			loop_timer_arm(e->note.throttle, -1, 0);
		/* Same slot: the result replaces the progress notification. */
		note_set(&e->note, NOTE_RESULT, summary, body);
		e->note.urgency = urgency;
		/* A failure stays until the user closes it. */
		e->note.persistent = urgency == NOTIFY_URGENCY_CRITICAL;
	}
	if (n->conn && (e->job != JOB_NONE || e->job_wanted))
		notify_job_finish(n, e,
			   res == RESULT_COMMITTED   ? 0
			   : res == RESULT_CANCELLED ? JOB_ERR_CANCELLED
						     : JOB_ERR_FAILED,
			   res == RESULT_COMMITTED ? ""
			   : body                  ? body
						   : "");
	free(summary);
	free(body);
	notify_kick(n);
}

void notifier_summary(struct notifier *n)
{
	if (!n)
		return;
	const struct model *m = n->deps->model;
	size_t cap = 256 + m->n_vms * 512, len = 0;
	char *body = calloc(1, cap);
	if (!body)
		return;
	for (size_t i = 0; i < m->n_vms; i++) {
		char line[480];
		vm_summary_line(m->vms[i], line, sizeof line);
		len += (size_t)snprintf(body + len, cap - len, "%s%s", i ? "\n" : "", line);
	}
	if (m->n_vms == 0)
		snprintf(body, cap, "%s", _("No virtual machines are watched."));
	note_set(&n->summary, NOTE_INFO, "vmoverlay", body);
	n->summary.transient = true;
	n->summary.urgency = NOTIFY_URGENCY_LOW;
	free(body);
	notify_kick(n);
}

void notifier_error(struct notifier *n, const char *summary, const char *body)
{
	if (!n)
		return;
	note_set(&n->error, NOTE_INFO, summary && *summary ? summary : "vmoverlay", body);
	n->error.urgency = NOTIFY_URGENCY_CRITICAL;
	notify_kick(n);
}

/* ---- lifetime ---- */

struct notifier *notifier_create(const struct ui_deps *deps)
{
	struct notifier *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	n->deps = deps;
	n->icon = icons_notification_icon();
	if (!n->icon) {
		free(n);
		return NULL;
	}
	note_init(&n->summary, n, NULL);
	note_init(&n->error, n, NULL);
	n->cancel = g_cancellable_new();
	GError *err = NULL;
	/* Connecting to the bus daemon is local and answered by dbus-daemon
	 * itself, so a sync connect is fine; it is the same shared connection
	 * libnotify uses. */
	n->conn = g_bus_get_sync(G_BUS_TYPE_SESSION, NULL, &err);
	if (!n->conn) {
		log_warn("no session bus for notifications (%s): tray menu only", err->message);
		g_error_free(err);
		return n;
	}
	/* We quit on SIGTERM/menu; GDBus must not _exit() us when the bus goes. */
	g_dbus_connection_set_exit_on_close(n->conn, FALSE);
	n->owner_sub = g_dbus_connection_signal_subscribe(
	    n->conn, "org.freedesktop.DBus", "org.freedesktop.DBus", "NameOwnerChanged",
	    "/org/freedesktop/DBus", NOTIFY_NAME, G_DBUS_SIGNAL_FLAGS_NONE, on_owner_changed, n,
	    NULL);
	n->job_owner_sub = g_dbus_connection_signal_subscribe(
	    n->conn, "org.freedesktop.DBus", "org.freedesktop.DBus", "NameOwnerChanged",
	    "/org/freedesktop/DBus", JOB_SERVER_NAME, G_DBUS_SIGNAL_FLAGS_NONE,
	    notify_on_job_owner_changed, n, NULL);
	return n;
}

void notifier_destroy(struct notifier *n)
{
	if (!n)
		return;
	/* Close open questions whose answers would go nowhere, but only when
	 * the server answered its last probe: never block exit on a hung one. */
	if (n->server_ok && n->inited) {
		for (struct vm_entry *e = n->vms; e; e = e->next) {
			if (e->note.kind == NOTE_PROMPT && e->note.shown) {
				e->note.op = OP_CLOSE;
				note_flush(n, &e->note);
			}
		}
	}
	g_cancellable_cancel(n->cancel);
	if (n->conn && n->owner_sub)
		g_dbus_connection_signal_unsubscribe(n->conn, n->owner_sub);
	if (n->conn && n->job_owner_sub)
		g_dbus_connection_signal_unsubscribe(n->conn, n->job_owner_sub);
	while (n->vms) {
		struct vm_entry *e = n->vms;
		n->vms = e->next;
		if (e->job_sub)
			g_dbus_connection_signal_unsubscribe(n->conn, e->job_sub);
		if (e->job_cancel) {
			g_cancellable_cancel(e->job_cancel);
			g_object_unref(e->job_cancel);
		}
		note_finish(&e->note);
		free(e->job_path);
		free(e->job_finish_msg);
		free(e->name);
		free(e);
	}
	note_finish(&n->summary);
	note_finish(&n->error);
	if (n->inited)
		notify_uninit();
	if (n->conn) {
		/* Let GDBus deliver the cancellations before the objects go. */
		while (g_main_context_iteration(NULL, FALSE))
			;
		g_object_unref(n->conn);
	}
	g_object_unref(n->cancel);
	free(n->server_name);
	free(n->probe_err);
	free(n->icon);
	free(n->token);
	free(n);
}

char *notifier_take_activation_token(struct notifier *n, int64_t *when_ms)
{
	if (!n)
		return NULL;
	char *t = n->token;
	n->token = NULL;
	if (when_ms)
		*when_ms = n->token_ms;
	return t;
}

/* For tests and the control interface: is a server in use right now? */
bool notifier_server_ok(const struct notifier *n)
{
	return n && n->server_ok;
}
