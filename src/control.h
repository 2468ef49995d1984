/* Headless control of the running instance: the well-known name
 * io.github.vmoverlay (one instance per session), object /io/github/vmoverlay,
 * interface io.github.vmoverlay.Control1 (dbus-xml/), and the CLI verbs that
 * call it (vmoverlay status|commit VM|discard VM|keep VM|quit). */
#ifndef VMO_CONTROL_H
#define VMO_CONTROL_H

#include <stdbool.h>

struct bus;
struct ui_deps;
struct cli;
struct control;

#define CONTROL_BUS_NAME "io.github.vmoverlay"
#define CONTROL_OBJECT_PATH "/io/github/vmoverlay"
#define CONTROL_INTERFACE "io.github.vmoverlay.Control1"

/* Claims CONTROL_BUS_NAME (fails with a translated *err if another
 * instance owns it) and exports the control object. */
struct control *control_create(struct bus *bus, const struct ui_deps *deps, char **err);
void control_destroy(struct control *c); /* NULL ok */

/* Runs a CLI verb against the running instance. Prints the result (status
 * lines or the refusal) and returns the exit code: 0 done, 1 refused,
 * 2 no running instance. */
int control_client_run(const struct cli *cli);

#endif
