"""Runs the untrusted program inside the sandbox and reports how it ended.

Its source is passed to ``python -I -S -c`` (standard library only; not imported by the
package). Arguments: a marker (names the run in the process table), the program's fd, the
nonce's fd, the report's fd, and the isolation mode.

The report is one JSON line on the report fd: ``{"outcome": "passed", "nonce": ...}`` only when
the whole program (the completion, then its tests) ran to its end; ``{"outcome": "exception",
"type": ..., "message": ...}`` or ``{"outcome": "exit", "code": ...}`` otherwise. The nonce is
read and its pipe closed before the program starts, so a completion that exits early (``exit(0)``
before the tests) cannot pass; code that searches the interpreter's memory for it could forge
the report, which the package README states as a limit.
"""

import json
import os
import sys


def _block_sockets():
    """In ``process`` isolation only: refuse new sockets through the ``socket`` module. A guard
    in the same interpreter, not a wall (``_socket``, ctypes or a subprocess get past it)."""
    import socket

    class BlockedSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            raise PermissionError("network access is disabled in the sandbox")

    socket.socket = BlockedSocket


def _report(fd, **fields):
    os.write(fd, (json.dumps(fields) + "\n").encode())


def main():
    program_fd, nonce_fd, report_fd = (int(a) for a in sys.argv[2:5])
    with os.fdopen(nonce_fd, "rb") as f:
        nonce = f.read().decode()
    with os.fdopen(program_fd, "rb") as f:
        source = f.read()
    if sys.argv[5] == "process":
        _block_sockets()
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    sys.argv = ["program.py"]
    try:
        exec(compile(source, "program.py", "exec"), namespace)
    except SystemExit as exc:
        _report(report_fd, outcome="exit", code=str(exc.code))
        raise
    except BaseException as exc:
        _report(report_fd, outcome="exception", type=type(exc).__name__, message=str(exc)[:500])
        raise
    sys.stdout.flush()
    _report(report_fd, outcome="passed", nonce=nonce)


main()
