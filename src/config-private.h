/* The insides of the configuration code shared by config.c (defaults,
 * environment, merging, validation), config-file.c (reading the libconfig
 * file) and cli.c (the command line). Nothing else includes it. */
#ifndef VMO_CONFIG_PRIVATE_H
#define VMO_CONFIG_PRIVATE_H

#include <libconfig.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* strdup/asprintf that abort on ENOMEM (start-up: nothing sensible to
 * keep); cfg_set_str replaces *field with a copy of value. */
char *cfg_strdup(const char *s);
char *cfg_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cfg_set_str(char **field, const char *value);

/* Every problem is collected as one "WHERE: message" line. */
struct errlist {
	char *buf;
	size_t len;
	size_t count;
};

void cfg_errlist_vadd(struct errlist *e, const char *where, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void cfg_errlist_add(struct errlist *e, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Hands the collected lines over without the final newline. */
char *cfg_errlist_take(struct errlist *e);

/* A VM while it is being assembled: where each value came from, so that a
 * problem found after merging names the place the winning value was set. */
struct vm_build {
	struct vm_config c;
	char *at_entry; /* FILE:LINE of the group, or the source of the name */
	char *at_policy;
	char *at_overlay;
	char *at_base;
};

struct loader {
	struct config *cfg;
	struct vm_build *vms;
	size_t n_vms;
	struct errlist errors;
	const char *(*env)(const char *name);
	const char *file; /* the file being read, for settings libconfig did not name */
};

/* config-file.c: the VM being assembled under name (added if new). */
struct vm_build *cfg_loader_add_vm(struct loader *l, const char *name);
struct vm_build *cfg_loader_find_vm(struct loader *l, const char *name);
/* Reads path into l (errors with FILE:LINE collected in l->errors); a
 * missing file is an error only when must_exist. */
bool cfg_load_file(struct loader *l, const char *path, bool must_exist);

#endif
