"""`vad ui`: the review page served by uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import threading

import uvicorn

from vad.config import Config
from vad.ui.app import create_app

log = logging.getLogger(__name__)

# An open page holds its event stream for ever: on a stop, streams still open after this are cut.
GRACEFUL_S = 3


def url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stopping: threading.Event):
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig, frame) -> None:
        self.stopping.set()  # the open event streams end at their next poll instead of being cut
        super().handle_exit(sig, frame)
        # uvicorn raises the signal again once it has stopped, so the process would end killed by it:
        # for this command a signal is the normal way to stop, and a clean stop exits 0.
        self._captured_signals.clear()


def serve(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    """Serves until SIGINT or SIGTERM: uvicorn stops accepting, the event streams end, requests get
    GRACEFUL_S to finish, the app's shutdown runs. 0 on a clean stop."""
    host, port = host or cfg.ui.host, port or cfg.ui.port
    stopping = threading.Event()
    config = uvicorn.Config(
        create_app(cfg, stopping),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        lifespan="on",
    )
    server = _Server(config, stopping)
    redis_at = f"Redis {cfg.redis.host}:{cfg.redis.port}, prefix {cfg.redis.key_prefix}"
    print(f"review page: {url(host, port)} ({redis_at})", flush=True)
    server.run()
    # started False: the port could not be bound (uvicorn logged why).
    return 0 if server.started else 1
