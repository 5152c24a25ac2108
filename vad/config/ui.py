"""The review page of `vad ui`."""

from __future__ import annotations

from pydantic import Field

from vad.config.sections import Port, _Strict


class UiConfig(_Strict):
    """The live review page (`vad ui`): cameras, recent events and their heatmaps, read from Redis."""

    # Loopback unless opened on purpose: the page has no login and shows every camera's events.
    host: str = Field(
        "127.0.0.1", min_length=1, max_length=253, description="address the page binds to (0.0.0.0: every interface)"
    )
    port: Port = Field(8088, description="port of the page; `vad ui --port` overrides it")
    events_limit: int = Field(
        200, ge=1, le=5000, description="most events the page lists (and /api/events returns without ?limit=)"
    )
    # One XREAD per open page: a longer block is fewer round trips, not more latency (it returns as
    # soon as an event lands), but also the longest wait before a closed page's stream is noticed.
    stream_block_ms: int = Field(
        500, ge=50, le=10_000, description="how long the event stream's XREAD BLOCK waits for new events"
    )
    # Each open page's blocked XREAD holds a thread: the streams share a pool of their own, so however
    # many pages are open the API's calls never wait behind them. Past this many pages they take turns.
    stream_threads: int = Field(
        100, ge=1, le=10_000, description="threads the open event streams share for their blocked XREADs"
    )
    # A new camera is found at once when its first episode grows the recent index; this is the backstop.
    camera_scan_s: float = Field(
        10.0, ge=0.1, le=600, description="how often the event stream scans Redis for new cameras in any case"
    )
    heartbeat_s: float = Field(
        15.0, ge=1, le=300, description="an idle event stream sends a comment this often, so proxies keep it open"
    )
