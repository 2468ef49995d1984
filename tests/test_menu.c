/* The tray menu's item tree built from the model (menu-tree.c), without a
 * bus: the lines of a VM's submenu above its actions, for one disk and for
 * several (issue 15: the total and one line per disk). The tree as hosts
 * read it over D-Bus is tested by tests/integration/tray-menu.py; this test
 * includes menu-private.h, as only the menu's own files do otherwise. */
#include <stdlib.h>
#include <string.h>

#include "menu-private.h"
#include "model.h"
#include "testlib.h"
#include "ui.h"

static struct vm_config vcs[2] = {
    {.name = "one", .policy = POLICY_ASK},
    {.name = "pair", .policy = POLICY_ASK},
};

static void set_disk(struct vm *vm, size_t i, const char *target, const char *overlay,
		     const char *base, uint64_t bytes)
{
	vm_set_str(&vm->disks[i].target, target);
	vm_set_str(&vm->disks[i].overlay, overlay);
	vm_set_str(&vm->disks[i].base, base);
	vm->disks[i].overlay_bytes = bytes;
}

static const struct menu_item *submenu_of(const struct menu_item *root, const char *vm)
{
	for (size_t i = 0; i < root->n_children; i++)
		if (root->children[i]->kind == KIND_SUBMENU && root->children[i]->vm &&
		    strcmp(root->children[i]->vm, vm) == 0)
			return root->children[i];
	return NULL;
}

/* The visible, disabled labels before the first separator: what the user
 * reads about the VM before the actions. */
static size_t info_lines(const struct menu_item *sub, const char **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < sub->n_children && sub->children[i]->kind != KIND_SEPARATOR; i++) {
		const struct menu_item *it = sub->children[i];
		CHECK(!it->enabled);
		CHECK(it->role == ROLE_STATE);
		if (it->visible && n < max)
			out[n++] = it->label;
	}
	return n;
}

static void free_menu(struct menu *menu)
{
	menu_item_free(menu->root);
	for (size_t i = 0; i < menu->n_keys; i++)
		free(menu->keys[i].key);
	free(menu->keys);
}

static void test_disk_lines(void)
{
	struct config cfg = {.vms = vcs, .n_vms = 2};
	struct model m;
	REQUIRE(model_init(&m, NULL, &cfg));
	struct vm *one = model_find(&m, "one"), *pair = model_find(&m, "pair");
	REQUIRE(one && pair);
	one->flow = pair->flow = FLOW_PENDING;
	set_disk(one, 0, "vda", "/images/one.qcow2", "/images/one-base.qcow2", 1288490189ull);
	one->n_disks = 1;
	set_disk(pair, 0, "vda", "/var/lib/libvirt/images/pair.qcow2",
		 "/var/lib/libvirt/images/pair-base.qcow2", 1288490189ull);
	/* A '_' in a file name is not a mnemonic: the label doubles it. */
	set_disk(pair, 1, "vdb", "/data/pair_data.qcow2", "/data/pair_data-base.qcow2",
		 300ull << 20);
	pair->n_disks = 2;

	struct ui_deps deps = {.model = &m};
	struct menu menu = {.deps = &deps};
	menu.root = menu_build_tree(&menu);
	REQUIRE(menu.root);
	const char *lines[8];

	/* One disk: the state line alone, as before several disks existed. */
	const struct menu_item *sub = submenu_of(menu.root, "one");
	REQUIRE(sub);
	REQUIRE(info_lines(sub, lines, 8) == 1);
	CHECK_STR_EQ(lines[0], "shut off · decision pending");

	/* Two: the state, the total, then each disk in the domain's order. */
	sub = submenu_of(menu.root, "pair");
	REQUIRE(sub);
	REQUIRE(info_lines(sub, lines, 8) == 4);
	CHECK_STR_EQ(lines[0], "shut off · decision pending");
	CHECK_STR_EQ(lines[1], "overlays 1.5 GiB on 2 disks");
	CHECK_STR_EQ(lines[2], "vda: 1.2 GiB · pair.qcow2");
	CHECK_STR_EQ(lines[3], "vdb: 300 MiB · pair__data.qcow2");

	/* A rebuild keeps every id; a size that changed changes the label only
	 * (ItemsPropertiesUpdated, not a new layout). */
	int32_t ids[64];
	size_t n_ids = sub->n_children < 64 ? sub->n_children : 64;
	for (size_t i = 0; i < n_ids; i++)
		ids[i] = sub->children[i]->id;
	pair->disks[1].overlay_bytes = 2ull << 30;
	struct menu_item *old = menu.root;
	menu.root = menu_build_tree(&menu);
	REQUIRE(menu.root);
	sub = submenu_of(menu.root, "pair");
	REQUIRE(sub && sub->n_children == n_ids);
	for (size_t i = 0; i < n_ids; i++)
		CHECK_INT_EQ(sub->children[i]->id, ids[i]);
	REQUIRE(info_lines(sub, lines, 8) == 4);
	CHECK_STR_EQ(lines[1], "overlays 3.2 GiB on 2 disks");
	CHECK_STR_EQ(lines[3], "vdb: 2.0 GiB · pair__data.qcow2");
	struct update_batch b = {0};
	int32_t *parents = NULL;
	size_t n_parents = 0;
	menu_diff_tree(old, menu.root, 0, &b, &parents, &n_parents, false);
	CHECK_INT_EQ(n_parents, 0);
	CHECK_INT_EQ(b.n, 2); /* the total and vdb */
	free(b.items);
	free(parents);
	menu_item_free(old);

	/* Down to one disk (the configuration changed): the lines go. */
	vm_disk_clear(&pair->disks[1]);
	pair->n_disks = 1;
	old = menu.root;
	menu.root = menu_build_tree(&menu);
	REQUIRE(menu.root);
	sub = submenu_of(menu.root, "pair");
	REQUIRE(sub);
	CHECK_INT_EQ(info_lines(sub, lines, 8), 1);
	b = (struct update_batch){0};
	n_parents = 0;
	parents = NULL;
	menu_diff_tree(old, menu.root, 0, &b, &parents, &n_parents, false);
	CHECK(n_parents == 1 && parents[0] == sub->id); /* LayoutUpdated for the submenu */
	free(b.items);
	free(parents);
	menu_item_free(old);

	free_menu(&menu);
	model_finish(&m);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	    {"disk_lines", test_disk_lines},
	    {0},
	};
	return test_main(argc, argv, cases);
}
