"""What every --resume shares: the identity file read safely, its schema checked, the listed files verified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cctvsr.errors import InputError
from cctvsr.run_folder import check_schema, read_state, verify_listed, write_state


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_damaged_identity_file_is_a_one_line_refusal(tmp_path: Path) -> None:
    for text in ['{"schema": 1, "inputs": [', "[1, 2]", "\udcff"]:
        (tmp_path / "run.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(InputError) as error:
            read_state(tmp_path / "run.json")
        assert "\n" not in str(error.value) and "use a new --out" in str(error.value)


def test_the_identity_file_round_trips_and_an_unversioned_one_reads_as_schema_1(tmp_path: Path) -> None:
    write_state(tmp_path / "run.json", {"schema": 1, "model": "x"})
    assert read_state(tmp_path / "run.json") == {"schema": 1, "model": "x"}
    check_schema({"model": "x"}, 1, tmp_path / "run.json")  # written before identity files carried one


def test_another_schema_is_refused_in_one_line_naming_both(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        check_schema({"schema": 2}, 1, tmp_path / "run.json")
    message = str(error.value)
    assert "\n" not in message and "schema 2" in message and "reads 1" in message and "run.json" in message


def test_missing_and_changed_files_are_named_and_stale_temporaries_removed(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "b.png").write_bytes(b"changed")
    stale = tmp_path / ".c.png.abc123.tmp"
    stale.write_bytes(b"half")
    listed = [("a.png", _digest(b"a")), ("b.png", _digest(b"b")), ("gone.png", _digest(b"g"))]
    with pytest.raises(InputError) as error:
        verify_listed(tmp_path, listed)
    assert "2 of 3 files" in str(error.value) and "b.png changed" in str(error.value) and "gone.png missing" in str(error.value)
    assert not stale.exists()
    assert verify_listed(tmp_path, listed[:1]) == 1
