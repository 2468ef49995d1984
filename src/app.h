/* The one struct main owns: every module's handle, wired together.
 * No other global mutable state. Only main.c includes this header: the
 * modules get what they need at creation (struct ui_deps, flow_ui,
 * virt_events). */
#ifndef VMO_APP_H
#define VMO_APP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "ui.h"

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
	/* What the UI modules get: loop, model, flow and the actions below
	 * (main.c's app_* functions); they never see this struct. */
	struct ui_deps ui;

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


#endif
