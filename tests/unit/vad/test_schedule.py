"""A camera's schedule: rule matching by local weekday and time, daylight-saving changes, the window
of event time an answer holds over, and the config's refusals."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from vad.config import CameraConfig, ConfigError, load_config
from vad.schedule import Schedule

BERLIN = ZoneInfo("Europe/Berlin")


def ms(tz: ZoneInfo, *args: int) -> int:
    """Epoch ms of a local wall-clock time (the first of two on a fall-back hour)."""
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def sched(rules: list[dict], tz: str = "UTC", sensitivity: float = 1.0) -> Schedule:
    s = Schedule.of(CameraConfig(timezone=tz, sensitivity=sensitivity, schedule=rules))
    assert s is not None
    return s


NIGHT = {"start": "22:00", "end": "06:00", "enabled": False}


# 2026-03-02 is a Monday.
@pytest.mark.parametrize(
    ("local", "enabled"),
    [
        ((2026, 3, 2, 21, 59), True),
        ((2026, 3, 2, 22, 0), False),
        ((2026, 3, 2, 23, 59), False),
        ((2026, 3, 3, 0, 0), False),  # past midnight: still the night that began on Monday
        ((2026, 3, 3, 5, 59), False),
        ((2026, 3, 3, 6, 0), True),  # end is exclusive
        ((2026, 3, 3, 12, 0), True),
    ],
)
def test_an_over_midnight_rule_covers_the_evening_and_the_next_morning(local, enabled):
    s = sched([NIGHT], "Europe/Berlin")
    assert s.at(ms(BERLIN, *local)).enabled is enabled


def test_an_over_midnight_rule_belongs_to_the_day_it_starts_on():
    s = sched([{**NIGHT, "days": ["fri"]}], "Europe/Berlin")
    fri, sat, sun = (2026, 3, 6), (2026, 3, 7), (2026, 3, 8)
    assert s.at(ms(BERLIN, *fri, 23, 0)).enabled is False
    assert s.at(ms(BERLIN, *sat, 2, 0)).enabled is False  # Friday's night
    assert s.at(ms(BERLIN, *sat, 23, 0)).enabled is True  # Saturday is not a day of the rule
    assert s.at(ms(BERLIN, *sun, 2, 0)).enabled is True
    assert s.at(ms(BERLIN, *fri, 2, 0)).enabled is True  # Thursday's night is not one either


def test_weekday_boundaries_in_the_cameras_time_zone():
    # Weekend only, in Berlin: Friday 23:30 UTC is already Saturday 00:30 there (UTC+1 in March).
    s = sched([{"days": ["sat", "sun"], "start": "00:00", "end": "24:00", "sensitivity": 3.0}], "Europe/Berlin")
    utc = ZoneInfo("UTC")
    assert s.at(ms(utc, 2026, 3, 6, 22, 59)).sensitivity == 1.0  # Friday 23:59 in Berlin
    assert s.at(ms(utc, 2026, 3, 6, 23, 0)).sensitivity == 3.0  # Saturday 00:00 in Berlin
    assert s.at(ms(utc, 2026, 3, 8, 22, 59)).sensitivity == 3.0  # Sunday 23:59
    assert s.at(ms(utc, 2026, 3, 8, 23, 0)).sensitivity == 1.0  # Monday 00:00
    # In UTC, Friday 23:00 UTC is still Friday: a Saturday rule does not apply yet.
    in_utc = sched([{"days": ["sat"], "start": "00:00", "end": "24:00", "enabled": False}])
    assert in_utc.at(ms(utc, 2026, 3, 6, 23, 0)).enabled is True
    assert in_utc.at(ms(utc, 2026, 3, 7, 0, 0)).enabled is False


def test_the_first_matching_rule_wins_and_outside_all_rules_the_cameras_sensitivity_applies():
    s = sched(
        [
            {"days": ["mon"], "start": "08:00", "end": "12:00", "sensitivity": 2.0},
            {"start": "09:00", "end": "17:00", "enabled": False},
            {"start": "00:00", "end": "24:00", "sensitivity": 0.5},
        ],
        sensitivity=1.5,
    )
    utc = ZoneInfo("UTC")
    assert (s.at(ms(utc, 2026, 3, 2, 10, 0)).sensitivity, s.at(ms(utc, 2026, 3, 2, 10, 0)).rule) == (2.0, 0)
    assert s.at(ms(utc, 2026, 3, 3, 10, 0)).enabled is False  # Tuesday: the first rule does not apply
    assert s.at(ms(utc, 2026, 3, 3, 18, 0)).sensitivity == 0.5
    only = sched([{"days": ["mon"], "start": "08:00", "end": "12:00", "sensitivity": 2.0}], sensitivity=1.5)
    f = only.at(ms(utc, 2026, 3, 3, 10, 0))
    assert (f.enabled, f.sensitivity, f.rule) == (True, 1.5, None)


def test_spring_forward_in_berlin():
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). A rule from 02:30 is in force from 03:00,
    # the first local time after the jump at or past its start.
    s = sched([{"start": "02:30", "end": "04:00", "enabled": False}], "Europe/Berlin")
    utc = ZoneInfo("UTC")
    assert s.at(ms(utc, 2026, 3, 29, 0, 59)).enabled is True  # 01:59 CET
    assert s.at(ms(utc, 2026, 3, 29, 1, 0)).enabled is False  # 03:00 CEST
    assert s.at(ms(utc, 2026, 3, 29, 1, 59)).enabled is False  # 03:59 CEST
    assert s.at(ms(utc, 2026, 3, 29, 2, 0)).enabled is True  # 04:00 CEST: an hour of event time, not two
    # The day before, the same rule lasts 90 minutes of event time.
    assert s.at(ms(utc, 2026, 3, 28, 1, 29)).enabled is True
    assert s.at(ms(utc, 2026, 3, 28, 1, 30)).enabled is False


def test_fall_back_in_berlin_applies_the_repeated_hour_twice():
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:00-02:59 local happens twice.
    s = sched([{"start": "02:00", "end": "03:00", "sensitivity": 4.0}], "Europe/Berlin")
    utc = ZoneInfo("UTC")
    assert s.at(ms(utc, 2026, 10, 24, 23, 59)).sensitivity == 1.0  # 01:59 CEST
    assert s.at(ms(utc, 2026, 10, 25, 0, 0)).sensitivity == 4.0  # 02:00 CEST
    assert s.at(ms(utc, 2026, 10, 25, 1, 0)).sensitivity == 4.0  # 02:00 CET, the second time
    assert s.at(ms(utc, 2026, 10, 25, 1, 59)).sensitivity == 4.0
    assert s.at(ms(utc, 2026, 10, 25, 2, 0)).sensitivity == 1.0  # 03:00 CET


def _brute(s: Schedule, ts: int) -> tuple[bool, float]:
    local = datetime.fromtimestamp(ts // 1000, s.tz)
    i = s.match(local.weekday(), local.hour * 60 + local.minute)
    if i is None:
        return True, s.sensitivity
    r = s.rules[i]
    return r.enabled, s.sensitivity if r.sensitivity is None else r.sensitivity


@pytest.mark.parametrize("day", [(2026, 3, 28), (2026, 3, 29), (2026, 10, 25), (2026, 6, 1)])
def test_every_answer_holds_over_its_whole_window_across_dst_days(day):
    # The window is what the detector caches: every event time in it must get the same answer as
    # asking afresh (checked each 30 s over two local days around the day).
    s = sched(
        [
            {"days": ["sat", "sun"], "start": "01:30", "end": "02:45", "sensitivity": 2.0},
            {"start": "23:15", "end": "02:30", "enabled": False},
            {"days": ["mon"], "start": "12:00", "end": "13:00", "sensitivity": 0.5},
        ],
        "Europe/Berlin",
    )
    t0 = ms(BERLIN, *day, 0, 0) - 12 * 3600_000
    f, recomputed = None, 0
    for ts in range(t0, t0 + 48 * 3600_000, 30_000):
        if f is None or not f.holds(ts):
            f, recomputed = s.at(ts), recomputed + 1
            assert f.start_ms <= ts < f.end_ms
        assert (f.enabled, f.sensitivity) == _brute(s, ts), datetime.fromtimestamp(ts / 1000, BERLIN)
    assert recomputed < 200  # per rule boundary and midnight (and per minute around a DST change)


def test_no_rules_no_schedule():
    assert Schedule.of(CameraConfig()) is None
    assert Schedule.of(CameraConfig(timezone="Asia/Kolkata")) is None


def _refused(cam: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(env={"VAD_CAMERAS": "{gate-3: " + cam + "}"})
    return str(e.value)


def test_unknown_time_zones_are_refused_with_the_field_path():
    assert "cameras.gate-3.timezone: Value error, unknown time zone 'Mars/Olympus'" in _refused(
        "{timezone: Mars/Olympus}"
    )
    assert "cameras.gate-3.timezone" in _refused("{timezone: ../../etc/passwd}")
    for machine_dependent in ("localtime", "right/Europe/Berlin", "posixrules"):
        assert f"cameras.gate-3.timezone: Value error, '{machine_dependent}' is not a zone" in _refused(
            "{timezone: " + machine_dependent + "}"
        )
    assert load_config(env={"VAD_CAMERAS": "{gate-3: {timezone: America/New_York}}"}).cameras["gate-3"].timezone


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('{start: "25:00", end: "06:00", enabled: false}', r'cameras.gate-3.schedule.0.start: .*"HH:MM" from 00:00'),
        ('{start: "22:00", end: "24:01", enabled: false}', r"cameras.gate-3.schedule.0.end: .*to 24:00"),
        ('{start: "7:00", end: "09:00", enabled: false}', r"cameras.gate-3.schedule.0.start"),
        ("{start: 22:00, end: '06:00', enabled: false}", r"schedule.0.start: .*quoted .*number 1320"),
        ('{start: "22:00", end: "22:00", enabled: false}', r"schedule.0: .*whole day is"),
        ('{days: [mon, funday], start: "22:00", end: "06:00", enabled: false}', r"schedule.0.days.1: Input should"),
        ('{days: [mon, mon], start: "22:00", end: "06:00", enabled: false}', r"schedule.0.days: .*repeated: mon"),
        ('{days: [], start: "22:00", end: "06:00", enabled: false}', r"schedule.0.days: .*at least 1"),
        ('{start: "22:00", end: "06:00"}', r"schedule.0: .*sets neither"),
        ('{start: "22:00", end: "06:00", enabled: false, sensitivity: 2}', r"schedule.0: .*not both"),
        ('{start: "22:00", end: "06:00", sensitivity: 101}', r"schedule.0.sensitivity: .*less than or equal to 100"),
        ('{start: "22:00", end: "06:00", sensitivity: 0}', r"schedule.0.sensitivity: .*greater than 0"),
        ('{start: "22:00", end: "06:00", enabled: false, weekdays: [mon]}', r"schedule.0.weekdays: Extra inputs"),
    ],
)
def test_bad_rules_are_refused_with_the_field_path(rule, message):
    text = _refused("{schedule: [" + rule + "]}")
    assert re.search(message, text), text
