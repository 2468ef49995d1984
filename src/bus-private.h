/* The insides of the bus layer shared by bus.c (dispatch, properties,
 * signals, calls, name watches) and bus-xml.c (the interface definitions
 * read from dbus-xml/: members, signatures, generated introspection).
 * Nothing else includes it. */
#ifndef VMO_BUS_PRIVATE_H
#define VMO_BUS_PRIVATE_H

#include <dbus/dbus.h>
#include <stdbool.h>
#include <stddef.h>

#include "bus.h"

struct bus_arg {
	char *name; /* may be NULL */
	char *type;
	bool out;
};

struct bus_member {
	char *name;
	struct bus_arg *args;
	size_t n_args;
	char *in_sig; /* concatenated in-args (methods) or all args (signals) */
	bool no_reply;
};

struct bus_prop_def {
	char *name;
	char *type;
	char *access;
};

struct bus_iface_def {
	char *name;
	struct bus_member *methods;
	size_t n_methods;
	struct bus_member *signals;
	size_t n_signals;
	struct bus_prop_def *props;
	size_t n_props;
	char *introspect; /* <interface> element, generated */
};

struct bus_export {
	struct bus *bus;
	char *path;
	const struct bus_interface *const *ifaces;
	const struct bus_iface_def **defs; /* parallel to ifaces */
	size_t n_ifaces;
	void *data;
};

struct bus_call {
	struct bus *bus;
	DBusPendingCall *pending;
	bus_reply_fn cb;
	void *data;
	struct bus_call *prev, *next;
};

struct bus_name_watch {
	unsigned id;
	char *name;
	char *rule;
	bus_name_fn cb;
	void *data;
	bool removed;
};

struct bus {
	struct loop *loop;
	DBusConnection *conn;
	struct bus_iface_def **defs;
	size_t n_defs;
	struct bus_export **exports;
	size_t n_exports;
	struct bus_call *calls;
	struct bus_name_watch **watches;
	size_t n_watches;
	unsigned next_watch_id;
	int dispatching_watches;
	bool fallback_registered;
	bool filter_added;
};

/* bus-xml.c: the definitions loaded into bus->defs. */
void bus_iface_def_free(struct bus_iface_def *d);
const struct bus_iface_def *bus_find_def(const struct bus *bus, const char *name);
const struct bus_member *bus_find_member(const struct bus_member *arr, size_t n, const char *name);
const struct bus_prop_def *bus_find_prop_def(const struct bus_iface_def *d, const char *name);

#endif
