#!/usr/bin/python3
"""Activation on Wayland (issue 14 item 5): "Open in virt-manager" passes the
desktop's xdg-activation token to the program it starts, in both
XDG_ACTIVATION_TOKEN and DESKTOP_STARTUP_ID (GTK3, virt-manager's toolkit,
reads only the latter), and uses each token once.

The real vmoverlay on a private bus. The launched program is a stand-in
`virt-manager` first on PATH that records its arguments and environment: it
is the test's probe of what vmoverlay starts (a real virt-manager would need
a display and libvirtd), not a stand-in for a part under test.
  1. ProvideXdgActivationToken("tok-1") (what Plasma calls before opening
     the menu), then a click on the item: the program gets tok-1 in both
     variables; the applet's own stale tokens (it was started with some)
     never leak.
  2. A second click without a new token: no token (used once).
  3. Plasma 6.6's order, a fresh token right before the click: that one.
  4. With --demo and the dbusmock notification server: a tray token, then
     the prompt's ActivationToken(id, "note-tok") + ActionInvoked(id,
     "default") (what plasmashell emits on a click), then a click: the newer,
     the notification's token; the next click gets none (both used up)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tray_lib as T  # noqa: E402
from tray_lib import check  # noqa: E402

from gi.repository import GLib  # noqa: E402

SNI = 'org.kde.StatusNotifierItem'
MENU = 'com.canonical.dbusmenu'
PY = '/usr/bin/python3'

PROBE = '''#!/bin/sh
# The test's probe: what vmoverlay started, with which environment.
out="$VMO_TEST_LAUNCHES/$(date +%s%N).$$"
{ echo "ARGS $*"; env; } >"$out.tmp" && mv "$out.tmp" "$out.env"
'''


def setup_probe(s):
    bindir = os.path.join(s.dir, 'probe-bin')
    launches = os.path.join(s.dir, 'launches')
    os.makedirs(bindir)
    os.makedirs(launches)
    if os.getuid() == 0:
        # The applet (and so the probe) runs as the test user.
        import pwd
        pw = pwd.getpwnam(s.user)
        os.chown(launches, pw.pw_uid, pw.pw_gid)
    prog = os.path.join(bindir, 'virt-manager')
    with open(prog, 'w') as f:
        f.write(PROBE)
    os.chmod(prog, 0o755)
    s.env['PATH'] = bindir + ':' + s.env.get('PATH', '/usr/bin:/bin')
    s.env['VMO_TEST_LAUNCHES'] = launches
    # Tokens the applet itself was started with belong to its own window
    # (it has none): never to be handed on.
    s.env['XDG_ACTIVATION_TOKEN'] = 'stale-own-xdg'
    s.env['DESKTOP_STARTUP_ID'] = 'stale-own-startup'
    return launches


def launches_of(d):
    out = []
    for name in sorted(n for n in os.listdir(d) if n.endswith('.env')):
        env, args = {}, ''
        with open(os.path.join(d, name)) as f:
            for line in f.read().splitlines():
                if line.startswith('ARGS '):
                    args = line[5:]
                elif '=' in line:
                    k, v = line.split('=', 1)
                    env[k] = v
        out.append((args, env))
    return out


def wait_launches(d, n, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = launches_of(d)
        if len(got) >= n:
            return got
        time.sleep(0.02)
    return launches_of(d)


def vm_item(s, svc):
    r, err = s.call(svc, '/MenuBar', MENU, 'GetLayout', (0, -1, []), '(iias)')
    if err:
        return None, err

    def walk(node):
        mid, props, children = node
        if props.get('label') == '_Open in virt-manager' and props.get('visible', True):
            return mid
        for c in children:
            found = walk(c)
            if found is not None:
                return found
        return None
    return walk(r.unpack()[1]), None


def click(s, svc, mid):
    return s.call(svc, '/MenuBar', MENU, 'Event', (mid, 'clicked', GLib.Variant('s', ''), 0),
                  '(isvu)')[1]


def provide(s, svc, token):
    return s.call(svc, '/StatusNotifierItem', SNI, 'ProvideXdgActivationToken', (token,),
                  '(s)')[1]


def token_of(env):
    return env.get('XDG_ACTIVATION_TOKEN'), env.get('DESKTOP_STARTUP_ID')


def test_tray_tokens():
    s = T.Session()
    try:
        launches = setup_probe(s)
        app = s.start_applet()
        svc = f'{SNI}-{app.pid}-1'
        if not check(s.wait_owner(svc), 'item up'):
            return
        check(s.runs_as_user(app), f'the applet runs as {s.user}')
        mid, err = vm_item(s, svc)
        if not check(mid is not None, f'"Open in virt-manager" shown with virt-manager on PATH ({err})'):
            return

        check(provide(s, svc, 'tok-1') is None, 'ProvideXdgActivationToken("tok-1") replies')
        check(click(s, svc, mid) is None, 'click on Open in virt-manager replies')
        got = wait_launches(launches, 1)
        check(len(got) == 1, f'the program was started once ({len(got)})')
        if got:
            args, env = got[0]
            check(args == '--connect test:///default --show-domain-console test',
                  f'its arguments: {args}')
            check(token_of(env) == ('tok-1', 'tok-1'),
                  f'XDG_ACTIVATION_TOKEN and DESKTOP_STARTUP_ID hold the token: {token_of(env)}')

        check(click(s, svc, mid) is None, 'a second click replies')
        got = wait_launches(launches, 2)
        check(len(got) == 2, f'started again ({len(got)})')
        if len(got) == 2:
            check(token_of(got[1][1]) == (None, None),
                  f'a token is used once: none the second time {token_of(got[1][1])}'
                  ' (and the applet\'s own stale ones never)')

        # Plasma 6.6: a fresh token right before Event("clicked").
        provide(s, svc, 'tok-old')
        provide(s, svc, 'tok-2')
        click(s, svc, mid)
        got = wait_launches(launches, 3)
        check(len(got) == 3 and token_of(got[2][1]) == ('tok-2', 'tok-2'),
              f'the latest token wins: {token_of(got[2][1]) if len(got) == 3 else got}')
        # X11 Plasma up to 6.5 sends "": no token, not an older one.
        provide(s, svc, 'tok-3')
        provide(s, svc, '')
        click(s, svc, mid)
        got = wait_launches(launches, 4)
        check(len(got) == 4 and token_of(got[3][1]) == (None, None),
              f'an empty token leaves none: {token_of(got[3][1]) if len(got) == 4 else got}')
        check(app.poll() is None, 'applet still running')
    finally:
        if T.failures:
            print(s.applet_log())
        s.close()


def mock_calls(s, method):
    r, err = s.call('org.freedesktop.Notifications', '/org/freedesktop/Notifications',
                    'org.freedesktop.DBus.Mock', 'GetMethodCalls', (method,), '(s)')
    return r.unpack()[0] if r else []


def mock_emit(s, name, sig, args):
    return s.call('org.freedesktop.Notifications', '/org/freedesktop/Notifications',
                  'org.freedesktop.DBus.Mock', 'EmitSignal',
                  ('org.freedesktop.Notifications', name, sig,
                   [GLib.Variant(c, a) for c, a in zip(sig, args)]), '(sssav)')[1]


def test_notification_token():
    s = T.Session()
    try:
        launches = setup_probe(s)
        s.env['VMO_DEMO_COUNTDOWN'] = '1'
        s.env['TMPDIR'] = os.path.join(s.dir, 'tmp')
        os.makedirs(s.env['TMPDIR'])
        if os.getuid() == 0:
            import pwd
            pw = pwd.getpwnam(s.user)
            os.chown(s.env['TMPDIR'], pw.pw_uid, pw.pw_gid)
        mock = subprocess.Popen([PY, '-m', 'dbusmock', '--template', 'notification_daemon', '-p',
                                 '{"capabilities": "actions body body-markup persistence"}'],
                                env=s.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s.procs.append(mock)
        if not check(s.wait_owner('org.freedesktop.Notifications'), 'notification server up'):
            return
        log = open(os.path.join(s.dir, 'applet.log'), 'ab')
        app = subprocess.Popen([*s.as_user, T.VMO_BIN, '--demo', '-v'], env=s.env, stdout=log,
                               stderr=log)
        s.procs.append(app)
        svc = f'{SNI}-{app.pid}-1'
        if not check(s.wait_owner(svc), 'item up'):
            return
        check(s.runs_as_user(app), f'the demo runs as {s.user}')
        end = time.monotonic() + 20
        prompt = None
        while time.monotonic() < end and prompt is None:
            for _, args in mock_calls(s, 'Notify'):
                if 'commit' in list(args[5]):
                    prompt = True
            time.sleep(0.05)
        if not check(prompt, 'the demo\'s prompt arrived'):
            return
        mid, err = vm_item(s, svc)
        if not check(mid is not None, f'"Open in virt-manager" in the demo\'s menu ({err})'):
            return
        # A tray token first (an older menu opening), then plasmashell on a
        # click of the popup: ActivationToken, then ActionInvoked (id 1: the
        # mock numbers from 1 and the prompt is the first).
        provide(s, svc, 'tray-old')
        time.sleep(0.05)
        check(mock_emit(s, 'ActivationToken', 'us', (1, 'note-tok')) is None,
              'ActivationToken(1, "note-tok") emitted')
        check(mock_emit(s, 'ActionInvoked', 'us', (1, 'default')) is None,
              'ActionInvoked(1, "default") emitted')
        end = time.monotonic() + 10
        while time.monotonic() < end and not mock_calls(s, 'CloseNotification'):
            time.sleep(0.05)
        check(mock_calls(s, 'CloseNotification'), 'the body click closed the prompt')
        click(s, svc, mid)
        got = wait_launches(launches, 1)
        check(len(got) == 1 and token_of(got[0][1]) == ('note-tok', 'note-tok'),
              'the notification\'s token, newer than the tray\'s, reaches the program: '
              f'{token_of(got[0][1]) if got else None}')
        click(s, svc, mid)
        got = wait_launches(launches, 2)
        check(len(got) == 2 and token_of(got[1][1]) == (None, None),
              'both tokens are used up: none the next time '
              f'{token_of(got[1][1]) if len(got) == 2 else None}')
        r, _ = s.call('io.github.vmoverlay', '/io/github/vmoverlay',
                      'io.github.vmoverlay.Control1', 'Quit')
        try:
            code = app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f'demo quits with 0 ({code})')
    finally:
        if T.failures:
            print(s.applet_log())
        s.close()


test_tray_tokens()
test_notification_token()
print('failures:', T.failures)
sys.exit(1 if T.failures else 0)
