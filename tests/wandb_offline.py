"""Read the history of an offline W&B run (`run-*.wandb`) with wandb's own protobuf records.

wandb ships no Python reader for these files; the format is a LevelDB-style log: a 7-byte file
header, then 32 KiB blocks of chunks, each with a 7-byte header (crc32 u32, length u16, type u8:
1 full, 2 first, 3 middle, 4 last).
"""
from __future__ import annotations

import json
import struct

BLOCK = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str) -> list[bytes]:
    data = open(path, "rb").read()
    out, pending, pos = [], b"", FILE_HEADER
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        body = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == FULL:
            out.append(body)
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            out.append(pending + body)
            pending = b""
        elif kind == 0 and length == 0:
            continue
    return out


def history(path: str) -> list[dict]:
    """One dict per history row: item names (joined `nested_key`) -> decoded JSON values."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for raw in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            key = "/".join(item.nested_key) if item.nested_key else item.key
            row[key] = json.loads(item.value_json)
        rows.append(row)
    return rows


def run_info(path: str) -> dict:
    """The run record: project, display name and config (key -> decoded JSON value)."""
    from wandb.proto import wandb_internal_pb2

    for raw in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            run = record.run
            config = {item.key: json.loads(item.value_json) for item in run.config.update}
            return {"project": run.project, "name": run.display_name, "config": config}
    raise ValueError(f"{path}: no run record")
