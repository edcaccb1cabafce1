"""Temporary files named after the run that made them, so a killed run's can be removed.

A run that is killed (SIGKILL, a lost machine, Ctrl-C twice) never reaches the
code that deletes its temporary files: the DuckDB sink's staged Parquet files
and `GroupByKeyOnDisk`'s run files. Each run therefore names its folder with
`run_tag()`: the launching process's id, a digest of the host's name and a
random run id. At the next start `remove_stale` deletes the folders whose
process is provably gone: made on this host (a process id means nothing on
another) by a process that no longer exists. Anything else is kept: a live
run's folder, another host's, a name without a tag (made before tags
existed; delete it by hand when no job runs), and a tag whose process id was
reused by an unrelated process (kept until that process ends: wrong only on
the safe side).

The process named is the launcher, which waits for the run on the local
runners, the only ones these folders are for; workers may be other
processes of the same host.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import uuid

_TAG = re.compile(r"p(?P<pid>\d+)-h(?P<host>[0-9a-f]{8})-(?P<run>[0-9a-f]{32})$")

_log = logging.getLogger(__name__)


def _host() -> str:
    return hashlib.sha256(os.uname().nodename.encode()).hexdigest()[:8]


def run_tag(pid: int | None = None) -> str:
    """`p<pid>-h<host digest>-<run id>` for this process (or `pid`) on this host."""
    return f"p{os.getpid() if pid is None else pid}-h{_host()}-{uuid.uuid4().hex}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def is_stale(name: str, prefix: str) -> bool:
    """Whether `name` is `<prefix><tag>` of a process of this host that is gone."""
    if not name.startswith(prefix):
        return False
    match = _TAG.fullmatch(name[len(prefix) :])
    if match is None or match["host"] != _host():
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not _alive(pid)


def remove_stale(directory: str, prefix: str) -> list[str]:
    """Deletes the entries `<prefix><tag>` of `directory` whose run is gone; their paths.

    A missing `directory` has nothing to remove. Logged (paths only) at INFO.
    """
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        if not is_stale(name, prefix):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            # Another start may have removed it first.
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        removed.append(path)
    if removed:
        _log.info("removed %d folders left by killed runs in %s", len(removed), directory)
    return removed
