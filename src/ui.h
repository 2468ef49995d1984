/* What the user-interface modules (sni, menu, control, notify, demo) are
 * given at creation: the loop, the model they read, the flow they ask to
 * act, and the few things only the application can do (quit, reload the
 * configuration, ...) as function pointers. main.c fills it and owns it;
 * the UI never reaches back into main (issue 16: no module but main.c
 * includes app.h). `flow` may still be NULL when a module is created (the
 * flow is made after the notifier it reports to) and is read at use. */
#ifndef VMO_UI_H
#define VMO_UI_H

#include <stdbool.h>

struct config;
struct flow;
struct loop;
struct model;

struct app_actions {
	/* End the loop cleanly (menu Quit, control Quit). */
	void (*quit)(void *data, int code);
	/* Re-read the configuration; false (and the error shown) on failure. */
	bool (*reload_config)(void *data);
	/* The state summary (tray Activate). */
	void (*show_summary)(void *data);
	/* The configuration in force (it changes on reload). */
	const struct config *(*config)(void *data);
	/* An error the user must see (a notification where possible). */
	void (*show_error)(void *data, const char *summary, const char *body);
	/* The newest xdg-activation token a host gave us (tray or notification
	 * server), taken: malloc'd, or NULL. */
	char *(*take_activation_token)(void *data);
	void *data;
};

struct ui_deps {
	struct loop *loop;
	struct model *model;
	struct flow *flow;
	struct app_actions actions;
};

#endif
