"""The run report (report/index.html): written at the end of every reduce, by
`operando report` from a product folder, and rendered in a real browser (headless Chromium,
Debian's `chromium` package; skipped with a reason where it is absent)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

SECTIONS = ("qc", "run", "products", "clock", "echem", "xrd", "peaks", "xanes", "confocal",
            "kinetics", "scorecard", "warnings")

#: run in the page once it has loaded: every image decoded, every section with content
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const sections = [...document.querySelectorAll("main > section")];
  const out = {
    images: imgs.map(i => i.getAttribute("src")),
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src")),
    sections: sections.map(s => s.id),
    empty: sections.filter(s => {
      const h = s.querySelector("h2");
      return s.innerText.length - (h ? h.innerText.length : 0) < 20;
    }).map(s => s.id),
  };
  const pre = document.createElement("pre");
  pre.id = "operando-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def test_reduce_writes_the_report(small_reduced) -> None:
    cfg, res = small_reduced
    assert res.report == cfg.product_dir / "report" / "index.html"
    text = res.report.read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'id="{sid}"' in text, sid
    # QC first: the quality-control section opens the page
    assert text.index('id="qc"') < text.index('id="run"') < text.index('id="products"')
    assert "failed peak-window fits" in text and "confocal points missing" in text
    assert "missing pulses" in text and "spurious pulses" in text
    assert "http://" not in text and "https://" not in text  # nothing from the network
    for src in re.findall(r'<img src="([^"]+)"', text):
        assert (res.report.parent / src).is_file(), src


def test_report_command_on_a_product_folder(small_reduced, tmp_path: Path) -> None:
    """From a folder alone: its config is the one the products recorded, so every product
    is reported fresh; a copy without figures gets them drawn from the products."""
    from operando.cli import app

    cfg, _ = small_reduced
    out = CliRunner().invoke(app, ["report", str(cfg.product_dir)])
    assert out.exit_code == 0, out.output
    text = (cfg.product_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert text.count('class="badge fresh"') == 6, "every product fresh"
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 1 and "at least one product" in " ".join(bad.output.split())
    part = tmp_path / cfg.run.name
    part.mkdir()
    for name in ("echem.nc", "kinetics.nc"):
        shutil.copy(cfg.product_dir / name, part / name)
    assert CliRunner().invoke(app, ["report", str(part)]).exit_code == 0
    made = sorted(p.name for p in (part / "report").iterdir())
    assert made == ["echem.png", "index.html", "kinetics_ip.png", "kinetics_map.png"]
    text = (part / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="xrd"' not in text and 'id="kinetics"' in text


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run "
                    "installs it where it can)")
    return exe


def _browser(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_in_a_browser(small_reduced, tmp_path: Path) -> None:
    exe = _chromium()
    _, res = small_reduced
    report = tmp_path / "report"
    shutil.copytree(res.report.parent, report)
    page = report / "check.html"
    page.write_text(res.report.read_text(encoding="utf-8").replace(
        "</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    dom = _browser(exe, tmp_path / "profile", "--virtual-time-budget=20000", "--dump-dom",
                   page.as_uri())
    m = re.search(r'<pre id="operando-check">(.*?)</pre>', dom.stdout, re.S)
    assert m, f"the check did not run: {dom.stderr[-2000:]}"
    check = json.loads(html.unescape(m.group(1)))
    assert len(check["images"]) >= 8, check
    assert not check["broken"], f"broken images: {check['broken']}"
    assert not check["empty"], f"empty sections: {check['empty']}"
    assert set(SECTIONS) <= set(check["sections"])
    shot = tmp_path / "report.png"
    _browser(exe, tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}",
             res.report.as_uri())
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 1600)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, "a blank screenshot"


def test_log_warnings_of_the_last_reduce_only(tmp_path: Path) -> None:
    from operando.io.report import read_log_warnings

    log = tmp_path / "reduce.log"
    log.write_text(
        "2026-01-01 10:00:00,001 INFO operando.reduce: reduce run-a (stale): xrd: missing\n"
        "2026-01-01 10:00:01,001 WARNING operando.reduce: xrd: an old warning\n"
        "2026-01-02 10:00:00,001 INFO operando.reduce: reduce run-a (stale): peaks: stale\n"
        "2026-01-02 10:00:01,001 WARNING operando.reduce: peaks: stale, kept (--keep)\n"
        "Traceback (most recent call last):\n"
        "2026-01-02 10:00:02,001 ERROR operando.reduce: xanes failed: no scans\n",
        encoding="utf-8")
    assert read_log_warnings(log) == ["WARNING peaks: stale, kept (--keep)",
                                      "ERROR xanes failed: no scans"]
    assert read_log_warnings(tmp_path / "absent.log") == []
