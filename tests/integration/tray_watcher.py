#!/usr/bin/python3
"""A test org.kde.StatusNotifierWatcher, written from KDE's XML (three
methods/properties, the signals): it behaves like Plasma's kded module
(name form -> path /StatusNotifierItem, owner check, duplicates ignored)
and, like Plasma's host, reads GetAll right after a registration.
Prints READY, then 'REGISTERED <service> <monotonic time>' per accepted call."""
import sys
import time

import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

XML = '''<node><interface name="org.kde.StatusNotifierWatcher">
<method name="RegisterStatusNotifierItem"><arg name="service" type="s" direction="in"/></method>
<method name="RegisterStatusNotifierHost"><arg name="service" type="s" direction="in"/></method>
<property name="RegisteredStatusNotifierItems" type="as" access="read"/>
<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
<property name="ProtocolVersion" type="i" access="read"/>
<signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
<signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
<signal name="StatusNotifierHostRegistered"/>
<signal name="StatusNotifierHostUnregistered"/>
</interface></node>'''

items = []
bus = Gio.bus_get_sync(Gio.BusType.SESSION)


def name_has_owner(name):
    r = bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                      'NameHasOwner', GLib.Variant('(s)', (name,)), None, 0, -1, None)
    return r.unpack()[0]


def got_all(conn, res):
    try:
        conn.call_finish(res)
        print('GETALL ok', flush=True)
    except GLib.Error as e:
        print('GETALL failed', e.message, flush=True)


def on_call(conn, sender, path, iface, method, params, inv):
    if method == 'RegisterStatusNotifierItem':
        arg = params.unpack()[0]
        service, opath = (sender, arg) if arg.startswith('/') else (arg, '/StatusNotifierItem')
        ident = service + opath
        if name_has_owner(service) and ident not in items:
            items.append(ident)
            print('REGISTERED', service, time.monotonic(), flush=True)
            conn.emit_signal(None, '/StatusNotifierWatcher', 'org.kde.StatusNotifierWatcher',
                             'StatusNotifierItemRegistered', GLib.Variant('(s)', (ident,)))
            # Plasma's host reads everything right away.
            conn.call(service, opath, 'org.freedesktop.DBus.Properties', 'GetAll',
                      GLib.Variant('(s)', ('org.kde.StatusNotifierItem',)), None, 0, -1, None,
                      got_all)
    inv.return_value(None)


def on_get(conn, sender, path, iface, prop):
    return {'RegisteredStatusNotifierItems': GLib.Variant('as', items),
            'IsStatusNotifierHostRegistered': GLib.Variant('b', True),
            'ProtocolVersion': GLib.Variant('i', 0)}[prop]


node = Gio.DBusNodeInfo.new_for_xml(XML)
bus.register_object('/StatusNotifierWatcher', node.interfaces[0], on_call, on_get, None)
loop = GLib.MainLoop()


def acquired(*_):
    print('READY', flush=True)


def lost(*_):
    sys.exit('cannot own org.kde.StatusNotifierWatcher')


Gio.bus_own_name_on_connection(bus, 'org.kde.StatusNotifierWatcher',
                               Gio.BusNameOwnerFlags.DO_NOT_QUEUE, acquired, lost)
loop.run()
