"""`vad ui`'s arguments and the review page's line at the end of `vad demo`."""

from __future__ import annotations

import pytest

from vad.config import load_config
from vad.ui.server import url
from vadctl import cli
from vadctl.demo import review_page_hint


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_a_port_out_of_range_is_refused_before_serving(port, capsys):
    assert cli.main(["ui", "--port", port]) == 2
    assert "--port must be 1-65535" in capsys.readouterr().err


def test_the_demo_ends_with_the_page_address_and_how_to_serve_it():
    cfg = load_config(env={"VAD_UI__PORT": "9123"})
    hint = review_page_hint(cfg)
    assert "http://127.0.0.1:9123/" in hint and "make ui" in hint and ".cache/demo/stack" in hint


def test_url_brackets_an_ipv6_host():
    assert url("::1", 80) == "http://[::1]:80/" and url("127.0.0.1", 8088) == "http://127.0.0.1:8088/"
