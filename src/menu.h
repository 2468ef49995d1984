/* The DBusMenu (com.canonical.dbusmenu) at /MenuBar, built from the model:
 * a submenu per watched VM, global entries, revisions, LayoutUpdated /
 * ItemsPropertiesUpdated; Event "clicked" replies first and then asks the
 * flow (flow_request / flow_set_policy) or the application's actions
 * (reload, quit; struct ui_deps). */
#ifndef VMO_MENU_H
#define VMO_MENU_H

struct bus;
struct ui_deps;
struct menu;

#define MENU_OBJECT_PATH "/MenuBar"

struct menu *menu_create(struct bus *bus, const struct ui_deps *deps, char **err);
void menu_destroy(struct menu *menu); /* NULL ok */

#endif
