/* libFuzzer target: arbitrary bytes as the body of a method call on every
 * (object, interface, member) the applet serves -- the StatusNotifierItem,
 * the DBusMenu, the control interface, Properties and Introspectable on
 * each, the fallback Introspect on intermediate paths -- delivered through
 * the path a real client's call takes: a private dbus-daemon (started
 * here), the applet's connection on our poll loop, libdbus's object-path
 * table and bus.c's dispatcher, the tray modules' handlers and a real flow.
 *
 * Input: byte 0 picks the target, byte 1 holds flags, then
 *   [F_SIG]  one length byte and that many bytes: the call's signature
 *            (else the signature the XML declares for the member);
 *   [F_RAW]  the rest is the body exactly as on the wire (little endian);
 *            the message is assembled byte by byte and must pass
 *            dbus_message_demarshal, like anything a bus would deliver;
 *   else     the rest is a recipe: values of that signature are built from
 *            it (lengths, counts, variant types all come from the bytes),
 *            so every input reaches the handlers with a well-formed body.
 *   [F_NOIFACE] the call carries no interface field;
 *   [F_NOREPLY] the call says it wants no reply (a Ping follows so the
 *            harness knows the call was handled, and checks none came).
 *
 * Checked for every call that wants one: exactly one reply arrives and it
 * is a method return or an error (never nothing: the harness aborts after
 * 5 s); a signature mismatch on a served member is InvalidArgs; a method
 * return carries the out-signature of the XML. The sanitizers and
 * libFuzzer's leak check cover the rest. VMs in the model: one pending a
 * decision, one running, one whose operation failed (no libvirt, so the
 * flow refuses every image operation: nothing is ever touched), one never
 * seen, with a name full of markup characters. */
#include <dbus/dbus.h>
#include <errno.h>
#include <fcntl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ui.h"
#include "bus.h"
#include "config.h"
#include "control.h"
#include "dbus-xml-embed.h"
#include "flow.h"
#include "log.h"
#include "loop.h"
#include "menu.h"
#include "model.h"
#include "notify.h"
#include "sni.h"
#include "statefile.h"

#define F_SIG     0x01
#define F_RAW     0x02
#define F_NOIFACE 0x04
#define F_NOREPLY 0x08

#define REPLY_TIMEOUT_MS 5000
#define VALUE_BUDGET     2048

#define ENSURE(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_bus: contract broken: %s: ", #cond);                 \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct target {
	const char *path;
	char *iface;
	char *member;
	char *in_sig;
	char *out_sig;
	bool served; /* the member exists at that path (replies are checked) */
};

/* The handles main.c holds in the applet; the harness is this program's
 * main and gives the UI modules its own actions. */
struct fuzz_app {
	struct loop *loop;
	struct cli cli;
	struct config *config;
	struct model model;
	DBusConnection *conn;
	struct bus *bus;
	struct sni *sni;
	struct menu *menu;
	struct control *control;
	struct flow *flow;
	struct notifier *notifier;
	struct ui_deps ui;
};

static struct {
	pid_t daemon_pid;
	char dir[64];
	char conf[96];
	struct fuzz_app app;
	struct statefile *state;
	DBusConnection *client;
	const char *applet_name;
	struct target *targets;
	size_t n_targets;
	dbus_uint32_t awaited;
	DBusMessage *reply;
	bool stray_reply;
	bool stray_from_libdbus;
	unsigned quits;
} F;

/* ------------------------------------------------------ app_actions
 * main.c provides these in the applet; the harness is this program's main. */

static bool fuzz_reload_config(void *data)
{
	struct fuzz_app *app = data;
	char *err = NULL;
	struct config *next = config_load(&app->cli, NULL, &err);
	if (!next) {
		notifier_error(app->notifier, "configuration not reloaded", err ? err : "");
		free(err);
		return false;
	}
	struct config *old = app->config;
	app->config = next;
	model_reload(&app->model, next);
	flow_reconfigure(app->flow, next);
	config_free(old);
	return true;
}

static void fuzz_quit(void *data, int code)
{
	(void)data;
	(void)code;
	/* The fuzzer keeps serving: count it instead of leaving the loop. */
	F.quits++;
}

static void fuzz_show_summary(void *data)
{
	struct fuzz_app *app = data;
	char line[512];
	for (size_t i = 0; i < app->model.n_vms; i++)
		vm_summary_line(app->model.vms[i], line, sizeof line);
	notifier_summary(app->notifier);
}

/* --------------------------------------------------------------- set-up */

static void die(const char *what)
{
	fprintf(stderr, "fuzz_bus: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void cleanup(void)
{
	if (F.daemon_pid > 0) {
		kill(F.daemon_pid, SIGTERM);
		waitpid(F.daemon_pid, NULL, 0);
	}
	if (F.dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", F.dir);
		if (system(cmd) != 0)
			fprintf(stderr, "fuzz_bus: could not remove %s\n", F.dir);
	}
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		die(path);
}

/* A private dbus-daemon, like the integration tests use, without service
 * directories: a call to a name nobody owns (the About box's notification)
 * fails at once instead of activating the desktop's notification daemon. */
static char *start_daemon(void)
{
	char conf[128], text[512];
	snprintf(conf, sizeof conf, "%s/bus.conf", F.dir);
	snprintf(text, sizeof text,
		 "<busconfig>\n"
		 "  <type>session</type>\n"
		 "  <listen>unix:dir=%s</listen>\n"
		 "  <auth>EXTERNAL</auth>\n"
		 "  <policy context=\"default\">\n"
		 "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
		 "    <allow eavesdrop=\"true\"/>\n"
		 "    <allow own=\"*\"/>\n"
		 "  </policy>\n"
		 "</busconfig>\n",
		 F.dir);
	write_file(conf, text);
	char conf_arg[160];
	snprintf(conf_arg, sizeof conf_arg, "--config-file=%s", conf);
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* A crash or a timeout ends the fuzzer without atexit handlers:
		 * the daemon must not outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fds[1], 1);
		execlp("dbus-daemon", "dbus-daemon", conf_arg, "--nofork", "--nopidfile",
		       "--print-address=1", (char *)NULL);
		fprintf(stderr, "fuzz_bus: cannot run dbus-daemon (package dbus-daemon): %s\n",
			strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	F.daemon_pid = pid;
	char buf[512];
	size_t got = 0;
	while (got < sizeof buf - 1) {
		ssize_t n = read(fds[0], buf + got, sizeof buf - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	close(fds[0]);
	buf[got] = 0;
	char *nl = strchr(buf, '\n');
	if (!nl) {
		fprintf(stderr, "fuzz_bus: dbus-daemon printed no address\n");
		exit(1);
	}
	*nl = 0;
	return strdup(buf);
}

static DBusConnection *connect_bus(const char *address)
{
	DBusError derr;
	dbus_error_init(&derr);
	DBusConnection *c = dbus_connection_open_private(address, &derr);
	if (!c || !dbus_bus_register(c, &derr)) {
		fprintf(stderr, "fuzz_bus: cannot connect to %s: %s\n", address,
			derr.message ? derr.message : "?");
		exit(1);
	}
	dbus_connection_set_exit_on_disconnect(c, FALSE);
	return c;
}

/* The configuration, written as a user would: four VMs, explicit images
 * for one (they must exist; no operation can run without libvirt). */
static void write_config(void)
{
	char path[160], text[1024];
	snprintf(path, sizeof path, "%s/p.qcow2", F.dir);
	write_file(path, "");
	snprintf(path, sizeof path, "%s/p-base.qcow2", F.dir);
	write_file(path, "");
	snprintf(text, sizeof text,
		 "connect = \"test:///default\";\n"
		 "reconcile_interval = 0;\n"
		 "vms = (\n"
		 "  { name = \"pending\"; policy = \"ask\"; overlay = \"%s/p.qcow2\";\n"
		 "    base = \"%s/p-base.qcow2\"; },\n"
		 "  { name = \"running\"; policy = \"commit\"; disk = \"vda\"; },\n"
		 "  { name = \"failed\"; policy = \"discard\"; },\n"
		 "  { name = \"w\\u00efn <10> & \\\"q\\\"\"; policy = \"keep\"; }\n"
		 ");\n",
		 F.dir, F.dir);
	snprintf(F.conf, sizeof F.conf, "%s/vmoverlay.conf", F.dir);
	write_file(F.conf, text);
}

/* Drives the model the way the libvirt watcher would, so the menu and the
 * control interface have every kind of VM to show. */
static void shape_model(void)
{
	struct model *m = &F.app.model;
	struct vm *p = model_find(m, "pending"), *r = model_find(m, "running"),
		  *f = model_find(m, "failed");
	if (!p || !r || !f) {
		fprintf(stderr, "fuzz_bus: the model lacks the configured VMs\n");
		exit(1);
	}
	p->run = RUN_SHUTOFF;
	p->n_disks = 2;
	vm_set_str(&p->disks[0].target, "vda");
	vm_set_str(&p->disks[0].overlay, p->cfg->overlay);
	vm_set_str(&p->disks[0].base, p->cfg->base);
	p->disks[0].overlay_bytes = 3ull << 30;
	vm_set_str(&p->disks[1].target, "vdb");
	vm_set_str(&p->disks[1].overlay, "/nonexistent/data.qcow2");
	vm_set_str(&p->disks[1].base, "/nonexistent/data-base.qcow2");
	p->disks[1].overlay_bytes = 5ull << 20;
	flow_on_domain_stopped(F.app.flow, p, STOP_UNCLEAN);
	r->run = RUN_RUNNING;
	r->n_disks = 1;
	vm_set_str(&r->disks[0].target, "vda");
	flow_on_domain_started(F.app.flow, r);
	f->run = RUN_SHUTOFF;
	f->n_disks = 1;
	vm_set_str(&f->disks[0].overlay, "/nonexistent/f.qcow2");
	vm_add_problem(f, "%s", "the overlay's backing file is not the configured base");
	flow_on_domain_stopped(F.app.flow, f, STOP_CLEAN);
	model_changed(m);
}

static DBusHandlerResult client_filter(DBusConnection *conn, DBusMessage *msg, void *data)
{
	int type = dbus_message_get_type(msg);
	if (type != DBUS_MESSAGE_TYPE_METHOD_RETURN && type != DBUS_MESSAGE_TYPE_ERROR)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	if (dbus_message_get_reply_serial(msg) == F.awaited && !F.reply) {
		F.reply = dbus_message_ref(msg);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	F.stray_reply = true;
	/* libdbus itself answers a call no object handled with this error,
	 * whether or not the caller wanted a reply; our dispatcher never
	 * replies to a call that asked for none. */
	const char *text = NULL;
	F.stray_from_libdbus =
	    dbus_message_is_error(msg, DBUS_ERROR_UNKNOWN_METHOD) &&
	    dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID) &&
	    strstr(text, "doesn't exist");
	return DBUS_HANDLER_RESULT_HANDLED;
}

static void add_target(const char *path, const char *iface, const char *member, const char *in_sig,
		       const char *out_sig, bool served)
{
	struct target *grown = realloc(F.targets, (F.n_targets + 1) * sizeof(*grown));
	if (!grown)
		die("realloc");
	F.targets = grown;
	struct target *t = &F.targets[F.n_targets++];
	t->path = path;
	t->iface = strdup(iface);
	t->member = strdup(member);
	t->in_sig = strdup(in_sig);
	t->out_sig = strdup(out_sig);
	t->served = served;
}

static char *attr(xmlNode *n, const char *name)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	char *s = v ? strdup((const char *)v) : NULL;
	xmlFree(v);
	return s;
}

/* Every method of the served interfaces, straight from the embedded XML:
 * a member added there is fuzzed without touching this file. */
static void targets_from_xml(const char *iface_name, const char *path)
{
	for (const struct vmo_embedded_xml *x = vmo_dbus_xml; x->name; x++) {
		if (strcmp(x->name, iface_name) != 0)
			continue;
		xmlDoc *doc =
		    xmlReadMemory(x->xml, (int)strlen(x->xml), "x.xml", NULL,
				  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
		xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
		for (xmlNode *i = root ? root->children : NULL; i; i = i->next) {
			if (i->type != XML_ELEMENT_NODE ||
			    strcmp((const char *)i->name, "interface"))
				continue;
			for (xmlNode *m = i->children; m; m = m->next) {
				if (m->type != XML_ELEMENT_NODE ||
				    strcmp((const char *)m->name, "method"))
					continue;
				char in[256] = "", out[256] = "";
				for (xmlNode *a = m->children; a; a = a->next) {
					if (a->type != XML_ELEMENT_NODE ||
					    strcmp((const char *)a->name, "arg"))
						continue;
					char *type = attr(a, "type"), *dir = attr(a, "direction");
					char *dst = dir && strcmp(dir, "out") == 0 ? out : in;
					strncat(dst, type ? type : "", 255 - strlen(dst));
					free(type);
					free(dir);
				}
				char *name = attr(m, "name");
				add_target(path, iface_name, name, in, out, true);
				free(name);
			}
		}
		xmlFreeDoc(doc);
		return;
	}
	fprintf(stderr, "fuzz_bus: no embedded XML for %s\n", iface_name);
	exit(1);
}

static void build_targets(void)
{
	static const struct {
		const char *iface, *path;
	} objects[] = {
	    {SNI_INTERFACE, SNI_OBJECT_PATH},
	    {"com.canonical.dbusmenu", MENU_OBJECT_PATH},
	    {CONTROL_INTERFACE, CONTROL_OBJECT_PATH},
	};
	for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
		targets_from_xml(objects[i].iface, objects[i].path);
		add_target(objects[i].path, DBUS_INTERFACE_PROPERTIES, "Get", "ss", "v", true);
		add_target(objects[i].path, DBUS_INTERFACE_PROPERTIES, "GetAll", "s", "a{sv}",
			   true);
		add_target(objects[i].path, DBUS_INTERFACE_PROPERTIES, "Set", "ssv", "", true);
		add_target(objects[i].path, DBUS_INTERFACE_INTROSPECTABLE, "Introspect", "", "s",
			   true);
		/* Members and interfaces that are not there: an error, always. */
		add_target(objects[i].path, objects[i].iface, "NoSuchMember", "", "", false);
		add_target(objects[i].path, DBUS_INTERFACE_PROPERTIES, "NoSuchMember", "s", "",
			   false);
	}
	add_target("/", DBUS_INTERFACE_INTROSPECTABLE, "Introspect", "", "s", true);
	add_target("/io/github", DBUS_INTERFACE_INTROSPECTABLE, "Introspect", "", "s", true);
	add_target("/nowhere", "org.example.Nothing", "Nothing", "s", "", false);
}

static void write_seeds(const char *dir);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(getenv("VMO_FUZZ_VERBOSE") ? LOG_DEBUG : LOG_ERR);
	signal(SIGPIPE, SIG_IGN);
	const char *tmp = getenv("TMPDIR");
	snprintf(F.dir, sizeof F.dir, "%s/vmofzb.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(F.dir))
		die("mkdtemp");
	atexit(cleanup);
	/* Nothing of the user's: state, config and bus are all ours. */
	char state_dir[96];
	snprintf(state_dir, sizeof state_dir, "%s/state", F.dir);
	setenv("XDG_STATE_HOME", state_dir, 1);
	setenv("XDG_CONFIG_HOME", F.dir, 1);
	write_config();

	char *address = start_daemon();
	setenv("DBUS_SESSION_BUS_ADDRESS", address, 1);

	struct fuzz_app *app = &F.app;
	char *err = NULL;
	app->cli.mode = CLI_RUN;
	app->cli.config_path = strdup(F.conf);
	app->config = config_load(&app->cli, NULL, &err);
	if (!app->config) {
		fprintf(stderr, "fuzz_bus: config: %s\n", err ? err : "?");
		exit(1);
	}
	app->loop = loop_create();
	if (!app->loop || !model_init(&app->model, app->loop, app->config))
		die("loop/model");
	char sdir[160];
	snprintf(sdir, sizeof sdir, "%s/state/vmoverlay", F.dir);
	mkdir(state_dir, 0700);
	mkdir(sdir, 0700);
	F.state = statefile_open(sdir);
	app->conn = connect_bus(address);
	F.client = connect_bus(address);
	free(address);
	if (!loop_dbus_attach(app->loop, app->conn) || !loop_dbus_attach(app->loop, F.client) ||
	    !dbus_connection_add_filter(F.client, client_filter, NULL, NULL))
		die("attach");
	F.applet_name = dbus_bus_get_unique_name(app->conn);
	app->bus = bus_create(app->loop, app->conn);
	if (!app->bus)
		die("bus_create");
	app->ui = (struct ui_deps){
	    .loop = app->loop,
	    .model = &app->model,
	    .actions = {.quit = fuzz_quit,
	                .reload_config = fuzz_reload_config,
	                .show_summary = fuzz_show_summary,
	                .data = app},
	};
	app->control = control_create(app->bus, &app->ui, &err);
	struct flow_ui ui = {
	    .prompt = notifier_prompt,
	    .withdraw = notifier_withdraw,
	    .progress = notifier_progress,
	    .result = notifier_result,
	    .data = NULL, /* no notification server: the menu is the UI */
	};
	app->flow = flow_create(app->loop, &app->model, app->config, F.state, NULL, &ui);
	app->ui.flow = app->flow;
	/* "Open in virt-manager" must not start anything: the menu looks
	 * for it on PATH when it is created. */
	char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", "/nonexistent", 1);
	if (app->control && app->flow)
		app->menu = menu_create(app->bus, &app->ui, &err);
	setenv("PATH", path, 1);
	free(path);
	if (app->menu)
		app->sni = sni_create(app->bus, &app->ui, &err);
	if (!app->sni) {
		fprintf(stderr, "fuzz_bus: applet set-up: %s\n", err ? err : "?");
		exit(1);
	}
	shape_model();
	build_targets();
	/* Let registration attempts and the first refresh settle. */
	for (int i = 0; i < 20; i++)
		loop_iterate(app->loop, 10);
	const char *seeds = getenv("VMO_FUZZ_WRITE_SEEDS");
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	return 0;
}

/* ------------------------------------------------------ raw message bytes */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

static void w_bytes(struct wbuf *w, const void *src, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = (w->len + n) * 2 + 64;
		uint8_t *g = realloc(w->p, cap);
		if (!g)
			abort();
		w->p = g;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void w_align(struct wbuf *w, size_t a)
{
	static const uint8_t zero[8];
	size_t pad = (a - w->len % a) % a;
	w_bytes(w, zero, pad);
}

static void w_u32(struct wbuf *w, uint32_t v)
{
	w_align(w, 4);
	w_bytes(w, &v, 4); /* the header says 'l': host order on x86/arm LE */
}

static void w_field_str(struct wbuf *w, uint8_t code, char type, const char *s)
{
	w_align(w, 8);
	uint8_t head[4] = {code, 1, (uint8_t)type, 0};
	w_bytes(w, head, 4);
	if (type == 'g') {
		uint8_t n = (uint8_t)strlen(s);
		w_bytes(w, &n, 1);
	} else {
		w_u32(w, (uint32_t)strlen(s));
	}
	w_bytes(w, s, strlen(s) + 1);
}

/* A whole method call on the wire: header fields, then the fuzzer's body
 * bytes untouched. NULL if libdbus's validator rejects it (a bus would
 * have dropped it before it reached us). */
static DBusMessage *raw_message(const struct target *t, const char *sig, bool noiface, bool noreply,
				const uint8_t *body, size_t body_len)
{
	struct wbuf w = {0};
	uint8_t head[4] = {'l', DBUS_MESSAGE_TYPE_METHOD_CALL,
			   noreply ? DBUS_HEADER_FLAG_NO_REPLY_EXPECTED : 0, 1};
	w_bytes(&w, head, 4);
	w_u32(&w, (uint32_t)body_len);
	w_u32(&w, 1);
	size_t array_len_at = w.len;
	w_u32(&w, 0);
	w_align(&w, 8);
	size_t fields_start = w.len;
	w_field_str(&w, DBUS_HEADER_FIELD_PATH, 'o', t->path);
	if (!noiface)
		w_field_str(&w, DBUS_HEADER_FIELD_INTERFACE, 's', t->iface);
	w_field_str(&w, DBUS_HEADER_FIELD_MEMBER, 's', t->member);
	w_field_str(&w, DBUS_HEADER_FIELD_DESTINATION, 's', F.applet_name);
	if (*sig)
		w_field_str(&w, DBUS_HEADER_FIELD_SIGNATURE, 'g', sig);
	uint32_t fields_len = (uint32_t)(w.len - fields_start);
	memcpy(w.p + array_len_at, &fields_len, 4);
	w_align(&w, 8);
	w_bytes(&w, body, body_len);
	DBusMessage *msg = dbus_message_demarshal((const char *)w.p, (int)w.len, NULL);
	free(w.p);
	return msg;
}

/* --------------------------------------------------------- value recipes */

struct recipe {
	const uint8_t *p;
	size_t n;
	unsigned budget;
};

static uint8_t take8(struct recipe *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static void take(struct recipe *r, void *dst, size_t len)
{
	memset(dst, 0, len);
	size_t k = len < r->n ? len : r->n;
	memcpy(dst, r->p, k);
	r->p += k;
	r->n -= k;
}

/* A string, object path or signature from the recipe, made valid for its
 * type (the raw mode is where invalid encodings are tried). */
static char *take_string(struct recipe *r, int type)
{
	size_t len = take8(r);
	if (len > r->n)
		len = r->n;
	char *s = malloc(len + 2);
	if (!s)
		abort();
	memcpy(s, r->p, len);
	s[len] = 0;
	r->p += len;
	r->n -= len;
	for (size_t i = 0; i < len; i++)
		if (!s[i])
			s[i] = ' ';
	if (!dbus_validate_utf8(s, NULL))
		for (size_t i = 0; i < len; i++)
			s[i] = (char)(0x20 + (uint8_t)s[i] % 95);
	if (type == DBUS_TYPE_OBJECT_PATH && !dbus_validate_path(s, NULL)) {
		s[0] = '/';
		for (size_t i = 1; i < len; i++)
			if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
				s[i] = i + 1 < len && s[i + 1] != '/' ? '/' : 'x';
		if (len > 1 && s[len - 1] == '/')
			s[len - 1] = 'x';
		if (!len)
			s[1] = 0;
		if (!dbus_validate_path(s, NULL))
			strcpy(s, "/");
	}
	if (type == DBUS_TYPE_SIGNATURE && !dbus_signature_validate(s, NULL))
		s[0] = 0;
	return s;
}

static size_t basic_size(int type)
{
	switch (type) {
	case DBUS_TYPE_BYTE:
	case DBUS_TYPE_BOOLEAN:
		return 1;
	case DBUS_TYPE_INT16:
	case DBUS_TYPE_UINT16:
		return 2;
	case DBUS_TYPE_INT32:
	case DBUS_TYPE_UINT32:
		return 4;
	default:
		return 8;
	}
}

static const char *const variant_types[] = {
    "s", "i",  "u",  "b",     "x",     "t",    "d",      "y", "n",   "q",       "o",
    "g", "as", "ai", "a{sv}", "a{ss}", "(ii)", "(isvu)", "v", "aay", "a(iiay)",
};

static bool append_sig(DBusMessageIter *it, const char *sig, struct recipe *r, int depth);

static bool append_one(DBusMessageIter *it, DBusSignatureIter *si, struct recipe *r, int depth)
{
	int type = dbus_signature_iter_get_current_type(si);
	if (r->budget)
		r->budget--;
	switch (type) {
	case DBUS_TYPE_BYTE:
	case DBUS_TYPE_BOOLEAN:
	case DBUS_TYPE_INT16:
	case DBUS_TYPE_UINT16:
	case DBUS_TYPE_INT32:
	case DBUS_TYPE_UINT32:
	case DBUS_TYPE_INT64:
	case DBUS_TYPE_UINT64:
	case DBUS_TYPE_DOUBLE: {
		DBusBasicValue v;
		memset(&v, 0, sizeof v);
		if (type == DBUS_TYPE_BOOLEAN)
			v.bool_val = take8(r) & 1;
		else
			take(r, &v, basic_size(type));
		return dbus_message_iter_append_basic(it, type, &v);
	}
	case DBUS_TYPE_STRING:
	case DBUS_TYPE_OBJECT_PATH:
	case DBUS_TYPE_SIGNATURE: {
		char *s = take_string(r, type);
		bool ok = dbus_message_iter_append_basic(it, type, &s);
		free(s);
		return ok;
	}
	case DBUS_TYPE_VARIANT: {
		const char *vt =
		    variant_types[take8(r) % (sizeof variant_types / sizeof *variant_types)];
		if (depth > 8 || (strcmp(vt, "v") == 0 && depth > 4))
			vt = "i";
		DBusMessageIter sub;
		if (!dbus_message_iter_open_container(it, DBUS_TYPE_VARIANT, vt, &sub))
			return false;
		if (!append_sig(&sub, vt, r, depth + 1)) {
			dbus_message_iter_abandon_container(it, &sub);
			return false;
		}
		return dbus_message_iter_close_container(it, &sub);
	}
	case DBUS_TYPE_ARRAY: {
		char *elem = dbus_signature_iter_get_signature(si);
		DBusSignatureIter esi;
		dbus_signature_iter_recurse(si, &esi);
		char *esig = dbus_signature_iter_get_signature(&esi);
		DBusMessageIter sub;
		bool ok = dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, esig, &sub);
		unsigned count = r->budget && depth < 16 ? take8(r) % 6 : 0;
		for (unsigned i = 0; ok && i < count; i++)
			ok = append_sig(&sub, esig, r, depth + 1);
		if (ok)
			ok = dbus_message_iter_close_container(it, &sub);
		else
			dbus_message_iter_abandon_container_if_open(it, &sub);
		dbus_free(esig);
		dbus_free(elem);
		return ok;
	}
	case DBUS_TYPE_STRUCT:
	case DBUS_TYPE_DICT_ENTRY: {
		DBusSignatureIter fsi;
		dbus_signature_iter_recurse(si, &fsi);
		DBusMessageIter sub;
		if (!dbus_message_iter_open_container(it, type, NULL, &sub))
			return false;
		bool ok = true;
		do
			ok = append_one(&sub, &fsi, r, depth + 1);
		while (ok && dbus_signature_iter_next(&fsi));
		if (ok)
			return dbus_message_iter_close_container(it, &sub);
		dbus_message_iter_abandon_container(it, &sub);
		return false;
	}
	default:
		return false; /* unix fds: not sent by this harness */
	}
}

static bool append_sig(DBusMessageIter *it, const char *sig, struct recipe *r, int depth)
{
	if (!*sig)
		return true;
	DBusSignatureIter si;
	dbus_signature_iter_init(&si, sig);
	do {
		if (!append_one(it, &si, r, depth))
			return false;
	} while (dbus_signature_iter_next(&si));
	return true;
}

static DBusMessage *recipe_message(const struct target *t, const char *sig, bool noiface,
				   bool noreply, const uint8_t *data, size_t len)
{
	DBusMessage *msg = dbus_message_new_method_call(F.applet_name, t->path,
							noiface ? NULL : t->iface, t->member);
	if (!msg)
		abort();
	dbus_message_set_no_reply(msg, noreply);
	struct recipe r = {.p = data, .n = len, .budget = VALUE_BUDGET};
	DBusMessageIter it;
	dbus_message_iter_init_append(msg, &it);
	if (!append_sig(&it, sig, &r, 0) || strcmp(dbus_message_get_signature(msg), sig) != 0) {
		dbus_message_unref(msg);
		return NULL;
	}
	return msg;
}

/* ---------------------------------------------------------------- calls */

static DBusMessage *roundtrip(DBusMessage *msg)
{
	dbus_uint32_t serial = 0;
	if (!dbus_connection_send(F.client, msg, &serial))
		abort();
	F.awaited = serial;
	F.reply = NULL;
	int64_t end = loop_now_ms() + REPLY_TIMEOUT_MS;
	while (!F.reply) {
		ENSURE(loop_now_ms() < end, "no reply to %s.%s at %s within %d ms",
		       dbus_message_get_interface(msg) ? dbus_message_get_interface(msg) : "(none)",
		       dbus_message_get_member(msg), dbus_message_get_path(msg), REPLY_TIMEOUT_MS);
		ENSURE(dbus_connection_get_is_connected(F.app.conn), "the applet lost the bus");
		loop_iterate(F.app.loop, 50);
	}
	DBusMessage *reply = F.reply;
	F.reply = NULL;
	F.awaited = 0;
	return reply;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const struct target *t = &F.targets[data[0] % F.n_targets];
	uint8_t flags = data[1];
	data += 2;
	size -= 2;
	char sig[256];
	snprintf(sig, sizeof sig, "%s", t->in_sig);
	if (flags & F_SIG) {
		size_t n = size ? data[0] % 64 : 0;
		if (size)
			data++, size--;
		if (n > size)
			n = size;
		memcpy(sig, data, n);
		sig[n] = 0;
		data += n;
		size -= n;
		if (strlen(sig) != n || !dbus_signature_validate(sig, NULL) || strchr(sig, 'h'))
			return 0;
	}
	bool noiface = flags & F_NOIFACE, noreply = flags & F_NOREPLY;
	DBusMessage *msg = flags & F_RAW ? raw_message(t, sig, noiface, noreply, data, size)
					 : recipe_message(t, sig, noiface, noreply, data, size);
	if (!msg)
		return 0;

	F.stray_reply = F.stray_from_libdbus = false;
	if (noreply) {
		/* Handled in order: once the Ping's reply is here, so is any
		 * reply the no-reply call wrongly got. */
		dbus_connection_send(F.client, msg, NULL);
		DBusMessage *ping =
		    dbus_message_new_method_call(F.applet_name, "/", DBUS_INTERFACE_PEER, "Ping");
		DBusMessage *pong = roundtrip(ping);
		ENSURE(dbus_message_get_type(pong) == DBUS_MESSAGE_TYPE_METHOD_RETURN,
		       "Ping failed");
		ENSURE(!F.stray_reply || F.stray_from_libdbus,
		       "a reply to a call that asked for none (%s.%s)", t->iface, t->member);
		dbus_message_unref(pong);
		dbus_message_unref(ping);
	} else {
		DBusMessage *reply = roundtrip(msg);
		int type = dbus_message_get_type(reply);
		ENSURE(type == DBUS_MESSAGE_TYPE_METHOD_RETURN || type == DBUS_MESSAGE_TYPE_ERROR,
		       "reply type %d", type);
		const char *got_sig = dbus_message_get_signature(msg);
		if (type == DBUS_MESSAGE_TYPE_ERROR) {
			const char *name = dbus_message_get_error_name(reply);
			ENSURE(name && *name, "error without a name");
			if (t->served && !noiface && strcmp(got_sig, t->in_sig) != 0)
				ENSURE(strcmp(name, DBUS_ERROR_INVALID_ARGS) == 0,
				       "%s.%s(%s): %s instead of InvalidArgs", t->iface, t->member,
				       got_sig, name);
		} else {
			ENSURE(t->served || noiface, "%s.%s at %s answered though not served",
			       t->iface, t->member, t->path);
			if (!noiface) {
				ENSURE(strcmp(got_sig, t->in_sig) == 0,
				       "%s.%s accepted signature \"%s\"", t->iface, t->member,
				       got_sig);
				ENSURE(strcmp(dbus_message_get_signature(reply), t->out_sig) == 0,
				       "%s.%s returned \"%s\", the XML says \"%s\"", t->iface,
				       t->member, dbus_message_get_signature(reply), t->out_sig);
			}
		}
		ENSURE(!F.stray_reply, "more than one reply");
		dbus_message_unref(reply);
	}
	dbus_message_unref(msg);
	/* Deferred work of the call (queued menu clicks, activation, model
	 * refresh) runs now, so whatever it breaks is this input's fault. */
	for (int i = 0; i < 3; i++)
		loop_iterate(F.app.loop, 0);
	ENSURE(dbus_connection_get_is_connected(F.app.conn), "the applet lost the bus");
	return 0;
}

/* ------------------------------------------------------------ seed corpus
 * VMO_FUZZ_WRITE_SEEDS=DIR fuzz_bus: writes the corpus from the calls a
 * tray host and the control CLI really make (the ones Plasma makes are in
 * research/sni-dbusmenu.md), with menu ids taken from a real GetLayout
 * reply, each once as raw wire bytes and once as a recipe; then exits. */

static void enc_one(struct wbuf *w, DBusMessageIter *it);

static void enc_all(struct wbuf *w, DBusMessageIter *it)
{
	while (dbus_message_iter_get_arg_type(it) != DBUS_TYPE_INVALID) {
		enc_one(w, it);
		if (!dbus_message_iter_next(it))
			break;
	}
}

static void enc_one(struct wbuf *w, DBusMessageIter *it)
{
	int type = dbus_message_iter_get_arg_type(it);
	DBusMessageIter sub;
	switch (type) {
	case DBUS_TYPE_STRING:
	case DBUS_TYPE_OBJECT_PATH:
	case DBUS_TYPE_SIGNATURE: {
		const char *s;
		dbus_message_iter_get_basic(it, &s);
		uint8_t n = strlen(s) > 255 ? 255 : (uint8_t)strlen(s);
		w_bytes(w, &n, 1);
		w_bytes(w, s, n);
		return;
	}
	case DBUS_TYPE_VARIANT: {
		dbus_message_iter_recurse(it, &sub);
		char *sig = dbus_message_iter_get_signature(&sub);
		uint8_t idx = 1; /* "i" */
		for (size_t i = 0; i < sizeof variant_types / sizeof *variant_types; i++)
			if (strcmp(variant_types[i], sig) == 0)
				idx = (uint8_t)i;
		dbus_free(sig);
		w_bytes(w, &idx, 1);
		enc_one(w, &sub);
		return;
	}
	case DBUS_TYPE_ARRAY: {
		dbus_message_iter_recurse(it, &sub);
		uint8_t n = 0;
		DBusMessageIter count = sub;
		while (n < 5 && dbus_message_iter_get_arg_type(&count) != DBUS_TYPE_INVALID) {
			n++;
			dbus_message_iter_next(&count);
		}
		w_bytes(w, &n, 1);
		for (uint8_t i = 0; i < n; i++) {
			enc_one(w, &sub);
			dbus_message_iter_next(&sub);
		}
		return;
	}
	case DBUS_TYPE_STRUCT:
	case DBUS_TYPE_DICT_ENTRY:
		dbus_message_iter_recurse(it, &sub);
		enc_all(w, &sub);
		return;
	case DBUS_TYPE_INVALID:
		return;
	default: {
		DBusBasicValue v;
		dbus_message_iter_get_basic(it, &v);
		if (type == DBUS_TYPE_BOOLEAN) {
			uint8_t b = v.bool_val ? 1 : 0;
			w_bytes(w, &b, 1);
		} else {
			w_bytes(w, &v, basic_size(type));
		}
	}
	}
}

static void seed_write(const char *dir, const char *name, const struct wbuf *w)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(w->p, 1, w->len, f) != w->len || fclose(f) != 0)
		die(path);
}

static void seed_call(const char *dir, DBusMessage *msg)
{
	const char *path = dbus_message_get_path(msg), *iface = dbus_message_get_interface(msg),
		   *member = dbus_message_get_member(msg);
	size_t idx = F.n_targets;
	for (size_t i = 0; i < F.n_targets; i++)
		if (!strcmp(F.targets[i].path, path) && !strcmp(F.targets[i].iface, iface) &&
		    !strcmp(F.targets[i].member, member))
			idx = i;
	if (idx == F.n_targets) {
		fprintf(stderr, "fuzz_bus: no target %s %s.%s\n", path, iface, member);
		exit(1);
	}
	static unsigned n;
	n++;
	char name[128];
	/* Raw: the body bytes libdbus marshalled for the real call. */
	char *wire;
	int wire_len;
	if (!dbus_message_marshal(msg, &wire, &wire_len))
		die("marshal");
	uint32_t body_len;
	memcpy(&body_len, wire + 4, 4);
	struct wbuf w = {0};
	uint8_t head[2] = {(uint8_t)idx, F_RAW};
	w_bytes(&w, head, 2);
	w_bytes(&w, wire + wire_len - body_len, body_len);
	snprintf(name, sizeof name, "%03u-%s-raw", n, member);
	seed_write(dir, name, &w);
	dbus_free(wire);
	/* Recipe: the same values in the recipe encoding. */
	w.len = 0;
	head[1] = 0;
	w_bytes(&w, head, 2);
	DBusMessageIter it;
	if (dbus_message_iter_init(msg, &it))
		enc_all(&w, &it);
	snprintf(name, sizeof name, "%03u-%s", n, member);
	seed_write(dir, name, &w);
	free(w.p);
	/* The call must be one the applet answers. */
	DBusMessage *reply = roundtrip(msg);
	if (dbus_message_get_type(reply) == DBUS_MESSAGE_TYPE_ERROR)
		fprintf(stderr, "fuzz_bus: seed %s: %s\n", name,
			dbus_message_get_error_name(reply));
	dbus_message_unref(reply);
	dbus_message_unref(msg);
	for (int i = 0; i < 3; i++)
		loop_iterate(F.app.loop, 0);
}

static DBusMessage *call(const char *path, const char *iface, const char *member)
{
	DBusMessage *m = dbus_message_new_method_call(F.applet_name, path, iface, member);
	if (!m)
		abort();
	return m;
}

static void collect_ids(DBusMessageIter *it, int32_t *ids, size_t *n, size_t max)
{
	for (; dbus_message_iter_get_arg_type(it) != DBUS_TYPE_INVALID;
	     dbus_message_iter_next(it)) {
		int type = dbus_message_iter_get_arg_type(it);
		if (type != DBUS_TYPE_STRUCT && type != DBUS_TYPE_ARRAY &&
		    type != DBUS_TYPE_VARIANT)
			continue;
		DBusMessageIter sub;
		dbus_message_iter_recurse(it, &sub);
		if (type == DBUS_TYPE_STRUCT &&
		    dbus_message_iter_get_arg_type(&sub) == DBUS_TYPE_INT32 && *n < max) {
			dbus_int32_t id;
			dbus_message_iter_get_basic(&sub, &id);
			ids[(*n)++] = id;
		}
		collect_ids(&sub, ids, n, max);
	}
}

static void append_event(DBusMessageIter *it, int32_t id, const char *event)
{
	dbus_int32_t zero = 0;
	dbus_uint32_t ts = 1700000000u;
	DBusMessageIter v;
	dbus_message_iter_append_basic(it, DBUS_TYPE_INT32, &id);
	dbus_message_iter_append_basic(it, DBUS_TYPE_STRING, &event);
	dbus_message_iter_open_container(it, DBUS_TYPE_VARIANT, "i", &v);
	dbus_message_iter_append_basic(&v, DBUS_TYPE_INT32, &zero);
	dbus_message_iter_close_container(it, &v);
	dbus_message_iter_append_basic(it, DBUS_TYPE_UINT32, &ts);
}

static void write_seeds(const char *dir)
{
	const char *menu_if = "com.canonical.dbusmenu";
	const char *props[] = {"type",        "label",        "enabled",          "visible",
			       "toggle-type", "toggle-state", "children-display", "icon-name"};
	const char **pp = props;
	dbus_int32_t root = 0, all = -1, one = 1, x = 0, y = 0, delta = 120;
	DBusMessage *m;

	/* The ids a host sees. */
	m = call(MENU_OBJECT_PATH, menu_if, "GetLayout");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &root, DBUS_TYPE_INT32, &all, DBUS_TYPE_ARRAY,
				 DBUS_TYPE_STRING, &pp, 0, DBUS_TYPE_INVALID);
	DBusMessage *layout = roundtrip(m);
	dbus_message_unref(m);
	int32_t ids[256];
	size_t n_ids = 0;
	DBusMessageIter it;
	if (dbus_message_iter_init(layout, &it))
		collect_ids(&it, ids, &n_ids, 256);
	dbus_message_unref(layout);
	fprintf(stderr, "fuzz_bus: %zu menu items\n", n_ids);

	m = call(MENU_OBJECT_PATH, menu_if, "GetLayout");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &root, DBUS_TYPE_INT32, &all, DBUS_TYPE_ARRAY,
				 DBUS_TYPE_STRING, &pp, 0, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	m = call(MENU_OBJECT_PATH, menu_if, "GetLayout");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &root, DBUS_TYPE_INT32, &one, DBUS_TYPE_ARRAY,
				 DBUS_TYPE_STRING, &pp, 8, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	m = call(MENU_OBJECT_PATH, menu_if, "AboutToShow");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &root, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	const int32_t *idp = ids;
	m = call(MENU_OBJECT_PATH, menu_if, "GetGroupProperties");
	dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_INT32, &idp,
				 (int)(n_ids < 5 ? n_ids : 5), DBUS_TYPE_ARRAY, DBUS_TYPE_STRING,
				 &pp, 2, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	m = call(MENU_OBJECT_PATH, menu_if, "AboutToShowGroup");
	dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_INT32, &idp,
				 (int)(n_ids < 5 ? n_ids : 5), DBUS_TYPE_INVALID);
	seed_call(dir, m);
	for (size_t i = 0; i < n_ids; i++) {
		const char *label = "label";
		m = call(MENU_OBJECT_PATH, menu_if, "GetProperty");
		dbus_message_append_args(m, DBUS_TYPE_INT32, &ids[i], DBUS_TYPE_STRING, &label,
					 DBUS_TYPE_INVALID);
		seed_call(dir, m);
		/* Clicks: "Quit" only counts here, "Reload" re-reads our file. */
		m = call(MENU_OBJECT_PATH, menu_if, "Event");
		dbus_message_iter_init_append(m, &it);
		append_event(&it, ids[i], "clicked");
		seed_call(dir, m);
	}
	m = call(MENU_OBJECT_PATH, menu_if, "EventGroup");
	dbus_message_iter_init_append(m, &it);
	DBusMessageIter arr, st;
	dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "(isvu)", &arr);
	for (size_t i = 0; i < 2 && i < n_ids; i++) {
		dbus_message_iter_open_container(&arr, DBUS_TYPE_STRUCT, NULL, &st);
		append_event(&st, ids[i], i ? "closed" : "opened");
		dbus_message_iter_close_container(&arr, &st);
	}
	dbus_message_iter_close_container(&it, &arr);
	seed_call(dir, m);

	const char *ifaces[][2] = {{SNI_OBJECT_PATH, SNI_INTERFACE},
				   {MENU_OBJECT_PATH, "com.canonical.dbusmenu"},
				   {CONTROL_OBJECT_PATH, CONTROL_INTERFACE}};
	const char *sni_props[] = {"Status",     "ToolTip",           "IconName", "Menu",
				   "IconPixmap", "AttentionIconName", "Version",  "TextDirection"};
	for (size_t i = 0; i < 3; i++) {
		m = call(ifaces[i][0], DBUS_INTERFACE_PROPERTIES, "GetAll");
		dbus_message_append_args(m, DBUS_TYPE_STRING, &ifaces[i][1], DBUS_TYPE_INVALID);
		seed_call(dir, m);
		m = call(ifaces[i][0], DBUS_INTERFACE_INTROSPECTABLE, "Introspect");
		seed_call(dir, m);
	}
	for (size_t i = 0; i < sizeof sni_props / sizeof *sni_props; i++) {
		const char *iface = i < 6 ? SNI_INTERFACE : "com.canonical.dbusmenu";
		m = call(i < 6 ? SNI_OBJECT_PATH : MENU_OBJECT_PATH, DBUS_INTERFACE_PROPERTIES,
			 "Get");
		dbus_message_append_args(m, DBUS_TYPE_STRING, &iface, DBUS_TYPE_STRING,
					 &sni_props[i], DBUS_TYPE_INVALID);
		seed_call(dir, m);
	}
	{
		const char *iface = SNI_INTERFACE, *prop = "Status", *val = "Active";
		m = call(SNI_OBJECT_PATH, DBUS_INTERFACE_PROPERTIES, "Set");
		dbus_message_iter_init_append(m, &it);
		dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &iface);
		dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &prop);
		DBusMessageIter v;
		dbus_message_iter_open_container(&it, DBUS_TYPE_VARIANT, "s", &v);
		dbus_message_iter_append_basic(&v, DBUS_TYPE_STRING, &val);
		dbus_message_iter_close_container(&it, &v);
		seed_call(dir, m);
	}
	m = call("/", DBUS_INTERFACE_INTROSPECTABLE, "Introspect");
	seed_call(dir, m);
	m = call("/io/github", DBUS_INTERFACE_INTROSPECTABLE, "Introspect");
	seed_call(dir, m);

	/* The tray item's methods as Plasma calls them. */
	m = call(SNI_OBJECT_PATH, SNI_INTERFACE, "Activate");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &x, DBUS_TYPE_INT32, &y, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	m = call(SNI_OBJECT_PATH, SNI_INTERFACE, "SecondaryActivate");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &x, DBUS_TYPE_INT32, &y, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	m = call(SNI_OBJECT_PATH, SNI_INTERFACE, "ContextMenu");
	dbus_message_append_args(m, DBUS_TYPE_INT32, &x, DBUS_TYPE_INT32, &y, DBUS_TYPE_INVALID);
	seed_call(dir, m);
	{
		const char *orient = "vertical", *token = "kwin-1234_TIME5678";
		m = call(SNI_OBJECT_PATH, SNI_INTERFACE, "Scroll");
		dbus_message_append_args(m, DBUS_TYPE_INT32, &delta, DBUS_TYPE_STRING, &orient,
					 DBUS_TYPE_INVALID);
		seed_call(dir, m);
		m = call(SNI_OBJECT_PATH, SNI_INTERFACE, "ProvideXdgActivationToken");
		dbus_message_append_args(m, DBUS_TYPE_STRING, &token, DBUS_TYPE_INVALID);
		seed_call(dir, m);
	}

	/* The control CLI: vmoverlay status|commit|discard|keep|quit. */
	m = call(CONTROL_OBJECT_PATH, CONTROL_INTERFACE, "Status");
	seed_call(dir, m);
	const char *verbs[] = {"Commit", "Discard",     "Keep",  "Resume",
			       "Retry",  "UndoDiscard", "Cancel"};
	const char *vms[] = {"pending", "running", "failed", "nosuchvm"};
	for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) {
		m = call(CONTROL_OBJECT_PATH, CONTROL_INTERFACE, verbs[i]);
		dbus_message_append_args(m, DBUS_TYPE_STRING, &vms[i % 4], DBUS_TYPE_INVALID);
		seed_call(dir, m);
	}
	{
		const char *vm = "pending", *pol = "keep";
		m = call(CONTROL_OBJECT_PATH, CONTROL_INTERFACE, "SetPolicy");
		dbus_message_append_args(m, DBUS_TYPE_STRING, &vm, DBUS_TYPE_STRING, &pol,
					 DBUS_TYPE_INVALID);
		seed_call(dir, m);
	}
	m = call(CONTROL_OBJECT_PATH, CONTROL_INTERFACE, "Quit");
	seed_call(dir, m);
}
