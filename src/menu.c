/* The tray menu: com.canonical.dbusmenu at /MenuBar, rebuilt from the model
 * on every change and diffed against what hosts already have, so hosts get
 * LayoutUpdated only when the structure changed and ItemsPropertiesUpdated
 * for labels and states. Ids come from an allocator keyed by the item's
 * role and VM, so an item keeps its id for the process lifetime and an id
 * never changes type (Plasma treats type/toggle-type/children-display as
 * immutable). Facts: research/sni-dbusmenu.md §3, §4. */
#include <dbus/dbus.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "bus.h"
#include "config.h"
#include "flow.h"
#include "i18n.h"
#include "icons.h"
#include "log.h"
#include "loop.h"
#include "menu.h"
#include "menu-private.h"
#include "ui.h"
#include "model.h"

#define MENU_INTERFACE "com.canonical.dbusmenu"

extern char **environ;

/* ------------------------------------------------------- properties */

static bool wanted(const char *name, const char *const *names, size_t n_names)
{
	if (n_names == 0)
		return true;
	for (size_t i = 0; i < n_names; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static bool put_entry(DBusMessageIter *dict, const char *key, int type, const void *value)
{
	DBusMessageIter entry, var;
	char sig[2] = {(char)type, '\0'};
	if (!dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry))
		return false;
	if (!dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) ||
	    !dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &var)) {
		dbus_message_iter_abandon_container(dict, &entry);
		return false;
	}
	if (!dbus_message_iter_append_basic(&var, type, value)) {
		dbus_message_iter_abandon_container(&entry, &var);
		dbus_message_iter_abandon_container(dict, &entry);
		return false;
	}
	return dbus_message_iter_close_container(&entry, &var) &&
	       dbus_message_iter_close_container(dict, &entry);
}

/* Which properties an item carries. PROPS_FULL: every one (updates,
 * explicit requests). PROPS_LEAN (GetLayout / GetGroupProperties asking
 * for "all"): the DBusMenu convention, only what differs from the default
 * ("enabled" and "visible" true, an unchecked radio's "toggle-state"
 * are left out).
 *
 * Why that is safe with Plasma: its importer (libdbusmenuqt,
 * slotGetLayoutFinished) updates an existing action only from the keys a
 * layout carries, so an omitted key keeps its old value there. Every
 * change therefore goes out as ItemsPropertiesUpdated with PROPS_FULL
 * (explicit enabled/visible), emitted before any later GetLayout reply: a
 * host on the bus has the current value before it reads a lean layout, and
 * a host that connects later creates its actions from defaults. */
enum props_mode { PROPS_FULL, PROPS_LEAN };

static bool put_props(DBusMessageIter *it, const struct menu_item *item, const char *const *names,
		      size_t n_names, enum props_mode mode)
{
	DBusMessageIter dict;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict))
		return false;
	bool ok = true;
	bool lean = mode == PROPS_LEAN && n_names == 0;
	dbus_bool_t enabled = item->enabled, visible = item->visible;
	if (item->kind == KIND_SEPARATOR && wanted("type", names, n_names))
		ok = ok && put_entry(&dict, "type", DBUS_TYPE_STRING, &(const char *){"separator"});
	if (item->label && wanted("label", names, n_names))
		ok = ok && put_entry(&dict, "label", DBUS_TYPE_STRING, &item->label);
	if (!(lean && enabled) && wanted("enabled", names, n_names))
		ok = ok && put_entry(&dict, "enabled", DBUS_TYPE_BOOLEAN, &enabled);
	if (!(lean && visible) && wanted("visible", names, n_names))
		ok = ok && put_entry(&dict, "visible", DBUS_TYPE_BOOLEAN, &visible);
	if ((item->kind == KIND_SUBMENU || item->kind == KIND_ROOT) &&
	    wanted("children-display", names, n_names))
		ok = ok && put_entry(&dict, "children-display", DBUS_TYPE_STRING,
				     &(const char *){"submenu"});
	if (item->kind == KIND_RADIO) {
		/* Lean: an unchecked radio leaves toggle-state out (a new
		 * action starts unchecked; a change is always sent in full). */
		dbus_int32_t state = item->toggle;
		if (wanted("toggle-type", names, n_names))
			ok = ok && put_entry(&dict, "toggle-type", DBUS_TYPE_STRING,
					     &(const char *){"radio"});
		if (!(lean && state == 0) && wanted("toggle-state", names, n_names))
			ok = ok && put_entry(&dict, "toggle-state", DBUS_TYPE_INT32, &state);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(it, &dict);
		return false;
	}
	return dbus_message_iter_close_container(it, &dict);
}

/* (ia{sv}av), children as variants of the same, depth levels deep (-1 all). */
static bool put_layout(DBusMessageIter *it, const struct menu_item *item, int depth,
		       const char *const *names, size_t n_names)
{
	DBusMessageIter st, arr, var;
	dbus_int32_t id = item->id;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_STRUCT, NULL, &st))
		return false;
	if (!dbus_message_iter_append_basic(&st, DBUS_TYPE_INT32, &id) ||
	    !put_props(&st, item, names, n_names, PROPS_LEAN) ||
	    !dbus_message_iter_open_container(&st, DBUS_TYPE_ARRAY, "v", &arr)) {
		dbus_message_iter_abandon_container(it, &st);
		return false;
	}
	for (size_t i = 0; depth != 0 && i < item->n_children; i++) {
		if (!dbus_message_iter_open_container(&arr, DBUS_TYPE_VARIANT, "(ia{sv}av)", &var))
			goto error;
		if (!put_layout(&var, item->children[i], depth < 0 ? -1 : depth - 1, names,
				n_names)) {
			dbus_message_iter_abandon_container(&arr, &var);
			goto error;
		}
		if (!dbus_message_iter_close_container(&arr, &var))
			goto error;
	}
	return dbus_message_iter_close_container(&st, &arr) &&
	       dbus_message_iter_close_container(it, &st);
error:
	dbus_message_iter_abandon_container(&st, &arr);
	dbus_message_iter_abandon_container(it, &st);
	return false;
}

/* Reads an "as" argument at iter into a malloc'd array of borrowed strings. */
static const char **read_strings(DBusMessageIter *iter, size_t *n)
{
	DBusMessageIter arr;
	dbus_message_iter_recurse(iter, &arr);
	size_t count = 0;
	const char **out = NULL;
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRING) {
		const char **grown = realloc(out, (count + 1) * sizeof(*grown));
		if (!grown)
			break;
		out = grown;
		dbus_message_iter_get_basic(&arr, &out[count++]);
		dbus_message_iter_next(&arr);
	}
	*n = count;
	return out;
}

/* --------------------------------------------------------- signals */


static bool append_updates(void *data, DBusMessageIter *it)
{
	struct update_batch *b = data;
	DBusMessageIter arr, st;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "(ia{sv})", &arr))
		return false;
	for (size_t i = 0; i < b->n; i++) {
		dbus_int32_t id = b->items[i]->id;
		if (!dbus_message_iter_open_container(&arr, DBUS_TYPE_STRUCT, NULL, &st))
			goto error;
		if (!dbus_message_iter_append_basic(&st, DBUS_TYPE_INT32, &id) ||
		    !put_props(&st, b->items[i], NULL, 0, PROPS_FULL)) {
			dbus_message_iter_abandon_container(&arr, &st);
			goto error;
		}
		if (!dbus_message_iter_close_container(&arr, &st))
			goto error;
	}
	if (!dbus_message_iter_close_container(it, &arr))
		return false;
	/* Nothing is ever removed: every key is always sent. */
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "(ias)", &arr))
		return false;
	return dbus_message_iter_close_container(it, &arr);
error:
	dbus_message_iter_abandon_container(it, &arr);
	return false;
}

struct layout_update {
	uint32_t revision;
	int32_t parent;
};

static bool append_layout_updated(void *data, DBusMessageIter *it)
{
	struct layout_update *u = data;
	dbus_uint32_t rev = u->revision;
	dbus_int32_t parent = u->parent;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_UINT32, &rev) &&
	       dbus_message_iter_append_basic(it, DBUS_TYPE_INT32, &parent);
}

/* Rebuilds from the model and tells hosts what changed. force_parent > 0:
 * send that submenu's items even if unchanged (a host flipped a radio
 * locally; our state is the authority). */
void menu_rebuild(struct menu *menu, int32_t force_parent)
{
	struct menu_item *next = menu_build_tree(menu);
	if (!next) {
		log_err("menu: out of memory while rebuilding");
		return;
	}
	struct menu_item *old = menu->root;
	menu->root = next;
	if (!old)
		return;
	struct update_batch b = {0};
	int32_t *parents = NULL;
	size_t n_parents = 0;
	menu_diff_tree(old, next, force_parent, &b, &parents, &n_parents, false);
	if ((n_parents > 0 || b.n > 0) && menu->layout_cache) {
		dbus_message_unref(menu->layout_cache);
		menu->layout_cache = NULL;
	}
	if (n_parents > 0) {
		struct layout_update u = {.revision = ++menu->revision};
		for (size_t i = 0; i < n_parents; i++) {
			u.parent = parents[i];
			bus_emit_signal(menu->bus, MENU_OBJECT_PATH, MENU_INTERFACE,
					"LayoutUpdated", append_layout_updated, &u);
		}
	}
	if (b.n > 0)
		bus_emit_signal(menu->bus, MENU_OBJECT_PATH, MENU_INTERFACE,
				"ItemsPropertiesUpdated", append_updates, &b);
	free(b.items);
	free(parents);
	menu_item_free(old);
}

static void on_model_changed(void *data)
{
	menu_rebuild(data, 0);
}

/* ---------------------------------------------------------- methods */

static DBusMessage *unknown_id(DBusMessage *msg, int32_t id)
{
	return bus_error(msg, DBUS_ERROR_INVALID_ARGS, "Unknown menu item id %d", (int)id);
}

/* A reply to msg with the cached layout's body (same header fields but the
 * ones that address this call). */
static DBusMessage *layout_from_cache(struct menu *menu, DBusMessage *msg)
{
	DBusMessage *copy = dbus_message_copy(menu->layout_cache);
	if (!copy)
		return NULL;
	const char *sender = dbus_message_get_sender(msg);
	if (!dbus_message_set_reply_serial(copy, dbus_message_get_serial(msg)) ||
	    (sender && !dbus_message_set_destination(copy, sender))) {
		dbus_message_unref(copy);
		return NULL;
	}
	return copy;
}

static DBusMessage *on_get_layout(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	DBusMessageIter it;
	dbus_int32_t parent, depth;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_get_basic(&it, &parent);
	dbus_message_iter_next(&it);
	dbus_message_iter_get_basic(&it, &depth);
	dbus_message_iter_next(&it);
	size_t n_names = 0;
	const char **names = read_strings(&it, &n_names);
	struct menu_item *item = menu_find_item(menu->root, parent);
	if (!item) {
		free(names);
		return unknown_id(msg, parent);
	}
	if (depth < -1)
		depth = -1;
	if (n_names == 0 && menu->layout_cache && menu->cache_parent == parent &&
	    menu->cache_depth == depth) {
		free(names);
		return layout_from_cache(menu, msg);
	}
	DBusMessage *reply = dbus_message_new_method_return(msg);
	dbus_uint32_t rev = menu->revision;
	DBusMessageIter out;
	if (reply) {
		dbus_message_iter_init_append(reply, &out);
		if (!dbus_message_iter_append_basic(&out, DBUS_TYPE_UINT32, &rev) ||
		    !put_layout(&out, item, depth, names, n_names)) {
			dbus_message_unref(reply);
			reply = NULL;
		}
	}
	if (reply && n_names == 0) {
		if (menu->layout_cache)
			dbus_message_unref(menu->layout_cache);
		menu->layout_cache = dbus_message_ref(reply);
		menu->cache_parent = parent;
		menu->cache_depth = depth;
		/* The cached message is only ever copied: the copy sent now must
		 * not share it. */
		DBusMessage *copy = layout_from_cache(menu, msg);
		dbus_message_unref(reply);
		reply = copy;
	}
	free(names);
	return reply;
}

static DBusMessage *on_get_group_properties(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	DBusMessageIter it, ids;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_recurse(&it, &ids);
	const dbus_int32_t *idv = NULL;
	int n_ids = 0;
	dbus_message_iter_get_fixed_array(&ids, &idv, &n_ids);
	dbus_message_iter_next(&it);
	size_t n_names = 0;
	const char **names = read_strings(&it, &n_names);

	DBusMessage *reply = dbus_message_new_method_return(msg);
	DBusMessageIter out, arr, st;
	bool ok = reply != NULL;
	if (ok) {
		dbus_message_iter_init_append(reply, &out);
		ok = dbus_message_iter_open_container(&out, DBUS_TYPE_ARRAY, "(ia{sv})", &arr);
	}
	/* An empty id list means every item; unknown ids are skipped. */
	struct menu_item **all = NULL;
	size_t n_all = 0;
	if (ok && n_ids == 0) {
		struct menu_item **stack = NULL;
		size_t n_stack = 0;
		struct menu_item **grown = realloc(stack, sizeof(*stack));
		if (grown) {
			stack = grown;
			stack[n_stack++] = menu->root;
		}
		while (n_stack > 0) {
			struct menu_item *cur = stack[--n_stack];
			struct menu_item **g = realloc(all, (n_all + 1) * sizeof(*g));
			if (!g)
				break;
			all = g;
			all[n_all++] = cur;
			/* +1: realloc(p, 0) would free the stack */
			g = realloc(stack, (n_stack + cur->n_children + 1) * sizeof(*g));
			if (!g)
				break;
			stack = g;
			for (size_t i = cur->n_children; i > 0; i--)
				stack[n_stack++] = cur->children[i - 1];
		}
		free(stack);
	}
	size_t count = n_ids ? (size_t)n_ids : n_all;
	for (size_t i = 0; ok && i < count; i++) {
		struct menu_item *item = n_ids ? menu_find_item(menu->root, idv[i]) : all[i];
		if (!item)
			continue;
		dbus_int32_t id = item->id;
		ok = dbus_message_iter_open_container(&arr, DBUS_TYPE_STRUCT, NULL, &st) &&
		     dbus_message_iter_append_basic(&st, DBUS_TYPE_INT32, &id) &&
		     put_props(&st, item, names, n_names, PROPS_LEAN) &&
		     dbus_message_iter_close_container(&arr, &st);
	}
	if (ok)
		ok = dbus_message_iter_close_container(&out, &arr);
	free(all);
	free(names);
	if (!ok && reply) {
		dbus_message_unref(reply);
		reply = NULL;
	}
	return reply;
}

static DBusMessage *on_get_property(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	dbus_int32_t id;
	const char *name;
	dbus_message_get_args(msg, NULL, DBUS_TYPE_INT32, &id, DBUS_TYPE_STRING, &name,
			      DBUS_TYPE_INVALID);
	struct menu_item *item = menu_find_item(menu->root, id);
	if (!item)
		return unknown_id(msg, id);
	/* Build the one-entry dict and lift its variant out. */
	DBusMessage *tmp = dbus_message_new_method_return(msg);
	DBusMessage *reply = NULL;
	DBusMessageIter it, dict, entry, var, out;
	if (!tmp)
		return NULL;
	const char *names[] = {name};
	dbus_message_iter_init_append(tmp, &it);
	if (!put_props(&it, item, names, 1, PROPS_FULL))
		goto out;
	dbus_message_iter_init(tmp, &it);
	dbus_message_iter_recurse(&it, &dict);
	if (dbus_message_iter_get_arg_type(&dict) != DBUS_TYPE_DICT_ENTRY) {
		reply = bus_error(msg, DBUS_ERROR_INVALID_ARGS, "Menu item %d has no property %s",
				  (int)id, name);
		goto out;
	}
	dbus_message_iter_recurse(&dict, &entry);
	dbus_message_iter_next(&entry);
	dbus_message_iter_recurse(&entry, &var);
	reply = dbus_message_new_method_return(msg);
	if (!reply)
		goto out;
	char *sig = dbus_message_iter_get_signature(&var);
	DBusMessageIter ovar;
	dbus_message_iter_init_append(reply, &out);
	bool ok = sig && dbus_message_iter_open_container(&out, DBUS_TYPE_VARIANT, sig, &ovar);
	if (ok) {
		int type = dbus_message_iter_get_arg_type(&var);
		union {
			const char *s;
			dbus_bool_t b;
			dbus_int32_t i;
		} v;
		dbus_message_iter_get_basic(&var, &v);
		ok = dbus_message_iter_append_basic(&ovar, type, &v) &&
		     dbus_message_iter_close_container(&out, &ovar);
	}
	dbus_free(sig);
	if (!ok) {
		dbus_message_unref(reply);
		reply = NULL;
	}
out:
	dbus_message_unref(tmp);
	return reply;
}

static DBusMessage *on_event(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	DBusMessageIter it;
	dbus_int32_t id;
	const char *event;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_get_basic(&it, &id);
	dbus_message_iter_next(&it);
	dbus_message_iter_get_basic(&it, &event);
	/* The data variant may hold anything (Plasma: s "", others: i 0): unused. */
	if (!menu_find_item(menu->root, id))
		return unknown_id(msg, id);
	if (strcmp(event, "clicked") == 0)
		menu_queue_click(menu, id);
	return dbus_message_new_method_return(msg);
}

static DBusMessage *on_event_group(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	DBusMessageIter it, arr, st;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_recurse(&it, &arr);
	int32_t *errors = NULL;
	size_t n_errors = 0, n_events = 0;
	while (dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRUCT) {
		dbus_int32_t id;
		const char *event;
		dbus_message_iter_recurse(&arr, &st);
		dbus_message_iter_get_basic(&st, &id);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &event);
		n_events++;
		if (!menu_find_item(menu->root, id)) {
			int32_t *grown = realloc(errors, (n_errors + 1) * sizeof(*grown));
			if (grown) {
				errors = grown;
				errors[n_errors++] = id;
			}
		} else if (strcmp(event, "clicked") == 0) {
			menu_queue_click(menu, id);
		}
		dbus_message_iter_next(&arr);
	}
	DBusMessage *reply;
	if (n_events > 0 && n_errors == n_events) {
		reply =
		    bus_error(msg, DBUS_ERROR_INVALID_ARGS, "No menu item with any of these ids");
	} else {
		reply = dbus_message_new_method_return(msg);
		const int32_t *ev = errors;
		if (reply && !dbus_message_append_args(reply, DBUS_TYPE_ARRAY, DBUS_TYPE_INT32, &ev,
						       (int)n_errors, DBUS_TYPE_INVALID)) {
			dbus_message_unref(reply);
			reply = NULL;
		}
	}
	free(errors);
	return reply;
}

static DBusMessage *on_about_to_show(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	dbus_int32_t id;
	dbus_message_get_args(msg, NULL, DBUS_TYPE_INT32, &id, DBUS_TYPE_INVALID);
	if (!menu_find_item(menu->root, id))
		return unknown_id(msg, id);
	/* The tree is always current (rebuilt on every model change), so no
	 * update is needed; true would make Plasma swallow our next
	 * LayoutUpdated for this id. */
	DBusMessage *reply = dbus_message_new_method_return(msg);
	dbus_bool_t no = FALSE;
	if (reply && !dbus_message_append_args(reply, DBUS_TYPE_BOOLEAN, &no, DBUS_TYPE_INVALID)) {
		dbus_message_unref(reply);
		reply = NULL;
	}
	return reply;
}

static DBusMessage *on_about_to_show_group(void *data, DBusMessage *msg)
{
	struct menu *menu = data;
	DBusMessageIter it, arr;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_recurse(&it, &arr);
	const dbus_int32_t *ids = NULL;
	int n = 0;
	dbus_message_iter_get_fixed_array(&arr, &ids, &n);
	int32_t *errors = calloc((size_t)n + 1, sizeof(*errors));
	if (!errors)
		return NULL;
	int n_errors = 0;
	for (int i = 0; i < n; i++)
		if (!menu_find_item(menu->root, ids[i]))
			errors[n_errors++] = ids[i];
	DBusMessage *reply = dbus_message_new_method_return(msg);
	const int32_t *none = errors, *ev = errors;
	if (reply && !dbus_message_append_args(reply, DBUS_TYPE_ARRAY, DBUS_TYPE_INT32, &none, 0,
					       DBUS_TYPE_ARRAY, DBUS_TYPE_INT32, &ev, n_errors,
					       DBUS_TYPE_INVALID)) {
		dbus_message_unref(reply);
		reply = NULL;
	}
	free(errors);
	return reply;
}

static bool get_version(void *data, DBusMessageIter *it)
{
	dbus_uint32_t v = 3;
	return dbus_message_iter_append_basic(it, DBUS_TYPE_UINT32, &v);
}

static bool get_text_direction(void *data, DBusMessageIter *it)
{
	/* TRANSLATORS: "ltr" or "rtl": the text direction of your language */
	const char *dir = C_("text direction", "ltr");
	if (strcmp(dir, "rtl") != 0)
		dir = "ltr";
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &dir);
}

static bool get_menu_status(void *data, DBusMessageIter *it)
{
	struct menu *menu = data;
	const char *status = "normal";
	for (size_t i = 0; i < menu->deps->model->n_vms; i++) {
		enum flow_state f = menu->deps->model->vms[i]->flow;
		if (f == FLOW_PENDING || f == FLOW_FAILED || f == FLOW_INTERRUPTED)
			status = "notice";
	}
	return dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &status);
}

static bool get_icon_theme_path(void *data, DBusMessageIter *it)
{
	struct menu *menu = data;
	DBusMessageIter arr;
	return dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "s", &arr) &&
	       dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &menu->icon_theme_dir) &&
	       dbus_message_iter_close_container(it, &arr);
}

static const struct bus_method menu_methods[] = {
    {"GetLayout", on_get_layout},
    {"GetGroupProperties", on_get_group_properties},
    {"GetProperty", on_get_property},
    {"Event", on_event},
    {"EventGroup", on_event_group},
    {"AboutToShow", on_about_to_show},
    {"AboutToShowGroup", on_about_to_show_group},
    {NULL, NULL},
};

static const struct bus_property menu_properties[] = {
    {"Version", get_version},
    {"TextDirection", get_text_direction},
    {"Status", get_menu_status},
    {"IconThemePath", get_icon_theme_path},
    {NULL, NULL},
};

static const struct bus_interface menu_iface = {
    .name = MENU_INTERFACE,
    .methods = menu_methods,
    .properties = menu_properties,
};
static const struct bus_interface *const menu_ifaces[] = {&menu_iface, NULL};

/* ---------------------------------------------------------- create */

struct menu *menu_create(struct bus *bus, const struct ui_deps *deps, char **err)
{
	struct menu *menu = calloc(1, sizeof(*menu));
	if (!menu)
		goto nomem;
	menu->bus = bus;
	menu->deps = deps;
	menu->revision = 1;
	menu->have_virt_manager = menu_on_path("virt-manager");
	menu->icon_theme_dir = icons_theme_dir();
	menu->notify_icon = icons_notification_icon();
	menu->click_timer = loop_timer_add(bus_loop(bus), -1, 0, menu_on_click_timer, menu);
	if (!menu->icon_theme_dir || !menu->notify_icon || !menu->click_timer)
		goto nomem;
	/* Built before export: Plasma fetches GetLayout(0, 1) the moment the
	 * item appears, and an empty first answer shows an empty menu. */
	menu->root = menu_build_tree(menu);
	if (!menu->root)
		goto nomem;
	char *xerr = NULL;
	if (!bus_export(bus, MENU_OBJECT_PATH, menu_ifaces, menu, &xerr)) {
		if (err &&
		    asprintf(err, _("cannot export the tray menu: %s"), xerr ? xerr : "") < 0)
			*err = NULL;
		free(xerr);
		goto error;
	}
	menu->exported = true;
	model_add_listener(deps->model, on_model_changed, menu);
	menu->listening = true;
	return menu;
nomem:
	if (err)
		*err = strdup(_("out of memory"));
error:
	menu_destroy(menu);
	return NULL;
}

void menu_destroy(struct menu *menu)
{
	if (!menu)
		return;
	if (menu->listening)
		model_remove_listener(menu->deps->model, on_model_changed, menu);
	if (menu->exported)
		bus_unexport(menu->bus, MENU_OBJECT_PATH);
	bus_call_cancel(menu->about_call);
	if (menu->click_timer)
		loop_timer_remove(menu->click_timer);
	menu_item_free(menu->root);
	if (menu->layout_cache)
		dbus_message_unref(menu->layout_cache);
	for (size_t i = 0; i < menu->n_keys; i++)
		free(menu->keys[i].key);
	free(menu->keys);
	free(menu->clicks);
	free(menu->icon_theme_dir);
	free(menu->notify_icon);
	free(menu);
}
