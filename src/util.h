/* Small helpers every module uses. */
#ifndef VMO_UTIL_H
#define VMO_UTIL_H

/* Replaces *err (freed first; it must be NULL or malloc'd) with a
 * formatted message. err may be NULL: then nothing happens. */
void set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A formatted, malloc'd string; NULL only on ENOMEM. */
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
