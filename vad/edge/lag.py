"""Whether a paced camera keeps up with its frame rate: send lag, backlog, and a warning.

*Send lag* is the wall-clock time a record is handed to the Kafka client minus its event time.
A live camera's event time is its presentation time anchored to the wall clock when the
connection started (vad/edge/stream.py); a realtime file is paced the same way. When the edge
process decodes and computes flow more slowly than the camera delivers frames, frames wait in the
decoder's and the network's buffers and the lag grows without bound: every event of that camera
reaches the job that much later, and the job cannot tell (its latency is measured from event time).

The send lag alone would misjudge two things that are not falling behind, so the warning looks at
the *backlog*: the lag minus the lowest lag seen on this connection (its *floor*).

- The anchor is taken when the connection opens, not when its first frame arrives; a stream that
  waits for a keyframe starts with an offset that stays for the whole connection.
- A camera's clock that runs slow against the edge's grows the lag slowly (30 ppm, typical of an
  unsynchronised crystal, is ~0.1 s an hour). The floor may rise by up to ``DRIFT`` (1 ms a second,
  30 times that) so drift never adds up to a backlog; falling behind grows the lag by tens to
  hundreds of ms a second. The price: a backlog that stops growing (the server dropping what is not
  read) reads as shrinking by 1 ms a second.

Hysteresis: a camera is *behind* once a record's backlog passes ``limit_ms`` and has *caught up*
once a record's backlog is back under half of it, so one hovering at the limit warns once.
A reconnect starts a new floor (new anchor).
"""

from __future__ import annotations

from dataclasses import dataclass

DRIFT = 1e-3  # how fast (ms per ms of event time) the floor may rise: clock drift, not backlog


@dataclass
class LagWatch:
    limit_ms: float
    last_ms: float = 0.0  # send lag of the latest record
    max_ms: float = 0.0  # worst send lag
    backlog_ms: float = 0.0  # backlog of the latest record
    backlog_max_ms: float = 0.0
    late: int = 0  # records handed over with a backlog above the limit
    episodes: int = 0  # times the camera fell behind
    behind_since_ms: float | None = None  # event time of the record that crossed the limit
    episode_max_ms: float = 0.0  # worst backlog of the current (or last) episode
    episode_s: float = 0.0  # event time the last episode lasted, set when it ends
    _floor: float | None = None
    _floor_ts: float = 0.0
    _connection: int = 0

    @property
    def behind(self) -> bool:
        return self.behind_since_ms is not None

    def observe(self, ts_ms: float, now_ms: float, connection: int = 0) -> str | None:
        """One record handed over at ``now_ms``; returns "behind" or "caught_up" on a change."""
        lag = now_ms - ts_ms
        if connection != self._connection:  # a new anchor: the old floor means nothing
            self._connection, self._floor = connection, None
        if self._floor is None:
            floor = lag
        else:
            floor = min(lag, self._floor + DRIFT * max(0.0, ts_ms - self._floor_ts))
        self._floor, self._floor_ts = floor, ts_ms
        backlog = lag - floor
        self.last_ms, self.max_ms = lag, max(self.max_ms, lag)
        self.backlog_ms, self.backlog_max_ms = backlog, max(self.backlog_max_ms, backlog)
        if backlog > self.limit_ms:
            self.late += 1
            self.episode_max_ms = max(self.episode_max_ms, backlog)
            if self.behind_since_ms is None:
                self.behind_since_ms, self.episode_max_ms = ts_ms, backlog
                self.episodes += 1
                return "behind"
        elif self.behind_since_ms is not None and backlog <= self.limit_ms / 2:
            self.episode_s = (ts_ms - self.behind_since_ms) / 1000.0
            self.behind_since_ms = None
            return "caught_up"
        return None

    def as_dict(self) -> dict:
        return {
            "send_lag_ms": round(self.last_ms, 1),
            "send_lag_max_ms": round(self.max_ms, 1),
            "backlog_max_ms": round(self.backlog_max_ms, 1),
            "late": self.late,
            "behind": self.behind,
            "behind_episodes": self.episodes,
        }
