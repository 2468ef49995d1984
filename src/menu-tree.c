/* menu-tree.c: the tray menu's item tree, built from the model on every
 * change (one submenu per VM: state, actions, the policy radio, Open in
 * virt-manager; then reload, about, quit), with ids from an allocator keyed
 * by role and VM so an item keeps its id for the process lifetime; and the
 * diff of two trees that decides between LayoutUpdated and
 * ItemsPropertiesUpdated. */
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

void menu_item_free(struct menu_item *it)
{
	if (!it)
		return;
	for (size_t i = 0; i < it->n_children; i++)
		menu_item_free(it->children[i]);
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
	menu_item_free(it);
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
	/* Several disks (issue 15): what a decision applies to, the total and
	 * one short line per disk (target, size, the overlay's file name); one
	 * disk stays as short as above. Made only for several disks, so a VM
	 * with one disk has no hidden items; the count rarely changes, and
	 * when it does the layout is sent again. */
	for (size_t i = 0; vm->n_disks > 1 && i <= vm->n_disks; i++) {
		char key[32], line[512];
		if (i == 0) {
			snprintf(key, sizeof key, "disks");
			vm_disks_total_line(vm, line, sizeof line);
		} else {
			snprintf(key, sizeof key, "disk-%zu", i - 1);
			vm_disk_line(vm, i - 1, false, line, sizeof line);
		}
		it = add_item(menu, sub, KIND_STANDARD, vm->name, key, line, true);
		if (!it)
			return false;
		it->role = ROLE_STATE;
		it->enabled = false;
	}
	/* A chain deeper than one: "base.qcow2 ← template.qcow2 ← win.qcow2"
	 * (issue 15 item 4), on a line of its own so the state line stays
	 * short. */
	char *chain = vm_chain_text(vm);
	it = add_item(menu, sub, KIND_STANDARD, vm->name, "chain", chain ? chain : "", true);
	free(chain);
	if (!it)
		return false;
	it->role = ROLE_STATE;
	it->enabled = false;
	it->visible = it->label && *it->label;
	/* Why an operation will be refused or a journal is not acted on
	 * (issue 12): a commit journal no domain owns, another VM's disk, a
	 * check that could not finish, an Undo that would lose a newer session. */
	const char *notes[][2] = {
	    {"notice", vm->notice}, {"note-check", vm->check_note}, {"note-undo", vm->undo_note}};
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

struct menu_item *menu_build_tree(struct menu *menu)
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
	menu_item_free(root);
	return NULL;
}

struct menu_item *menu_find_item(struct menu_item *it, int32_t id)
{
	if (!it)
		return NULL;
	if (it->id == id)
		return it;
	for (size_t i = 0; i < it->n_children; i++) {
		struct menu_item *found = menu_find_item(it->children[i], id);
		if (found)
			return found;
	}
	return NULL;
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
void menu_diff_tree(const struct menu_item *old_root, const struct menu_item *it,
		    int32_t force_parent, struct update_batch *b, int32_t **parents,
		    size_t *n_parents, bool under_force)
{
	const struct menu_item *old = menu_find_item((struct menu_item *)old_root, it->id);
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
		menu_diff_tree(old_root, it->children[i], force_parent, b, parents, n_parents,
			       it->id == force_parent && force_parent > 0);
}
