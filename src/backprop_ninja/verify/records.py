"""What a verifier child wrote of one call, as the parent may believe it: plain tensors, short
words and names, anything else a "garbled" stand-in. The child runs the student's code: its
record is checked here, shape by shape, before anything reads it."""

from __future__ import annotations

import torch

from ..text import one_line


def _changed(record: dict) -> list[str]:
    """The names a child says the answer changed in place: short strings, a few at most."""
    raw = record.get("changed")
    return (
        [name for name in raw[:16] if isinstance(name, str) and len(name) <= 80]
        if isinstance(raw, list)
        else []
    )


def valid_record(record, nested: bool) -> dict:
    """A record as the child should have written it, or a "garbled" stand-in."""
    garbled = {"status": "bad_type", "type": "an unreadable result"}
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return garbled
    status = record["status"]
    if status == "tensor":
        if not isinstance(record.get("value"), torch.Tensor):
            return garbled
        return {"status": "tensor", "value": record["value"], "changed": _changed(record)}
    if status == "dict" and nested and isinstance(record.get("items"), dict):
        raw_steps = record.get("steps")
        steps: dict = raw_steps if isinstance(raw_steps, dict) else {}
        return {
            "status": "dict",
            "items": {str(k): valid_record(v, nested=False) for k, v in record["items"].items()},
            "steps": {str(k): valid_record(v, nested=False) for k, v in steps.items()},
            "changed": _changed(record),
        }
    if status == "error":
        return {
            "status": "error",
            "error": one_line(str(record.get("error", "?")), 240),
            "autograd": record.get("autograd") is True,
        }
    if status in ("none", "missing", "not_implemented", "autograd"):
        return {"status": status}
    if status == "bad_type":
        return {"status": "bad_type", "type": one_line(str(record.get("type", "?")), 80)}
    return garbled
