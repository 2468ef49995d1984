"""Shared parts of the tray tests: a private dbus-daemon, a test
StatusNotifierWatcher (its own process, so it can be killed and restarted),
the real vmoverlay binary on the libvirt test driver, and GDBus helpers that
keep the exact D-Bus types (research/sni-dbusmenu.md describes what Plasma
expects; these tests read the item the way Plasma does).

The bus, the applet and its CLI run as the unprivileged test user
(integration/test-user), owning the XDG dirs, as our users' do; the test
itself (root in CI) and the watcher connect as themselves
(tests/private-bus.conf admits root)."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VMO_BIN = os.environ.get('VMO_BIN', '')
VMO_SRC = os.environ.get('VMO_SRC', os.path.dirname(os.path.dirname(HERE)))
VMO_BUILD = os.environ.get('VMO_BUILD', '')

failures = 0


def check(cond, what):
    global failures
    if cond:
        print('ok   ', what, flush=True)
    else:
        failures += 1
        print('FAIL ', what, flush=True)
    return cond


def need(prog):
    if not shutil.which(prog):
        sys.exit(f'required program missing: {prog} (tools/debian-packages.txt installs it)')


class Session:
    """A private session bus plus private XDG dirs for the applet."""

    def __init__(self):
        need('dbus-daemon')
        if not VMO_BIN or not os.access(VMO_BIN, os.X_OK):
            sys.exit('VMO_BIN does not name the vmoverlay binary')
        test_user = os.path.join(HERE, 'test-user')
        self.user = subprocess.run([test_user, 'name'], check=True, capture_output=True,
                                   text=True).stdout.strip()
        # Prefix that runs a command as the user; it execs, so a Popen's pid
        # is the command's own.
        self.as_user = [test_user, 'run', self.user]
        self.dir = tempfile.mkdtemp(prefix='vmo-tray-')
        self.env = dict(os.environ)
        for k in ('HOME', 'XDG_CONFIG_HOME', 'XDG_STATE_HOME', 'XDG_RUNTIME_DIR',
                  'XDG_CACHE_HOME'):
            self.env[k] = os.path.join(self.dir, k.lower())
            os.makedirs(self.env[k], mode=0o700, exist_ok=True)
        if os.getuid() == 0:
            import pwd
            pw = pwd.getpwnam(self.user)
            for d in [self.dir] + [self.env[k] for k in ('HOME', 'XDG_CONFIG_HOME',
                                                           'XDG_STATE_HOME', 'XDG_RUNTIME_DIR',
                                                           'XDG_CACHE_HOME')]:
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self.env['LANG'] = self.env['LC_ALL'] = 'C.UTF-8'
        self.env.pop('LANGUAGE', None)
        conf = os.path.join(VMO_SRC, 'tests', 'private-bus.conf')
        p = subprocess.Popen([*self.as_user, 'dbus-daemon', '--config-file=' + conf, '--nofork', '--nopidfile',
                              '--print-address=1'], stdout=subprocess.PIPE, env=self.env)
        self.daemon = p
        self.address = p.stdout.readline().decode().strip()
        self.env['DBUS_SESSION_BUS_ADDRESS'] = self.address
        os.environ['DBUS_SESSION_BUS_ADDRESS'] = self.address
        self.conn = Gio.DBusConnection.new_for_address_sync(
            self.address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        self.procs = []

    def start_applet(self, *args):
        log = open(os.path.join(self.dir, 'applet.log'), 'ab')
        p = subprocess.Popen([*self.as_user, VMO_BIN, 'test', '--connect', 'test:///default',
                              '-v', *args], env=self.env, stdout=log, stderr=log)
        self.procs.append(p)
        return p

    def runs_as_user(self, p):
        """The applet process p runs as the test user, not as root."""
        import pwd
        try:
            with open(f'/proc/{p.pid}/status') as f:
                uid = [int(ln.split()[1]) for ln in f if ln.startswith('Uid:')][0]
        except OSError:
            return False
        return uid == pwd.getpwnam(self.user).pw_uid

    def vmo(self, *args, env=None, **kw):
        """The CLI, as the test user."""
        return subprocess.run([*self.as_user, VMO_BIN, *args], env=env or self.env,
                              capture_output=True, text=True, **kw)

    def start_watcher(self):
        p = subprocess.Popen(['/usr/bin/python3', os.path.join(HERE, 'tray_watcher.py')],
                             env=self.env, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.procs.append(p)
        line = p.stdout.readline()
        assert line.startswith('READY'), line
        return p

    def applet_log(self):
        try:
            with open(os.path.join(self.dir, 'applet.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def call(self, dest, path, iface, method, args=None, sig=None, timeout=5000):
        """Returns (result GLib.Variant or None, error string or None)."""
        params = GLib.Variant(sig, args) if sig is not None else None
        try:
            r = self.conn.call_sync(dest, path, iface, method, params, None,
                                    Gio.DBusCallFlags.NO_AUTO_START, timeout, None)
            return r, None
        except GLib.Error as e:
            return None, Gio.DBusError.get_remote_error(e) or e.message

    def has_owner(self, name):
        r, _ = self.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                         'NameHasOwner', (name,), '(s)')
        return bool(r and r.unpack()[0])

    def wait_owner(self, name, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.has_owner(name):
                return True
            time.sleep(0.01)
        return False

    def pump(self, seconds):
        ctx = GLib.MainContext.default()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ctx.iteration(False)
            time.sleep(0.002)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.daemon.terminate()
        self.daemon.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def read_registration(watcher, timeout=30):
    """The watcher prints 'REGISTERED <service> <monotonic time>' per call."""
    import select
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([watcher.stdout], [], [], max(0, end - time.monotonic()))
        if not r:
            break
        line = watcher.stdout.readline()
        if not line:
            break
        if line.startswith('REGISTERED '):
            _, service, t = line.split()
            return service, float(t)
    return None, None


def introspect_matches(session, dest, path, iface_name):
    """Compares the members an object introspects for iface_name with the
    dbus-xml/ file of that interface."""
    import xml.etree.ElementTree as ET

    def members(iface):
        out = set()
        for m in iface.findall('method'):
            out.add(('method', m.get('name'),
                     tuple((a.get('type'), a.get('direction', 'in')) for a in m.findall('arg'))))
        for s in iface.findall('signal'):
            out.add(('signal', s.get('name'), tuple(a.get('type') for a in s.findall('arg'))))
        for p in iface.findall('property'):
            out.add(('property', p.get('name'), p.get('type'), p.get('access')))
        return out

    r, err = session.call(dest, path, 'org.freedesktop.DBus.Introspectable', 'Introspect')
    if err:
        return False, err
    got = ET.fromstring(r.unpack()[0])
    want_doc = ET.parse(os.path.join(VMO_SRC, 'dbus-xml', iface_name + '.xml')).getroot()
    want = [i for i in want_doc.findall('interface') if i.get('name') == iface_name][0]
    got_if = [i for i in got.findall('interface') if i.get('name') == iface_name]
    if not got_if:
        return False, 'interface missing'
    a, b = members(got_if[0]), members(want)
    return a == b, f'introspected-only {a - b}, xml-only {b - a}'
