/* The libvirt watcher: lifecycle events through our loop, keepalive, close
 * callback -> reconnect with backoff (1, 2, 4 ... 30 s), reconcile by
 * listing all domains after every connect, at start-up and every
 * reconcile_interval seconds; disk discovery from the inactive domain XML
 * (libxml2) and the overlay's qcow2 header (image.c). Fills the libvirt
 * facts of each struct vm and tells the flow about starts and stops. */
#ifndef VMO_VIRT_H
#define VMO_VIRT_H

#include <stdbool.h>

#include "model.h"

struct loop;
struct statefile;
struct virt_watcher;
typedef struct _virConnect *virConnectPtr;

struct virt_events {
	/* A managed VM went from running to shut off (event, or found by
	 * reconcile, also across applet restarts). kind is classified and
	 * confirmed with virDomainGetState. */
	void (*stopped)(void *data, struct vm *vm, enum vm_stop_kind kind);
	/* A managed VM was found running / started. May come again for a VM
	 * that still runs after a reconnect (the flow treats it as a no-op). */
	void (*started)(void *data, struct vm *vm);
	void *data;
	/* Optional: vm's facts were (re)read (every reconcile, event and
	 * discovery), after stopped/started if any. Lets the flow leave
	 * FLOW_UNKNOWN for a VM found shut off and follow problems. */
	void (*updated)(void *data, struct vm *vm);
};

/* loop_virt_register() must have been called. Connects from the loop
 * (never fails for connection errors: it retries with backoff). */
struct virt_watcher *virt_watcher_create(struct loop *loop, struct model *model,
                                         const struct config *cfg, struct statefile *state,
                                         const struct virt_events *events);
void virt_watcher_destroy(struct virt_watcher *w); /* NULL ok */
/* New config (SIGHUP): new URI reconnects; re-discovers every VM. */
void virt_watcher_reconfigure(struct virt_watcher *w, const struct config *cfg);
bool virt_watcher_connected(const struct virt_watcher *w);
virConnectPtr virt_watcher_conn(const struct virt_watcher *w);
/* The last connection error (libvirt's English text), NULL when connected. */
const char *virt_watcher_last_error(const struct virt_watcher *w);
/* The reconcile's shared-base scan (a child process) has not answered yet
 * (tests wait for it; the loop runs on meanwhile). */
bool virt_watcher_scanning(const struct virt_watcher *w);
/* Re-lists every domain now (as the periodic timer does). */
void virt_watcher_reconcile(struct virt_watcher *w);

/* Stop classification (libvirt-qemu-img.md §1.2), exported for tests:
 * from virDomainGetState's state + reason and the never-prompt facts, and
 * from a STOPPED event detail (used only when the domain is gone). */
enum vm_stop_kind virt_classify_stop(int state, int reason, bool managed_save, bool snapshots);
enum vm_stop_kind virt_classify_event(int detail);

/* What libvirt and the images say about a VM right now, asked right
 * before an operation (DESIGN.md §4.2, §4.3, §4.9). A query: the model is
 * not written (a difference makes the watcher re-read from the loop, and
 * shows in `changed`). facts is a scratch struct vm with the disk, its
 * problems and its users as found now. */
struct virt_now {
	bool connected, defined;
	int state; /* virDomainState, -1 unknown */
	bool managed_save, snapshots;
	bool changed;     /* facts differ from what the model shows */
	struct vm *facts; /* owned; NULL when not defined */
};
/* False when not connected or out of memory (now says which). */
bool virt_watcher_query(struct virt_watcher *w, const struct vm *vm, struct virt_now *now);
void virt_now_clear(struct virt_now *now);
/* Why an operation on vm must not run now (translated, malloc'd), or NULL:
 * not shut off, a managed save or snapshots, a problem, an unknown disk,
 * a base (for_commit) or overlay another disk uses, a check that did not
 * finish. A function of now alone. */
char *virt_now_refusal(const struct virt_now *now, const struct vm *vm, bool for_commit);
/* virt_watcher_query + virt_now_refusal: true when idle, else false with a
 * translated *why. Writes nothing in the model. */
bool virt_watcher_check_idle(struct virt_watcher *w, const struct vm *vm, bool for_commit,
                             char **why);

/* The non-empty string an XPath expression yields in a libvirt XML
 * document (malloc'd), or NULL; shared with vmoverlay-helper. */
typedef struct _xmlXPathContext *xmlXPathContextPtr;
char *virt_xpath_string(xmlXPathContextPtr ctx, const char *expr);

/* Re-reads the overlay's header and size (after an operation). */
void virt_watcher_refresh_vm(struct virt_watcher *w, struct vm *vm);

#endif
