"""Start and stop the local Kafka-protocol broker (``noida-db`` from PyPI) used by dev and tests.

The broker binary is run directly as a child process (its Python wrapper would leave the
binary running on SIGTERM) and stopped with SIGTERM, which keeps its data on disk. Clients never
talk to it directly: it listens on a private port behind ``scripts.kafka_proxy`` (another child
process), which makes its fetches wait as Kafka's do and can simulate an outage (``take_down()``/
``bring_back()``) without stopping the broker. ``memstream dev`` and the test fixtures both use
``LocalBroker``.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import noida_db

BINARY = Path(noida_db.__file__).with_name("noida-db")
ROOT = Path(__file__).resolve().parent.parent  # where ``python -m scripts.kafka_proxy`` imports


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g}s") from None
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LocalBroker:
    """noida-db on a private port, behind the proxy on ``port`` (``bootstrap``, what clients use).

    ``pid_file`` holds the broker's pid, ``proxy_pid`` is the proxy's.
    """

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir, self.port, self.host = data_dir, port, host
        self.upstream_port: int | None = None  # the broker's own port, while it runs
        self._process: subprocess.Popen[bytes] | None = None
        self._proxy: subprocess.Popen[bytes] | None = None
        self._status_fd: int | None = None  # the proxy reports listening/cut/restored here
        self._status = b""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def proxy_pid(self) -> int | None:
        return self._proxy.pid if self._proxy is not None else None

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.upstream_port = free_port()
        with open(self.data_dir / "broker.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(BINARY),
                    "start",
                    "--only",
                    "kafka",
                    "--host",
                    self.host,
                    "--kafka-port",
                    str(self.upstream_port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches memstream, which stops the broker last
            )
        self.pid_file.write_text(str(self._process.pid))
        try:
            wait_for_port(self.host, self.upstream_port, timeout)
            self._start_proxy(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_proxy(self, timeout: float) -> None:
        assert self.upstream_port is not None
        self._status_fd, status_out = os.pipe()
        try:
            with open(self.data_dir / "proxy.log", "ab") as log:
                self._proxy = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "scripts.kafka_proxy",
                        "--host",
                        self.host,
                        "--listen-port",
                        str(self.port),
                        "--upstream-port",
                        str(self.upstream_port),
                        "--status-fd",
                        str(status_out),
                    ],
                    cwd=ROOT,
                    pass_fds=(status_out,),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        finally:
            os.close(status_out)
        self._expect("listening", timeout)

    def take_down(self, timeout: float = 10.0) -> None:
        """Simulate a broker outage: the proxy drops every connection and refuses new ones (the
        broker keeps running, with its data) until ``bring_back()``. Returns once it has."""
        self._signal_proxy(signal.SIGUSR1, "cut", timeout)

    def bring_back(self, timeout: float = 10.0) -> None:
        """End the outage ``take_down()`` began: the proxy accepts connections again."""
        self._signal_proxy(signal.SIGUSR2, "restored", timeout)

    def _signal_proxy(self, sig: signal.Signals, reply: str, timeout: float) -> None:
        if self._proxy is None or self._proxy.poll() is not None:
            raise RuntimeError("the broker's proxy is not running")
        self._proxy.send_signal(sig)
        self._expect(reply, timeout)

    def _expect(self, reply: str, timeout: float) -> None:
        """Wait for the proxy to report ``reply`` on its status pipe."""
        assert self._status_fd is not None
        deadline = time.monotonic() + timeout
        while True:
            line, newline, rest = self._status.partition(b"\n")
            if newline:
                self._status = rest
                if line.decode() == reply:
                    return
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._status_fd], [], [], left)[0]:
                raise TimeoutError(f"the broker's proxy did not report {reply!r} within {timeout:g}s")
            chunk = os.read(self._status_fd, 4096)
            if not chunk:
                raise RuntimeError(f"the broker's proxy exited; see {self.data_dir / 'proxy.log'}")
            self._status += chunk

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the proxy, then the broker (SIGTERM, which keeps the broker's data)."""
        if self._proxy is not None:
            _stop(self._proxy, timeout)
            self._proxy = None
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd, self._status = None, b""
        if self._process is None:
            return
        _stop(self._process, timeout)
        self._process = None
        self.upstream_port = None
        self.pid_file.unlink(missing_ok=True)
