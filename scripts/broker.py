"""Start and stop the local Kafka-protocol broker (``noida-db`` from PyPI) used by dev and tests.

The broker binary is run directly as a child process (its Python wrapper would leave the
binary running on SIGTERM) and stopped with SIGTERM, which keeps its data on disk.
``memstream dev`` and the test fixtures both use ``LocalBroker``.
"""

import signal
import socket
import subprocess
import time
from pathlib import Path

import noida_db

BINARY = Path(noida_db.__file__).with_name("noida-db")


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


class LocalBroker:
    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir, self.port, self.host = data_dir, port, host
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "broker.log", "ab")
        self._process = subprocess.Popen(
            [str(BINARY), "start", "--only", "kafka", "--host", self.host,
             "--kafka-port", str(self.port), "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches memstream, which stops the broker last
        )
        self.pid_file.write_text(str(self._process.pid))
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self, timeout: float = 20.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self.pid_file.unlink(missing_ok=True)
