/* Headless control: io.github.vmoverlay.Control1 at /io/github/vmoverlay
 * under the well-known name io.github.vmoverlay (which also makes vmoverlay
 * one instance per session), and the CLI side that calls it. Every request
 * goes through the flow, which alone decides; refusals come back as D-Bus
 * errors carrying the flow's translated reason. */
#include <dbus/dbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "bus.h"
#include "config.h"
#include "control.h"
#include "ui.h"
#include "flow.h"
#include "i18n.h"
#include "log.h"
#include "loop.h"
#include "model.h"

#define CONTROL_ERROR_REFUSED "io.github.vmoverlay.Error.Refused"
#define CONTROL_ERROR_UNKNOWN_VM "io.github.vmoverlay.Error.UnknownVM"
#define CONTROL_ERROR_INVALID_POLICY "io.github.vmoverlay.Error.InvalidPolicy"

struct control {
	struct bus *bus;
	const struct ui_deps *deps;
	bool exported;
	bool name_owned;
	struct loop_timer *quit_timer;
};

/* Stable, untranslated names for scripts (documented in the XML). */
static const char *run_name(enum vm_run_state s)
{
	switch (s) {
	case RUN_UNDEFINED: return "undefined";
	case RUN_RUNNING: return "running";
	case RUN_SHUTOFF: return "shutoff";
	case RUN_CRASHED: return "crashed";
	default: return "unknown";
	}
}

static const char *flow_name(enum flow_state s)
{
	switch (s) {
	case FLOW_RUNNING: return "running";
	case FLOW_CLEAN: return "clean";
	case FLOW_PENDING: return "pending";
	case FLOW_KEPT: return "kept";
	case FLOW_COMMITTING: return "committing";
	case FLOW_REBUILDING: return "rebuilding";
	case FLOW_FAILED: return "failed";
	case FLOW_INTERRUPTED: return "interrupted";
	case FLOW_SAVED: return "saved";
	case FLOW_MISCONFIGURED: return "misconfigured";
	default: return "unknown";
	}
}

static const char *const action_names[ACT_COUNT] = {
	[ACT_COMMIT] = "commit",   [ACT_DISCARD] = "discard",
	[ACT_KEEP] = "keep",       [ACT_RETRY] = "retry",
	[ACT_RESUME] = "resume",   [ACT_UNDO_DISCARD] = "undo-discard",
	[ACT_CANCEL] = "cancel",
};

/* ----------------------------------------------------------- server */

static bool append_strings(DBusMessageIter *st, const char *const *v, size_t n)
{
	DBusMessageIter arr;
	if (!dbus_message_iter_open_container(st, DBUS_TYPE_ARRAY, "s", &arr))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &v[i])) {
			dbus_message_iter_abandon_container(st, &arr);
			return false;
		}
	return dbus_message_iter_close_container(st, &arr);
}

static bool append_vm(DBusMessageIter *arr, const struct vm *vm)
{
	DBusMessageIter st;
	const char *run = run_name(vm->run), *flow = flow_name(vm->flow);
	const char *policy = policy_name(vm->policy);
	dbus_uint64_t bytes = vm_overlay_bytes(vm);
	double progress = vm->flow == FLOW_COMMITTING ? vm->progress : -1;
	const char *acts[ACT_COUNT];
	size_t n_acts = 0;
	for (int a = 0; a < ACT_COUNT; a++)
		if (vm->actions & ACT_BIT(a))
			acts[n_acts++] = action_names[a];
	char summary[512], total[256], disk_lines[VMO_MAX_DISKS][1024];
	size_t n_lines = 0;
	const char **lines = calloc(7 + VMO_MAX_DISKS + vm->n_problems, sizeof(*lines));
	if (!lines)
		return false;
	lines[n_lines++] = vm_summary_line(vm, summary, sizeof summary);
	char *chain = vm_chain_text(vm), *chain_line = NULL;
	/* TRANSLATORS: status line; %s is "base.qcow2 ← template.qcow2 ← win.qcow2" */
	if (chain && asprintf(&chain_line, _("backing chain: %s"), chain) >= 0)
		lines[n_lines++] = chain_line;
	free(chain);
	/* Several disks (issue 15): the total (the summary line of a running
	 * VM has it already) and each disk's target, size, overlay and base. */
	if (vm->n_disks > 1) {
		if (vm->flow != FLOW_RUNNING)
			lines[n_lines++] = vm_disks_total_line(vm, total, sizeof total);
		for (size_t i = 0; i < vm->n_disks && i < VMO_MAX_DISKS; i++)
			lines[n_lines++] =
			    vm_disk_line(vm, i, true, disk_lines[i], sizeof disk_lines[i]);
	}
	if ((vm->flow == FLOW_FAILED || vm->flow == FLOW_INTERRUPTED) && vm->error)
		lines[n_lines++] = vm->error;
	if (vm->check_note)
		lines[n_lines++] = vm->check_note;
	if (vm->undo_note)
		lines[n_lines++] = vm->undo_note;
	for (size_t i = 0; i < vm->n_problems; i++)
		lines[n_lines++] = vm->problems[i];
	if (vm->notice)
		lines[n_lines++] = vm->notice;
	bool ok = dbus_message_iter_open_container(arr, DBUS_TYPE_STRUCT, NULL, &st);
	if (ok) {
		ok = dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &vm->name) &&
		     dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &run) &&
		     dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &flow) &&
		     dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &policy) &&
		     dbus_message_iter_append_basic(&st, DBUS_TYPE_UINT64, &bytes) &&
		     dbus_message_iter_append_basic(&st, DBUS_TYPE_DOUBLE, &progress) &&
		     append_strings(&st, acts, n_acts) && append_strings(&st, lines, n_lines);
		if (ok)
			ok = dbus_message_iter_close_container(arr, &st);
		else
			dbus_message_iter_abandon_container(arr, &st);
	}
	free(lines);
	free(chain_line);
	return ok;
}

static DBusMessage *on_status(void *data, DBusMessage *msg)
{
	struct control *c = data;
	DBusMessage *reply = dbus_message_new_method_return(msg);
	DBusMessageIter it, arr;
	if (!reply)
		return NULL;
	dbus_message_iter_init_append(reply, &it);
	bool ok = dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "(sssstdasas)", &arr);
	for (size_t i = 0; ok && i < c->deps->model->n_vms; i++)
		ok = append_vm(&arr, c->deps->model->vms[i]);
	if (ok)
		ok = dbus_message_iter_close_container(&it, &arr);
	else
		dbus_message_iter_abandon_container_if_open(&it, &arr);
	if (!ok) {
		dbus_message_unref(reply);
		return NULL;
	}
	return reply;
}

static struct vm *lookup_vm(struct control *c, DBusMessage *msg, DBusMessage **error)
{
	const char *name = NULL;
	DBusMessageIter it;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_get_basic(&it, &name);
	struct vm *vm = model_find(c->deps->model, name);
	if (!vm)
		/* TRANSLATORS: %s is the name given on the command line */
		*error = bus_error(msg, CONTROL_ERROR_UNKNOWN_VM, _("No watched VM is called “%s”"),
		                   name);
	return vm;
}

static DBusMessage *request(void *data, DBusMessage *msg, enum vm_action action)
{
	struct control *c = data;
	DBusMessage *error = NULL;
	struct vm *vm = lookup_vm(c, msg, &error);
	if (!vm)
		return error;
	if (!c->deps->flow)
		return bus_error(msg, CONTROL_ERROR_REFUSED, "%s",
		                 _("The commit/discard flow is not running"));
	char *why = NULL;
	if (!flow_request(c->deps->flow, vm, action, &why)) {
		DBusMessage *reply = bus_error(msg, CONTROL_ERROR_REFUSED, "%s",
		                               why ? why : _("Refused"));
		log_info("control: %s %s refused: %s", action_names[action], vm->name,
		         why ? why : "");
		free(why);
		return reply;
	}
	log_info("control: %s %s requested", action_names[action], vm->name);
	return dbus_message_new_method_return(msg);
}

static DBusMessage *on_commit(void *d, DBusMessage *m) { return request(d, m, ACT_COMMIT); }
static DBusMessage *on_discard(void *d, DBusMessage *m) { return request(d, m, ACT_DISCARD); }
static DBusMessage *on_keep(void *d, DBusMessage *m) { return request(d, m, ACT_KEEP); }
static DBusMessage *on_resume(void *d, DBusMessage *m) { return request(d, m, ACT_RESUME); }
static DBusMessage *on_retry(void *d, DBusMessage *m) { return request(d, m, ACT_RETRY); }
static DBusMessage *on_undo(void *d, DBusMessage *m) { return request(d, m, ACT_UNDO_DISCARD); }
static DBusMessage *on_cancel(void *d, DBusMessage *m) { return request(d, m, ACT_CANCEL); }

static DBusMessage *on_set_policy(void *data, DBusMessage *msg)
{
	struct control *c = data;
	DBusMessage *error = NULL;
	struct vm *vm = lookup_vm(c, msg, &error);
	if (!vm)
		return error;
	const char *name, *pname;
	dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &pname,
	                      DBUS_TYPE_INVALID);
	enum vmo_policy p;
	if (!policy_from_name(pname, &p))
		/* TRANSLATORS: %s is what the user gave; the list is literal */
		return bus_error(msg, CONTROL_ERROR_INVALID_POLICY,
		                 _("Unknown policy “%s” (ask, commit, discard or keep)"), pname);
	if (!c->deps->flow)
		return bus_error(msg, CONTROL_ERROR_REFUSED, "%s",
		                 _("The commit/discard flow is not running"));
	char *why = NULL;
	if (!flow_set_policy(c->deps->flow, vm, p, &why)) {
		DBusMessage *reply = bus_error(msg, CONTROL_ERROR_REFUSED, "%s",
		                               why ? why : _("Refused"));
		free(why);
		return reply;
	}
	return dbus_message_new_method_return(msg);
}

static void quit_later(struct loop *loop, struct loop_timer *t, void *data)
{
	struct control *c = data;
	dbus_connection_flush(bus_connection(c->bus));
	if (c->deps->actions.quit)
		c->deps->actions.quit(c->deps->actions.data, 0);
}

static DBusMessage *on_quit(void *data, DBusMessage *msg)
{
	struct control *c = data;
	log_info("control: quit requested");
	loop_timer_arm(c->quit_timer, 0, 0);
	return dbus_message_new_method_return(msg);
}

static bool get_version(void *data, DBusMessageIter *it)
{
	const char *v = VMO_VERSION;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &v);
}

static const struct bus_method control_methods[] = {
	{"Status", on_status},   {"Commit", on_commit},       {"Discard", on_discard},
	{"Keep", on_keep},       {"Resume", on_resume},       {"Retry", on_retry},
	{"UndoDiscard", on_undo}, {"Cancel", on_cancel},      {"SetPolicy", on_set_policy},
	{"Quit", on_quit},       {NULL, NULL},
};

static const struct bus_property control_properties[] = {
	{"Version", get_version},
	{NULL, NULL},
};

static const struct bus_interface control_iface = {
	.name = CONTROL_INTERFACE,
	.methods = control_methods,
	.properties = control_properties,
};
static const struct bus_interface *const control_ifaces[] = {&control_iface, NULL};

struct control *control_create(struct bus *bus, const struct ui_deps *deps, char **err)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		goto nomem;
	c->bus = bus;
	c->deps = deps;
	c->quit_timer = loop_timer_add(bus_loop(bus), -1, 0, quit_later, c);
	if (!c->quit_timer)
		goto nomem;
	char *xerr = NULL;
	if (!bus_export(bus, CONTROL_OBJECT_PATH, control_ifaces, c, &xerr)) {
		if (err && asprintf(err, _("cannot export the control interface: %s"),
		                    xerr ? xerr : "") < 0)
			*err = NULL;
		free(xerr);
		goto error;
	}
	c->exported = true;
	DBusError derr;
	dbus_error_init(&derr);
	int r = dbus_bus_request_name(bus_connection(bus), CONTROL_BUS_NAME,
	                              DBUS_NAME_FLAG_DO_NOT_QUEUE, &derr);
	if (r != DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
		if (err) {
			if (dbus_error_is_set(&derr)) {
				if (asprintf(err, _("cannot own the bus name %s: %s"), CONTROL_BUS_NAME,
				             derr.message) < 0)
					*err = NULL;
			} else {
				*err = strdup(_("vmoverlay is already running in this session"));
			}
		}
		dbus_error_free(&derr);
		goto error;
	}
	c->name_owned = true;
	return c;
nomem:
	if (err)
		*err = strdup(_("out of memory"));
error:
	control_destroy(c);
	return NULL;
}

void control_destroy(struct control *c)
{
	if (!c)
		return;
	if (c->exported)
		bus_unexport(c->bus, CONTROL_OBJECT_PATH);
	if (c->quit_timer)
		loop_timer_remove(c->quit_timer);
	free(c);
}

/* ----------------------------------------------------------- client */

static int print_status(DBusMessage *reply)
{
	DBusMessageIter it, arr, st, sub;
	dbus_message_iter_init(reply, &it);
	if (strcmp(dbus_message_get_signature(reply), "a(sssstdasas)") != 0) {
		fprintf(stderr, _("vmoverlay: unexpected answer from the running instance\n"));
		return 1;
	}
	dbus_message_iter_recurse(&it, &arr);
	if (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_INVALID)
		printf("%s\n", _("No virtual machines are configured."));
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRUCT;
	     dbus_message_iter_next(&arr)) {
		const char *name, *run, *flow, *policy;
		dbus_message_iter_recurse(&arr, &st);
		dbus_message_iter_get_basic(&st, &name);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &run);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &flow);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &policy);
		dbus_message_iter_next(&st); /* bytes: already in the summary line */
		dbus_message_iter_next(&st); /* progress: idem */
		dbus_message_iter_next(&st); /* actions */
		dbus_message_iter_next(&st);
		dbus_message_iter_recurse(&st, &sub);
		/* The first line (the summary) gets the decision and the policy
		 * in one translatable sentence, not as pasted-on fragments (issue
		 * 9); the others (disks, error, notes) follow, indented, so the
		 * policy never ends up behind a disk or a note. */
		const char *first = "";
		if (dbus_message_iter_get_arg_type(&sub) == DBUS_TYPE_STRING) {
			dbus_message_iter_get_basic(&sub, &first);
			dbus_message_iter_next(&sub);
		}
		if (strcmp(flow, "pending") == 0)
			/* TRANSLATORS: a VM's status line ("win10 — shut off · ..."),
			 * the policy (ask/commit/discard/keep, literal) */
			printf(_("%s — waiting for your decision (commit, discard or keep) "
				 "[on shutdown: %s]\n"),
			       first, policy);
		else
			/* TRANSLATORS: a VM's status line, the policy
			 * (ask/commit/discard/keep, literal) */
			printf(_("%s [on shutdown: %s]\n"), first, policy);
		for (; dbus_message_iter_get_arg_type(&sub) == DBUS_TYPE_STRING;
		     dbus_message_iter_next(&sub)) {
			const char *line;
			dbus_message_iter_get_basic(&sub, &line);
			printf("    %s\n", line);
		}
	}
	return 0;
}

int control_client_run(const struct cli *cli)
{
	const char *method = NULL;
	switch (cli->mode) {
	case CLI_STATUS: method = "Status"; break;
	case CLI_COMMIT: method = "Commit"; break;
	case CLI_DISCARD: method = "Discard"; break;
	case CLI_KEEP: method = "Keep"; break;
	case CLI_QUIT: method = "Quit"; break;
	default:
		/* no-i18n: unreachable, cli parsing only yields control verbs here */
		fprintf(stderr, "vmoverlay: internal error: not a control verb\n");
		return 1;
	}
	DBusError derr;
	dbus_error_init(&derr);
	DBusConnection *conn = dbus_bus_get_private(DBUS_BUS_SESSION, &derr);
	if (!conn) {
		fprintf(stderr, _("vmoverlay: no session bus (%s), so no running instance\n"),
		        derr.message ? derr.message : "");
		dbus_error_free(&derr);
		return 2;
	}
	dbus_connection_set_exit_on_disconnect(conn, FALSE);
	int code = 1;
	DBusMessage *msg = dbus_message_new_method_call(CONTROL_BUS_NAME, CONTROL_OBJECT_PATH,
	                                                CONTROL_INTERFACE, method);
	if (!msg)
		goto out;
	dbus_message_set_auto_start(msg, FALSE);
	bool needs_vm = cli->mode != CLI_STATUS && cli->mode != CLI_QUIT;
	if (needs_vm) {
		const char *vm = cli->vm ? cli->vm : "";
		dbus_message_append_args(msg, DBUS_TYPE_STRING, &vm, DBUS_TYPE_INVALID);
	}
	DBusMessage *reply = dbus_connection_send_with_reply_and_block(conn, msg, 30000, &derr);
	dbus_message_unref(msg);
	if (!reply) {
		if (dbus_error_has_name(&derr, DBUS_ERROR_SERVICE_UNKNOWN) ||
		    dbus_error_has_name(&derr, DBUS_ERROR_NAME_HAS_NO_OWNER)) {
			fprintf(stderr, _("vmoverlay: no running instance in this session\n"));
			code = 2;
		} else if (dbus_error_has_name(&derr, CONTROL_ERROR_REFUSED) ||
		           dbus_error_has_name(&derr, CONTROL_ERROR_UNKNOWN_VM) ||
		           dbus_error_has_name(&derr, CONTROL_ERROR_INVALID_POLICY)) {
			fprintf(stderr, "vmoverlay: %s\n", derr.message);
			code = 1;
		} else {
			fprintf(stderr, _("vmoverlay: the running instance did not answer: %s\n"),
			        derr.message ? derr.message : "");
			code = 1;
		}
		dbus_error_free(&derr);
		goto out;
	}
	if (cli->mode == CLI_STATUS) {
		code = print_status(reply);
	} else {
		code = 0;
		if (cli->mode == CLI_QUIT)
			printf("%s\n", _("vmoverlay is quitting."));
		else
			/* TRANSLATORS: %s is the VM; the request was accepted */
			printf(_("%s: request accepted.\n"), cli->vm ? cli->vm : "");
	}
	dbus_message_unref(reply);
out:
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
	return code;
}
