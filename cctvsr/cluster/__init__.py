"""`enhance --ray`: the same enhance run spread over a Ray cluster, with the same outputs as one machine.

units.py plans the work (whole files, or time segments that overlap), segment.py runs the
single-machine producer over one unit, join.py joins a file's segments back into the tracks one
machine would have made, stages.py holds what runs on Ray Data, driver.py ties them to the output
folders. Nothing here is imported unless `--ray` is given; Ray itself is the optional `cluster` extra.
"""

from __future__ import annotations

from types import ModuleType

from cctvsr.errors import InputError

INSTALL_HINT = "pip install 'cctvsr[cluster]'"


def require_ray() -> ModuleType:
    """The `ray` module, or a one-line error saying how to get it (Ray is an optional extra)."""
    try:
        import ray
        import ray.data  # noqa: F401  (the pipeline is Ray Data's; `ray` without `[data]` is not enough)
    except ImportError:
        raise InputError(f"--ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray
