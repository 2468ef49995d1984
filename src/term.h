/* The terminal front end: asks the commit/discard question on the terminal
 * when no tray host and no notification server can (or always with
 * --terminal), shows a commit's progress bar and the result line. Reads the
 * model, asks the flow; never decides. */
#ifndef VMO_TERM_H
#define VMO_TERM_H

#include <stdbool.h>

#include "flow.h"

struct loop;
struct model;
struct term;

enum term_outcome {
	TERM_COMMITTED, /* committed and rebuilt */
	TERM_DISCARDED, /* discarded and rebuilt */
	TERM_KEPT,      /* kept for now, a commit cancelled, a discard undone */
	TERM_FAILED,    /* the operation failed; data kept */
	TERM_NO_ANSWER, /* nobody can answer (end of input, no terminal) */
};

struct term_hooks {
	/* True when a tray host or a notification server can take the
	 * question (then a terminal without --terminal stays quiet). */
	bool (*desktop_present)(void *data);
	/* The terminal asked its first question (e.g. quieten the log). */
	void (*engage)(void *data);
	/* A question the terminal asked came to an end. */
	void (*done)(void *data, struct vm *vm, enum term_outcome outcome);
	void *data;
};

/* in_fd/out_fd: usually 0 and 1. forced: --terminal (speak even when a
 * desktop UI is present or in_fd is not a terminal). in_fd is set
 * non-blocking. */
struct term *term_create(struct loop *loop, struct model *model, struct flow *flow, int in_fd,
			 int out_fd, bool forced, const struct term_hooks *hooks);
void term_destroy(struct term *t); /* NULL ok */
/* True once the terminal asked a question. */
bool term_engaged(const struct term *t);
/* True when a question now would be asked on the terminal. */
bool term_speaks(struct term *t);

/* The flow_ui hooks (data = struct term *). */
void term_prompt(void *t, struct vm *vm);
void term_withdraw(void *t, struct vm *vm);
void term_progress(void *t, struct vm *vm);
void term_result(void *t, struct vm *vm, enum flow_result res, unsigned long long bytes,
		 const char *msg);

#endif
