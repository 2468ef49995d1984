/* The terminal front end (issue 15): when vmoverlay runs in a terminal and
 * neither a tray host nor a notification server answers (ssh, a container,
 * a console before logging into Plasma), or always with --terminal, the
 * question is asked on the terminal: the same answers as the tray menu, the
 * same "When it shuts down" choice, a progress bar during a commit and a
 * result line. Like every UI module it only reads the model and asks the
 * flow to act; it never decides. Answers are digits, so they read the same
 * in every language. */
#include "term.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow.h"
#include "i18n.h"
#include "log.h"
#include "loop.h"
#include "model.h"

#define TERM_BAR_WIDTH 24

/* The answers, numbered as shown: actions first, then the policy radio. */
static const struct {
	enum vm_action action;
	const char *label; /* the tray menu's label (mnemonic stripped) */
} term_actions[] = {
    {ACT_COMMIT, N_("_Commit changes into base…")},
    {ACT_DISCARD, N_("_Discard changes")},
    {ACT_KEEP, N_("_Keep for now")},
    {ACT_RESUME, N_("_Resume commit")},
    {ACT_RETRY, N_("Re_try")},
    {ACT_UNDO_DISCARD, N_("_Undo discard")},
    {ACT_CANCEL, N_("C_ancel commit")},
};
#define TERM_N_ACTIONS (sizeof term_actions / sizeof *term_actions)

static const char *const term_policy_labels[POLICY_COUNT] = {
    [POLICY_ASK] = N_("_Ask"),
    [POLICY_COMMIT] = N_("_Commit"),
    [POLICY_DISCARD] = N_("_Discard"),
    [POLICY_KEEP] = N_("_Keep"),
};

struct term {
	struct loop *loop;
	struct model *model;
	struct flow *flow;
	struct term_hooks hooks;
	int in_fd, out_fd;
	bool forced;    /* --terminal */
	bool in_tty;    /* standard input is a terminal */
	bool out_tty;   /* standard output is a terminal: redraw the bar in place */
	bool engaged;   /* the terminal asked at least once: it follows the outcome */
	bool in_eof;    /* no more answers can come */
	bool answering; /* inside flow_request: its withdraw is our own doing */
	struct loop_fd *in_watch;
	char line[256];
	size_t line_len;

	/* The VM whose question is open on the terminal (by name: a reload may
	 * replace struct vm objects). */
	char *asking;
	unsigned shown_actions; /* the ACT_BITs listed with the question */
	int choice_map[TERM_N_ACTIONS + POLICY_COUNT + 1];

	/* The progress bar of the commit being shown. */
	char *progress_vm;
	int64_t progress_t0;
	uint64_t progress_total;
	int last_pct;
	bool bar_open; /* a bar is drawn without its newline yet */

	int last_countdown;
};

static void out(struct term *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out(struct term *t, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (t->bar_open && s[0] != '\r') {
		/* Finish the bar's line before anything else is printed. */
		(void)!write(t->out_fd, "\n", 1);
		t->bar_open = false;
	}
	for (size_t off = 0; off < (size_t)n;) {
		ssize_t w = write(t->out_fd, s + off, (size_t)n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* the terminal went away: nothing more to say there */
		off += (size_t)w;
	}
	free(s);
}

/* "_Commit changes into base…" -> "Commit changes into base…" ("__" is a
 * literal underscore). */
static void strip_mnemonic(const char *in, char *buf, size_t len)
{
	size_t o = 0;
	for (const char *p = in; *p && o + 1 < len; p++) {
		if (*p == '_') {
			if (p[1] != '_')
				continue;
			p++;
		}
		buf[o++] = *p;
	}
	buf[o] = '\0';
}

/* Whether the terminal speaks now: always with --terminal; otherwise when
 * it is a terminal and no desktop UI can take the question. */
bool term_speaks(struct term *t)
{
	if (!t)
		return false;
	if (t->forced)
		return true;
	if (!t->in_tty)
		return false;
	return !(t->hooks.desktop_present && t->hooks.desktop_present(t->hooks.data));
}

static struct vm *asking_vm(struct term *t)
{
	return t->asking ? model_find(t->model, t->asking) : NULL;
}

static void print_question(struct term *t, struct vm *vm)
{
	char label[256], line[512];
	int n = 0;
	memset(t->choice_map, -1, sizeof t->choice_map);
	t->shown_actions = vm->actions;
	out(t, "\n%s\n", vm_summary_line(vm, line, sizeof line));
	/* What the answer applies to (issue 15): each disk's size and overlay,
	 * with several disks their total first. */
	if (vm->n_disks > 1)
		out(t, "%s\n", vm_disks_total_line(vm, line, sizeof line));
	for (size_t i = 0; i < vm->n_disks; i++)
		out(t, "  %s\n", vm_disk_line(vm, i, false, line, sizeof line));
	if (vm->flow == FLOW_PENDING) {
		/* TRANSLATORS: notification summary; %s is the VM name */
		out(t, _("%s shut down"), vm->name);
		out(t, " — %s\n", _("Keep the changes made in this session?"));
		if (vm->last_stop == STOP_UNCLEAN)
			out(t, "%s\n", _("The guest did not shut down cleanly."));
	} else if (vm->error && *vm->error) {
		out(t, "%s\n", vm->error);
	}
	for (size_t i = 0; i < TERM_N_ACTIONS; i++) {
		if (!(vm->actions & ACT_BIT(term_actions[i].action)))
			continue;
		strip_mnemonic(_(term_actions[i].label), label, sizeof label);
		t->choice_map[++n] = (int)i;
		out(t, "  %d) %s\n", n, label);
	}
	strip_mnemonic(C_("menu", "_When it shuts down"), label, sizeof label);
	out(t, "  %s:", label);
	for (int p = 0; p < POLICY_COUNT; p++) {
		strip_mnemonic(_(term_policy_labels[p]), label, sizeof label);
		t->choice_map[++n] = (int)TERM_N_ACTIONS + p;
		out(t, "  %d) %s%s", n, label, vm->policy == (enum vmo_policy)p ? " ●" : "");
	}
	/* TRANSLATORS: the terminal prompt; %d is the highest choice number */
	out(t, "\n");
	out(t, _("Choose 1-%d and press Enter:"), n);
	out(t, " ");
}

static void in_watch_update(struct term *t)
{
	bool want = t->asking != NULL && !t->in_eof;
	if (t->in_watch)
		loop_fd_update(t->in_watch, want ? POLLIN : 0);
}

static void close_question(struct term *t)
{
	free(t->asking);
	t->asking = NULL;
	in_watch_update(t);
}

static void answer(struct term *t, const char *text)
{
	struct vm *vm = asking_vm(t);
	if (!vm) {
		close_question(t);
		return;
	}
	char *end;
	long n = strtol(text, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	int idx = (*text && *end == '\0' && n > 0 && n <= (long)TERM_N_ACTIONS + POLICY_COUNT)
		      ? t->choice_map[n]
		      : -1;
	if (idx < 0) {
		if (*text)
			/* TRANSLATORS: terminal: the typed answer is not one of the numbers */
			out(t, _("\"%s\" is not one of the choices."), text);
		print_question(t, vm);
		return;
	}
	char *why = NULL;
	if (idx >= (int)TERM_N_ACTIONS) {
		enum vmo_policy p = (enum vmo_policy)(idx - (int)TERM_N_ACTIONS);
		if (!flow_set_policy(t->flow, vm, p, &why))
			out(t, "%s\n", why ? why : "");
		free(why);
		/* The question stays open; show the radio's new state. */
		if ((vm = asking_vm(t)))
			print_question(t, vm);
		return;
	}
	enum vm_action a = term_actions[idx].action;
	t->answering = true;
	bool accepted = flow_request(t->flow, vm, a, &why);
	t->answering = false;
	if (!accepted) {
		out(t, "%s\n", why ? why : "");
		free(why);
		if ((vm = asking_vm(t)))
			print_question(t, vm);
		return;
	}
	free(why);
	close_question(t);
	if (a == ACT_KEEP) {
		/* TRANSLATORS: terminal: after "Keep for now"; %s is the VM */
		out(t, _("%s: changes kept in the overlay for now; nothing was changed."),
		    vm->name);
		out(t, "\n");
		if (t->hooks.done)
			t->hooks.done(t->hooks.data, vm, TERM_KEPT);
	}
}

static void on_input(struct loop *loop, int fd, short revents, void *data)
{
	struct term *t = data;
	(void)loop;
	char buf[128];
	ssize_t r = read(fd, buf, sizeof buf);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		/* End of input (Ctrl-D, a closed pipe): the tray and the control
		 * interface still answer; say so once. */
		t->in_eof = true;
		in_watch_update(t);
		out(t, "\n%s\n",
		    _("No more answers from the terminal; the choice waits in the tray menu and "
		      "in \"vmoverlay commit|discard|keep VM\"."));
		if (t->hooks.done && t->asking) {
			struct vm *vm = asking_vm(t);
			if (vm)
				t->hooks.done(t->hooks.data, vm, TERM_NO_ANSWER);
		}
		return;
	}
	(void)revents;
	for (ssize_t i = 0; i < r; i++) {
		char c = buf[i];
		if (c == '\r' || c == '\n') {
			t->line[t->line_len] = '\0';
			char *s = t->line;
			while (*s == ' ' || *s == '\t')
				s++;
			t->line_len = 0;
			if (t->asking)
				answer(t, s);
			if (!t->asking)
				return; /* the rest of the buffer answers nothing */
		} else if (t->line_len + 1 < sizeof t->line) {
			t->line[t->line_len++] = c;
		}
	}
}

static void countdown_changed(void *data)
{
	struct term *t = data;
	for (size_t i = 0; i < t->model->n_vms; i++) {
		struct vm *vm = t->model->vms[i];
		if (vm->shutdown_in_s == t->last_countdown)
			continue;
		t->last_countdown = vm->shutdown_in_s;
		if (vm->shutdown_in_s < 0 || !term_speaks(t))
			continue;
		/* TRANSLATORS: terminal, demo mode: VM name, seconds */
		char *s = NULL;
		if (asprintf(&s, _("The demo shuts %s down in %d s…"), vm->name,
			     vm->shutdown_in_s) < 0)
			continue;
		if (t->out_tty) {
			out(t, "\r%s\033[K", s);
			t->bar_open = true;
		} else if (vm->shutdown_in_s % 5 == 0 || vm->shutdown_in_s <= 3) {
			out(t, "%s\n", s);
		}
		free(s);
	}
}

struct term *term_create(struct loop *loop, struct model *model, struct flow *flow, int in_fd,
			 int out_fd, bool forced, const struct term_hooks *hooks)
{
	struct term *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->loop = loop;
	t->model = model;
	t->flow = flow;
	if (hooks)
		t->hooks = *hooks;
	t->in_fd = in_fd;
	t->out_fd = out_fd;
	t->forced = forced;
	t->in_tty = isatty(in_fd);
	t->out_tty = isatty(out_fd);
	t->last_pct = -1;
	t->last_countdown = -1;
	/* Never block the loop on the terminal. */
	int fl = fcntl(in_fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(in_fd, F_SETFL, fl | O_NONBLOCK);
	t->in_watch = loop_fd_add(loop, in_fd, 0, on_input, t);
	model_add_listener(model, countdown_changed, t);
	return t;
}

void term_destroy(struct term *t)
{
	if (!t)
		return;
	if (t->bar_open)
		out(t, "\n");
	model_remove_listener(t->model, countdown_changed, t);
	if (t->in_watch)
		loop_fd_remove(t->in_watch);
	free(t->asking);
	free(t->progress_vm);
	free(t);
}

bool term_engaged(const struct term *t)
{
	return t && t->engaged;
}

void term_prompt(void *data, struct vm *vm)
{
	struct term *t = data;
	if (!t || !term_speaks(t))
		return;
	if (t->in_eof) {
		if (t->hooks.done)
			t->hooks.done(t->hooks.data, vm, TERM_NO_ANSWER);
		return;
	}
	if (!t->engaged && t->hooks.engage)
		t->hooks.engage(t->hooks.data);
	t->engaged = true;
	free(t->asking);
	t->asking = strdup(vm->name);
	t->line_len = 0;
	print_question(t, vm);
	in_watch_update(t);
}

void term_withdraw(void *data, struct vm *vm)
{
	struct term *t = data;
	if (!t || t->answering || !t->asking || strcmp(t->asking, vm->name) != 0)
		return;
	close_question(t);
	/* TRANSLATORS: terminal: the question was answered elsewhere or the VM started */
	out(t, "\n");
	out(t, _("%s: the question is no longer open (answered elsewhere, or the VM started)."),
	    vm->name);
	out(t, "\n");
}

static void fmt_duration(char *buf, size_t len, double s)
{
	if (s < 0 || s > 360000)
		snprintf(buf, len, "--:--");
	else if (s >= 3600)
		snprintf(buf, len, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
	else
		snprintf(buf, len, "%d:%02d", (int)s / 60, (int)s % 60);
}

void term_progress(void *data, struct vm *vm)
{
	struct term *t = data;
	if (!t || !(t->engaged || term_speaks(t)) || vm->flow != FLOW_COMMITTING ||
	    vm->progress < 0)
		return;
	if (!t->progress_vm || strcmp(t->progress_vm, vm->name) != 0) {
		free(t->progress_vm);
		t->progress_vm = strdup(vm->name);
		t->progress_t0 = loop_now_ms();
		/* Throughput and time left assume vm->progress is the whole
		 * commit's, over every disk (one percentage per VM); a flow that
		 * restarts it per disk would need that disk's bytes here. */
		t->progress_total = vm_overlay_bytes(vm);
		t->last_pct = -1;
	}
	int pct = (int)vm->progress;
	if (pct == t->last_pct)
		return;
	if (!t->out_tty && pct / 10 == t->last_pct / 10 && pct != 100)
		return; /* a log file gets a line every 10 % */
	t->last_pct = pct;
	double secs = (double)(loop_now_ms() - t->progress_t0) / 1000.0;
	double done = (double)t->progress_total * vm->progress / 100.0;
	double rate = secs > 0.05 ? done / secs : 0;
	char bar[TERM_BAR_WIDTH + 1], speed[64], left[32];
	int fill = pct * TERM_BAR_WIDTH / 100;
	for (int i = 0; i < TERM_BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[TERM_BAR_WIDTH] = '\0';
	char *s = NULL;
	if (rate > 0) {
		i18n_format_size(speed, sizeof speed, (uint64_t)rate);
		fmt_duration(left, sizeof left, ((double)t->progress_total - done) / rate);
		/* TRANSLATORS: terminal progress: VM, bar, percent, throughput ("12 MiB"), time
		 * left */
		if (asprintf(&s, _("%s: committing [%s] %3d %% · %s/s · %s left"), vm->name, bar,
			     pct, speed, left) < 0)
			return;
	} else if (asprintf(&s, _("%s: committing [%s] %3d %%"), vm->name, bar, pct) < 0) {
		return;
	}
	if (t->out_tty) {
		out(t, "\r%s\033[K", s);
		t->bar_open = true;
	} else {
		out(t, "%s\n", s);
	}
	free(s);
}

void term_result(void *data, struct vm *vm, enum flow_result res, unsigned long long bytes,
		 const char *msg)
{
	struct term *t = data;
	if (!t || !(t->engaged || term_speaks(t)))
		return;
	free(t->progress_vm);
	t->progress_vm = NULL;
	char size[64], bases[2048];
	/* One disk: its base's file name; several: which base each went into. */
	unsigned long n = vm->n_disks > 1 ? (unsigned long)vm->n_disks : 1;
	const char *base = vm->disks[0].base ? strrchr(vm->disks[0].base, '/') : NULL;
	base = base ? base + 1 : vm->disks[0].base ? vm->disks[0].base : "?";
	out(t, "\n");
	switch (res) {
	case RESULT_COMMITTED:
		i18n_format_size(size, sizeof size, bytes);
		if (n > 1) {
			out(t,
			    /* TRANSLATORS: VM name, total size ("1.5 GiB"), number
			     * of disks (always more than one); a list "vda →
			     * base.qcow2" follows */
			    P_("%s: %s committed into the bases of %d disk; fresh overlay ready",
			       "%s: %s committed into the bases of %d disks; fresh overlays ready",
			       n),
			    vm->name, size, (int)n);
			out(t, "\n  %s", vm_disk_bases(vm, "\n  ", bases, sizeof bases));
			break;
		}
		/* TRANSLATORS: VM name, size ("1.2 GiB"), base image file name */
		out(t, _("%s: %s committed into %s; fresh overlay ready"), vm->name, size, base);
		break;
	case RESULT_DISCARDED:
		if (vm->has_discarded)
			out(t, _("%s: changes discarded (undo available until next start)"),
			    vm->name);
		else
			out(t,
			    P_("%s: changes discarded; fresh overlay ready",
			       "%s: changes discarded; fresh overlays ready", n),
			    vm->name);
		break;
	case RESULT_UNDONE:
		out(t,
		    P_("%s: the discarded changes are back in the overlay",
		       "%s: the discarded changes are back in the overlays", n),
		    vm->name);
		break;
	case RESULT_CANCELLED:
		out(t, _("%s: commit cancelled"), vm->name);
		out(t, " %s",
		    P_("Nothing was lost: the overlay still holds your changes.",
		       "Nothing was lost: the overlays still hold your changes.", n));
		break;
	case RESULT_FAILED:
	default:
		out(t, _("%s: operation failed"), vm->name);
		out(t, ": %s", msg && *msg ? msg : _("Unknown error."));
		break;
	}
	out(t, "\n");
	if (t->engaged && t->hooks.done)
		t->hooks.done(t->hooks.data, vm,
			      res == RESULT_COMMITTED   ? TERM_COMMITTED
			      : res == RESULT_DISCARDED ? TERM_DISCARDED
			      : res == RESULT_FAILED    ? TERM_FAILED
							: TERM_KEPT);
	/* A failure leaves a choice (Retry, Resume ...): ask again. */
	if (res == RESULT_FAILED && term_speaks(t) && !t->in_eof && vm->actions)
		term_prompt(t, vm);
}
