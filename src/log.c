/* Developer log lines on stderr. Under systemd, stderr is a journal stream
 * (JOURNAL_STREAM names its device:inode) and a "<N>" prefix sets each line's
 * priority; elsewhere a short time stamp and level word help reading. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Process-wide by nature: every module logs without carrying a handle. */
static struct {
	bool initialized;
	bool journal;
	enum log_level max_level;
} log_state = {.max_level = LOG_INFO};

/* systemd sets JOURNAL_STREAM=dev:ino for the stream it connected; only
 * trust it if stderr is still that stream (not redirected by a script). */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	if (!js || !*js)
		return false;
	unsigned long long dev, ino;
	if (sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return false;
	struct stat st;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(enum log_level max_level)
{
	log_state.journal = stderr_is_journal();
	log_state.max_level = max_level;
	log_state.initialized = true;
}

void log_set_level(enum log_level max_level)
{
	log_state.max_level = max_level;
}

enum log_level log_get_level(void)
{
	return log_state.max_level;
}

static const char *level_name(enum log_level level)
{
	switch (level) {
	case LOG_ERR:
		return "error";
	case LOG_WARN:
		return "warning";
	case LOG_INFO:
		return "info";
	case LOG_DEBUG:
		return "debug";
	}
	return "log";
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_state.max_level)
		return;
	if (!log_state.initialized)
		log_init(log_state.max_level);
	int saved_errno = errno; /* callers often log strerror(errno) next */

	char line[2048];
	int len;
	if (log_state.journal) {
		len = snprintf(line, sizeof(line), "<%d>", (int)level);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		len = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld [%s] ", tm.tm_hour,
		               tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_name(level));
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len += n;
	if ((size_t)len > sizeof(line) - 2) /* truncated: keep room for '\n' */
		len = (int)sizeof(line) - 2;
	/* One line per event: a stray newline would split it in the journal. */
	for (int i = 0; i < len; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	while (len > 0 && line[len - 1] == ' ')
		len--;
	line[len++] = '\n';
	/* A single write keeps lines whole even with children writing too. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)len);
	(void)w;
	errno = saved_errno;
}
