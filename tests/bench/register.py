"""Start -> RegisterStatusNotifierItem, measured the way tests/integration/
tray-sni.py does it (its Session: private dbus-daemon and XDG dirs; its
tray_watcher.py prints the monotonic time of each accepted registration),
here with the configuration register.sh made (three VMs, real libvirtd).
Then poller.sh's start -> end of its first `virsh list`. Prints figures;
exits 1 only when a run could not be measured."""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import tray_lib as T  # noqa: E402

quick = os.environ.get('BENCH_QUICK', '0') not in ('', '0')
runs = int(os.environ.get('BENCH_RUNS', '20'))
conf = os.environ['BENCH_CONF']
uri = os.environ['VE_URI']


def applet_runs():
    times = []
    s = T.Session()
    try:
        w = s.start_watcher()
        log = open(os.path.join(s.dir, 'applet.log'), 'ab')
        for i in range(runs):
            t0 = time.monotonic()
            app = subprocess.Popen([T.VMO_BIN, '--config', conf], env=s.env,
                                   stdout=log, stderr=log)
            svc, t = T.read_registration(w)
            if svc != f'org.kde.StatusNotifierItem-{app.pid}-1':
                app.kill()
                app.wait()
                sys.exit(f'run {i}: no registration from {app.pid} (got {svc}); log:\n'
                         + s.applet_log()[-2000:])
            times.append(1000 * (t - t0))
            app.send_signal(signal.SIGTERM)
            if app.wait(timeout=10) != 0:
                sys.exit(f'run {i}: applet exited {app.returncode}')
            # The watcher's GetAll reply line, so it is idle for the next run.
            time.sleep(0.05)
    finally:
        s.close()
    return times


def poller_runs():
    times = []
    for i in range(runs):
        with tempfile.NamedTemporaryFile(prefix='vmo-poll-', delete=False) as f:
            trace = f.name
        env = dict(os.environ, POLLER_TRACE=trace)
        t0 = time.time()
        p = subprocess.Popen([os.path.join(HERE, 'poller.sh'), '-c', uri, 'vm1', 'vm2', 'vm3'],
                             env=env)
        end = time.monotonic() + 10
        line = ''
        while time.monotonic() < end:
            with open(trace) as f:
                line = f.readline()
            if line.endswith('\n'):
                break
            time.sleep(0.001)
        p.terminate()
        p.wait()
        os.unlink(trace)
        if not line.startswith('poll '):
            sys.exit(f'poller run {i}: no poll within 10 s')
        times.append(1000 * (float(line.split()[1]) - t0))
    return times


a = applet_runs()
p = poller_runs()
print(f'method: applet: time.monotonic() before Popen -> the test watcher '
      f'(tests/integration/tray_watcher.py) receives RegisterStatusNotifierItem; '
      f'3 watched VMs on a private libvirtd, private bus; {runs} runs, applet stopped '
      f'(SIGTERM) between runs', flush=True)
print(f'start_to_register_median_applet: {statistics.median(a):.1f} ms')
print(f'start_to_register_min_applet: {min(a):.1f} ms')
print(f'start_to_register_max_applet: {max(a):.1f} ms')
print(f'method: poller: time.time() before Popen(poller.sh) -> the time its first '
      f'`virsh list --name` returned (date +%s.%N in its trace); {runs} runs; it has no tray '
      f'item, so this is its "first state known"', flush=True)
print(f'start_to_first_state_median_poller: {statistics.median(p):.1f} ms')
print(f'start_to_first_state_min_poller: {min(p):.1f} ms')
print(f'start_to_first_state_max_poller: {max(p):.1f} ms')
