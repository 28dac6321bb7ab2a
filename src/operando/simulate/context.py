"""The contract between the beamtime orchestrator and each stream simulator.

Each stream module exposes ``simulate_<stream>(ctx: SimContext) -> StreamResult``.
It writes its files under ``ctx.outdir / <stream>/`` (through writers in
:mod:`operando.io`), and returns the paths it wrote (relative to ``ctx.outdir``)
and its ground truth as JSON-serialisable values. Times in the truth are on the
potentiostat clock (seconds since ``Acquisition started on``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from operando.simulate.clock import ClockModel, make_clock
from operando.simulate.echem import EchemProfile
from operando.simulate.presets import ClockSpec, Preset


@dataclass(frozen=True)
class SimContext:
    outdir: Path
    preset: Preset
    echem: EchemProfile
    clock: ClockModel
    seed: int
    data_dir: Path | None = None  # ../shared/data when present (real XANES standards, Fe foil)
    progress: Callable[[str, int, int], None] | None = None  # (stream, done, total) items

    def report(self, stream: str, done: int, total: int) -> None:
        """Tell the caller how far a long stream is (frames written of total)."""
        if self.progress is not None:
            self.progress(stream, done, total)

    def stream_clock(self, stream: str) -> tuple[ClockModel, ClockSpec]:
        """The beamline clock ``stream``'s timestamps are on and its spec (jitter): its own
        controller's (``Preset.<stream>_clock``) or the xrd controller's (``clock``)."""
        own = self.preset.stream_clock(stream)
        if own is None:
            return self.clock, self.preset.clock
        return make_clock(self.preset.echem, own), own

    def rng(self, stream: str) -> np.random.Generator:
        """An independent, reproducible generator per stream (order of streams does not matter)."""
        return np.random.default_rng([self.seed, zlib.crc32(stream.encode())])

    def stream_dir(self, stream: str) -> Path:
        d = self.outdir / stream
        d.mkdir(parents=True, exist_ok=True)
        return d


def to_jsonable(obj: Any) -> Any:
    """Nested dicts/lists/arrays/numpy scalars → plain JSON values; NaN and ±inf → None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; null marks a missing value
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass
class StreamResult:
    files: dict[str, str]  # role -> path relative to ctx.outdir
    truth: dict[str, Any]  # made JSON-ready on construction (arrays → lists, NaN → None)
    notes: list[str] = field(default_factory=list)  # printed to the user (e.g. fallbacks taken)

    def __post_init__(self) -> None:
        self.truth = to_jsonable(self.truth)
