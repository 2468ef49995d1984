'''Plasma's job tracker for the tests: a python3-dbusmock template.

Owns org.kde.JobViewServer and org.kde.kuiserver, as plasmashell does, and
serves on /JobViewServer
  - org.kde.JobViewServer.requestView(s appName, s appIconName, i caps)
    (the old one; its views implement org.kde.JobViewV2), and, unless the
    parameter "v2" is false (a server from before KF 5.80),
  - org.kde.JobViewServerV2.requestView(s desktopEntry, i caps, a{sv} hints)
    (what KF6 uses; its views implement org.kde.JobViewV3 and V2, as
    Plasma's do).
Each requestView adds a new object /JobViewServer/JobView_N (N = 1, 2, ...
in call order) serving every method of the view interfaces, read from the
interface XML the applet is built against (parameter "xml_dir", the
dbus-xml/ directory), so the recorded calls are exactly what arrived on the
bus. Read them back per object with org.freedesktop.DBus.Mock.GetCalls /
GetMethodCalls; press a job's cancel button with
Mock.EmitSignal(IFACE, "cancelRequested", "", []) on its object.

Run: /usr/bin/python3 -m dbusmock --template PATH/jobview-server.py \
       -p '{"xml_dir": "PATH/dbus-xml", "v2": true}'
'''

import os
import xml.etree.ElementTree as ET

import dbus
import dbus.service
from dbusmock import mockobject

BUS_NAME = 'org.kde.JobViewServer'
OTHER_NAME = 'org.kde.kuiserver'
MAIN_OBJ = '/JobViewServer'
MAIN_IFACE = 'org.kde.JobViewServer'
V2_SERVER_IFACE = 'org.kde.JobViewServerV2'
VIEW_V2 = 'org.kde.JobViewV2'
VIEW_V3 = 'org.kde.JobViewV3'
SYSTEM_BUS = False


def methods_of(xml_path, iface_name):
    '''(name, in_sig, out_sig, code) of every method of iface_name in the XML.'''
    root = ET.parse(xml_path).getroot()
    methods = []
    for iface in root.iter('interface'):
        if iface.get('name') != iface_name:
            continue
        for m in iface.iter('method'):
            args = m.findall('arg')
            in_sig = ''.join(a.get('type') for a in args if a.get('direction', 'in') == 'in')
            out_sig = ''.join(a.get('type') for a in args if a.get('direction') == 'out')
            # setDescriptionField answers whether the field was set.
            code = 'ret = True' if out_sig == 'b' else ''
            methods.append((m.get('name'), in_sig, out_sig, code))
    if not methods:
        raise ValueError(f'no {iface_name} methods in {xml_path}')
    return methods


def load(mock, parameters):
    xml_dir = parameters['xml_dir']
    v2_methods = methods_of(os.path.join(xml_dir, 'org.kde.JobViewV2.xml'), VIEW_V2)
    v3_methods = methods_of(os.path.join(xml_dir, 'org.kde.JobViewV3.xml'), VIEW_V3)
    mock.next_view = 1
    # plasmashell owns both names; the second one on the same connection.
    mock.other_name = dbus.service.BusName(OTHER_NAME, mock.bus_name.get_bus(),
                                           allow_replacement=True, replace_existing=True,
                                           do_not_queue=True)

    def add_view(self, v3):
        path = f'{MAIN_OBJ}/JobView_{self.next_view}'
        self.next_view += 1
        self.AddObject(path, VIEW_V2, {}, v2_methods)
        if v3:
            mockobject.objects[path].AddMethods(VIEW_V3, v3_methods)
        return dbus.ObjectPath(path)

    mock.add_view = add_view

    mock.AddMethod(MAIN_IFACE, 'requestView', 'ssi', 'o', 'ret = self.add_view(self, False)')
    if parameters.get('v2', True):
        mock.AddMethod(V2_SERVER_IFACE, 'requestView', 'sia{sv}', 'o',
                       'ret = self.add_view(self, True)')
