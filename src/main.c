/* vmoverlay's entry point: parse the command line, load the configuration,
 * wire every module to the one loop and run it. Wiring only; decisions live
 * in flow.c. */
#include <dbus/dbus.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "build-config.h"
#include "bus.h"
#include "config.h"
#include "control.h"
#include "demo.h"
#include "flow.h"
#include "i18n.h"
#include "log.h"
#include "loop.h"
#include "menu.h"
#include "model.h"
#include "notify.h"
#include "privhelper.h"
#include "sni.h"
#include "statefile.h"
#include "term.h"
#include "virt.h"

static bool app_reload_config(struct app *app)
{
	char *err = NULL;
	struct config *next = config_load(&app->cli, NULL, &err);
	if (!next) {
		log_err("configuration reload failed, keeping the old one: %s", err ? err : "");
		notifier_error(app->notifier, _("vmoverlay: configuration not reloaded"),
			       err ? err : "");
		free(err);
		return false;
	}
	if (app->demo) {
		/* The demo's VM and URI are not in any file: keep them. */
		config_free(next);
		log_info("demo mode: configuration reload ignored");
		return true;
	}
	struct config *old = app->config;
	app->config = next;
	model_reload(&app->model, next);
	virt_watcher_reconfigure(app->virt, next);
	flow_reconfigure(app->flow, next);
	config_free(old);
	log_info("configuration reloaded from %s (%zu VMs)", next->path ? next->path : "(defaults)",
		 next->n_vms);
	return true;
}

static void on_quit_wait(struct loop *loop, struct loop_timer *t, void *data)
{
	struct app *app = data;
	if (flow_busy(app->flow) && loop_now_ms() < app->quit_deadline_ms)
		return;
	if (flow_busy(app->flow))
		log_warn("quitting: an operation still runs after %d ms; leaving it",
			 flow_stop_deadline_ms(app->flow));
	loop_timer_arm(t, -1, 0);
	loop_quit(loop, app->quit_code);
}

static void app_quit(struct app *app, int code)
{
	if (code != 0)
		app->quit_code = code;
	if (app->quitting)
		return; /* already waiting (a second signal, the bus going away) */
	app->quitting = true;
	/* A commit is stopped, not left behind (flow.c, flow_stop, says why):
	 * the loop runs on until qemu-img has exited, bounded. */
	if (!app->flow || !flow_stop(app->flow)) {
		loop_quit(app->loop, app->quit_code);
		return;
	}
	log_info("quitting: waiting for the running operation to stop");
	app->quit_deadline_ms = loop_now_ms() + flow_stop_deadline_ms(app->flow);
	app->quit_timer = loop_timer_add(app->loop, 50, 50, on_quit_wait, app);
	if (!app->quit_timer)
		loop_quit(app->loop, app->quit_code);
}

static void app_show_summary(struct app *app)
{
	char line[512];
	for (size_t i = 0; i < app->model.n_vms; i++)
		log_info("summary: %s", vm_summary_line(app->model.vms[i], line, sizeof line));
	notifier_summary(app->notifier);
}

/* struct app_actions: what the UI modules may ask of the application. */
static void act_quit(void *data, int code)
{
	app_quit(data, code);
}

static bool act_reload_config(void *data)
{
	return app_reload_config(data);
}

static void act_show_summary(void *data)
{
	app_show_summary(data);
}

static const struct config *act_config(void *data)
{
	struct app *app = data;
	return app->config;
}

static void act_show_error(void *data, const char *summary, const char *body)
{
	struct app *app = data;
	notifier_error(app->notifier, summary, body);
}

/* The newer of the tray's and the notification server's tokens (KWin has
 * invalidated the older one); both are used up now. */
static char *act_take_activation_token(void *data)
{
	struct app *app = data;
	int64_t t_tray = 0, t_note = 0;
	char *token = app->sni ? sni_take_activation_token(app->sni, &t_tray) : NULL;
	char *note_token =
	    app->notifier ? notifier_take_activation_token(app->notifier, &t_note) : NULL;
	if (note_token && (!token || t_note > t_tray)) {
		free(token);
		return note_token;
	}
	free(note_token);
	return token;
}

static void on_signal(struct loop *loop, int signo, void *data)
{
	struct app *app = data;
	if (signo == SIGHUP) {
		log_info("SIGHUP: reloading the configuration");
		app_reload_config(app);
		return;
	}
	log_info("signal %d: quitting", signo);
	app_quit(app, 0);
}

static DBusHandlerResult on_bus_message(DBusConnection *conn, DBusMessage *msg, void *data)
{
	struct app *app = data;
	if (dbus_message_is_signal(msg, DBUS_INTERFACE_LOCAL, "Disconnected")) {
		/* Without the session bus there is no tray and no control: exit
		 * non-zero so the user unit restarts us. */
		fprintf(stderr, _("vmoverlay: lost the connection to the session bus; exiting\n"));
		app_quit(app, 1);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static void virt_stopped(void *data, struct vm *vm, enum vm_stop_kind kind)
{
	struct app *app = data;
	flow_on_domain_stopped(app->flow, vm, kind);
}

static void virt_started(void *data, struct vm *vm)
{
	struct app *app = data;
	flow_on_domain_started(app->flow, vm);
}

static void virt_updated(void *data, struct vm *vm)
{
	struct app *app = data;
	flow_on_domain_updated(app->flow, vm);
}

static bool bus_has_owner(DBusConnection *conn, const char *name)
{
	DBusError derr;
	dbus_error_init(&derr);
	/* A round trip to the bus daemon itself, which always answers. */
	bool has = dbus_bus_name_has_owner(conn, name, &derr);
	dbus_error_free(&derr);
	return has;
}

/* Whether a tray host or a notification server can take a question. */
static bool desktop_present(void *data)
{
	struct app *app = data;
	if ((app->sni && sni_registered(app->sni)) ||
	    (app->notifier && notifier_server_ok(app->notifier)))
		return true;
	return app->conn && (bus_has_owner(app->conn, SNI_WATCHER_NAME) ||
			     bus_has_owner(app->conn, "org.freedesktop.Notifications"));
}

/* The flow's UI hooks go to both front ends: notifications (and through
 * them Plasma's job tracker) and the terminal, which speaks only when it
 * should (term.c). */
static void term_done(void *data, struct vm *vm, enum term_outcome outcome);

static void ui_prompt(void *data, struct vm *vm)
{
	struct app *app = data;
	notifier_prompt(app->notifier, vm);
	term_prompt(app->term, vm);
	/* The demo must end wherever it runs: with no one to ask (no terminal
	 * on standard input, no tray, no notification server) it says so and
	 * ends instead of waiting for ever. */
	if (app->demo && !term_speaks(app->term) && !desktop_present(app))
		term_done(app, vm, TERM_NO_ANSWER);
}

static void ui_withdraw(void *data, struct vm *vm)
{
	struct app *app = data;
	notifier_withdraw(app->notifier, vm);
	term_withdraw(app->term, vm);
}

static void ui_progress(void *data, struct vm *vm)
{
	struct app *app = data;
	notifier_progress(app->notifier, vm);
	term_progress(app->term, vm);
}

static void ui_result(void *data, struct vm *vm, enum flow_result res, unsigned long long bytes,
		      const char *msg)
{
	struct app *app = data;
	notifier_result(app->notifier, vm, res, bytes, msg);
	term_result(app->term, vm, res, bytes, msg);
}

static void term_engage(void *data)
{
	struct app *app = data;
	/* The terminal is the user's screen now: only warnings in the log. */
	if (!app->cli.verbose)
		log_set_level(LOG_WARN);
}

/* A question the terminal asked ended. In demo mode that is the end of the
 * demo: say what it proved and leave nothing behind. */
static void term_done(void *data, struct vm *vm, enum term_outcome outcome)
{
	struct app *app = data;
	(void)vm;
	if (!app->demo)
		return;
	if (outcome == TERM_NO_ANSWER) {
		printf("%s\n", _("Nobody can answer here: no terminal, no tray and no notification "
				 "server. The demo ends without changing anything; run it in a "
				 "terminal or in a Plasma session to choose."));
		fflush(stdout);
		app_quit(app, 0);
		return;
	}
	char *report = NULL;
	bool ok =
	    demo_report(app->demo, outcome == TERM_COMMITTED, outcome == TERM_DISCARDED, &report);
	printf("%s\n", report ? report : "");
	fflush(stdout);
	free(report);
	app_quit(app, ok && outcome != TERM_FAILED ? 0 : 1);
}

static int run_check_config(const struct cli *cli)
{
	char *err = NULL;
	struct config *cfg = config_load(cli, NULL, &err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err ? err : "");
		free(err);
		return 1;
	}
	char *path = cfg->path ? strdup(cfg->path) : config_default_path();
	/* TRANSLATORS: --check-config success: file name, number of VMs */
	printf(
	    P_("%s: configuration OK (%zu VM)\n", "%s: configuration OK (%zu VMs)\n", cfg->n_vms),
	    path ? path : "", cfg->n_vms);
	free(path);
	config_free(cfg);
	return 0;
}

static bool connect_session_bus(struct app *app)
{
	DBusError derr;
	dbus_error_init(&derr);
	app->conn = dbus_bus_get_private(DBUS_BUS_SESSION, &derr);
	if (!app->conn) {
		fprintf(stderr, _("vmoverlay: cannot connect to the session bus: %s\n"),
			derr.message ? derr.message : "");
		dbus_error_free(&derr);
		return false;
	}
	dbus_connection_set_exit_on_disconnect(app->conn, FALSE);
	dbus_connection_add_filter(app->conn, on_bus_message, app, NULL);
	return loop_dbus_attach(app->loop, app->conn);
}

static void app_teardown(struct app *app)
{
	term_destroy(app->term);
	sni_destroy(app->sni);
	menu_destroy(app->menu);
	control_destroy(app->control);
	/* The flow may still reference the watcher (a running operation). */
	flow_destroy(app->flow);
	app->flow = NULL;
	app->ui.flow = NULL;
	virt_watcher_destroy(app->virt);
	notifier_destroy(app->notifier);
	bus_destroy(app->bus);
	if (app->conn) {
		dbus_connection_remove_filter(app->conn, on_bus_message, app);
		loop_dbus_detach(app->loop, app->conn);
		dbus_connection_close(app->conn);
		dbus_connection_unref(app->conn);
	}
	model_finish(&app->model);
	if (app->state) {
		statefile_save(app->state);
		statefile_close(app->state);
	}
	demo_destroy(app->demo);
	if (app->quit_timer)
		loop_timer_remove(app->quit_timer);
	loop_destroy(app->loop);
	config_free(app->config);
	free(app->state_dir);
	if (app->state_lock >= 0)
		close(app->state_lock); /* the lock goes with it */
	cli_free(&app->cli);
}

static int run_applet(struct app *app)
{
	char *err = NULL;
	app->config = config_load(&app->cli, NULL, &err);
	if (!app->config) {
		fprintf(stderr, "%s\n", err ? err : "");
		free(err);
		return 1;
	}
	if (app->cli.demo || app->config->demo) {
		app->demo = demo_prepare(app->config, &err);
		if (!app->demo) {
			fprintf(stderr, _("vmoverlay: cannot prepare the demo: %s\n"),
				err ? err : "");
			free(err);
			return 1;
		}
	}

	app->loop = loop_create();
	if (!app->loop)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	loop_signal_add(app->loop, SIGINT, on_signal, app);
	loop_signal_add(app->loop, SIGTERM, on_signal, app);
	loop_signal_add(app->loop, SIGHUP, on_signal, app);
	/* libvirt's event implementation must be ours before any connection. */
	if (!loop_virt_register(app->loop) || !loop_glib_attach(app->loop)) {
		log_err("cannot attach libvirt/GLib to the loop");
		return 1;
	}

	app->state_dir = statefile_default_dir();
	/* One applet per state directory (journals, state file): the bus name
	 * guards one bus only, and a second instance on a private bus would
	 * share the journals. Held until exit; the CLI verbs never take it. */
	long holder = 0;
	app->state_lock = app->state_dir ? statefile_lock(app->state_dir, &holder) : -1;
	if (app->state_lock < 0 && app->state_dir && errno == EWOULDBLOCK) {
		if (holder > 0)
			fprintf(stderr,
			        _("vmoverlay: already running for the state directory %s (process %ld); "
			          "not starting a second instance\n"),
			        app->state_dir, holder);
		else
			fprintf(stderr,
			        _("vmoverlay: already running for the state directory %s; not "
			          "starting a second instance\n"),
			        app->state_dir);
		return 1;
	}
	if (app->state_lock < 0) {
		fprintf(stderr, _("vmoverlay: cannot lock the state directory %s: %s\n"),
		        app->state_dir ? app->state_dir : "?", strerror(errno));
		return 1;
	}
	app->state = statefile_open(app->state_dir);
	if (!app->state) {
		fprintf(stderr, _("vmoverlay: cannot open the state directory %s: %s\n"),
			app->state_dir ? app->state_dir : "?", strerror(errno));
		return 1;
	}
	app->ui = (struct ui_deps){
	    .loop = app->loop,
	    .model = &app->model,
	    .actions = {.quit = act_quit,
	                .reload_config = act_reload_config,
	                .show_summary = act_show_summary,
	                .config = act_config,
	                .show_error = act_show_error,
	                .take_activation_token = act_take_activation_token,
	                .data = app},
	};
	if (!model_init(&app->model, app->loop, app->config))
		return 1;
	if (!connect_session_bus(app))
		return 1;
	app->bus = bus_create(app->loop, app->conn);
	if (!app->bus)
		return 1;
	app->control = control_create(app->bus, &app->ui, &err);
	if (!app->control) {
		fprintf(stderr, "vmoverlay: %s\n", err ? err : "");
		free(err);
		return 1;
	}
	app->notifier = notifier_create(&app->ui);

	struct flow_ui ui = {
	    .prompt = ui_prompt,
	    .withdraw = ui_withdraw,
	    .progress = ui_progress,
	    .result = ui_result,
	    .data = app,
	};
	struct virt_events events = {
	    .stopped = virt_stopped,
	    .started = virt_started,
	    .updated = virt_updated,
	    .data = app,
	};
	app->virt = virt_watcher_create(app->loop, &app->model, app->config, app->state, &events);
	app->flow = flow_create(app->loop, &app->model, app->config, app->state, app->virt, &ui);
	app->ui.flow = app->flow;
	if (!app->virt || !app->flow)
		return 1;
	/* Images the user cannot write (qemu:///system) go through pkexec and
	 * vmoverlay-helper, only after a plain attempt failed with EACCES. */
	flow_set_privileged(app->flow, &(struct flow_privileged){.argv = privhelper_flow_argv,
								 .data = app->virt});

	/* The menu object must exist before the item registers (Plasma reads
	 * both right away). */
	app->menu = menu_create(app->bus, &app->ui, &err);
	if (app->menu)
		app->sni = sni_create(app->bus, &app->ui, &err);
	if (!app->menu || !app->sni) {
		fprintf(stderr, "vmoverlay: %s\n", err ? err : "");
		free(err);
		return 1;
	}
	/* The terminal front end: asks when no desktop UI can (term.c). */
	app->term = term_create(app->loop, &app->model, app->flow, STDIN_FILENO, STDOUT_FILENO,
				app->cli.terminal,
				&(struct term_hooks){.desktop_present = desktop_present,
						     .engage = term_engage,
						     .done = term_done,
						     .data = app});
	if (!app->term)
		return 1;
	/* On a terminal (or with --terminal) the user reads standard output:
	 * the developer log keeps to warnings unless --verbose. */
	if (app->cli.terminal || (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)))
		term_engage(app);
	if (app->demo)
		demo_start(app->demo, &app->ui);

	log_info("vmoverlay %s: %zu VM(s), libvirt %s, config %s", VMO_VERSION, app->config->n_vms,
		 app->config->connect, app->config->path ? app->config->path : "(defaults)");
	return loop_run(app->loop);
}

int main(int argc, char **argv)
{
	struct app app = {0};
	char *err = NULL;
	app.state_lock = -1;

	i18n_init();
	log_init(LOG_INFO);
	if (!cli_parse(argc, argv, &app.cli, &err)) {
		fprintf(stderr, "vmoverlay: %s\n", err ? err : "");
		fprintf(stderr, _("Try 'vmoverlay --help' for more information.\n"));
		free(err);
		cli_free(&app.cli);
		return 2;
	}
	if (app.cli.verbose)
		log_set_level(LOG_DEBUG);

	int code;
	switch (app.cli.mode) {
	case CLI_HELP:
		fputs(cli_usage(), stdout);
		code = 0;
		break;
	case CLI_VERSION:
		printf("vmoverlay %s\n", VMO_VERSION);
		code = 0;
		break;
	case CLI_CHECK_CONFIG:
		code = run_check_config(&app.cli);
		break;
	case CLI_STATUS:
	case CLI_COMMIT:
	case CLI_DISCARD:
	case CLI_KEEP:
	case CLI_QUIT:
		code = control_client_run(&app.cli);
		break;
	case CLI_RUN:
	default:
		code = run_applet(&app);
		app_teardown(&app);
		return code;
	}
	cli_free(&app.cli);
	return code;
}
