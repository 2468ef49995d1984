/* Logging for developers: one line per event to stderr, with a level.
 * Under systemd (JOURNAL_STREAM set) lines carry <N> priority prefixes so
 * journald classifies them. User-facing text does not go through here. */
#ifndef VMO_LOG_H
#define VMO_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERR = 3, LOG_WARN = 4, LOG_INFO = 6, LOG_DEBUG = 7 };

void log_init(enum log_level max_level);
void log_set_level(enum log_level max_level);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
