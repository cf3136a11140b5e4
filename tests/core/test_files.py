"""Files written whole: the old one or the new one, never part of one."""

from __future__ import annotations

import pytest

from muselens.core.files import write_bytes_whole, write_whole


def test_a_file_written_whole_is_the_old_one_or_the_new_one(tmp_path):
    path = tmp_path / "history.json"
    write_whole(path, lambda f: f.write(b'{"old": true}'))

    def half_then_killed(f):
        f.write(b'{"new": ')
        raise KeyboardInterrupt  # stands for the kill: BaseException, not Exception

    with pytest.raises(KeyboardInterrupt):
        write_whole(path, half_then_killed)
    assert path.read_bytes() == b'{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]
    write_whole(path, lambda f: f.write(b'{"new": true}'))
    assert path.read_bytes() == b'{"new": true}'


def test_bytes_go_whole_into_a_new_folder(tmp_path):
    path = tmp_path / "engines" / "fp16.plan"
    write_bytes_whole(path, b"engine")
    assert path.read_bytes() == b"engine" and [p.name for p in path.parent.iterdir()] == ["fp16.plan"]
