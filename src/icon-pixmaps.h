/* The tray icons as IconPixmap data, generated at build time from
 * icons/hicolor/scalable/apps/ (the SVGs) (cmake/part-icons.cmake): for every icon
 * name several square sizes, each w*w*4 bytes in A,R,G,B order. */
#ifndef VMO_ICON_PIXMAPS_H
#define VMO_ICON_PIXMAPS_H

struct vmo_icon_pixmap {
	const char *name; /* "vmoverlay", "vmoverlay-busy", ... */
	int size;
	const unsigned char *argb;
};

extern const struct vmo_icon_pixmap vmo_icon_pixmaps[]; /* ends with {0} */

#endif
