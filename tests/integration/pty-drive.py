#!/usr/bin/python3
"""Drives a program through a real pseudo-terminal as a person at a
terminal would: waits for text on the screen, types answers.

  pty-drive.py [--transcript FILE] [--timeout S] STEP... -- COMMAND ARGS...

STEP is "expect:REGEX" (wait until the output so far, after the last
match, matches REGEX), "send:TEXT" (type TEXT, "\\n" for Enter) or
"run:SHELL COMMAND" (run it to completion, e.g. what makes the program speak
next; a failure ends the drive with 125).
Exits with the program's exit status, or 124 when an expectation times out
(the transcript so far is printed either way)."""
import os
import pty
import re
import select
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    transcript, timeout = None, 120.0
    while args and args[0].startswith("--") and args[0] != "--":
        opt = args.pop(0)
        if opt == "--transcript":
            transcript = args.pop(0)
        elif opt == "--timeout":
            timeout = float(args.pop(0))
        else:
            sys.exit(f"pty-drive: unknown option {opt}")
    sep = args.index("--")
    steps, cmd = args[:sep], args[sep + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    out = b""
    pos = 0  # expectations match after the previous match

    def pump(wait):
        nonlocal out
        r, _, _ = select.select([fd], [], [], wait)
        if not r:
            return True
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the program closed the terminal
            return False
        if not data:
            return False
        out += data
        return True

    def finish(code):
        while pump(0.2):
            pass
        text = out.decode(errors="replace")
        if transcript:
            with open(transcript, "w") as f:
                f.write(text)
        sys.stdout.write(text)
        sys.exit(code)

    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "send":
            os.write(fd, arg.encode().replace(b"\\n", b"\n"))
            continue
        if kind == "run":
            if subprocess.call(["/bin/sh", "-c", arg]) != 0:
                sys.stderr.write(f"pty-drive: failed: {arg}\n")
                os.kill(pid, 15)
                os.waitpid(pid, 0)
                finish(125)
            continue
        if kind != "expect":
            sys.exit(f"pty-drive: unknown step {step}")
        rx = re.compile(arg.encode())
        end = time.monotonic() + timeout
        while True:
            m = rx.search(out, pos)
            if m:
                pos = m.end()
                break
            if time.monotonic() > end or not pump(0.5):
                if not rx.search(out, pos):
                    sys.stderr.write(f"pty-drive: never saw /{arg}/\n")
                    os.kill(pid, 15)
                    os.waitpid(pid, 0)
                    finish(124)
    end = time.monotonic() + timeout
    while pump(0.5) and time.monotonic() < end:
        pass
    _, status = os.waitpid(pid, 0)
    finish(os.waitstatus_to_exitcode(status))


main()
