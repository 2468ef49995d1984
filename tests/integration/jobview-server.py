'''Plasma's job tracker for the tests: a python3-dbusmock template.

Owns org.kde.kuiserver and serves org.kde.JobViewServer.requestView(s,s,i)
on /JobViewServer, as plasmashell does. Each requestView adds a new object
/JobViewServer/JobView_N (N = 1, 2, ... in call order) serving every method
of org.kde.JobViewV2, read from the interface XML the applet is built
against (parameter "view_xml"), so the recorded calls are exactly what
arrived on the bus. Read them back per object with
org.freedesktop.DBus.Mock.GetCalls / GetMethodCalls; press a job's cancel
button with Mock.EmitSignal("org.kde.JobViewV2", "cancelRequested", "", [])
on its object.

Run: /usr/bin/python3 -m dbusmock --template PATH/jobview-server.py \
       -p '{"view_xml": "PATH/dbus-xml/org.kde.JobViewV2.xml"}'
'''

import xml.etree.ElementTree as ET

import dbus

BUS_NAME = 'org.kde.kuiserver'
MAIN_OBJ = '/JobViewServer'
MAIN_IFACE = 'org.kde.JobViewServer'
VIEW_IFACE = 'org.kde.JobViewV2'
SYSTEM_BUS = False


def view_methods(xml_path):
    '''(name, in_sig, out_sig, code) of every JobViewV2 method in the XML.'''
    root = ET.parse(xml_path).getroot()
    methods = []
    for iface in root.iter('interface'):
        if iface.get('name') != VIEW_IFACE:
            continue
        for m in iface.iter('method'):
            args = m.findall('arg')
            in_sig = ''.join(a.get('type') for a in args if a.get('direction', 'in') == 'in')
            out_sig = ''.join(a.get('type') for a in args if a.get('direction') == 'out')
            # setDescriptionField answers whether the field was set.
            code = 'ret = True' if out_sig == 'b' else ''
            methods.append((m.get('name'), in_sig, out_sig, code))
    if not methods:
        raise ValueError(f'no {VIEW_IFACE} methods in {xml_path}')
    return methods


def load(mock, parameters):
    methods = view_methods(parameters['view_xml'])
    mock.next_view = 1

    def request_view(self, app_name, icon_name, capabilities):
        path = f'{MAIN_OBJ}/JobView_{self.next_view}'
        self.next_view += 1
        self.AddObject(path, VIEW_IFACE, {}, methods)
        return dbus.ObjectPath(path)

    mock.AddMethod(MAIN_IFACE, 'requestView', 'ssi', 'o', request_view)
