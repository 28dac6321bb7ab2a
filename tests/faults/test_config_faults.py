"""Config files that cannot be used: one clear line each, nothing allocated."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from operando.config import ConfigError, load_config

BASE = """\
run: {{name: r1}}
output: {{directory: out}}
xrd:
  files: [f.h5]
  integration:
    poni: g.poni
{extra}
"""


def _cfg(tmp_path: Path, extra: str, raw: bytes | None = None) -> Path:
    p = tmp_path / "run.yaml"
    p.write_bytes(raw if raw is not None else BASE.format(extra=extra).encode())
    return p


def test_non_utf8_config(tmp_path) -> None:
    p = _cfg(tmp_path, "", raw=BASE.format(extra="# caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_config(p, check_files=False)
    msg = str(e.value)
    assert "expected UTF-8 text" in msg and "line 7" in msg and "\\xe9" in msg


def test_duplicate_key(tmp_path) -> None:
    p = _cfg(tmp_path, "    npt: 1000\n    npt: 2000")
    with pytest.raises(ConfigError, match=r"line 8.*expected each key once, found 'npt' twice "
                       r"\(first on line 7\)"):
        load_config(p, check_files=False)


@pytest.mark.parametrize("extra", ["    npt: 1000000000",
                                   "    npt: 100000\n    npt_azimuthal: 100000",
                                   "    npt: 5000\n    npt_azimuthal: 3600\n"
                                   "    chunk_frames: 100000"])
def test_absurd_sizes_refused_before_allocation(tmp_path, extra) -> None:
    p = _cfg(tmp_path, extra)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"xrd\.integration: expected a work unit that "
                           r"fits in memory .* GiB of patterns per work unit"):
            load_config(p, check_files=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6


def test_sizes_that_fit_pass(tmp_path) -> None:
    p = _cfg(tmp_path, "    npt: 3000\n    npt_azimuthal: 360")
    assert load_config(p, check_files=False).xrd.integration.npt == 3000
