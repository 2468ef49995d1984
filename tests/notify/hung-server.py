#!/usr/bin/python3
"""A notification server that is alive but hung: it owns
org.freedesktop.Notifications on the session bus and accepts every call
of the interface, but never replies (like a frozen plasmashell). Used to
prove vmoverlay keeps its loop and tray responsive meanwhile."""
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

IFACE = 'org.freedesktop.Notifications'


class Hung(dbus.service.Object):
    pending = []  # keep the reply callbacks alive, never call them

    @dbus.service.method(IFACE, in_signature='', out_signature='as',
                         async_callbacks=('ok', 'err'))
    def GetCapabilities(self, ok, err):
        self.pending.append(ok)

    @dbus.service.method(IFACE, in_signature='', out_signature='ssss',
                         async_callbacks=('ok', 'err'))
    def GetServerInformation(self, ok, err):
        self.pending.append(ok)

    @dbus.service.method(IFACE, in_signature='susssasa{sv}i', out_signature='u',
                         async_callbacks=('ok', 'err'))
    def Notify(self, app, rid, icon, summary, body, actions, hints, timeout, ok, err):
        self.pending.append(ok)

    @dbus.service.method(IFACE, in_signature='u', out_signature='',
                         async_callbacks=('ok', 'err'))
    def CloseNotification(self, nid, ok, err):
        self.pending.append(ok)


DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
name = dbus.service.BusName(IFACE, bus)
obj = Hung(bus, '/org/freedesktop/Notifications')
print('ready', flush=True)
GLib.MainLoop().run()
