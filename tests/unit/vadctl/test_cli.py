"""`vad schemas`: writes the published JSON Schemas of the job's output records, and checks them."""

from __future__ import annotations

from vad.config import REPO_ROOT
from vad.records import PUBLISHED
from vadctl.cli import main


def test_schemas_are_written_and_checked(tmp_path, capsys):
    assert main(["schemas", "--check"]) == 0  # the committed files, in docs/schemas
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1
    assert "differs from vad/records.py" in capsys.readouterr().err
    assert main(["schemas", "--dir", str(tmp_path)]) == 0
    for name in PUBLISHED:
        assert (tmp_path / name).read_text() == (REPO_ROOT / "docs" / "schemas" / name).read_text()
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0
