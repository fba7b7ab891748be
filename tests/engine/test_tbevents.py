"""The TensorBoard event writer: CRC-32C, records that read back with their checksums."""

from __future__ import annotations

import struct

import pytest

from momentlens.engine.tbevents import EventWriter, crc32c, read_scalars


def test_crc32c_check_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros


def test_scalars_read_back(tmp_path):
    writer = EventWriter(tmp_path)
    written = [("train/loss", 1, 2.5), ("val/top1", 1, 0.25), ("train/loss", 123456789, -1e-3)]
    for tag, step, value in written:
        writer.add_scalar(tag, value, step)
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    got = read_scalars(path)
    assert [(t, s) for t, s, _ in got] == [(t, s) for t, s, _ in written]
    assert [v for *_, v in got] == [struct.unpack("<f", struct.pack("<f", v))[0]
                                    for *_, v in written]  # stored as float32


def test_corruption_is_detected(tmp_path):
    writer = EventWriter(tmp_path)
    writer.add_scalar("train/loss", 1.0, 7)
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x01  # a bit of the last record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad data checksum"):
        read_scalars(path)
    data[-6] ^= 0x01
    data[0] ^= 0x01  # the first record's length
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad length checksum"):
        read_scalars(path)
