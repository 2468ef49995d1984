/* The one struct main owns: every module's handle, wired together.
 * No other global mutable state. */
#ifndef VMO_APP_H
#define VMO_APP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

struct loop;
struct loop_timer;
struct bus;
struct sni;
struct menu;
struct control;
struct virt_watcher;
struct flow;
struct notifier;
struct demo;
struct term;
struct statefile;
typedef struct DBusConnection DBusConnection;

struct app {
	struct loop *loop;
	struct cli cli;
	struct config *config;
	struct model model;

	DBusConnection *conn; /* session bus */
	struct bus *bus;      /* object dispatch (bus.c) */
	struct sni *sni;
	struct menu *menu;
	struct control *control;
	struct virt_watcher *virt;
	struct flow *flow;
	struct notifier *notifier;
	struct demo *demo;
	struct term *term; /* the terminal front end (term.c) */

	struct statefile *state; /* $XDG_STATE_HOME/vmoverlay/state */
	char *state_dir;          /* $XDG_STATE_HOME/vmoverlay */
	int state_lock;           /* fd holding flock on state_dir/lock, -1 if none */
	int exit_code;

	/* app_quit() while a commit runs: the loop goes on until the flow
	 * has stopped it (flow_stop), at most until quit_deadline_ms. */
	bool quitting;
	int quit_code;
	int64_t quit_deadline_ms;
	struct loop_timer *quit_timer;
};

/* Re-reads the configuration (SIGHUP, menu "Reload configuration"). On error
 * the old config stays and the error is shown; returns false. */
bool app_reload_config(struct app *app);
/* Ends the loop cleanly (menu Quit, control Quit, SIGTERM, session bus
 * lost). A running commit is stopped first and waited for (flow_stop):
 * no qemu-img outlives the applet; its journal makes the next start show
 * it as interrupted. */
void app_quit(struct app *app, int code);
/* Shows the state summary (tray Activate). */
void app_show_summary(struct app *app);

#endif
