"""Pool workers end with the process that started them (a killed study or pretraining leaves no worker behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PARENT = textwrap.dedent("""
    import os, sys, time
    from patchfield.utils.processes import worker_pool

    def report_and_wait(path):
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        time.sleep(300)

    if __name__ == "__main__":
        with worker_pool(1) as pool:
            pool.apply(report_and_wait, (sys.argv[1],))
""")


def _alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_pool_workers_end_with_their_killed_parent(tmp_path):
    script, marker = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(PARENT)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    parent = subprocess.Popen([sys.executable, str(script), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.is_file():
            assert parent.poll() is None, "the parent ended before its worker started"
            assert time.monotonic() < deadline, "no worker started within 2 minutes"
            time.sleep(0.2)
        worker = int(marker.read_text())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the pool worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if marker.is_file() and _alive(int(marker.read_text())):
            os.kill(int(marker.read_text()), signal.SIGKILL)
