/* The D-Bus interface definitions of dbus-xml/, embedded by the build
 * (cmake/embed-xml.cmake). name = file name without ".xml". */
#ifndef VMO_DBUS_XML_EMBED_H
#define VMO_DBUS_XML_EMBED_H

struct vmo_embedded_xml {
	const char *name;
	const char *xml;
};

extern const struct vmo_embedded_xml vmo_dbus_xml[]; /* ends with {0, 0} */

#endif
