"""Starting JAX's backend where a command first needs it, with one sentence when it cannot.

``JAX_PLATFORMS=cuda`` on a machine without a usable GPU makes JAX's first computation fail deep
inside JAX (a bare AssertionError when no GPU is visible, a RuntimeError when the plugin cannot
start); ``check_backend`` turns that into a sentence naming the platforms asked for and the ones
this machine has.
"""

from __future__ import annotations

import os
import subprocess
import sys

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
"""The platforms `available_platforms` looks for."""

_LIST = f"""
import jax
for platform in {PLATFORMS!r}:
    try:
        jax.devices(platform)
    except Exception:
        continue
    print(platform)
"""


def available_platforms(timeout: float = 120.0) -> list[str]:
    """The platforms JAX starts on this machine when left to choose (``JAX_PLATFORMS`` unset),
    found in a fresh process (this one's backend cannot be started twice); [] if none."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    try:
        process = subprocess.run(
            [sys.executable, "-c", _LIST],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in process.stdout.split() if line in PLATFORMS]


def check_backend() -> None:
    """Start JAX's backend (``jax.devices()``), or raise one sentence saying which platforms
    ``JAX_PLATFORMS`` asked for, why they could not start and which this machine has.

    Call it where a command first touches JAX (after ``jax.distributed.initialize`` in a
    multi-process run: starting the backend first would stop the process from joining).

    Raises:
      ValueError: the backend cannot start.
    """
    import jax

    try:
        jax.devices()
    except (AssertionError, RuntimeError) as error:
        asked = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""
        reason = str(error).splitlines()[0] if str(error) else ""
        for hint in (" (set JAX_PLATFORMS", " (you may need"):  # JAX's own advice, said below
            reason = reason.split(hint)[0]
        reason = reason.split(". ")[0].rstrip(".")
        if not reason and "cuda" in asked:
            reason = "no NVIDIA GPU is visible"
        reason = f" ({reason})" if reason else ""
        available = available_platforms()
        has = ", ".join(available) if available else "none that JAX can start"
        raise ValueError(
            f"JAX cannot start the platform(s) JAX_PLATFORMS={asked!r} asks for{reason}; this "
            f"machine has: {has}, so set JAX_PLATFORMS to one of them or unset it."
        ) from None
