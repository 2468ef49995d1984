/* The insides of the tray menu shared by menu.c (the DBusMenu object:
 * properties, layouts, signals, methods), menu-tree.c (the item tree built
 * from the model, and its diff against the previous one) and
 * menu-actions.c (what a click does). Nothing else includes it. */
#ifndef VMO_MENU_PRIVATE_H
#define VMO_MENU_PRIVATE_H

#include <dbus/dbus.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

struct bus;
struct bus_call;
struct loop_timer;
struct ui_deps;

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

struct update_batch {
	const struct menu_item **items;
	size_t n;
};

/* menu-tree.c */
void menu_item_free(struct menu_item *it);
struct menu_item *menu_find_item(struct menu_item *it, int32_t id);
/* The whole tree from the model (NULL: out of memory). */
struct menu_item *menu_build_tree(struct menu *menu);
/* Walks the new tree: containers whose child list changed go into
 * parents, items whose properties changed (or that sit under force_parent)
 * into b. */
void menu_diff_tree(const struct menu_item *old_root, const struct menu_item *it,
		    int32_t force_parent, struct update_batch *b, int32_t **parents,
		    size_t *n_parents, bool under_force);

/* menu-actions.c */
bool menu_on_path(const char *prog);
/* A click is run from a timer, after the Event reply has left. */
void menu_queue_click(struct menu *menu, int32_t id);
/* The click timer's callback (menu->click_timer, data = menu). */
struct loop;
void menu_on_click_timer(struct loop *loop, struct loop_timer *t, void *data);

/* menu.c: rebuilds from the model and tells hosts what changed;
 * force_parent > 0 resends that submenu's items. */
void menu_rebuild(struct menu *menu, int32_t force_parent);

#endif
