"""The benchmark's Python floor does the work it claims: the file it writes back from its
encrypted pieces is the file it was given, and a damaged piece fails it."""
import os

import pytest
from cryptography.exceptions import InvalidTag

from bench import download_floor


def test_the_floor_writes_back_the_file_it_was_given(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(2 * download_floor.PIECE + 12345))
    download_floor.prepare(source, tmp_path / "pieces")
    assert len(list((tmp_path / "pieces").iterdir())) == 3
    download_floor.restore(tmp_path / "pieces", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()


def test_a_damaged_piece_fails_the_floor(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(1000))
    download_floor.prepare(source, tmp_path / "pieces")
    piece = tmp_path / "pieces" / "0"
    data = bytearray(piece.read_bytes())
    data[10] ^= 1
    piece.write_bytes(bytes(data))
    with pytest.raises(InvalidTag):
        download_floor.restore(tmp_path / "pieces", tmp_path / "out.bin")
