"""Atomic writes and output checks: nothing half-written, one clear error per bad output path."""

from __future__ import annotations

import os

import pytest

from atomizer.errors import OutputError
from atomizer.io import atomic_path, atomic_write_text, check_figure_path, ensure_dir


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_written_files_get_the_umask_mode(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_replacing_a_folder_is_an_output_error(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_text(tmp_path / "d", "x")
    assert (tmp_path / "d" / "keep").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_missing_parent_and_uncreatable_folders(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        atomic_write_text(tmp_path / "no" / "f.txt", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create folder"):
        ensure_dir(tmp_path / "file" / "sub")
    assert ensure_dir(tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize("name", ["x.xyz", "x"])
def test_unknown_figure_formats_are_refused(tmp_path, name):
    with pytest.raises(OutputError, match="unknown image format"):
        check_figure_path(tmp_path / name)
    assert check_figure_path(tmp_path / "x.PNG").name == "x.PNG"
