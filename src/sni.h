/* The StatusNotifierItem at /StatusNotifierItem (org.kde.StatusNotifierItem),
 * its registration with org.kde.StatusNotifierWatcher (again whenever the
 * watcher gets a new owner). Reads the model; emits New* signals only when
 * what it shows changed. */
#ifndef VMO_SNI_H
#define VMO_SNI_H

#include <stdbool.h>
#include <stdint.h>

struct bus;
struct ui_deps;
struct sni;

#define SNI_OBJECT_PATH "/StatusNotifierItem"
#define SNI_INTERFACE "org.kde.StatusNotifierItem"
#define SNI_WATCHER_NAME "org.kde.StatusNotifierWatcher"
#define SNI_WATCHER_PATH "/StatusNotifierWatcher"

/* Exports the item (the menu at MENU_OBJECT_PATH must be exported first:
 * menu_create), owns org.kde.StatusNotifierItem-PID-1, then registers
 * asynchronously. deps gives the model and the summary action; it must
 * outlive the item. */
struct sni *sni_create(struct bus *bus, const struct ui_deps *deps, char **err);
void sni_destroy(struct sni *sni); /* NULL ok */

/* The bus name the item registered ("org.kde.StatusNotifierItem-PID-1"). */
const char *sni_service_name(const struct sni *sni);
/* True once the watcher accepted RegisterStatusNotifierItem. */
bool sni_registered(const struct sni *sni);
/* The xdg-activation token the tray host gave last through
 * ProvideXdgActivationToken (Wayland: only a window started with one may
 * take focus), handed over (malloc'd, NULL when none) with the time it came
 * (loop_now_ms); the slot is emptied: a token is used once. NULL sni ok. */
char *sni_take_activation_token(struct sni *sni, int64_t *when_ms);

#endif
