/* The insides of the notifier shared by notify.c (the slots, libnotify,
 * the server probe, the flow's hooks) and notify-job.c (Plasma's job view,
 * org.kde.JobViewServer V2/V3 with the V1 fallback). Nothing else includes
 * it. */
#ifndef VMO_NOTIFY_PRIVATE_H
#define VMO_NOTIFY_PRIVATE_H

#include <gio/gio.h>
#include <libnotify/notify.h>
#include <stdbool.h>
#include <stdint.h>

#include "notify.h"

#define NOTIFY_NAME  "org.freedesktop.Notifications"
#define NOTIFY_PATH  "/org/freedesktop/Notifications"
#define NOTIFY_IFACE "org.freedesktop.Notifications"
/* plasmashell owns org.kde.JobViewServer and org.kde.kuiserver; KF6 talks
 * to the former. */
#define JOB_SERVER_NAME "org.kde.JobViewServer"
#define JOB_SERVER_PATH "/JobViewServer"
#define JOB_SERVER_V1   "org.kde.JobViewServer"
#define JOB_SERVER_V2   "org.kde.JobViewServerV2"
#define JOB_VIEW_V2     "org.kde.JobViewV2"
#define JOB_VIEW_V3     "org.kde.JobViewV3"
/* terminate() error codes: KIO::ERR_USER_CANCELED, KJob::UserDefinedError */
#define JOB_ERR_CANCELLED 1u
#define JOB_ERR_FAILED    100u

#define APP_NAME         "vmoverlay"
#define PROBE_TIMEOUT_MS 2000
/* After a failed probe, new operations re-probe at most this often (an
 * owner change re-probes at once). No timer: idle stays idle. */
#define PROBE_RETRY_MS       10000
#define PROGRESS_INTERVAL_MS 500
#define JOB_KILLABLE         1

enum note_kind { NOTE_NONE = 0, NOTE_PROMPT, NOTE_PROGRESS, NOTE_RESULT, NOTE_INFO };
enum note_op { OP_NONE = 0, OP_SHOW, OP_CLOSE };
enum job_state { JOB_NONE = 0, JOB_REQUESTING, JOB_ACTIVE, JOB_UNAVAILABLE };

struct notifier;

/* One notification slot: what it should show, and libnotify's object. */
struct note {
	struct notifier *n;
	char *vm_name; /* NULL for the global summary/error slots */
	NotifyNotification *nn;
	bool shown; /* the server has it (no NotificationClosed seen) */
	enum note_kind kind;
	enum note_op op;
	bool close_first; /* an answered question must be closed, not replaced */
	char *summary;
	char *body;
	NotifyUrgency urgency;
	bool actions;  /* Commit / Discard / Keep for now */
	bool resident; /* stays in the history until answered */
	bool transient;
	bool persistent; /* expire_timeout 0 */
	int value;       /* progress 0..100, -1 none */
	int64_t last_show_ms;
	struct loop_timer *throttle;
};

struct vm_entry {
	char *name;
	struct note note;
	enum job_state job;
	char *job_path;
	guint job_sub;
	GCancellable *job_cancel; /* the requestView on its way */
	bool job_v3;              /* the view came from JobViewServerV2 */
	bool job_wanted;          /* a commit runs: a new server gets asked too */
	bool job_finish_pending;  /* result arrived while requestView ran */
	unsigned job_finish_code;
	char *job_finish_msg;
	unsigned job_percent;
	struct vm_entry *next;
};

struct notifier {
	const struct ui_deps *deps;
	GDBusConnection *conn;
	GCancellable *cancel;
	guint owner_sub;
	guint job_owner_sub;
	bool job_v1_only; /* the job server has no JobViewServerV2 */
	char *icon;       /* app_icon: our name, or a file:// URI when not installed */
	char *token;      /* xdg-activation token from the last action, until used */
	int64_t token_ms;
	bool inited; /* notify_init done */

	bool probing;
	int probe_left;
	bool probe_ok;
	char *probe_err;
	bool reprobe; /* the owner changed while probing */
	bool server_ok;
	int64_t last_fail_ms;
	bool logged_absent;
	bool cap_actions;
	bool cap_markup;
	bool cap_value; /* Plasma 5: "value" hint draws a progress bar (6 does not) */
	char *server_name;

	struct vm_entry *vms;
	struct note summary;
	struct note error;
};

/* notify.c */
/* Flushes what changed, probing the server first where needed. */
void notify_kick(struct notifier *n);
char *notify_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The progress notification held back while a job view was being asked
 * for, shown now that none came. */
void notify_show_held_progress(struct notifier *n, struct vm_entry *e);

/* notify-job.c */
void notify_job_progress(struct notifier *n, struct vm_entry *e, unsigned percent);
void notify_job_finish(struct notifier *n, struct vm_entry *e, unsigned code, const char *msg);
void notify_on_job_owner_changed(GDBusConnection *conn, const char *sender, const char *path,
				 const char *iface, const char *signal, GVariant *params,
				 gpointer data);

#endif
