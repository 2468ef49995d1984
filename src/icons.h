/* Icon lookup for hosts: the theme directory for IconThemePath, whether it
 * is complete, and the app_icon notifications carry. */
#ifndef VMO_ICONS_H
#define VMO_ICONS_H

#include <stdbool.h>

/* The icon theme directory (hicolor layout) hosts should search: the
 * source tree's icons/ when run from the build tree, the installed
 * share/icons otherwise (malloc'd). */
char *icons_theme_dir(void);

/* dir's hicolor theme holds every icon the tray item may show (so hosts
 * find them by name and no IconPixmap is needed). */
bool icons_complete(const char *dir);

/* The app_icon for notifications and the job view: "vmoverlay" when
 * installed in an icon theme desktops search ($XDG_DATA_HOME, $XDG_DATA_DIRS;
 * a notification server does not know our IconThemePath), else a file://
 * URI of our SVG (build tree), so the server shows our icon rather than a
 * generic one (malloc'd). */
char *icons_notification_icon(void);

#endif
