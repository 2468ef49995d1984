/* The session-bus object layer. The XML files of dbus-xml/ are the single
 * source of what we serve: each exported object names its interfaces, the
 * tables of sni.c/menu.c/control.c only map member names to C functions,
 * and every call's signature is checked against the XML before a handler
 * sees it, so handlers can read their arguments without re-checking. The
 * definitions themselves are read in bus-xml.c; this file dispatches,
 * serves properties and introspection, emits signals and tracks calls and
 * name owners. */
#include <dbus/dbus.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-private.h"
#include "dbus-xml-embed.h"
#include "i18n.h"
#include "log.h"
#include "util.h"

#define DBUS_IFACE_PROPERTIES "org.freedesktop.DBus.Properties"
#define DBUS_IFACE_INTROSPECTABLE "org.freedesktop.DBus.Introspectable"
#define DBUS_IFACE_PEER "org.freedesktop.DBus.Peer"

/* ---------------------------------------------------------- replies */

DBusMessage *bus_error(DBusMessage *msg, const char *name, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	DBusMessage *reply = dbus_message_new_error(msg, name, text ? text : name);
	free(text);
	return reply;
}

static void send_reply(struct bus *bus, DBusMessage *msg, DBusMessage *reply)
{
	if (!reply)
		reply = dbus_message_new_error(msg, DBUS_ERROR_NO_MEMORY, "Out of memory");
	if (!reply)
		return;
	if (!dbus_message_get_no_reply(msg))
		dbus_connection_send(bus->conn, reply, NULL);
	dbus_message_unref(reply);
}

/* ------------------------------------------------------ introspection */

/* Immediate children of path among the exported objects ("busctl tree"). */
static void put_children(FILE *f, const struct bus *bus, const char *path)
{
	size_t plen = strcmp(path, "/") == 0 ? 0 : strlen(path);
	char **seen = calloc(bus->n_exports + 1, sizeof(char *));
	size_t n_seen = 0;
	for (size_t i = 0; i < bus->n_exports; i++) {
		const char *p = bus->exports[i]->path;
		if (strncmp(p, path, plen) != 0 || p[plen] != '/' || p[plen + 1] == '\0')
			continue;
		const char *start = p + plen + 1;
		size_t len = strcspn(start, "/");
		bool dup = false;
		for (size_t j = 0; j < n_seen; j++)
			if (strlen(seen[j]) == len && strncmp(seen[j], start, len) == 0)
				dup = true;
		if (dup)
			continue;
		fprintf(f, "  <node name=\"%.*s\"/>\n", (int)len, start);
		if (seen)
			seen[n_seen++] = strndup(start, len);
	}
	for (size_t j = 0; j < n_seen; j++)
		free(seen[j]);
	free(seen);
}

static const char introspect_std[] =
	"  <interface name=\"" DBUS_IFACE_INTROSPECTABLE "\">\n"
	"    <method name=\"Introspect\">\n"
	"      <arg name=\"xml_data\" type=\"s\" direction=\"out\"/>\n"
	"    </method>\n"
	"  </interface>\n"
	"  <interface name=\"" DBUS_IFACE_PEER "\">\n"
	"    <method name=\"Ping\"/>\n"
	"    <method name=\"GetMachineId\">\n"
	"      <arg name=\"machine_uuid\" type=\"s\" direction=\"out\"/>\n"
	"    </method>\n"
	"  </interface>\n";

static const char introspect_props[] =
	"  <interface name=\"" DBUS_IFACE_PROPERTIES "\">\n"
	"    <method name=\"Get\">\n"
	"      <arg name=\"interface_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"property_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"value\" type=\"v\" direction=\"out\"/>\n"
	"    </method>\n"
	"    <method name=\"GetAll\">\n"
	"      <arg name=\"interface_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"props\" type=\"a{sv}\" direction=\"out\"/>\n"
	"    </method>\n"
	"    <method name=\"Set\">\n"
	"      <arg name=\"interface_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"property_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"value\" type=\"v\" direction=\"in\"/>\n"
	"    </method>\n"
	"    <signal name=\"PropertiesChanged\">\n"
	"      <arg name=\"interface_name\" type=\"s\"/>\n"
	"      <arg name=\"changed_properties\" type=\"a{sv}\"/>\n"
	"      <arg name=\"invalidated_properties\" type=\"as\"/>\n"
	"    </signal>\n"
	"  </interface>\n";

static DBusMessage *introspect_reply(struct bus *bus, DBusMessage *msg, const struct bus_export *ex)
{
	char *xml = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&xml, &size);
	if (!f)
		return NULL;
	fputs(DBUS_INTROSPECT_1_0_XML_DOCTYPE_DECL_NODE "<node>\n", f);
	fputs(introspect_std, f);
	if (ex) {
		fputs(introspect_props, f);
		for (size_t i = 0; i < ex->n_ifaces; i++)
			fputs(ex->defs[i]->introspect, f);
	}
	put_children(f, bus, dbus_message_get_path(msg));
	fputs("</node>\n", f);
	if (fclose(f) != 0) {
		free(xml);
		return NULL;
	}
	DBusMessage *reply = dbus_message_new_method_return(msg);
	if (reply && !dbus_message_append_args(reply, DBUS_TYPE_STRING, &xml, DBUS_TYPE_INVALID)) {
		dbus_message_unref(reply);
		reply = NULL;
	}
	free(xml);
	return reply;
}

/* ---------------------------------------------------------- properties */

static size_t export_iface_index(const struct bus_export *ex, const char *iface)
{
	for (size_t i = 0; i < ex->n_ifaces; i++)
		if (strcmp(ex->ifaces[i]->name, iface) == 0)
			return i;
	return (size_t)-1;
}

static bus_getter_fn find_getter(const struct bus_interface *iface, const char *name)
{
	for (const struct bus_property *p = iface->properties; p && p->name; p++)
		if (strcmp(p->name, name) == 0)
			return p->get;
	return NULL;
}

static bool append_prop_variant(const struct bus_export *ex, size_t idx,
                                const struct bus_prop_def *pd, DBusMessageIter *iter)
{
	bus_getter_fn get = find_getter(ex->ifaces[idx], pd->name);
	DBusMessageIter var;
	if (!get || !dbus_message_iter_open_container(iter, DBUS_TYPE_VARIANT, pd->type, &var))
		return false;
	if (!get(ex->data, &var)) {
		dbus_message_iter_abandon_container(iter, &var);
		return false;
	}
	return dbus_message_iter_close_container(iter, &var);
}

static DBusMessage *props_get(struct bus_export *ex, DBusMessage *msg)
{
	const char *iface, *prop;
	if (!dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &iface, DBUS_TYPE_STRING, &prop,
	                           DBUS_TYPE_INVALID))
		return bus_error(msg, DBUS_ERROR_INVALID_ARGS, "Expected (ss)");
	size_t idx = export_iface_index(ex, iface);
	if (idx == (size_t)-1)
		return bus_error(msg, DBUS_ERROR_UNKNOWN_INTERFACE, "No interface %s at %s", iface,
		                 ex->path);
	const struct bus_prop_def *pd = bus_find_prop_def(ex->defs[idx], prop);
	if (!pd)
		return bus_error(msg, DBUS_ERROR_UNKNOWN_PROPERTY, "No property %s in %s", prop,
		                 iface);
	DBusMessage *reply = dbus_message_new_method_return(msg);
	if (!reply)
		return NULL;
	DBusMessageIter it;
	dbus_message_iter_init_append(reply, &it);
	if (!append_prop_variant(ex, idx, pd, &it)) {
		dbus_message_unref(reply);
		return bus_error(msg, DBUS_ERROR_FAILED, "Cannot read %s", prop);
	}
	return reply;
}

static DBusMessage *props_get_all(struct bus_export *ex, DBusMessage *msg)
{
	const char *iface;
	if (!dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &iface, DBUS_TYPE_INVALID))
		return bus_error(msg, DBUS_ERROR_INVALID_ARGS, "Expected (s)");
	size_t idx = export_iface_index(ex, iface);
	if (idx == (size_t)-1)
		return bus_error(msg, DBUS_ERROR_UNKNOWN_INTERFACE, "No interface %s at %s", iface,
		                 ex->path);
	DBusMessage *reply = dbus_message_new_method_return(msg);
	if (!reply)
		return NULL;
	DBusMessageIter it, dict, entry;
	dbus_message_iter_init_append(reply, &it);
	if (!dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict))
		goto error;
	const struct bus_iface_def *d = ex->defs[idx];
	for (size_t i = 0; i < d->n_props; i++) {
		const char *name = d->props[i].name;
		if (!dbus_message_iter_open_container(&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry)) {
			dbus_message_iter_abandon_container(&it, &dict);
			goto error;
		}
		if (!dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &name) ||
		    !append_prop_variant(ex, idx, &d->props[i], &entry)) {
			dbus_message_iter_abandon_container(&dict, &entry);
			dbus_message_iter_abandon_container(&it, &dict);
			goto error;
		}
		if (!dbus_message_iter_close_container(&dict, &entry)) {
			dbus_message_iter_abandon_container(&it, &dict);
			goto error;
		}
	}
	if (!dbus_message_iter_close_container(&it, &dict))
		goto error;
	return reply;
error:
	dbus_message_unref(reply);
	return bus_error(msg, DBUS_ERROR_FAILED, "Cannot read the properties of %s", iface);
}

static DBusMessage *props_set(struct bus_export *ex, DBusMessage *msg)
{
	const char *iface, *prop;
	DBusMessageIter it;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_get_basic(&it, &iface);
	dbus_message_iter_next(&it);
	dbus_message_iter_get_basic(&it, &prop);
	size_t idx = export_iface_index(ex, iface);
	if (idx == (size_t)-1)
		return bus_error(msg, DBUS_ERROR_UNKNOWN_INTERFACE, "No interface %s at %s", iface,
		                 ex->path);
	if (!bus_find_prop_def(ex->defs[idx], prop))
		return bus_error(msg, DBUS_ERROR_UNKNOWN_PROPERTY, "No property %s in %s", prop,
		                 iface);
	return bus_error(msg, DBUS_ERROR_PROPERTY_READ_ONLY, "Property %s is read-only", prop);
}

/* ------------------------------------------------------------ dispatch */

static DBusMessage *check_sig(DBusMessage *msg, const char *want)
{
	const char *got = dbus_message_get_signature(msg);
	if (strcmp(got, want) == 0)
		return NULL;
	return bus_error(msg, DBUS_ERROR_INVALID_ARGS,
	                 "Invalid arguments for %s: expected signature \"%s\", got \"%s\"",
	                 dbus_message_get_member(msg), want, got);
}

static bus_method_fn find_handler(const struct bus_interface *iface, const char *name)
{
	for (const struct bus_method *m = iface->methods; m && m->name; m++)
		if (strcmp(m->name, name) == 0)
			return m->handler;
	return NULL;
}

static DBusHandlerResult export_message(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct bus_export *ex = data;
	struct bus *bus = ex->bus;
	if (dbus_message_get_type(msg) != DBUS_MESSAGE_TYPE_METHOD_CALL)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	const char *iface = dbus_message_get_interface(msg);
	const char *member = dbus_message_get_member(msg);
	DBusMessage *reply = NULL;

	if ((!iface || strcmp(iface, DBUS_IFACE_INTROSPECTABLE) == 0) &&
	    strcmp(member, "Introspect") == 0) {
		reply = check_sig(msg, "");
		if (!reply)
			reply = introspect_reply(bus, msg, ex);
		send_reply(bus, msg, reply);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (iface && strcmp(iface, DBUS_IFACE_PROPERTIES) == 0) {
		if (strcmp(member, "Get") == 0) {
			if (!(reply = check_sig(msg, "ss")))
				reply = props_get(ex, msg);
		} else if (strcmp(member, "GetAll") == 0) {
			if (!(reply = check_sig(msg, "s")))
				reply = props_get_all(ex, msg);
		} else if (strcmp(member, "Set") == 0) {
			if (!(reply = check_sig(msg, "ssv")))
				reply = props_set(ex, msg);
		} else {
			reply = bus_error(msg, DBUS_ERROR_UNKNOWN_METHOD, "No method %s in %s", member,
			                  iface);
		}
		send_reply(bus, msg, reply);
		return DBUS_HANDLER_RESULT_HANDLED;
	}

	/* Our interfaces: without an interface field the first one that has
	 * the member wins, as the specification allows. */
	for (size_t i = 0; i < ex->n_ifaces; i++) {
		const struct bus_iface_def *d = ex->defs[i];
		if (iface && strcmp(iface, d->name) != 0)
			continue;
		const struct bus_member *m = bus_find_member(d->methods, d->n_methods, member);
		if (!m) {
			if (!iface)
				continue;
			reply = bus_error(msg, DBUS_ERROR_UNKNOWN_METHOD, "No method %s in %s", member,
			                  iface);
		} else if (!(reply = check_sig(msg, m->in_sig))) {
			bus_method_fn fn = find_handler(ex->ifaces[i], member);
			reply = fn(ex->data, msg);
		}
		send_reply(bus, msg, reply);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (iface) {
		reply = bus_error(msg, DBUS_ERROR_UNKNOWN_INTERFACE, "No interface %s at %s", iface,
		                  ex->path);
		send_reply(bus, msg, reply);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static const DBusObjectPathVTable export_vtable = {
	.message_function = export_message,
};

/* Intermediate nodes ("/", "/io/github") answer Introspect with their
 * children so that busctl tree and d-feet can walk down to our objects. */
static DBusHandlerResult fallback_message(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct bus *bus = data;
	if (!dbus_message_is_method_call(msg, DBUS_IFACE_INTROSPECTABLE, "Introspect"))
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	const char *path = dbus_message_get_path(msg);
	size_t plen = strcmp(path, "/") == 0 ? 0 : strlen(path);
	bool has_child = false;
	for (size_t i = 0; i < bus->n_exports && !has_child; i++) {
		const char *p = bus->exports[i]->path;
		has_child = strncmp(p, path, plen) == 0 && p[plen] == '/' && p[plen + 1] != '\0';
	}
	if (!has_child)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	DBusMessage *reply = check_sig(msg, "");
	if (!reply)
		reply = introspect_reply(bus, msg, NULL);
	send_reply(bus, msg, reply);
	return DBUS_HANDLER_RESULT_HANDLED;
}

static const DBusObjectPathVTable fallback_vtable = {
	.message_function = fallback_message,
};

/* ------------------------------------------------------------- export */

static void export_free(struct bus_export *ex)
{
	if (!ex)
		return;
	free(ex->defs);
	free(ex->path);
	free(ex);
}

static bool check_tables(const struct bus_interface *iface, const struct bus_iface_def *d,
                         char **err)
{
	for (size_t i = 0; i < d->n_methods; i++)
		if (!find_handler(iface, d->methods[i].name)) {
			/* no-i18n: handler table vs dbus-xml/ mismatch, a programming error */
			set_err(err, "%s.%s has no handler", d->name, d->methods[i].name);
			return false;
		}
	for (const struct bus_method *m = iface->methods; m && m->name; m++)
		if (!m->handler || !bus_find_member(d->methods, d->n_methods, m->name)) {
			/* no-i18n: handler table vs dbus-xml/ mismatch, a programming error */
			set_err(err, "%s.%s is not in the XML", d->name, m->name);
			return false;
		}
	for (size_t i = 0; i < d->n_props; i++)
		if (!find_getter(iface, d->props[i].name)) {
			/* no-i18n: handler table vs dbus-xml/ mismatch, a programming error */
			set_err(err, "%s property %s has no getter", d->name, d->props[i].name);
			return false;
		}
	for (const struct bus_property *p = iface->properties; p && p->name; p++)
		if (!p->get || !bus_find_prop_def(d, p->name)) {
			/* no-i18n: handler table vs dbus-xml/ mismatch, a programming error */
			set_err(err, "%s property %s is not in the XML", d->name, p->name);
			return false;
		}
	return true;
}

bool bus_export(struct bus *bus, const char *path, const struct bus_interface *const *ifaces,
                void *data, char **err)
{
	struct bus_export *ex = calloc(1, sizeof(*ex));
	if (!ex || !(ex->path = strdup(path)))
		goto nomem;
	ex->bus = bus;
	ex->ifaces = ifaces;
	ex->data = data;
	while (ifaces[ex->n_ifaces])
		ex->n_ifaces++;
	ex->defs = calloc(ex->n_ifaces + 1, sizeof(*ex->defs));
	if (!ex->defs)
		goto nomem;
	for (size_t i = 0; i < ex->n_ifaces; i++) {
		ex->defs[i] = bus_find_def(bus, ifaces[i]->name);
		if (!ex->defs[i]) {
			/* no-i18n: handler table vs dbus-xml/ mismatch, a programming error */
			set_err(err, "interface %s is not defined in dbus-xml/", ifaces[i]->name);
			goto error;
		}
		if (!check_tables(ifaces[i], ex->defs[i], err))
			goto error;
	}
	struct bus_export **grown = realloc(bus->exports, (bus->n_exports + 1) * sizeof(*grown));
	if (!grown)
		goto nomem;
	bus->exports = grown;
	DBusError derr;
	dbus_error_init(&derr);
	if (!dbus_connection_try_register_object_path(bus->conn, path, &export_vtable, ex, &derr)) {
		/* no-i18n: path exported twice in one process, a programming error;
		 * the detail is libdbus's English text anyway */
		set_err(err, "cannot export %s: %s", path, derr.message ? derr.message : "");
		dbus_error_free(&derr);
		goto error;
	}
	bus->exports[bus->n_exports++] = ex;
	return true;

nomem:
	set_err(err, "%s", _("out of memory"));
error:
	export_free(ex);
	return false;
}

void bus_unexport(struct bus *bus, const char *path)
{
	for (size_t i = 0; i < bus->n_exports; i++) {
		if (strcmp(bus->exports[i]->path, path) != 0)
			continue;
		dbus_connection_unregister_object_path(bus->conn, path);
		export_free(bus->exports[i]);
		memmove(&bus->exports[i], &bus->exports[i + 1],
		        (bus->n_exports - i - 1) * sizeof(*bus->exports));
		bus->n_exports--;
		return;
	}
}

/* ------------------------------------------------------------ signals */

bool bus_emit_signal(struct bus *bus, const char *path, const char *iface, const char *member,
                     bus_append_fn append, void *data)
{
	const struct bus_iface_def *d = bus_find_def(bus, iface);
	const struct bus_member *s = d ? bus_find_member(d->signals, d->n_signals, member) : NULL;
	if (!s) {
		log_err("bus: signal %s.%s is not defined in dbus-xml/", iface, member);
		return false;
	}
	DBusMessage *msg = dbus_message_new_signal(path, iface, member);
	if (!msg)
		return false;
	bool ok = true;
	if (append) {
		DBusMessageIter it;
		dbus_message_iter_init_append(msg, &it);
		ok = append(data, &it);
	}
	if (ok && strcmp(dbus_message_get_signature(msg), s->in_sig) != 0) {
		log_err("bus: signal %s.%s built with signature \"%s\", XML says \"%s\"", iface,
		        member, dbus_message_get_signature(msg), s->in_sig);
		ok = false;
	}
	if (ok)
		ok = dbus_connection_send(bus->conn, msg, NULL);
	dbus_message_unref(msg);
	return ok;
}

/* -------------------------------------------------------- async calls */

static void call_unlink(struct bus_call *call)
{
	if (call->prev)
		call->prev->next = call->next;
	else
		call->bus->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
}

static void call_notify(DBusPendingCall *pending, void *data)
{
	struct bus_call *call = data;
	DBusMessage *reply = dbus_pending_call_steal_reply(pending);
	call_unlink(call);
	bus_reply_fn cb = call->cb;
	void *cb_data = call->data;
	dbus_pending_call_unref(call->pending);
	free(call);
	if (reply) {
		cb(cb_data, reply);
		dbus_message_unref(reply);
	}
}

struct bus_call *bus_call_async(struct bus *bus, DBusMessage *msg, int timeout_ms,
                                bus_reply_fn cb, void *data)
{
	struct bus_call *call = calloc(1, sizeof(*call));
	if (!call)
		return NULL;
	call->bus = bus;
	call->cb = cb;
	call->data = data;
	if (!dbus_connection_send_with_reply(bus->conn, msg, &call->pending, timeout_ms) ||
	    !call->pending) {
		/* Disconnected: libdbus gives no pending call at all. */
		free(call);
		return NULL;
	}
	call->next = bus->calls;
	if (bus->calls)
		bus->calls->prev = call;
	bus->calls = call;
	if (!dbus_pending_call_set_notify(call->pending, call_notify, call, NULL)) {
		call_unlink(call);
		dbus_pending_call_cancel(call->pending);
		dbus_pending_call_unref(call->pending);
		free(call);
		return NULL;
	}
	/* Never completed before set_notify in a single thread, but cheap to be sure. */
	if (dbus_pending_call_get_completed(call->pending))
		call_notify(call->pending, call);
	return call;
}

void bus_call_cancel(struct bus_call *call)
{
	if (!call)
		return;
	call_unlink(call);
	dbus_pending_call_cancel(call->pending);
	dbus_pending_call_unref(call->pending);
	free(call);
}

/* -------------------------------------------------------- name watches */

static void watches_compact(struct bus *bus)
{
	size_t j = 0;
	for (size_t i = 0; i < bus->n_watches; i++) {
		struct bus_name_watch *w = bus->watches[i];
		if (!w->removed) {
			bus->watches[j++] = w;
			continue;
		}
		if (dbus_connection_get_is_connected(bus->conn))
			dbus_bus_remove_match(bus->conn, w->rule, NULL);
		free(w->rule);
		free(w->name);
		free(w);
	}
	bus->n_watches = j;
}

static DBusHandlerResult bus_filter(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct bus *bus = data;
	if (!dbus_message_is_signal(msg, DBUS_INTERFACE_DBUS, "NameOwnerChanged"))
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	const char *sender = dbus_message_get_sender(msg);
	if (!sender || strcmp(sender, DBUS_SERVICE_DBUS) != 0)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	const char *name, *old_owner, *new_owner;
	if (!dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &old_owner,
	                           DBUS_TYPE_STRING, &new_owner, DBUS_TYPE_INVALID))
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	bus->dispatching_watches++;
	for (size_t i = 0; i < bus->n_watches; i++) {
		struct bus_name_watch *w = bus->watches[i];
		if (!w->removed && strcmp(w->name, name) == 0)
			w->cb(w->data, name, new_owner);
	}
	if (--bus->dispatching_watches == 0)
		watches_compact(bus);
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

unsigned bus_watch_name(struct bus *bus, const char *name, bus_name_fn cb, void *data)
{
	struct bus_name_watch *w = calloc(1, sizeof(*w));
	struct bus_name_watch **grown = NULL;
	if (!w || !(w->name = strdup(name)))
		goto error;
	if (asprintf(&w->rule,
	             "type='signal',sender='" DBUS_SERVICE_DBUS "',interface='" DBUS_INTERFACE_DBUS
	             "',member='NameOwnerChanged',arg0='%s'",
	             name) < 0) {
		w->rule = NULL;
		goto error;
	}
	grown = realloc(bus->watches, (bus->n_watches + 1) * sizeof(*grown));
	if (!grown)
		goto error;
	bus->watches = grown;
	w->id = ++bus->next_watch_id;
	w->cb = cb;
	w->data = data;
	/* Without a DBusError libdbus does not wait for the reply: no blocking. */
	dbus_bus_add_match(bus->conn, w->rule, NULL);
	bus->watches[bus->n_watches++] = w;
	return w->id;
error:
	if (w) {
		free(w->rule);
		free(w->name);
		free(w);
	}
	return 0;
}

void bus_unwatch_name(struct bus *bus, unsigned id)
{
	for (size_t i = 0; i < bus->n_watches; i++)
		if (bus->watches[i]->id == id)
			bus->watches[i]->removed = true;
	if (bus->dispatching_watches == 0)
		watches_compact(bus);
}

/* ------------------------------------------------------ create/destroy */

struct bus *bus_create(struct loop *loop, DBusConnection *conn)
{
	struct bus *bus = calloc(1, sizeof(*bus));
	if (!bus)
		return NULL;
	bus->loop = loop;
	bus->conn = dbus_connection_ref(conn);
	for (const struct vmo_embedded_xml *x = vmo_dbus_xml; x->name; x++) {
		char *err = NULL;
		if (!bus_load_xml(bus, x->xml, &err)) {
			log_err("bus: dbus-xml/%s.xml: %s", x->name, err ? err : "out of memory");
			free(err);
			goto error;
		}
	}
	if (!dbus_connection_add_filter(conn, bus_filter, bus, NULL))
		goto error;
	bus->filter_added = true;
	if (!dbus_connection_try_register_fallback(conn, "/", &fallback_vtable, bus, NULL))
		log_warn("bus: cannot serve Introspect on intermediate paths");
	else
		bus->fallback_registered = true;
	return bus;
error:
	bus_destroy(bus);
	return NULL;
}

void bus_destroy(struct bus *bus)
{
	if (!bus)
		return;
	while (bus->calls)
		bus_call_cancel(bus->calls);
	while (bus->n_exports > 0)
		bus_unexport(bus, bus->exports[bus->n_exports - 1]->path);
	free(bus->exports);
	for (size_t i = 0; i < bus->n_watches; i++)
		bus->watches[i]->removed = true;
	watches_compact(bus);
	free(bus->watches);
	if (bus->fallback_registered)
		dbus_connection_unregister_object_path(bus->conn, "/");
	if (bus->filter_added)
		dbus_connection_remove_filter(bus->conn, bus_filter, bus);
	for (size_t i = 0; i < bus->n_defs; i++)
		bus_iface_def_free(bus->defs[i]);
	free(bus->defs);
	dbus_connection_unref(bus->conn);
	free(bus);
}

DBusConnection *bus_connection(const struct bus *bus)
{
	return bus->conn;
}

struct loop *bus_loop(const struct bus *bus)
{
	return bus->loop;
}
