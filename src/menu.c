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
#include "ui.h"
#include "model.h"

#define MENU_INTERFACE "com.canonical.dbusmenu"

extern char **environ;

enum item_kind { KIND_ROOT, KIND_SUBMENU, KIND_STANDARD, KIND_SEPARATOR, KIND_RADIO };

enum item_role {
	ROLE_NONE = 0,
	ROLE_STATE,
	ROLE_ACTION, /* flow_request(action) */
	ROLE_POLICY, /* flow_set_policy(policy) */
	ROLE_VIRT_MANAGER,
	ROLE_RELOAD,
	ROLE_ABOUT,
	ROLE_QUIT,
};

struct menu_item {
	int32_t id;
	int32_t parent_id;
	enum item_kind kind;
	enum item_role role;
	enum vm_action action;
	enum vmo_policy policy;
	char *vm; /* per-VM items */
	char *label;
	bool enabled;
	bool visible;
	int toggle; /* radio: 0/1 */
	struct menu_item **children;
	size_t n_children;
};

struct menu_id_key {
	char *key;
	int32_t id;
};

struct menu {
	struct bus *bus;
	const struct ui_deps *deps;
	struct menu_item *root;
	uint32_t revision;
	struct menu_id_key *keys;
	size_t n_keys;
	int32_t next_id;
	char *icon_theme_dir;
	char *notify_icon;
	bool have_virt_manager;
	bool exported;
	bool listening;
	struct loop_timer *click_timer;
	int32_t *clicks;
	size_t n_clicks;
	size_t cap_clicks;
	struct bus_call *about_call;
	/* The last GetLayout reply asked without property names (what hosts
	 * send), kept until the tree changes: marshalling a large menu through
	 * libdbus's iterators costs milliseconds, a copy microseconds. */
	DBusMessage *layout_cache;
	int32_t cache_parent;
	int32_t cache_depth;
};

/* ------------------------------------------------------------- tree */

static void item_free(struct menu_item *it)
{
	if (!it)
		return;
	for (size_t i = 0; i < it->n_children; i++)
		item_free(it->children[i]);
	free(it->children);
	free(it->vm);
	free(it->label);
	free(it);
}

static int32_t id_for(struct menu *menu, const char *key)
{
	for (size_t i = 0; i < menu->n_keys; i++)
		if (strcmp(menu->keys[i].key, key) == 0)
			return menu->keys[i].id;
	struct menu_id_key *grown = realloc(menu->keys, (menu->n_keys + 1) * sizeof(*grown));
	char *copy = strdup(key);
	if (!grown || !copy) {
		free(copy);
		if (grown)
			menu->keys = grown;
		return -1;
	}
	menu->keys = grown;
	menu->keys[menu->n_keys].key = copy;
	menu->keys[menu->n_keys].id = ++menu->next_id;
	return menu->keys[menu->n_keys++].id;
}

/* Labels use '_' for mnemonics: a literal one in a VM name is doubled. */
static char *escape_mnemonic(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		n += *p == '_' ? 2 : 1;
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (const char *p = s; *p; p++) {
		*o++ = *p;
		if (*p == '_')
			*o++ = '_';
	}
	*o = '\0';
	return out;
}

/* Builds one item with id from key = "vm\x1frole" (vm may be NULL). */
static struct menu_item *add_item(struct menu *menu, struct menu_item *parent, enum item_kind kind,
				  const char *vm, const char *role_key, const char *label,
				  bool escape)
{
	char *key = NULL;
	if (asprintf(&key, "%s\x1f%s", vm ? vm : "", role_key) < 0)
		return NULL;
	struct menu_item *it = calloc(1, sizeof(*it));
	struct menu_item **grown =
	    realloc(parent->children, (parent->n_children + 1) * sizeof(*grown));
	if (grown)
		parent->children = grown;
	if (!it || !grown)
		goto error;
	it->id = id_for(menu, key);
	it->parent_id = parent->id;
	it->kind = kind;
	it->enabled = true;
	it->visible = true;
	it->vm = vm ? strdup(vm) : NULL;
	it->label = label ? (escape ? escape_mnemonic(label) : strdup(label)) : NULL;
	if (it->id < 0 || (vm && !it->vm) || (label && !it->label))
		goto error;
	parent->children[parent->n_children++] = it;
	free(key);
	return it;
error:
	item_free(it);
	free(key);
	return NULL;
}

static bool flow_can(const struct menu *menu, const struct vm *vm, enum vm_action a)
{
	return menu->deps->flow && (vm->actions & ACT_BIT(a));
}

static bool build_vm(struct menu *menu, struct menu_item *root, const struct vm *vm)
{
	struct menu_item *sub = add_item(menu, root, KIND_SUBMENU, vm->name, "vm", vm->name, true);
	if (!sub)
		return false;
	/* Short: the submenu already carries the name, and a long first line
	 * made Plasma 6 slide the submenu over its parent. The details (size,
	 * countdown, error) are in the tooltip. */
	struct menu_item *it =
		add_item(menu, sub, KIND_STANDARD, vm->name, "state", flow_state_label(vm->flow), true);
	if (!it)
		return false;
	it->role = ROLE_STATE;
	it->enabled = false;
	/* Why an operation will be refused or a journal is not acted on
	 * (issue 12): a commit journal no domain owns, another VM's disk, a
	 * check that could not finish, an Undo that would lose a newer session. */
	const char *notes[][2] = {{"notice", vm->notice},
				  {"note-check", vm->check_note},
				  {"note-undo", vm->undo_note}};
	for (size_t i = 0; i < sizeof notes / sizeof *notes; i++) {
		it = add_item(menu, sub, KIND_STANDARD, vm->name, notes[i][0],
			      notes[i][1] ? notes[i][1] : "", true);
		if (!it)
			return false;
		it->role = ROLE_STATE;
		it->enabled = false;
		it->visible = notes[i][1] != NULL;
	}
	if (!add_item(menu, sub, KIND_SEPARATOR, vm->name, "sep1", NULL, false))
		return false;

	static const struct {
		const char *key;
		enum vm_action action;
		const char *label;
	} actions[] = {
	    {"commit", ACT_COMMIT, N_("_Commit changes into base…")},
	    {"discard", ACT_DISCARD, N_("_Discard changes")},
	    {"keep", ACT_KEEP, N_("_Keep for now")},
	    {"resume", ACT_RESUME, N_("_Resume commit")},
	    {"retry", ACT_RETRY, N_("Re_try")},
	    {"undo", ACT_UNDO_DISCARD, N_("_Undo discard")},
	    {"cancel", ACT_CANCEL, N_("C_ancel commit")},
	};
	for (size_t i = 0; i < sizeof actions / sizeof *actions; i++) {
		it = add_item(menu, sub, KIND_STANDARD, vm->name, actions[i].key,
			      _(actions[i].label), false);
		if (!it)
			return false;
		it->role = ROLE_ACTION;
		it->action = actions[i].action;
		it->enabled = flow_can(menu, vm, actions[i].action);
		switch (actions[i].action) {
		case ACT_KEEP:
			it->visible = vm->flow == FLOW_PENDING || vm->flow == FLOW_INTERRUPTED;
			break;
		case ACT_RESUME:
			it->visible = vm->flow == FLOW_INTERRUPTED;
			break;
		case ACT_RETRY:
			it->visible = vm->flow == FLOW_FAILED;
			break;
		case ACT_UNDO_DISCARD:
			it->visible = vm->has_discarded;
			break;
		case ACT_CANCEL:
			it->visible = vm->flow == FLOW_COMMITTING;
			break;
		default:
			break;
		}
	}
	if (!add_item(menu, sub, KIND_SEPARATOR, vm->name, "sep2", NULL, false))
		return false;

	struct menu_item *pol = add_item(menu, sub, KIND_SUBMENU, vm->name, "policy",
					 C_("menu", "_When it shuts down"), false);
	if (!pol)
		return false;
	static const char *const policy_labels[POLICY_COUNT] = {
	    [POLICY_ASK] = N_("_Ask"),
	    [POLICY_COMMIT] = N_("_Commit"),
	    [POLICY_DISCARD] = N_("_Discard"),
	    [POLICY_KEEP] = N_("_Keep"),
	};
	for (int p = 0; p < POLICY_COUNT; p++) {
		char key[32];
		snprintf(key, sizeof key, "policy-%s", policy_name((enum vmo_policy)p));
		it = add_item(menu, pol, KIND_RADIO, vm->name, key, _(policy_labels[p]), false);
		if (!it)
			return false;
		it->role = ROLE_POLICY;
		it->policy = (enum vmo_policy)p;
		it->toggle = vm->policy == (enum vmo_policy)p;
		it->enabled = menu->deps->flow != NULL;
	}
	it = add_item(menu, sub, KIND_STANDARD, vm->name, "virt-manager",
		      C_("menu", "_Open in virt-manager"), false);
	if (!it)
		return false;
	it->role = ROLE_VIRT_MANAGER;
	it->visible = menu->have_virt_manager;
	return true;
}

static struct menu_item *build_tree(struct menu *menu)
{
	struct menu_item *root = calloc(1, sizeof(*root));
	if (!root)
		return NULL;
	root->id = 0;
	root->kind = KIND_ROOT;
	root->enabled = root->visible = true;
	const struct model *m = menu->deps->model;
	struct menu_item *it;
	for (size_t i = 0; i < m->n_vms; i++)
		if (!build_vm(menu, root, m->vms[i]))
			goto error;
	if (m->n_vms == 0) {
		it = add_item(menu, root, KIND_STANDARD, NULL, "no-vms",
			      C_("menu", "No virtual machines configured"), false);
		if (!it)
			goto error;
		it->enabled = false;
	}
	if (!add_item(menu, root, KIND_SEPARATOR, NULL, "sep-global", NULL, false))
		goto error;
	if (!(it = add_item(menu, root, KIND_STANDARD, NULL, "reload",
			    C_("menu", "_Reload configuration"), false)))
		goto error;
	it->role = ROLE_RELOAD;
	if (!(it = add_item(menu, root, KIND_STANDARD, NULL, "about",
			    C_("menu", "_About vmoverlay"), false)))
		goto error;
	it->role = ROLE_ABOUT;
	if (!(it = add_item(menu, root, KIND_STANDARD, NULL, "quit", C_("menu", "_Quit"), false)))
		goto error;
	it->role = ROLE_QUIT;
	return root;
error:
	item_free(root);
	return NULL;
}

static struct menu_item *find_item(struct menu_item *it, int32_t id)
{
	if (!it)
		return NULL;
	if (it->id == id)
		return it;
	for (size_t i = 0; i < it->n_children; i++) {
		struct menu_item *found = find_item(it->children[i], id);
		if (found)
			return found;
	}
	return NULL;
}

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

struct update_batch {
	const struct menu_item **items;
	size_t n;
};

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

static bool props_differ(const struct menu_item *a, const struct menu_item *b)
{
	if (a->enabled != b->enabled || a->visible != b->visible || a->toggle != b->toggle)
		return true;
	if (!a->label || !b->label)
		return a->label != b->label;
	return strcmp(a->label, b->label) != 0;
}

static bool children_differ(const struct menu_item *a, const struct menu_item *b)
{
	if (a->n_children != b->n_children)
		return true;
	for (size_t i = 0; i < a->n_children; i++)
		if (a->children[i]->id != b->children[i]->id)
			return true;
	return false;
}

/* Walks the new tree: containers whose child list changed go into parents,
 * items whose properties changed (or that sit under force_parent) into b. */
static void diff_tree(const struct menu_item *old_root, const struct menu_item *it,
		      int32_t force_parent, struct update_batch *b, int32_t **parents,
		      size_t *n_parents, bool under_force)
{
	const struct menu_item *old = find_item((struct menu_item *)old_root, it->id);
	if (old && (under_force || props_differ(old, it))) {
		const struct menu_item **grown = realloc(b->items, (b->n + 1) * sizeof(*grown));
		if (grown) {
			b->items = grown;
			b->items[b->n++] = it;
		}
	}
	if (old && (it->kind == KIND_ROOT || it->kind == KIND_SUBMENU) &&
	    children_differ(old, it)) {
		int32_t *grown = realloc(*parents, (*n_parents + 1) * sizeof(*grown));
		if (grown) {
			*parents = grown;
			(*parents)[(*n_parents)++] = it->id;
		}
	}
	for (size_t i = 0; i < it->n_children; i++)
		diff_tree(old_root, it->children[i], force_parent, b, parents, n_parents,
			  it->id == force_parent && force_parent > 0);
}

/* Rebuilds from the model and tells hosts what changed. force_parent > 0:
 * send that submenu's items even if unchanged (a host flipped a radio
 * locally; our state is the authority). */
static void menu_rebuild(struct menu *menu, int32_t force_parent)
{
	struct menu_item *next = build_tree(menu);
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
	diff_tree(old, next, force_parent, &b, &parents, &n_parents, false);
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
	item_free(old);
}

static void on_model_changed(void *data)
{
	menu_rebuild(data, 0);
}

/* ---------------------------------------------------------- actions */

static void on_about_reply(void *data, DBusMessage *reply)
{
	struct menu *menu = data;
	menu->about_call = NULL;
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR)
		log_warn("About: no notification server answered (%s)",
			 dbus_message_get_error_name(reply));
}

static void show_about(struct menu *menu)
{
	DBusMessage *msg = dbus_message_new_method_call("org.freedesktop.Notifications",
							"/org/freedesktop/Notifications",
							"org.freedesktop.Notifications", "Notify");
	if (!msg)
		return;
	const char *app_name = "vmoverlay", *icon = menu->notify_icon;
	const char *summary = _("About vmoverlay");
	char *body = NULL;
	/* TRANSLATORS: About text; %s is the version */
	if (asprintf(&body,
		     _("vmoverlay %s\nGuards libvirt virtual machines that run on a "
		       "disposable overlay: when one shuts down it asks whether to commit "
		       "the session's changes into the base image or discard them."),
		     VMO_VERSION) < 0)
		body = NULL;
	const char *body_c = body ? body : "";
	dbus_uint32_t replaces = 0;
	dbus_int32_t timeout = -1;
	DBusMessageIter it, arr;
	dbus_message_iter_init_append(msg, &it);
	bool ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &app_name) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &replaces) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &icon) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &summary) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &body_c) &&
		  dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr) &&
		  dbus_message_iter_close_container(&it, &arr) &&
		  dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &arr) &&
		  dbus_message_iter_close_container(&it, &arr) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_INT32, &timeout);
	if (ok) {
		bus_call_cancel(menu->about_call);
		menu->about_call = bus_call_async(menu->bus, msg, 5000, on_about_reply, menu);
	}
	free(body);
	dbus_message_unref(msg);
}

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *copy = strdup(path), *save = NULL;
	bool found = false;
	for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char *full = NULL;
		if (asprintf(&full, "%s/%s", *dir ? dir : ".", prog) < 0)
			break;
		found = access(full, X_OK) == 0;
		free(full);
	}
	free(copy);
	return found;
}

static void on_child_exit(struct loop *loop, pid_t pid, int status, void *data)
{
	log_debug("virt-manager (pid %d) exited with status %d", (int)pid, status);
}

static bool is_activation_var(const char *kv)
{
	return strncmp(kv, "XDG_ACTIVATION_TOKEN=", 21) == 0 ||
	       strncmp(kv, "DESKTOP_STARTUP_ID=", 19) == 0;
}

static void show_error(struct menu *menu, const char *summary, const char *body)
{
	if (menu->deps->actions.show_error)
		menu->deps->actions.show_error(menu->deps->actions.data, summary, body);
}

/* Detached, no shell: virt-manager --connect URI --show-domain-console NAME,
 * with the desktop's xdg-activation token so the window may take focus on
 * Wayland: in XDG_ACTIVATION_TOKEN (the xdg-activation convention) and in
 * DESKTOP_STARTUP_ID (GTK3, virt-manager's toolkit, reads only that). The
 * token is used once; tokens we were started with are never passed on. */
static void open_virt_manager(struct menu *menu, const char *vm)
{
	const struct config *cfg =
	    menu->deps->actions.config ? menu->deps->actions.config(menu->deps->actions.data) : NULL;
	const char *uri = cfg && cfg->connect ? cfg->connect : "qemu:///system";
	char *argv[] = {"virt-manager",          "--connect", (char *)uri,
			"--show-domain-console", (char *)vm,  NULL};
	size_t n_env = 0;
	while (environ[n_env])
		n_env++;
	char **envp = calloc(n_env + 3, sizeof(*envp));
	char *xdg_env = NULL, *startup_env = NULL;
	char *token = menu->deps->actions.take_activation_token
	                  ? menu->deps->actions.take_activation_token(menu->deps->actions.data)
	                  : NULL;
	if (!envp) {
		free(token);
		return;
	}
	size_t j = 0;
	for (size_t i = 0; i < n_env; i++)
		if (!is_activation_var(environ[i]))
			envp[j++] = environ[i];
	if (token && asprintf(&xdg_env, "XDG_ACTIVATION_TOKEN=%s", token) >= 0)
		envp[j++] = xdg_env;
	if (token && asprintf(&startup_env, "DESKTOP_STARTUP_ID=%s", token) >= 0)
		envp[j++] = startup_env;
	log_debug("starting virt-manager for %s %s an activation token", vm,
	          token ? "with" : "without");

	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	/* The loop blocks signals it reads via signalfd; the child must not
	 * inherit that mask. */
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
					    POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int r = posix_spawnp(&pid, "virt-manager", NULL, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	free(xdg_env);
	free(startup_env);
	free(token);
	free(envp);
	if (r != 0) {
		log_warn("cannot start virt-manager: %s", strerror(r));
		show_error(menu, _("Cannot start virt-manager"), strerror(r));
		return;
	}
	loop_child_watch(bus_loop(menu->bus), pid, on_child_exit, NULL);
}

static void refused(struct menu *menu, const struct menu_item *item, char *why)
{
	log_info("menu: request for %s refused: %s", item->vm ? item->vm : "?", why ? why : "");
	/* TRANSLATORS: notification title when a menu request is refused; %s is the VM */
	char *title = NULL;
	if (asprintf(&title, _("%s: not possible right now"), item->vm ? item->vm : "") < 0)
		title = NULL;
	show_error(menu, title ? title : "", why ? why : "");
	free(title);
	free(why);
}

static void run_click(struct menu *menu, int32_t id)
{
	struct menu_item *item = find_item(menu->root, id);
	if (!item || !item->enabled || !item->visible) {
		log_debug("menu: click on id %d ignored (gone, disabled or hidden)", (int)id);
		return;
	}
	const struct ui_deps *deps = menu->deps;
	struct vm *vm = item->vm ? model_find(deps->model, item->vm) : NULL;
	char *why = NULL;
	int32_t force = 0;
	switch (item->role) {
	case ROLE_ACTION:
		if (vm && deps->flow && !flow_request(deps->flow, vm, item->action, &why))
			refused(menu, item, why);
		break;
	case ROLE_POLICY:
		/* The host already flipped its radio locally: always resend the
		 * group's real state afterwards. */
		force = item->parent_id;
		if (vm && deps->flow && !flow_set_policy(deps->flow, vm, item->policy, &why))
			refused(menu, item, why);
		break;
	case ROLE_VIRT_MANAGER:
		if (vm)
			open_virt_manager(menu, vm->name);
		break;
	case ROLE_RELOAD:
		if (deps->actions.reload_config)
			deps->actions.reload_config(deps->actions.data);
		break;
	case ROLE_ABOUT:
		show_about(menu);
		break;
	case ROLE_QUIT:
		/* The Event reply is queued; make sure it leaves before we exit. */
		dbus_connection_flush(bus_connection(menu->bus));
		if (deps->actions.quit)
			deps->actions.quit(deps->actions.data, 0);
		return;
	default:
		break;
	}
	menu_rebuild(menu, force);
}

static void on_click_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct menu *menu = data;
	/* run_click may quit or rebuild: work on a snapshot of the queue. */
	size_t n = menu->n_clicks;
	int32_t *ids = menu->clicks;
	menu->clicks = NULL;
	menu->n_clicks = menu->cap_clicks = 0;
	for (size_t i = 0; i < n && !loop_quitting(loop); i++)
		run_click(menu, ids[i]);
	free(ids);
}

static void queue_click(struct menu *menu, int32_t id)
{
	if (menu->n_clicks == menu->cap_clicks) {
		size_t cap = menu->cap_clicks ? menu->cap_clicks * 2 : 4;
		if (cap > 64)
			return; /* a flood of clicks within one iteration: drop */
		int32_t *grown = realloc(menu->clicks, cap * sizeof(*grown));
		if (!grown)
			return;
		menu->clicks = grown;
		menu->cap_clicks = cap;
	}
	menu->clicks[menu->n_clicks++] = id;
	loop_timer_arm(menu->click_timer, 0, 0);
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
	struct menu_item *item = find_item(menu->root, parent);
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
		struct menu_item *item = n_ids ? find_item(menu->root, idv[i]) : all[i];
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
	struct menu_item *item = find_item(menu->root, id);
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
	if (!find_item(menu->root, id))
		return unknown_id(msg, id);
	if (strcmp(event, "clicked") == 0)
		queue_click(menu, id);
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
		if (!find_item(menu->root, id)) {
			int32_t *grown = realloc(errors, (n_errors + 1) * sizeof(*grown));
			if (grown) {
				errors = grown;
				errors[n_errors++] = id;
			}
		} else if (strcmp(event, "clicked") == 0) {
			queue_click(menu, id);
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
	if (!find_item(menu->root, id))
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
		if (!find_item(menu->root, ids[i]))
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
	menu->have_virt_manager = on_path("virt-manager");
	menu->icon_theme_dir = icons_theme_dir();
	menu->notify_icon = icons_notification_icon();
	menu->click_timer = loop_timer_add(bus_loop(bus), -1, 0, on_click_timer, menu);
	if (!menu->icon_theme_dir || !menu->notify_icon || !menu->click_timer)
		goto nomem;
	/* Built before export: Plasma fetches GetLayout(0, 1) the moment the
	 * item appears, and an empty first answer shows an empty menu. */
	menu->root = build_tree(menu);
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
	item_free(menu->root);
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
