/* bus.c on a private dbus-daemon: one connection serves a small test
 * interface through the declarative tables, a second one calls it; checks
 * signature enforcement, Properties, Introspect, signals, async calls and
 * name watches. No loop: both connections are pumped by hand. */
#include <dbus/dbus.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "testlib.h"

static const char test_xml[] =
	"<node><interface name=\"test.Iface\">"
	"<method name=\"Echo\"><arg name=\"in\" type=\"s\" direction=\"in\"/>"
	"<arg name=\"out\" type=\"s\" direction=\"out\"/></method>"
	"<method name=\"Nothing\"/>"
	"<property name=\"Name\" type=\"s\" access=\"read\"/>"
	"<property name=\"Count\" type=\"i\" access=\"read\"/>"
	"<signal name=\"Changed\"><arg type=\"s\"/></signal>"
	"</interface></node>";

static int handler_runs;
static DBusConnection *server, *client;
static char *address;
static long daemon_pid;

static DBusMessage *on_echo(void *data, DBusMessage *msg)
{
	handler_runs++;
	const char *s;
	dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID);
	DBusMessage *r = dbus_message_new_method_return(msg);
	dbus_message_append_args(r, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID);
	return r;
}

static DBusMessage *on_nothing(void *data, DBusMessage *msg)
{
	handler_runs++;
	return dbus_message_new_method_return(msg);
}

static bool get_name(void *data, DBusMessageIter *it)
{
	const char *s = "tester";
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &s);
}

static bool get_count(void *data, DBusMessageIter *it)
{
	dbus_int32_t n = 42;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_INT32, &n);
}

static const struct bus_method methods[] = {{"Echo", on_echo}, {"Nothing", on_nothing}, {NULL, NULL}};
static const struct bus_property props[] = {{"Name", get_name}, {"Count", get_count}, {NULL, NULL}};
static const struct bus_interface iface = {"test.Iface", methods, props};
static const struct bus_interface *const ifaces[] = {&iface, NULL};

static const struct bus_method methods_missing[] = {{"Echo", on_echo}, {NULL, NULL}};
static const struct bus_interface iface_missing = {"test.Iface", methods_missing, props};
static const struct bus_interface *const ifaces_missing[] = {&iface_missing, NULL};
static const struct bus_interface iface_unknown = {"no.such.Iface", methods, NULL};
static const struct bus_interface *const ifaces_unknown[] = {&iface_unknown, NULL};

static void pump(void)
{
	dbus_connection_read_write_dispatch(server, 2);
	dbus_connection_read_write_dispatch(client, 2);
}

static DBusMessage *call(DBusMessage *msg)
{
	DBusPendingCall *p = NULL;
	dbus_connection_send_with_reply(client, msg, &p, 5000);
	dbus_message_unref(msg);
	for (int i = 0; i < 5000 && !dbus_pending_call_get_completed(p); i++)
		pump();
	DBusMessage *r = dbus_pending_call_steal_reply(p);
	dbus_pending_call_unref(p);
	return r;
}

static DBusMessage *method(const char *path, const char *ifc, const char *member)
{
	return dbus_message_new_method_call(dbus_bus_get_unique_name(server), path, ifc, member);
}

static const char *error_name(DBusMessage *r)
{
	return r && dbus_message_get_type(r) == DBUS_MESSAGE_TYPE_ERROR ? dbus_message_get_error_name(r)
	                                                                 : "";
}

static DBusConnection *connect_bus(void)
{
	DBusConnection *c = dbus_connection_open_private(address, NULL);
	if (c && !dbus_bus_register(c, NULL))
		return NULL;
	return c;
}

static struct bus *setup(void)
{
	char *out = NULL;
	test_require_program("dbus-daemon");
	if (!address) {
		if (test_sh_out(&out, "dbus-daemon --session --fork --print-address=1 --print-pid=1") != 0)
			return NULL;
		char *nl = strchr(out, '\n');
		*nl = '\0';
		address = strdup(out);
		daemon_pid = strtol(nl + 1, NULL, 10);
		free(out);
	}
	server = connect_bus();
	client = connect_bus();
	if (!server || !client)
		return NULL;
	struct bus *bus = bus_create(NULL, server);
	char *err = NULL;
	if (!bus || !bus_load_xml(bus, test_xml, &err)) {
		fprintf(stderr, "setup: %s\n", err ? err : "bus_create failed");
		free(err);
		return NULL;
	}
	return bus;
}

static void teardown(struct bus *bus)
{
	bus_destroy(bus);
	dbus_connection_close(server);
	dbus_connection_unref(server);
	dbus_connection_close(client);
	dbus_connection_unref(client);
}

static void test_dispatch_and_signatures(void)
{
	struct bus *bus = setup();
	REQUIRE(bus);
	char *err = NULL;
	CHECK(!bus_export(bus, "/t", ifaces_missing, NULL, &err));
	CHECK(err && strstr(err, "Nothing"));
	free(err);
	err = NULL;
	CHECK(!bus_export(bus, "/t", ifaces_unknown, NULL, &err));
	free(err);
	err = NULL;
	REQUIRE(bus_export(bus, "/test/obj", ifaces, NULL, &err));
	CHECK_STR_EQ(bus_method_signature(bus, "test.Iface", "Echo"), "s");
	CHECK_STR_EQ(bus_method_signature(bus, "org.kde.StatusNotifierItem", "Scroll"), "is");

	const char *hi = "hi";
	DBusMessage *m = method("/test/obj", "test.Iface", "Echo");
	dbus_message_append_args(m, DBUS_TYPE_STRING, &hi, DBUS_TYPE_INVALID);
	DBusMessage *r = call(m);
	const char *back = NULL;
	CHECK(r && dbus_message_get_args(r, NULL, DBUS_TYPE_STRING, &back, DBUS_TYPE_INVALID));
	CHECK_STR_EQ(back, "hi");
	CHECK_INT_EQ(handler_runs, 1);
	dbus_message_unref(r);

	/* Without an interface field the member is found too. */
	m = method("/test/obj", NULL, "Nothing");
	r = call(m);
	CHECK(r && dbus_message_get_type(r) == DBUS_MESSAGE_TYPE_METHOD_RETURN);
	CHECK_INT_EQ(handler_runs, 2);
	dbus_message_unref(r);

	dbus_int32_t n = 5;
	m = method("/test/obj", "test.Iface", "Echo");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &n, DBUS_TYPE_INVALID);
	r = call(m);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_INVALID_ARGS);
	CHECK_INT_EQ(handler_runs, 2); /* the handler never saw it */
	dbus_message_unref(r);

	m = method("/test/obj", "test.Iface", "Echo"); /* no args at all */
	r = call(m);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_INVALID_ARGS);
	dbus_message_unref(r);

	r = call(method("/test/obj", "test.Iface", "Missing"));
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_UNKNOWN_METHOD);
	dbus_message_unref(r);
	r = call(method("/test/obj", "other.Iface", "Echo"));
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_UNKNOWN_INTERFACE);
	dbus_message_unref(r);
	r = call(method("/nowhere", "test.Iface", "Echo"));
	CHECK(strlen(error_name(r)) > 0);
	dbus_message_unref(r);
	teardown(bus);
}

static DBusMessage *props_call(const char *member, const char *ifc, const char *prop,
                               bool with_value)
{
	DBusMessage *m = method("/test/obj", "org.freedesktop.DBus.Properties", member);
	DBusMessageIter it, var;
	dbus_message_iter_init_append(m, &it);
	dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &ifc);
	if (prop)
		dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &prop);
	if (with_value) {
		dbus_int32_t v = 1;
		dbus_message_iter_open_container(&it, DBUS_TYPE_VARIANT, "i", &var);
		dbus_message_iter_append_basic(&var, DBUS_TYPE_INT32, &v);
		dbus_message_iter_close_container(&it, &var);
	}
	return call(m);
}

static void test_properties(void)
{
	struct bus *bus = setup();
	REQUIRE(bus);
	REQUIRE(bus_export(bus, "/test/obj", ifaces, NULL, NULL));
	DBusMessage *r = props_call("Get", "test.Iface", "Count", false);
	REQUIRE(r);
	CHECK_STR_EQ(dbus_message_get_signature(r), "v");
	DBusMessageIter it, var;
	dbus_message_iter_init(r, &it);
	dbus_message_iter_recurse(&it, &var);
	CHECK_INT_EQ(dbus_message_iter_get_arg_type(&var), DBUS_TYPE_INT32);
	dbus_int32_t v = 0;
	dbus_message_iter_get_basic(&var, &v);
	CHECK_INT_EQ(v, 42);
	dbus_message_unref(r);

	r = props_call("GetAll", "test.Iface", NULL, false);
	REQUIRE(r);
	CHECK_STR_EQ(dbus_message_get_signature(r), "a{sv}");
	DBusMessageIter arr;
	dbus_message_iter_init(r, &it);
	dbus_message_iter_recurse(&it, &arr);
	int count = 0;
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_DICT_ENTRY) {
		count++;
		dbus_message_iter_next(&arr);
	}
	CHECK_INT_EQ(count, 2);
	dbus_message_unref(r);

	r = props_call("Get", "test.Iface", "Nope", false);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_UNKNOWN_PROPERTY);
	dbus_message_unref(r);
	r = props_call("Get", "no.Iface", "Count", false);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_UNKNOWN_INTERFACE);
	dbus_message_unref(r);
	r = props_call("GetAll", "no.Iface", NULL, false);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_UNKNOWN_INTERFACE);
	dbus_message_unref(r);
	r = props_call("Set", "test.Iface", "Count", true);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_PROPERTY_READ_ONLY);
	dbus_message_unref(r);
	r = props_call("Set", "test.Iface", "Nope", true);
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_UNKNOWN_PROPERTY);
	dbus_message_unref(r);
	r = props_call("Set", "test.Iface", "Count", false); /* (ss): wrong signature */
	CHECK_STR_EQ(error_name(r), DBUS_ERROR_INVALID_ARGS);
	dbus_message_unref(r);
	teardown(bus);
}

static char *introspect(const char *path)
{
	DBusMessage *r = call(method(path, "org.freedesktop.DBus.Introspectable", "Introspect"));
	const char *xml = NULL;
	char *copy = NULL;
	if (r && dbus_message_get_args(r, NULL, DBUS_TYPE_STRING, &xml, DBUS_TYPE_INVALID))
		copy = strdup(xml);
	if (r)
		dbus_message_unref(r);
	return copy;
}

static void test_introspect(void)
{
	struct bus *bus = setup();
	REQUIRE(bus);
	REQUIRE(bus_export(bus, "/test/obj", ifaces, NULL, NULL));
	char *x = introspect("/test/obj");
	CHECK(x && strstr(x, "<interface name=\"test.Iface\">"));
	CHECK(x && strstr(x, "<method name=\"Echo\">"));
	CHECK(x && strstr(x, "<property name=\"Count\" type=\"i\" access=\"read\"/>"));
	CHECK(x && strstr(x, "org.freedesktop.DBus.Properties"));
	free(x);
	x = introspect("/");
	CHECK(x && strstr(x, "<node name=\"test\"/>"));
	free(x);
	x = introspect("/test");
	CHECK(x && strstr(x, "<node name=\"obj\"/>"));
	free(x);
	teardown(bus);
}

static void test_xml_errors(void)
{
	struct bus *bus = setup();
	REQUIRE(bus);
	char *err = NULL;
	CHECK(!bus_load_xml(bus, "<node><interface", &err));
	CHECK(err != NULL);
	free(err);
	err = NULL;
	CHECK(!bus_load_xml(bus,
	                    "<node><interface name=\"x.Y\"><method name=\"M\">"
	                    "<arg type=\"a{\" direction=\"in\"/></method></interface></node>",
	                    &err));
	CHECK(err && strstr(err, "a{"));
	free(err);
	err = NULL;
	CHECK(!bus_load_xml(bus, test_xml, &err)); /* defined twice */
	free(err);
	teardown(bus);
}

static bool append_str(void *data, DBusMessageIter *it)
{
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &(const char *){data});
}

static bool append_int(void *data, DBusMessageIter *it)
{
	dbus_int32_t n = 1;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_INT32, &n);
}

static void test_signals(void)
{
	struct bus *bus = setup();
	REQUIRE(bus);
	REQUIRE(bus_export(bus, "/test/obj", ifaces, NULL, NULL));
	dbus_bus_add_match(client, "type='signal',interface='test.Iface'", NULL);
	dbus_connection_flush(client);
	for (int i = 0; i < 20; i++)
		pump();
	CHECK(bus_emit_signal(bus, "/test/obj", "test.Iface", "Changed", append_str, "x"));
	CHECK(!bus_emit_signal(bus, "/test/obj", "test.Iface", "Changed", append_int, NULL));
	CHECK(!bus_emit_signal(bus, "/test/obj", "test.Iface", "NoSuchSignal", NULL, NULL));
	DBusMessage *got = NULL;
	for (int i = 0; i < 2000 && !got; i++) {
		dbus_connection_read_write(client, 2);
		dbus_connection_read_write(server, 2);
		DBusMessage *m;
		while ((m = dbus_connection_pop_message(client))) {
			if (dbus_message_is_signal(m, "test.Iface", "Changed") && !got)
				got = m;
			else
				dbus_message_unref(m);
		}
	}
	const char *s = NULL;
	CHECK(got && dbus_message_get_args(got, NULL, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID));
	CHECK_STR_EQ(s, "x");
	if (got)
		dbus_message_unref(got);
	teardown(bus);
}

static int replies;
static char reply_text[128];

static void on_reply(void *data, DBusMessage *reply)
{
	replies++;
	const char *s = "";
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR)
		s = dbus_message_get_error_name(reply);
	else
		dbus_message_get_args(reply, NULL, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID);
	snprintf(reply_text, sizeof reply_text, "%s", s);
}

static char owner[128];
static int owner_changes;

static void on_owner(void *data, const char *name, const char *new_owner)
{
	owner_changes++;
	snprintf(owner, sizeof owner, "%s", new_owner);
}

static void test_async_and_watch(void)
{
	struct bus *bus = setup();
	REQUIRE(bus);
	REQUIRE(bus_export(bus, "/test/obj", ifaces, NULL, NULL));
	/* The server calls itself through the daemon: needs the loop to run. */
	const char *hi = "async";
	DBusMessage *m = method("/test/obj", "test.Iface", "Echo");
	dbus_message_append_args(m, DBUS_TYPE_STRING, &hi, DBUS_TYPE_INVALID);
	struct bus_call *c = bus_call_async(bus, m, 5000, on_reply, NULL);
	dbus_message_unref(m);
	CHECK(c != NULL);
	for (int i = 0; i < 2000 && replies == 0; i++)
		pump();
	CHECK_INT_EQ(replies, 1);
	CHECK_STR_EQ(reply_text, "async");

	m = dbus_message_new_method_call("no.such.Name", "/x", "x.Y", "Z");
	c = bus_call_async(bus, m, 5000, on_reply, NULL);
	dbus_message_unref(m);
	for (int i = 0; i < 2000 && replies == 1; i++)
		pump();
	CHECK_INT_EQ(replies, 2);
	CHECK_STR_EQ(reply_text, DBUS_ERROR_SERVICE_UNKNOWN);

	/* A cancelled call never calls back. */
	m = method("/test/obj", "test.Iface", "Nothing");
	c = bus_call_async(bus, m, 5000, on_reply, NULL);
	dbus_message_unref(m);
	bus_call_cancel(c);
	for (int i = 0; i < 50; i++)
		pump();
	CHECK_INT_EQ(replies, 2);

	unsigned id = bus_watch_name(bus, "test.watched", on_owner, NULL);
	CHECK(id != 0);
	dbus_connection_flush(server);
	for (int i = 0; i < 20; i++)
		pump();
	CHECK_INT_EQ(dbus_bus_request_name(client, "test.watched", 0, NULL),
	             DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER);
	for (int i = 0; i < 2000 && owner_changes == 0; i++)
		pump();
	CHECK_INT_EQ(owner_changes, 1);
	CHECK_STR_EQ(owner, dbus_bus_get_unique_name(client));
	dbus_bus_release_name(client, "test.watched", NULL);
	for (int i = 0; i < 2000 && owner_changes == 1; i++)
		pump();
	CHECK_INT_EQ(owner_changes, 2);
	CHECK_STR_EQ(owner, "");
	bus_unwatch_name(bus, id);
	dbus_bus_request_name(client, "test.watched", 0, NULL);
	for (int i = 0; i < 50; i++)
		pump();
	CHECK_INT_EQ(owner_changes, 2);
	teardown(bus);
}

static void stop_daemon(void)
{
	if (daemon_pid > 0)
		kill((pid_t)daemon_pid, SIGTERM);
	free(address);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
		{"dispatch_and_signatures", test_dispatch_and_signatures},
		{"properties", test_properties},
		{"introspect", test_introspect},
		{"xml_errors", test_xml_errors},
		{"signals", test_signals},
		{"async_and_watch", test_async_and_watch},
		{NULL, NULL},
	};
	atexit(stop_daemon);
	return test_main(argc, argv, cases);
}
