"""The machine a figure was measured on: every speed figure visent prints or publishes names its CPU."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, with its family and model numbers when the name alone is terse
    ("AMD EPYC (family 25, model 17)"); elsewhere what the platform says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    info: dict[str, str] = {}
    for line in lines:
        if not line.strip() and info:
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    name = info.get("model name") or platform.processor() or "unknown CPU"
    return f"{name} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})" if len(name) < 20 else name
