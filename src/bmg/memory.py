"""How much memory this process may still take, and sizes in words: used to refuse, in one
sentence before anything is allocated, a run whose data or activations cannot fit (the kernel's
out-of-memory killer would end it without a word). Pure Python (no JAX)."""

from __future__ import annotations

import os
from pathlib import Path

INT32_MAX = 2**31 - 1
"""the largest count an int32 step counter holds (JAX's default integer without x64)."""

_CGROUP_LIMITS = (  # (limit, usage) of this process's memory cgroup: v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def available_memory() -> int | None:
    """Bytes of RAM this process can still allocate: the kernel's MemAvailable (/proc/meminfo,
    else the free pages of os.sysconf), lowered to what a container's memory limit leaves
    (cgroup v2 memory.max, or v1 memory.limit_in_bytes, minus the usage); None when unknown."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    for limit_path, usage_path in _CGROUP_LIMITS:
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < 2**60:  # 2**63 - page: none
            left = max(limit - usage, 0)
            available = left if available is None else min(available, left)
            break
    return available


def format_bytes(size: float) -> str:
    """`size` bytes in binary units: "512 B", "3.2 GiB", "1.8 TiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError  # unreachable


def check_fits(needed: int, what: str, hint: str, available: int | None = None) -> None:
    """Refuse `needed` bytes that the machine cannot give: ValueError with one sentence, "{what}
    needs at least N GiB of memory, more than the M GiB available; {hint}." `available`
    defaults to `available_memory()`; unknown (None) accepts.

    Raises:
      ValueError: the sentence.
    """
    if available is None:
        available = available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"{what} needs at least {format_bytes(needed)} of memory, more than the "
            f"{format_bytes(available)} available; {hint}."
        )
