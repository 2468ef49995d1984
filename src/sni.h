/* The StatusNotifierItem at /StatusNotifierItem (org.kde.StatusNotifierItem),
 * its registration with org.kde.StatusNotifierWatcher (again whenever the
 * watcher gets a new owner). Reads the model; emits New* signals only when
 * what it shows changed. */
#ifndef VMO_SNI_H
#define VMO_SNI_H

#include <stdbool.h>

struct bus;
struct app;
struct sni;

/* Exports the item and the menu path it advertises, then registers
 * asynchronously. app gives the model and app_show_summary(). */
struct sni *sni_create(struct bus *bus, struct app *app, char **err);
void sni_destroy(struct sni *sni); /* NULL ok */

#endif
