#!/usr/bin/python3
"""A VM with two overlay disks (issue 15 item 2) as the user reads it from
the real vmoverlay on a private bus: the tray menu's submenu has the total
and one line per disk (target, allocated size, the overlay's file name),
and `vmoverlay status` lists each disk's target, size, overlay and base.
The domain is the libvirt test driver's (test:///ABS/node.xml) with real
qcow2 overlays, written with qemu-io so the two disks differ in size; the
sizes expected are the files' own allocated bytes (st_blocks * 512)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tray_lib as T  # noqa: E402
from tray_lib import check  # noqa: E402

MENU = 'com.canonical.dbusmenu'


def fmt_size(n):
    """i18n_format_size in the C locale."""
    if n < 1024:
        return f'{n} byte' if n == 1 else f'{n} bytes'
    units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']
    v, u = n / 1024.0, 0
    while u + 1 < len(units) and v >= 1023.5:
        v /= 1024.0
        u += 1
    return (f'{v:.1f}' if v < 9.95 else f'{v:.0f}') + ' ' + units[u]


def allocated(path):
    return os.stat(path).st_blocks * 512


def sh(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def info_lines(node):
    """The pair submenu's visible labels above its first separator."""
    for c in node[2]:
        if c[1].get('label') == 'pair':
            out = []
            for item in c[2]:
                if item[1].get('type') == 'separator':
                    break
                if item[1].get('visible', True):
                    out.append(item[1].get('label', ''))
            return out
    return None


def main():
    T.need('qemu-img')
    T.need('qemu-io')
    s = T.Session()
    try:
        img = os.path.join(s.dir, 'img')
        os.makedirs(img)
        base_a, base_b = os.path.join(img, 'pair-base.qcow2'), os.path.join(img, 'data-base.qcow2')
        # A '_' in a file name is not a mnemonic: the label doubles it.
        ov_a, ov_b = os.path.join(img, 'pair.qcow2'), os.path.join(img, 'pair_data.qcow2')
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', base_a, '16M')
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', base_b, '16M')
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base_a, ov_a)
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base_b, ov_b)
        sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 0 1M', ov_a)
        sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x22 0 6M', ov_b)
        node = os.path.join(s.dir, 'node.xml')
        disks = ''.join(
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{p}'/><target dev='{t}' bus='virtio'/></disk>"
            for p, t in ((ov_a, 'vda'), (ov_b, 'vdb')))
        with open(node, 'w') as f:
            f.write("<node><domain type='test' "
                    "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                    "<name>pair</name><memory unit='MiB'>64</memory>"
                    "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
                    "<test:runstate>5</test:runstate>"
                    f"<devices>{disks}</devices></domain></node>\n")
        conf = os.path.join(s.dir, 'vmoverlay.conf')
        with open(conf, 'w') as f:
            f.write('vms = ( { name = "pair"; disks = ["vda", "vdb"]; } );\n')
        if os.getuid() == 0:
            import pwd
            pw = pwd.getpwnam(s.user)
            for p in (img, base_a, base_b, ov_a, ov_b, node, conf):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        size_a, size_b = allocated(ov_a), allocated(ov_b)
        check(size_a != size_b, f'the overlays differ in size ({size_a}, {size_b})')

        log = open(os.path.join(s.dir, 'applet.log'), 'ab')
        app = subprocess.Popen([*s.as_user, T.VMO_BIN, '--config', conf, '--connect',
                                'test://' + node, '-v'], env=s.env, stdout=log, stderr=log)
        s.procs.append(app)
        svc = f'org.kde.StatusNotifierItem-{app.pid}-1'
        if not check(s.wait_owner(svc, timeout=60), 'item up'):
            return

        want = [f'overlays {fmt_size(size_a + size_b)} on 2 disks',
                f'vda: {fmt_size(size_a)} · pair.qcow2',
                f'vdb: {fmt_size(size_b)} · pair__data.qcow2']
        lines, end = None, time.monotonic() + 60
        while time.monotonic() < end:
            r, err = s.call(svc, '/MenuBar', MENU, 'GetLayout', (0, -1, []), '(iias)')
            lines = info_lines(r.unpack()[1]) if r else None
            if lines and lines[1:] == want:
                break
            time.sleep(0.1)
        check(lines is not None and len(lines) == 4 and lines[0] and lines[1:] == want,
              f'the menu shows the state, the total and each disk: {lines}')

        st = s.vmo('status')
        out = st.stdout.splitlines()
        check(st.returncode == 0 and len(out) >= 4 and out[0].startswith('pair — '),
              f'vmoverlay status answers ({st.returncode}): {st.stdout!r} {st.stderr!r}')
        for line in [f'    overlays {fmt_size(size_a + size_b)} on 2 disks',
                     f'    vda: {fmt_size(size_a)} · {ov_a} · base {base_a}',
                     f'    vdb: {fmt_size(size_b)} · {ov_b} · base {base_b}']:
            check(line in out, f'vmoverlay status has {line.strip()!r}')
        check('[on shutdown: ask]' in out[0], 'the policy is on the VM\'s first line')

        q = s.vmo('quit')
        check(q.returncode == 0, f'vmoverlay quit ({q.stderr.strip()})')
        try:
            code = app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f'the applet ends with 0 ({code})')
    finally:
        if T.failures:
            print(s.applet_log())
        s.close()


main()
print('failures:', T.failures)
sys.exit(1 if T.failures else 0)
