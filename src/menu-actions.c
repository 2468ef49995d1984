/* menu-actions.c: what a click on the tray menu does -- a flow request,
 * the policy radio, Open in virt-manager (with the desktop's activation
 * token), About, Reload, Quit -- run from a timer once the Event reply has
 * left. */
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

static void on_about_reply(void *data, DBusMessage *reply)
{
	struct menu *menu = data;
	menu->about_call = NULL;
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR)
		log_warn("About: no notification server answered (%s)",
			 dbus_message_get_error_name(reply));
}

static void show_about(struct menu *menu)
{
	DBusMessage *msg = dbus_message_new_method_call("org.freedesktop.Notifications",
							"/org/freedesktop/Notifications",
							"org.freedesktop.Notifications", "Notify");
	if (!msg)
		return;
	const char *app_name = "vmoverlay", *icon = menu->notify_icon;
	const char *summary = _("About vmoverlay");
	char *body = NULL;
	/* TRANSLATORS: About text; %s is the version */
	if (asprintf(&body,
		     _("vmoverlay %s\nGuards libvirt virtual machines that run on a "
		       "disposable overlay: when one shuts down it asks whether to commit "
		       "the session's changes into the base image or discard them."),
		     VMO_VERSION) < 0)
		body = NULL;
	const char *body_c = body ? body : "";
	dbus_uint32_t replaces = 0;
	dbus_int32_t timeout = -1;
	DBusMessageIter it, arr;
	dbus_message_iter_init_append(msg, &it);
	bool ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &app_name) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_UINT32, &replaces) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &icon) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &summary) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &body_c) &&
		  dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr) &&
		  dbus_message_iter_close_container(&it, &arr) &&
		  dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &arr) &&
		  dbus_message_iter_close_container(&it, &arr) &&
		  dbus_message_iter_append_basic(&it, DBUS_TYPE_INT32, &timeout);
	if (ok) {
		bus_call_cancel(menu->about_call);
		menu->about_call = bus_call_async(menu->bus, msg, 5000, on_about_reply, menu);
	}
	free(body);
	dbus_message_unref(msg);
}

bool menu_on_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *copy = strdup(path), *save = NULL;
	bool found = false;
	for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char *full = NULL;
		if (asprintf(&full, "%s/%s", *dir ? dir : ".", prog) < 0)
			break;
		found = access(full, X_OK) == 0;
		free(full);
	}
	free(copy);
	return found;
}

static void on_child_exit(struct loop *loop, pid_t pid, int status, void *data)
{
	log_debug("virt-manager (pid %d) exited with status %d", (int)pid, status);
}

static bool is_activation_var(const char *kv)
{
	return strncmp(kv, "XDG_ACTIVATION_TOKEN=", 21) == 0 ||
	       strncmp(kv, "DESKTOP_STARTUP_ID=", 19) == 0;
}

static void show_error(struct menu *menu, const char *summary, const char *body)
{
	if (menu->deps->actions.show_error)
		menu->deps->actions.show_error(menu->deps->actions.data, summary, body);
}

/* Detached, no shell: virt-manager --connect URI --show-domain-console NAME,
 * with the desktop's xdg-activation token so the window may take focus on
 * Wayland: in XDG_ACTIVATION_TOKEN (the xdg-activation convention) and in
 * DESKTOP_STARTUP_ID (GTK3, virt-manager's toolkit, reads only that). The
 * token is used once; tokens we were started with are never passed on. */
static void open_virt_manager(struct menu *menu, const char *vm)
{
	const struct config *cfg = menu->deps->actions.config
				       ? menu->deps->actions.config(menu->deps->actions.data)
				       : NULL;
	const char *uri = cfg && cfg->connect ? cfg->connect : "qemu:///system";
	char *argv[] = {"virt-manager",          "--connect", (char *)uri,
			"--show-domain-console", (char *)vm,  NULL};
	size_t n_env = 0;
	while (environ[n_env])
		n_env++;
	char **envp = calloc(n_env + 3, sizeof(*envp));
	char *xdg_env = NULL, *startup_env = NULL;
	char *token = menu->deps->actions.take_activation_token
			  ? menu->deps->actions.take_activation_token(menu->deps->actions.data)
			  : NULL;
	if (!envp) {
		free(token);
		return;
	}
	size_t j = 0;
	for (size_t i = 0; i < n_env; i++)
		if (!is_activation_var(environ[i]))
			envp[j++] = environ[i];
	if (token && asprintf(&xdg_env, "XDG_ACTIVATION_TOKEN=%s", token) >= 0)
		envp[j++] = xdg_env;
	if (token && asprintf(&startup_env, "DESKTOP_STARTUP_ID=%s", token) >= 0)
		envp[j++] = startup_env;
	log_debug("starting virt-manager for %s %s an activation token", vm,
		  token ? "with" : "without");

	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	/* The loop blocks signals it reads via signalfd; the child must not
	 * inherit that mask. */
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
					    POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int r = posix_spawnp(&pid, "virt-manager", NULL, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	free(xdg_env);
	free(startup_env);
	free(token);
	free(envp);
	if (r != 0) {
		log_warn("cannot start virt-manager: %s", strerror(r));
		show_error(menu, _("Cannot start virt-manager"), strerror(r));
		return;
	}
	loop_child_watch(bus_loop(menu->bus), pid, on_child_exit, NULL);
}

static void refused(struct menu *menu, const struct menu_item *item, char *why)
{
	log_info("menu: request for %s refused: %s", item->vm ? item->vm : "?", why ? why : "");
	/* TRANSLATORS: notification title when a menu request is refused; %s is the VM */
	char *title = NULL;
	if (asprintf(&title, _("%s: not possible right now"), item->vm ? item->vm : "") < 0)
		title = NULL;
	show_error(menu, title ? title : "", why ? why : "");
	free(title);
	free(why);
}

static void run_click(struct menu *menu, int32_t id)
{
	struct menu_item *item = menu_find_item(menu->root, id);
	if (!item || !item->enabled || !item->visible) {
		log_debug("menu: click on id %d ignored (gone, disabled or hidden)", (int)id);
		return;
	}
	const struct ui_deps *deps = menu->deps;
	struct vm *vm = item->vm ? model_find(deps->model, item->vm) : NULL;
	char *why = NULL;
	int32_t force = 0;
	switch (item->role) {
	case ROLE_ACTION:
		if (vm && deps->flow && !flow_request(deps->flow, vm, item->action, &why))
			refused(menu, item, why);
		break;
	case ROLE_POLICY:
		/* The host already flipped its radio locally: always resend the
		 * group's real state afterwards. */
		force = item->parent_id;
		if (vm && deps->flow && !flow_set_policy(deps->flow, vm, item->policy, &why))
			refused(menu, item, why);
		break;
	case ROLE_VIRT_MANAGER:
		if (vm)
			open_virt_manager(menu, vm->name);
		break;
	case ROLE_RELOAD:
		if (deps->actions.reload_config)
			deps->actions.reload_config(deps->actions.data);
		break;
	case ROLE_ABOUT:
		show_about(menu);
		break;
	case ROLE_QUIT:
		/* The Event reply is queued; make sure it leaves before we exit. */
		dbus_connection_flush(bus_connection(menu->bus));
		if (deps->actions.quit)
			deps->actions.quit(deps->actions.data, 0);
		return;
	default:
		break;
	}
	menu_rebuild(menu, force);
}

void menu_on_click_timer(struct loop *loop, struct loop_timer *t, void *data)
{
	struct menu *menu = data;
	/* run_click may quit or rebuild: work on a snapshot of the queue. */
	size_t n = menu->n_clicks;
	int32_t *ids = menu->clicks;
	menu->clicks = NULL;
	menu->n_clicks = menu->cap_clicks = 0;
	for (size_t i = 0; i < n && !loop_quitting(loop); i++)
		run_click(menu, ids[i]);
	free(ids);
}

void menu_queue_click(struct menu *menu, int32_t id)
{
	if (menu->n_clicks == menu->cap_clicks) {
		size_t cap = menu->cap_clicks ? menu->cap_clicks * 2 : 4;
		if (cap > 64)
			return; /* a flood of clicks within one iteration: drop */
		int32_t *grown = realloc(menu->clicks, cap * sizeof(*grown));
		if (!grown)
			return;
		menu->clicks = grown;
		menu->cap_clicks = cap;
	}
	menu->clicks[menu->n_clicks++] = id;
	loop_timer_arm(menu->click_timer, 0, 0);
}
