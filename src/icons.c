/* Where hosts find our icons: the icon theme directory we announce, whether
 * it holds every icon (else the tray item sends pixmaps), and the icon a
 * notification server can find. Facts: research/plasma6/README.md (a
 * build-tree binary got a generic icon in Plasma's popups). */
#include "icons.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "icon-pixmaps.h"

/* Uninstalled (the binary lives in the build tree) the source tree's icon
 * theme is used, so a fresh checkout shows its icons without installing. */
char *icons_theme_dir(void)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	size_t blen = strlen(VMO_BINARY_DIR);
	if (n > 0) {
		exe[n] = '\0';
		if (strncmp(exe, VMO_BINARY_DIR, blen) == 0 && exe[blen] == '/')
			return strdup(VMO_ICONDIR_SOURCE);
	}
	return strdup(VMO_ICONDIR);
}

static bool file_in(const char *dir, const char *rel)
{
	char *p = NULL;
	if (!dir || !*dir || asprintf(&p, "%s/%s", dir, rel) < 0)
		return false;
	bool ok = access(p, R_OK) == 0;
	free(p);
	return ok;
}

static bool theme_has(const char *theme_dir, const char *name)
{
	char rel[256];
	snprintf(rel, sizeof rel, "hicolor/scalable/apps/%s.svg", name);
	return file_in(theme_dir, rel);
}

bool icons_complete(const char *dir)
{
	for (const struct vmo_icon_pixmap *p = vmo_icon_pixmaps; p->name; p++)
		if (!theme_has(dir, p->name))
			return false;
	return true;
}

/* Installed where desktops look up icon names: $XDG_DATA_HOME/icons or
 * $XDG_DATA_DIRS/icons (the notification server does not know our
 * IconThemePath). */
static bool icon_installed(const char *name)
{
	const char *data_home = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	const char *data_dirs = getenv("XDG_DATA_DIRS");
	char *dirs = NULL;
	int r;
	if (data_home && *data_home)
		r = asprintf(&dirs, "%s:%s", data_home, data_dirs && *data_dirs ? data_dirs : "");
	else
		r = asprintf(&dirs, "%s/.local/share:%s", home ? home : "",
			     data_dirs && *data_dirs ? data_dirs : "");
	if (r < 0)
		return false;
	if (!data_dirs || !*data_dirs) {
		char *more = NULL;
		if (asprintf(&more, "%s/usr/local/share:/usr/share", dirs) >= 0) {
			free(dirs);
			dirs = more;
		}
	}
	bool found = false;
	char *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *icons = NULL;
		if (*d != '/' || asprintf(&icons, "%s/icons", d) < 0)
			continue;
		found = theme_has(icons, name);
		free(icons);
	}
	free(dirs);
	return found;
}

char *icons_notification_icon(void)
{
	if (icon_installed("vmoverlay"))
		return strdup("vmoverlay");
	/* Not installed (build tree): the spec's other form, a file:// URI. */
	char *dir = icons_theme_dir(), *uri = NULL;
	if (dir && theme_has(dir, "vmoverlay") &&
	    asprintf(&uri, "file://%s/hicolor/scalable/apps/vmoverlay.svg", dir) < 0)
		uri = NULL;
	free(dir);
	return uri ? uri : strdup("vmoverlay");
}
