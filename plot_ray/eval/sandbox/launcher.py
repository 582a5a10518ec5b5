"""The sandbox's child process: builds the jail, sets the limits, then runs the harness.

Run as a script (``python -I -S launcher.py SPEC_JSON``) by :func:`plot_ray.eval.sandbox.run`,
never imported by the package: it must start from a fresh single-threaded interpreter (a new
user namespace refuses a threaded caller) and may use the standard library only.

With ``isolation == "namespaces"`` the process tree is::

    launcher (the caller's uid)          writes the child's uid/gid maps, waits, relays status
    └─ helper (new user, mount, network, pid, ipc and uts namespaces; capabilities there only)
       │   bind-mounts the read-only root, mounts the tmpfs work directory
       └─ init, pid 1 of the new pid namespace: mounts /proc, pivots into the new root,
          │   drops to the sandbox uid, sets the limits, forks; when it exits the kernel
          │   kills every process left in the namespace
          └─ python -I -S -c HARNESS   (no capabilities, no new privileges)

With ``isolation == "process"`` the launcher only sets the limits and runs the harness in the
host's view of the world (see the package README for what that leaves open).

Setup failures are written as one line to the setup pipe (closed on exec, so the untrusted
program cannot write to it); ``ready`` is written just before the harness starts.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# statvfs flag → the mount flag a read-only remount must repeat (the kernel refuses to clear
# nosuid/nodev/noexec/atime flags locked on mounts copied into a user namespace)
KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41}
# The host's top-level folders the jail holds, read-only (symlinks to them are copied as links).
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/sbin")
# The uid and gid the program has inside its user namespace (not 0: it keeps no capabilities).
INSIDE_ID = 1000

libc = ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = ""):
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _call(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _remount_read_only(path: str) -> None:
    kept = sum(flag for st, flag in KEPT_FLAGS.items() if os.statvfs(path).f_flag & st)
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _prctl(option: int, value: int) -> None:
    _call(libc.prctl(option, value, 0, 0, 0), f"prctl {option}")


def _set_limits(limits: dict, count_processes: bool) -> None:
    """``count_processes``: only inside a user namespace does RLIMIT_NPROC count the program's
    processes alone (outside it counts every process of the user, the evaluator's included)."""
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    if count_processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _exit_status(status: int) -> int:
    """A waited child's status as an exit code (128 + signal for a signalled child)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _wait(pid: int) -> int:
    while True:
        done, status = os.waitpid(pid, 0)
        if done == pid:
            return _exit_status(status)


def _die_with_parent(parent: int | None = None) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:  # it died before the line above
        os._exit(137)


def _prepare_root(spec: dict) -> None:
    """Mount points of the new root, made on the host (inside the namespace, root may be
    unmapped and could not create files on a tmpfs)."""
    root = spec["root"]
    for top in SYSTEM_DIRS:
        if os.path.islink(top):
            os.symlink(os.readlink(top), root + top)
        elif os.path.isdir(top):
            os.makedirs(root + top)
    os.makedirs(root + spec["python_prefix"], exist_ok=True)
    for name in ("proc", "dev", "sandbox"):
        os.makedirs(f"{root}/{name}", exist_ok=True)
    os.chmod(root, 0o755)
    for device in spec["devices"]:
        open(root + device, "w").close()


def _build_root(spec: dict) -> None:
    """In the new mount namespace: the read-only root and the tmpfs work directory."""
    root, limits = spec["root"], spec["limits"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back to the host
    _mount(root, root, None, MS_BIND | MS_REC)
    prefix = spec["python_prefix"]
    binds = [top for top in SYSTEM_DIRS if os.path.isdir(top) and not os.path.islink(top)]
    binds += [] if prefix == "/usr" or prefix.startswith("/usr/") else [prefix]
    for path in binds:
        _mount(path, root + path, None, MS_BIND | MS_REC)
        _remount_read_only(root + path)
    for device in spec["devices"]:
        _mount(device, root + device, None, MS_BIND)
    size = limits["work_dir_bytes"]
    work_opts = f"size={size},nr_inodes=4096,mode=0700,uid={INSIDE_ID},gid={INSIDE_ID}"
    _mount("tmpfs", f"{root}/sandbox", "tmpfs", MS_NOSUID | MS_NODEV, work_opts)


def _enter_root(spec: dict) -> None:
    """As pid 1 of the new pid namespace: its own /proc, then the new root, read-only."""
    root = spec["root"]
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    syscall = PIVOT_ROOT_SYSCALL[platform.machine()]
    os.chdir(root)
    _call(libc.syscall(syscall, b".", b"."), "pivot_root")  # the old root now lies under "."
    _call(libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")
    _remount_read_only("/")
    # no nested user namespaces: the program gets no capabilities anywhere, even in a jail of
    # its own (per-namespace sysctl, written while init still holds CAP_SYS_RESOURCE here)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")


def _drop_privileges() -> None:
    try:
        os.setgroups([])  # allowed where the launcher was root; denied (and moot) otherwise
    except PermissionError:
        pass
    os.setresgid(INSIDE_ID, INSIDE_ID, INSIDE_ID)
    os.setresuid(INSIDE_ID, INSIDE_ID, INSIDE_ID)


def _run_harness(spec: dict, setup_w: int, work_dir: str) -> int:
    """Fork the harness with the limits set; wait for it and return its exit code."""
    _set_limits(spec["limits"], count_processes=spec["isolation"] == "namespaces")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.chdir(work_dir)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": work_dir,
        "TMPDIR": work_dir,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    argv = [spec["python"], "-I", "-S", "-c", spec["harness"], spec["marker"]]
    argv += [str(fd) for fd in spec["fds"]] + [spec["isolation"]]
    os.write(setup_w, b"ready\n")
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(spec["python"], argv, env)
        finally:
            os._exit(127)
    os.close(setup_w)
    return _wait(pid)


def _namespaced(spec: dict, setup_w: int) -> int:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    launcher = os.getpid()
    helper = os.fork()
    if helper == 0:
        os.close(ready_r)
        os.close(go_w)
        try:
            _die_with_parent(launcher)
            flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID
            _call(libc.unshare(flags | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
            os.write(ready_w, b"1")
            if os.read(go_r, 1) != b"1":
                raise OSError("the launcher could not write the uid/gid maps")
            _build_root(spec)
            init = os.fork()  # pid 1 of the new pid namespace
            if init == 0:
                _die_with_parent()
                _enter_root(spec)
                _drop_privileges()
                os._exit(_run_harness(spec, setup_w, "/sandbox"))
            os.close(setup_w)
            os._exit(_wait(init))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, then exit
            os.write(setup_w, f"error: {exc!r}\n".encode())
            os._exit(125)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("the helper died before unsharing its namespaces")
        _write_id_maps(helper)
        os.write(go_w, b"1")
    except OSError as exc:
        os.write(setup_w, f"error: {exc!r}\n".encode())
        os.kill(helper, signal.SIGKILL)
    os.close(go_w)
    os.close(setup_w)
    return _wait(helper)


def _write_id_maps(pid: int) -> None:
    """Map the sandbox's inside uid/gid to an unprivileged outer id: ``nobody`` where the
    launcher is root (root has CAP_SETUID), else the caller's own ids (all that an
    unprivileged user may map)."""
    if os.geteuid() == 0:
        outer_uid = outer_gid = 65534
    else:
        outer_uid, outer_gid = os.geteuid(), os.getegid()
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"{INSIDE_ID} {outer_uid} 1")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"{INSIDE_ID} {outer_gid} 1")


def main() -> int:
    spec = json.loads(sys.argv[1])
    setup_w = spec["setup_fd"]
    os.set_inheritable(setup_w, False)
    try:
        _die_with_parent()
        if spec["isolation"] == "namespaces":
            _prepare_root(spec)
            return _namespaced(spec, setup_w)
        return _run_harness(spec, setup_w, spec["work_dir"])
    except BaseException as exc:  # noqa: BLE001 - reported to the caller
        os.write(setup_w, f"error: {exc!r}\n".encode())
        return 125


if __name__ == "__main__":
    sys.exit(main())
