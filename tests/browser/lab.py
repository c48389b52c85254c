"""A JupyterLab server for the browser tests: loopback only, a token, its own config, stopped with its kernels.

The server runs in a new session with every Jupyter folder (config, data,
runtime, settings, workspaces) inside the test's temporary folder, so nothing
the developer set up leaks in and nothing is left behind. It reaches no
network: news and update checks are off, and it listens on 127.0.0.1 only.
Kernels run in sessions of their own (jupyter_client starts them so), so
stopping the server's process group is not enough: ``close`` asks the server to
shut down, then kills every process that descended from it, by id.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["JupyterLab", "descendants"]

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20
PORT_ATTEMPTS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (Linux /proc), found by walking parent ids."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (gone too) would have reaped it


class JupyterLab:
    """JupyterLab serving ``root`` on 127.0.0.1:<free port> with a random token.

    Use as a context manager; ``url(path)`` gives an address with the token.
    """

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.home, self.token = root, home, secrets.token_hex(16)
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / "jupyterlab.log"
        self._log = self.log_path.open("wb")
        self._processes: set[int] = set()
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> JupyterLab:
        try:
            # A free port can be taken by someone else before the server binds it: then it exits; try another.
            for _ in range(PORT_ATTEMPTS):
                self._launch()
                if self.wait_ready():
                    return self
            raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log()}")
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def _environment(self) -> dict[str, str]:
        """Every Jupyter folder inside ``home``; notifications off (no news fetch, no toasts)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                             ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                             ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):  # fmt: skip
            env[name] = str(self.home / folder)
        env.pop("JPY_SESSION_NAME", None)  # the server sets it for its own kernels
        settings = self.home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
        )
        return env

    def _launch(self) -> None:
        self.port = _free_port()
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False", "--allow-root",  # CI runs as root
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=self.root, env=self._environment(), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._processes.add(self.process.pid)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _request(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def wait_ready(self) -> bool:
        """Block until the REST API answers (True) or the server exits (False); time out with its log."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                json.loads(self._request("api/status"))
                return True
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def track_processes(self) -> None:
        """Remember the server's descendants (its kernels) now, so that close() can end them."""
        self._processes |= descendants(self.process.pid)

    def close(self) -> None:
        """Shut the server and its kernels down; kill, by id, whatever is still alive after that."""
        if self.process is not None and self.process.poll() is None:
            self.track_processes()
            try:
                self._request("api/shutdown", method="POST")  # also shuts down its kernels
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        for pid in self._processes:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.process is not None:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(_alive(pid) for pid in self._processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(pid for pid in self._processes if _alive(pid))
        if left:
            raise RuntimeError(f"processes left behind by JupyterLab: {left}")
