/* The memory floor for tests/bench/memory.sh: a process that loads the
 * libraries vmoverlay loads and does the start-up every such program must
 * do -- libvirt's event implementation and a connection with one domain's
 * XML parsed by libxml2, a private libdbus session-bus connection,
 * libnotify's GDBus connection (with its two GLib threads) asking the
 * server's capabilities, a libconfig object -- and then sleeps in poll().
 * What vmoverlay's RssAnon has above this figure is vmoverlay's own. */
#include <dbus/dbus.h>
#include <libconfig.h>
#include <libnotify/notify.h>
#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: vmo-mem-floor URI DOMAIN\n");
		return 2;
	}
	if (virEventRegisterDefaultImpl() < 0)
		return 1;
	virConnectPtr conn = virConnectOpen(argv[1]);
	if (!conn) {
		fprintf(stderr, "vmo-mem-floor: cannot open %s\n", argv[1]);
		return 1;
	}
	virDomainPtr dom = virDomainLookupByName(conn, argv[2]);
	char *xml = dom ? virDomainGetXMLDesc(dom, 0) : NULL;
	if (!xml) {
		fprintf(stderr, "vmo-mem-floor: no domain %s\n", argv[2]);
		return 1;
	}
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	xmlFreeDoc(doc);
	DBusError err;
	dbus_error_init(&err);
	DBusConnection *bus = dbus_bus_get_private(DBUS_BUS_SESSION, &err);
	if (!bus) {
		fprintf(stderr, "vmo-mem-floor: no session bus: %s\n", err.message);
		return 1;
	}
	notify_init("vmo-mem-floor");
	GList *caps = notify_get_server_caps();
	g_list_free_full(caps, g_free);
	config_t cfg;
	config_init(&cfg);
	printf("ready\n");
	fflush(stdout);
	poll(NULL, 0, -1);
	return 0;
}
