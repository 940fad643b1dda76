"""A command's temporary Prefect API server in a process of its own: Prefect's `SubprocessASGIServer`, started the same
way (the same uvicorn command line, environment and health check), without importing the module that defines it.

`prefect.server.api.server` is the server application itself (FastAPI, SQLAlchemy's ORM models, docket, every route):
importing it cost the command's own process ~1.9 s of CPU with bytecode, ~2.8 s without (2026-12-07, on top of
`import prefect`; a fresh process, `resource.getrusage`) only to reach the class that starts a subprocess, which
then imports it again to serve. The command only needs the client side: its
flows never import the server's modules. What is copied (prefect 3.9.1, `SubprocessASGIServer.start`,
`_run_uvicorn_command` and `stop`): the uvicorn arguments, the three variables that make it an ephemeral server
without UI, the current settings passed as environment variables, the health route polled every 0.1 s, and SIGTERM,
then SIGKILL after 5 s, to stop. tests/test_prefect_server.py checks them against Prefect's class, so an upgrade
that changes them fails there (docs/platform.md).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time

from flows.child_signals import sigint_blocked

logger = logging.getLogger("prefect")  # Prefect's own server logs its start and stop under this name
APP = "prefect.server.api.server:create_app"
EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
STOP_TIMEOUT_S = 5
POLL_S = 0.1
PORT_IN_USE_EXIT = 3  # uvicorn's exit code when it cannot bind: Prefect's class then starts again on another port


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS's choice)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryServer:
    """Prefect's API on 127.0.0.1:`port` in a subprocess started with SIGINT blocked (flows/child_signals.py): a
    terminal's Ctrl-C reaches the command, which stops the server after telling it how the run ended. Its settings
    are this process's current ones (so `temporary_settings` around `start` chooses its database)."""

    def __init__(self, port: int):
        self.port = port
        self.server_process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.address}/api"

    def command(self) -> list[str]:
        import prefect

        return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory", APP,
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]

    def environment(self) -> dict[str, str]:
        from prefect.settings import get_current_settings

        return {**os.environ, **EPHEMERAL_ENV, **get_current_settings().to_environment_variables(exclude_unset=True)}

    def start(self, timeout: float) -> None:
        """Starts the server and returns once its health route answers 200; RuntimeError after `timeout` s."""
        import httpx

        logger.info("Starting temporary server on %s", self.address)
        self._spawn()
        atexit.register(self.stop)
        response, waited = None, 0.0
        with httpx.Client() as client:
            while waited < timeout:
                exited = self.server_process.poll()
                if exited == PORT_IN_USE_EXIT:  # taken since free_port() chose it
                    self.port = free_port()
                    self._spawn()
                elif exited is not None:  # Prefect's class would poll on until the timeout
                    break
                else:
                    try:
                        response = client.get(f"{self.api_url}/health")
                    except httpx.ConnectError:
                        pass
                    else:
                        if response.status_code == 200:
                            return
                time.sleep(POLL_S)
                waited += POLL_S
        if response is not None:
            response.raise_for_status()
        message = "Timed out while attempting to connect to ephemeral Prefect API server."
        if self.server_process.poll() is not None:
            message += f" Ephemeral server process exited with code {self.server_process.returncode}."
        raise RuntimeError(message)

    def _spawn(self) -> None:
        with sigint_blocked():
            self.server_process = subprocess.Popen(self.command(), env=self.environment())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S; safe to call twice."""
        process, self.server_process = self.server_process, None
        atexit.unregister(self.stop)  # registered by start: a command that starts servers again keeps one hook
        if process is None:
            return
        logger.info("Stopping temporary server on %s", self.address)
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
