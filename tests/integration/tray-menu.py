#!/usr/bin/python3
"""The DBusMenu, the item's methods and the control interface, driven on a
private bus against the real vmoverlay: GetLayout at depth 0/1/-1, Debian's
libdbusmenu-glib (a real DBusMenu client) builds the same tree, a policy
radio click flips its group exclusively with ItemsPropertiesUpdated, every
malformed call gets an error while the process stays up, the CLI verbs'
exit codes, and Event clicked on Quit ends the process with 0."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tray_lib as T  # noqa: E402
from tray_lib import check  # noqa: E402

import gi  # noqa: E402
gi.require_version('Dbusmenu', '0.4')
from gi.repository import Dbusmenu, GLib  # noqa: E402

MENU = 'com.canonical.dbusmenu'


def layout(s, svc, parent=0, depth=-1, names=()):
    r, err = s.call(svc, '/MenuBar', MENU, 'GetLayout', (parent, depth, list(names)), '(iias)')
    if err:
        return None, None, err
    rev, node = r.unpack()
    return rev, node, None


def walk(node, out=None, depth=0):
    out = [] if out is None else out
    out.append((depth, node[0], node[1]))
    for c in node[2]:
        walk(c, out, depth + 1)
    return out


def find(node, pred):
    return [n for n in walk(node) if pred(n[2])]


def main():
    s = T.Session()
    try:
        app = s.start_applet()
        svc = f'org.kde.StatusNotifierItem-{app.pid}-1'
        if not check(s.wait_owner(svc), 'item up'):
            return
        check(s.runs_as_user(app), f'the applet runs as {s.user}')
        rev, root, err = layout(s, svc)
        check(root is not None, f'GetLayout(0, -1) ({err})')
        check(root[0] == 0 and root[1].get('children-display') == 'submenu',
              'root id 0 with children-display submenu')
        lean = walk(root)
        # The DBusMenu convention (issue 16): a layout leaves out what holds
        # its default (enabled and visible true, an unchecked radio's
        # toggle-state). Explicitly named properties always come back.
        names = ['type', 'label', 'enabled', 'visible', 'toggle-type', 'toggle-state',
                 'children-display']
        r, err = s.call(svc, '/MenuBar', MENU, 'GetGroupProperties',
                        ([i for _, i, _ in lean], names), '(aias)')
        check(err is None, f'GetGroupProperties with explicit names ({err})')
        full = {i: p for i, p in (r.unpack()[0] if r else [])}
        for d, i, p in lean:
            if i == 0:
                continue
            f = full.get(i, {})
            check('enabled' in f and 'visible' in f,
                  f'item {i}: explicitly named enabled and visible come back')
            check(p.get('enabled', True) == f.get('enabled') and
                  p.get('visible', True) == f.get('visible') and
                  p.get('enabled') is not True and p.get('visible') is not True,
                  f'item {i}: enabled/visible left out exactly when true ({p} vs {f})')
            check(all(p[k] == f[k] for k in p),
                  f'item {i}: lean values equal the explicit ones ({p} vs {f})')
            if f.get('toggle-type') == 'radio':
                check(p.get('toggle-state', 0) == f.get('toggle-state') and
                      (f['toggle-state'] == 1) == ('toggle-state' in p),
                      f'radio {i}: toggle-state left out exactly when 0')
        # From here on: every item with every property, as a host sees it
        # once the defaults are applied.
        items = [(d, i, full.get(i, p) if i else p) for d, i, p in lean]
        subs = [n for n in items if n[2].get('children-display') == 'submenu' and n[1] != 0]
        vm_sub = [n for n in subs if n[2].get('label') == 'test']
        check(len(vm_sub) == 1, 'a submenu for the watched VM "test"')
        labels = [p.get('label') for _, _, p in items]
        for want in ('_Commit changes into base…', '_Discard changes', '_Keep for now',
                     '_When it shuts down', '_Reload configuration', '_About vmoverlay',
                     '_Quit'):
            check(want in labels, f'menu has "{want}"')
        check(all(len(lb) <= 40 for lb in labels if lb), 'labels at most 40 characters')
        # The VM submenu opens with its state, short (Plasma 6 slid a wide
        # submenu over its parent); the name is the submenu's own label and
        # the details (size, countdown, error) are in the tooltip.
        state = vm_sub[0][2] and [c for c in root[2] if c[0] == vm_sub[0][1]][0][2][0][1]
        check(state.get('label') == 'running' and state.get('enabled') is False,
              f'the VM submenu\'s first line is its bare state "running" ({state.get("label")})')
        radios = [n for n in items if n[2].get('toggle-type') == 'radio']
        check(len(radios) == 4 and sum(n[2]['toggle-state'] for n in radios) == 1,
              'four policy radios, exactly one on')
        check(all(isinstance(n[2]['toggle-state'], int) for n in radios), 'toggle-state is i')
        _, r0, _ = layout(s, svc, 0, 0)
        check(r0 is not None and r0[2] == [], 'depth 0: the node without children')
        _, r1, _ = layout(s, svc, 0, 1)
        check(r1 is not None and len(r1[2]) == len(root[2]) and
              all(c[2] == [] for c in r1[2]), 'depth 1: direct children only')
        full_sub = [c for c in root[2] if c[0] == vm_sub[0][1]][0]
        _, rs, _ = layout(s, svc, vm_sub[0][1], 1)
        check(rs is not None and [c[0] for c in rs[2]] == [c[0] for c in full_sub[2]],
              'GetLayout(submenu, 1) lists the same children as the full layout')
        _, rl, _ = layout(s, svc, 0, -1, ['label'])
        check(rl is not None and all(set(p) <= {'label'} for _, _, p in walk(rl)),
              'propertyNames filter')

        # libdbusmenu-glib builds the same tree.
        client = Dbusmenu.Client.new(svc, '/MenuBar')
        got = {}

        def collect(mi, depth=0):
            got[mi.get_id()] = mi
            for c in mi.get_children():
                collect(c, depth + 1)

        end = time.monotonic() + 5
        while time.monotonic() < end:
            GLib.MainContext.default().iteration(False)
            r = client.get_root()
            if r and r.get_children():
                got.clear()
                collect(r)
                if len(got) == len(items) and all(
                        got[i].property_get('label') == p.get('label') for _, i, p in items
                        if i != 0 and i in got):
                    break
            time.sleep(0.005)
        s.pump(0.3)  # let the client apply the properties of every level
        got.clear()
        collect(client.get_root())
        check(set(got) == {i for _, i, _ in items},
              f'libdbusmenu sees the same ids ({len(got)} of {len(items)})')
        for _, i, p in items:
            mi = got.get(i)
            if not mi or i == 0:
                continue
            same = (mi.property_get('label') == p.get('label') and
                    mi.property_get_bool('enabled') == p['enabled'] and
                    mi.property_get_bool('visible') == p['visible'])
            if 'toggle-state' in p:
                same = same and mi.property_get_int('toggle-state') == p['toggle-state']
                same = same and mi.property_get('toggle-type') == 'radio'
            if p.get('children-display') == 'submenu':
                same = same and mi.property_get('children-display') == 'submenu'
            check(same, f'libdbusmenu item {i} "{p.get("label")}" matches GetLayout'
                  f' ({[(k, mi.property_get_variant(k)) for k in mi.properties_list()]} vs {p})')

        # A radio click flips the group exclusively and emits ItemsPropertiesUpdated.
        updates = []
        sub_id = s.conn.signal_subscribe(svc, MENU, 'ItemsPropertiesUpdated', '/MenuBar', None,
                                         0, lambda *a: updates.append(a[5].unpack()))
        target = [n for n in radios if n[2]['label'] == '_Commit'][0]
        r, err = s.call(svc, '/MenuBar', MENU, 'Event',
                        (target[1], 'clicked', GLib.Variant('s', ''), 0), '(isvu)')
        check(err is None, f'Event clicked on the Commit radio replies ({err})')
        end = time.monotonic() + 3
        while time.monotonic() < end and not updates:
            s.pump(0.05)
        check(len(updates) > 0, 'ItemsPropertiesUpdated emitted')
        if updates:
            upd = {i: p for i, p in updates[-1][0]}
            states = {n[1]: upd.get(n[1], {}).get('toggle-state') for n in radios}
            check(states[target[1]] == 1 and
                  all(v == 0 for k, v in states.items() if k != target[1]),
                  f'radio group exclusive after the click: {states}')
        _, root2, _ = layout(s, svc)
        now = {n[1]: n[2].get('toggle-state', 0) for n in walk(root2)
               if n[1] in {r[1] for r in radios}}
        check(now.get(target[1]) == 1 and sum(now.values()) == 1, 'GetLayout agrees')
        # The radio that went back to its default (0) is left out of the
        # lean layout; a host that follows the signals (libdbusmenu-glib
        # here, Plasma alike) still ends with the right state everywhere.
        end = time.monotonic() + 5
        seen = {}
        while time.monotonic() < end:
            s.pump(0.05)
            seen = {n[1]: got[n[1]].property_get_int('toggle-state') for n in radios
                    if n[1] in got}
            if seen == now:
                break
        check(seen == now, f'libdbusmenu follows the radio change ({seen} vs {now})')
        st = s.vmo('status')
        check(st.returncode == 0 and 'on shutdown: commit' in st.stdout,
              f'vmoverlay status shows the new policy ({st.stdout.strip()})')
        s.conn.signal_unsubscribe(sub_id)

        # Every malformed call gets an error; the process stays up.
        V = GLib.Variant
        bad = [
            ('/MenuBar', MENU, 'GetLayout', ('x',), '(s)'),
            ('/MenuBar', MENU, 'GetLayout', (99999, -1, []), '(iias)'),
            ('/MenuBar', MENU, 'Event', (99999, 'clicked', V('s', ''), 0), '(isvu)'),
            ('/MenuBar', MENU, 'Event', (0, 'clicked', 0), '(isu)'),
            ('/MenuBar', MENU, 'EventGroup', ([(99999, 'clicked', V('i', 0), 0)],), '(a(isvu))'),
            ('/MenuBar', MENU, 'EventGroup', (1,), '(i)'),
            ('/MenuBar', MENU, 'AboutToShow', (99999,), '(i)'),
            ('/MenuBar', MENU, 'AboutToShow', ('0',), '(s)'),
            ('/MenuBar', MENU, 'AboutToShowGroup', ('x',), '(s)'),
            ('/MenuBar', MENU, 'GetProperty', (99999, 'label'), '(is)'),
            ('/MenuBar', MENU, 'GetProperty', (0, 'no-such-property'), '(is)'),
            ('/MenuBar', MENU, 'GetProperty', (0, 1), '(ii)'),
            ('/MenuBar', MENU, 'GetGroupProperties', (1, 2), '(ii)'),
            ('/MenuBar', MENU, 'NoSuchMethod', None, None),
            ('/MenuBar', 'org.freedesktop.DBus.Properties', 'Get', (MENU, 'Nope'), '(ss)'),
            ('/MenuBar', 'org.freedesktop.DBus.Properties', 'Get', ('no.such.Iface', 'Version'),
             '(ss)'),
            ('/MenuBar', 'org.freedesktop.DBus.Properties', 'Set',
             (MENU, 'Version', V('s', 'wrong type')), '(ssv)'),
            ('/StatusNotifierItem', 'org.kde.StatusNotifierItem', 'Activate', ('x',), '(s)'),
            ('/StatusNotifierItem', 'org.kde.StatusNotifierItem', 'Scroll', (1, 2), '(ii)'),
            ('/StatusNotifierItem', 'org.kde.StatusNotifierItem', 'ContextMenu', None, None),
            ('/StatusNotifierItem', 'org.kde.StatusNotifierItem', 'ProvideXdgActivationToken',
             (1,), '(i)'),
            ('/StatusNotifierItem', 'org.freedesktop.DBus.Properties', 'GetAll', (1,), '(i)'),
            ('/StatusNotifierItem', 'org.freedesktop.DBus.Properties', 'Get',
             ('org.kde.StatusNotifierItem', 'NoSuchProperty'), '(ss)'),
            ('/StatusNotifierItem', 'org.freedesktop.DBus.Properties', 'Set',
             ('org.kde.StatusNotifierItem', 'Status', V('i', 3)), '(ssv)'),
            ('/StatusNotifierItem', 'org.freedesktop.DBus.Properties', 'GetAll',
             ('no.such.Iface',), '(s)'),
            ('/StatusNotifierItem', 'org.freedesktop.DBus.Introspectable', 'Introspect', (1,),
             '(i)'),
            ('/io/github/vmoverlay', 'io.github.vmoverlay.Control1', 'Commit', (1,), '(i)'),
            ('/io/github/vmoverlay', 'io.github.vmoverlay.Control1', 'Commit', ('nope',), '(s)'),
            ('/io/github/vmoverlay', 'io.github.vmoverlay.Control1', 'SetPolicy',
             ('test', 'sometimes'), '(ss)'),
            ('/io/github/vmoverlay', 'io.github.vmoverlay.Control1', 'Status', ('x',), '(s)'),
            ('/io/github/vmoverlay', 'io.github.vmoverlay.Control1', 'Quit', (True,), '(b)'),
            ('/no/such/object', MENU, 'GetLayout', (0, -1, []), '(iias)'),
        ]
        for path, iface, meth, args, sig in bad:
            r, err = s.call(svc, path, iface, meth, args, sig)
            alive = app.poll() is None
            ping, perr = s.call(svc, '/', 'org.freedesktop.DBus.Peer', 'Ping')
            check(err is not None and alive and perr is None,
                  f'{iface}.{meth}{sig or "()"} on {path} -> {err}; still up')
        # Event's data variant may hold any type (Plasma: s "", others: i 0).
        for data in (V('i', 0), V('a{sv}', {}), V('(ii)', (1, 2))):
            r, err = s.call(svc, '/MenuBar', MENU, 'Event', (0, 'opened', data, 0), '(isvu)')
            check(err is None and app.poll() is None,
                  f'Event with a {data.get_type_string()} data variant is accepted')
        for meth, args, sig in (('Activate', (10, 10), '(ii)'),
                                ('SecondaryActivate', (10, 10), '(ii)'),
                                ('Scroll', (120, 'vertical'), '(is)'),
                                ('ContextMenu', (1, 1), '(ii)'),
                                ('ProvideXdgActivationToken', ('tok',), '(s)')):
            r, err = s.call(svc, '/StatusNotifierItem', 'org.kde.StatusNotifierItem', meth, args,
                            sig)
            check(err is None, f'{meth} replies')
        r, err = s.call(svc, '/MenuBar', MENU, 'AboutToShow', (0,), '(i)')
        check(err is None and r.unpack() == (False,), 'AboutToShow(0) -> false')
        r, err = s.call(svc, '/MenuBar', MENU, 'GetProperty', (target[1], 'toggle-state'), '(is)')
        check(err is None and r.get_child_value(0).get_variant().get_type_string() == 'i',
              'GetProperty toggle-state is a variant of i')
        r, err = s.call(svc, '/MenuBar', MENU, 'GetGroupProperties', ([], ['label']), '(aias)')
        check(err is None and len(r.unpack()[0]) == len(items), 'GetGroupProperties of all ids')
        r, err = s.call(svc, '/MenuBar', MENU, 'AboutToShowGroup', ([0, 99999],), '(ai)')
        check(err is None and r.unpack() == ([], [99999]), 'AboutToShowGroup reports bad ids')

        # CLI exit codes.
        c = s.vmo('commit', 'nope')
        check(c.returncode == 1 and 'nope' in c.stderr, f'commit of an unknown VM exits 1 ({c.stderr.strip()})')
        env2 = dict(s.env, DBUS_SESSION_BUS_ADDRESS='unix:path=/nonexistent/bus')
        c = s.vmo('status', env=env2)
        check(c.returncode == 2, f'no session bus -> exit 2 ({c.stderr.strip()})')
        try:
            second = s.vmo('test', '--connect', 'test:///default', timeout=10)
        except subprocess.TimeoutExpired as e:
            second = subprocess.CompletedProcess(e.cmd, None, '', 'still running after 10 s')
        check(second.returncode != 0 and 'already running' in second.stderr,
              f'a second instance refuses ({second.stderr.strip()})')

        # Quit from the menu ends the process cleanly.
        quit_id = [n[1] for n in items if n[2].get('label') == '_Quit'][0]
        r, err = s.call(svc, '/MenuBar', MENU, 'Event',
                        (quit_id, 'clicked', GLib.Variant('s', ''), 0), '(isvu)')
        check(err is None, 'Event clicked on Quit replies')
        try:
            code = app.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f'Quit ends the process with exit code 0 ({code})')
        c = s.vmo('status')
        check(c.returncode == 2, f'no running instance -> exit 2 ({c.stderr.strip()})')
    finally:
        if T.failures:
            print(s.applet_log())
        s.close()


main()
print('failures:', T.failures)
sys.exit(1 if T.failures else 0)
