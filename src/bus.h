/* Session-bus object dispatch: one small declarative table per interface,
 * argument signatures checked against the embedded dbus-xml/ definitions
 * before a handler runs (InvalidArgs on mismatch), Properties (Get/GetAll/
 * Set) and Introspectable served for every exported object.
 * The tray module (sni.c/menu.c/control.c) defines the tables; this header's
 * create/destroy is what main uses. */
#ifndef VMO_BUS_H
#define VMO_BUS_H

#include <stdbool.h>

struct loop;
struct bus;
struct bus_call;
typedef struct DBusConnection DBusConnection;
typedef struct DBusMessage DBusMessage;
typedef struct DBusMessageIter DBusMessageIter;

/* conn is already attached to the loop (loop_dbus_attach). Parses every
 * embedded dbus-xml/ file; returns NULL (logged) if one is malformed. */
struct bus *bus_create(struct loop *loop, DBusConnection *conn);
void bus_destroy(struct bus *bus); /* NULL ok; unexports, cancels calls */
DBusConnection *bus_connection(const struct bus *bus);
struct loop *bus_loop(const struct bus *bus);

/* Adds interface definitions from an introspection XML document (the
 * embedded ones are loaded by bus_create; tests add their own). */
bool bus_load_xml(struct bus *bus, const char *xml, char **err);
/* Signature of the in-args of iface.member ("" for none), NULL if unknown. */
const char *bus_method_signature(const struct bus *bus, const char *iface, const char *member);

/* A method handler. msg's signature already equals the XML's in-args.
 * Returns the reply to send: dbus_message_new_method_return(msg) with the
 * out-args appended, or bus_error(). NULL means out of memory. The bus
 * does not send a reply when the caller asked for none. */
typedef DBusMessage *(*bus_method_fn)(void *data, DBusMessage *msg);
/* Appends the property's value (type from the XML) into the open variant
 * iter. Returns false when out of memory. */
typedef bool (*bus_getter_fn)(void *data, DBusMessageIter *iter);
/* Appends a signal's arguments (may be NULL for a signal without args). */
typedef bool (*bus_append_fn)(void *data, DBusMessageIter *iter);

struct bus_method {
	const char *name;
	bus_method_fn handler;
};

struct bus_property {
	const char *name;
	bus_getter_fn get;
};

struct bus_interface {
	const char *name; /* must be defined in the loaded XML */
	const struct bus_method *methods;       /* ends with {NULL} */
	const struct bus_property *properties;  /* ends with {NULL}; may be NULL */
};

/* Exports an object at path with the given interfaces (NULL-terminated
 * array; the tables must outlive the export). Every method and property of
 * the XML must have an entry and vice versa, else it fails with *err:
 * the XML stays the single source of what we serve. */
bool bus_export(struct bus *bus, const char *path, const struct bus_interface *const *ifaces,
                void *data, char **err);
void bus_unexport(struct bus *bus, const char *path);

/* An error reply with a printf-formatted message. */
DBusMessage *bus_error(DBusMessage *msg, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Emits a signal from path; its signature is checked against the XML (a
 * mismatch is a bug: logged, not sent). Returns false when not sent. */
bool bus_emit_signal(struct bus *bus, const char *path, const char *iface, const char *member,
                     bus_append_fn append, void *data);

/* Asynchronous method call: cb gets the reply (a method return or an
 * error message, also for timeouts and a vanished peer) from the loop,
 * never blocking. The call is owned by the bus until cb ran or it was
 * cancelled. msg is not consumed. timeout_ms -1 = libdbus default. */
typedef void (*bus_reply_fn)(void *data, DBusMessage *reply);
struct bus_call *bus_call_async(struct bus *bus, DBusMessage *msg, int timeout_ms,
                                bus_reply_fn cb, void *data);
void bus_call_cancel(struct bus_call *call); /* NULL ok; cb never runs */

/* Tells cb whenever NameOwnerChanged reports a new owner for name
 * (new_owner "" = gone). Returns an id for bus_unwatch_name, 0 on failure. */
typedef void (*bus_name_fn)(void *data, const char *name, const char *new_owner);
unsigned bus_watch_name(struct bus *bus, const char *name, bus_name_fn cb, void *data);
void bus_unwatch_name(struct bus *bus, unsigned id);

#endif
