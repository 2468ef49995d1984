/* Demo mode (--demo, and the README's run command without configured VMs):
 * libvirt's in-process test:///default driver, a real base + overlay pair
 * made with qemu-img in a temporary directory, the `test` domain watched and
 * shut down after a visible countdown, then the real prompt -> commit or
 * discard -> rebuild flow on those files. Cleans up at exit. */
#ifndef VMO_DEMO_H
#define VMO_DEMO_H

#include <stdbool.h>

struct ui_deps;
struct config;
struct demo;

/* Before the model is built: makes the images and rewrites cfg (connect,
 * one VM "test" with overlay/base in the temp dir). */
struct demo *demo_prepare(struct config *cfg, char **err);
/* After everything is wired: starts the countdown. */
void demo_start(struct demo *demo, const struct ui_deps *deps);
/* Seconds left before the demo shuts the VM down, -1 when not counting. */
int demo_countdown(const struct demo *demo);
/* After the demo's question was answered: checks the images with qemu-io
 * and qemu-img (the base holds the session's pattern or not, the overlay is
 * fresh or not, both pass `qemu-img check`) and writes what was proved into
 * *report (malloc'd, translated). Returns true when the images are what
 * the outcome promised. Runs the tools synchronously: call it only when the
 * demo ends. */
bool demo_report(struct demo *demo, bool committed, bool discarded, char **report);
void demo_destroy(struct demo *demo); /* NULL ok; removes the temp dir */
/* The temporary directory holding the demo's images (tests, logs). */
const char *demo_dir(const struct demo *demo);

#endif
