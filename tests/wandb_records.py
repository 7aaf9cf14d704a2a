"""Reads the records of an offline W&B run file (`run-*.wandb`) for the tests.

wandb >= 0.2x no longer ships a Python reader for its transaction log, so this decodes the
documented LevelDB log framing (32 KiB blocks; records: crc32, length, type) and parses each
record with wandb's own protobuf `Record`.

`run.finish()` can return before wandb's service process has written the last records (seen on
a loaded 2-core machine), so `read_records` waits, up to `wait_s`, for the closing `exit` record.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # ':W&B' + magic (2) + version (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path, wait_s: float = 60.0) -> list[wandb_internal_pb2.Record]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            records = _parse(Path(path).read_bytes())
        except Exception:  # a record still being written
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records if records else _parse(Path(path).read_bytes())
        time.sleep(0.2)


def _parse(data: bytes) -> list[wandb_internal_pb2.Record]:
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, pending = [], b""
    pos = HEADER
    while pos + 7 <= len(data):
        left_in_block = BLOCK - (pos % BLOCK)
        if left_in_block < 7:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(pending)
        records.append(rec)
        pending = b""
    return records
