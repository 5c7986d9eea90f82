"""Private network namespaces for the interop tests.

The wormhole clients advertise every local address as a transit hint and
dial them; run inside a network namespace of our own, where only `lo`
exists, everything stays on 127.0.0.1 and fixed ports cannot collide with
anything else on the machine.

enter(mark) re-executes the calling script under `unshare` unless the
environment variable `mark` says it already runs inside, then brings `lo`
up. It prefers a pid namespace too (the script is its pid 1: nothing it
starts can outlive it, even when the ctest timeout kills `unshare`) with its
own /proc (so /proc/PID of a child is right), and falls back step by step:
inside a chroot (the fresh-machine check, CI) `/` cannot be made private, so
there propagation is left unchanged. A machine where not even
`unshare --net` works fails the test: never a silent skip.
"""
import os
import subprocess
import sys

DEBIAN_PY = "/usr/bin/python3"

CANDIDATES = [
    ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"],
    # In a chroot `/` is not a mount point and cannot be made private; leave
    # propagation alone (--mount-proc still makes /proc itself private
    # before mounting the new one over it).
    ["unshare", "--net", "--mount", "--propagation", "unchanged", "--pid", "--fork",
     "--kill-child", "--mount-proc"],
    ["unshare", "--net", "--mount", "--propagation", "unchanged"],
    ["unshare", "--net"],
]


def enter(mark, only_lo=True):
    if os.environ.get(mark) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        if only_lo:
            links = subprocess.run(["ip", "-o", "link", "show"], check=True,
                                   capture_output=True, text=True).stdout
            names = [l.split(":")[1].strip() for l in links.splitlines() if ":" in l]
            if names != ["lo"]:
                sys.exit("FAIL setup: expected only 'lo' in the private network "
                         "namespace, found %r" % names)
        return
    errors = []
    for cmd in CANDIDATES:
        try:
            r = subprocess.run(cmd + ["true"], capture_output=True, text=True)
        except OSError as e:
            errors.append("%s: %s" % (" ".join(cmd[1:]), e))
            continue
        if r.returncode == 0:
            env = dict(os.environ)
            env[mark] = "1"
            script = os.path.abspath(sys.argv[0])
            argv = cmd + [DEBIAN_PY, script] + sys.argv[1:]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execvpe(argv[0], argv, env)
        errors.append("%s: %s" % (" ".join(cmd[1:]), (r.stderr or r.stdout).strip()))
    print("FAIL setup: cannot create a private network namespace (%s). This test "
          "must run as root (it needs CAP_SYS_ADMIN to unshare); it is not skipped "
          "on purpose." % "; ".join(errors), flush=True)
    sys.exit(2)
