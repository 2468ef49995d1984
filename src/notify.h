/* Desktop notifications through libnotify (on GLib's default context,
 * iterated by our loop): the commit/discard question with actions,
 * progress updated in place, results, the Activate summary; Plasma's job
 * tracker where present. Degrades to menu-only without a server, and never
 * lets a hung server freeze the loop. */
#ifndef VMO_NOTIFY_H
#define VMO_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "flow.h"

struct ui_deps;
struct notifier;

struct notifier *notifier_create(const struct ui_deps *deps);
void notifier_destroy(struct notifier *n); /* NULL ok */

/* The flow_ui hooks (data = struct notifier *). */
void notifier_prompt(void *n, struct vm *vm);
void notifier_withdraw(void *n, struct vm *vm);
void notifier_progress(void *n, struct vm *vm);
void notifier_result(void *n, struct vm *vm, enum flow_result res, unsigned long long bytes,
		     const char *msg);
/* Tray Activate: summary of every watched VM. */
void notifier_summary(struct notifier *n);
/* An error the user must see (config reload failed, ...). */
void notifier_error(struct notifier *n, const char *summary, const char *body);
/* True while the notification server answered our last probe (tests,
 * status output); false means the tray menu is the only way to answer. */
bool notifier_server_ok(const struct notifier *n);
/* The xdg-activation token the server sent with the last action
 * (ActivationToken before ActionInvoked), handed over (malloc'd, NULL when
 * none) with the time it came (loop_now_ms); used once. NULL n ok. */
char *notifier_take_activation_token(struct notifier *n, int64_t *when_ms);

#endif
