/* gettext set-up: the user's locale from the environment, our text domain
 * bound to the build tree's translations when run uninstalled, and sizes
 * written the way the user's locale writes numbers. */
#include "i18n.h"

#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "log.h"

/* The user's LC_NUMERIC, kept apart: the process itself runs with
 * LC_NUMERIC=C so that strtod() on qemu-img's "(12.34/100%)" progress, and
 * every number written into D-Bus or files, never depends on the user's
 * decimal comma. Only sizes shown to the user use it (via uselocale). */
static locale_t user_numeric = (locale_t)0;

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Uninstalled = the executable lives in the build tree. */
static bool running_from_build_tree(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	size_t len = strlen(VMO_BINARY_DIR);
	return strncmp(exe, VMO_BINARY_DIR, len) == 0 && exe[len] == '/';
}

static const char *locale_dir(void)
{
	const char *env = getenv("VMO_LOCALEDIR");
	if (env && *env)
		return env;
	if (running_from_build_tree() && is_dir(VMO_LOCALEDIR_BUILD))
		return VMO_LOCALEDIR_BUILD;
	return VMO_LOCALEDIR;
}

void i18n_init(void)
{
	if (!setlocale(LC_ALL, ""))
		log_warn("locale from the environment is not available; using C");
	locale_t numeric = newlocale(LC_NUMERIC_MASK, "", (locale_t)0);
	if (user_numeric)
		freelocale(user_numeric);
	user_numeric = numeric; /* (locale_t)0 if unavailable: format in C */
	setlocale(LC_NUMERIC, "C");

	const char *dir = locale_dir();
	bindtextdomain(VMO_GETTEXT_PACKAGE, dir);
	bind_textdomain_codeset(VMO_GETTEXT_PACKAGE, "UTF-8");
	textdomain(VMO_GETTEXT_PACKAGE);
	log_debug("translations from %s", dir);
}

const char *vmo_pgettext(const char *ctx_msgid, const char *msgid)
{
	const char *t = gettext(ctx_msgid);
	/* gettext hands back its argument when there is no translation; the
	 * context prefix must then not reach the user. */
	return t == ctx_msgid ? msgid : t;
}

char *i18n_format_size(char *buf, size_t len, uint64_t bytes)
{
	if (!buf || len == 0)
		return buf;
	if (bytes < 1024) {
		/* TRANSLATORS: a size under one KiB, e.g. "512 bytes". */
		snprintf(buf, len, P_("%u byte", "%u bytes", (unsigned long)bytes),
			 (unsigned)bytes);
		return buf;
	}
	/* TRANSLATORS: size units; %s is the number, already written with the
	 * locale's decimal separator ("1,2" in German). */
	static const char *const units[] = {
	    N_("%s KiB"), N_("%s MiB"), N_("%s GiB"), N_("%s TiB"), N_("%s PiB"), N_("%s EiB"),
	};
	double v = (double)bytes / 1024.0;
	size_t u = 0;
	/* Pick the unit after rounding, so 1023.96 KiB reads "1.0 MiB", not
	 * "1024 KiB". */
	while (u + 1 < sizeof units / sizeof units[0] && v >= 1023.5) {
		v /= 1024.0;
		u++;
	}
	char num[32];
	locale_t old = (locale_t)0;
	if (user_numeric)
		old = uselocale(user_numeric);
	if (v < 9.95)
		snprintf(num, sizeof num, "%.1f", v);
	else
		snprintf(num, sizeof num, "%.0f", v);
	if (old)
		uselocale(old);
	snprintf(buf, len, _(units[u]), num);
	return buf;
}
