"""Run-config validation: good configs pass, each kind of bad config says what and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from operando import config as config_mod
from operando.cli import app
from operando.config import SCHEMA_VERSION, ConfigError, json_schema, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for rel in ("echem/cell.mpt", "echem/triggers.txt", "xrd/a_0001.h5", "xrd/a_0002.h5",
                "xrd/geometry.poni", "xrd/mask.edf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    return tmp_path


def good(**extra: object) -> dict:
    cfg: dict = {
        "schema_version": SCHEMA_VERSION,
        "run": {"name": "cell4-op2"},
        "output": {"directory": "reduced"},
        "echem": {"files": ["echem/cell.mpt"], "timezone": "Europe/Paris",
                  "active_mass_mg": 5.0},
        "sync": {"trigger_file": "echem/triggers.txt"},
        "xrd": {"files": ["xrd/a_*.h5"], "integration": {"poni": "xrd/geometry.poni",
                                                          "mask": "xrd/mask.edf"}},
    }
    cfg.update(extra)
    return cfg


def write(tmp: Path, cfg: object, name: str = "run.yaml") -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def problems(path: Path, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path, **kw)
    msg = str(exc.value)
    assert str(path) in msg  # every error names the config file
    return exc.value.problems


def test_good_config_resolves_paths_relative_to_the_file(files: Path) -> None:
    cfg = load_config(write(files, good()))
    assert cfg.echem is not None and cfg.xrd is not None
    assert cfg.echem.files[0] == (files / "echem/cell.mpt").resolve()
    assert cfg.output.directory == (files / "reduced").resolve()
    assert cfg.product_dir == (files / "reduced" / "cell4-op2").resolve()
    assert config_mod.expand_inputs(cfg.xrd.files) == [files / "xrd/a_0001.h5",
                                                       files / "xrd/a_0002.h5"]
    assert cfg.xrd.integration.unit == "q_A^-1"  # defaults filled in
    assert cfg.xanes is None and cfg.kinetics is None  # optional sections


def test_only_run_and_output_are_required(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"run": {"name": "r1"}, "output": {"directory": "o"}}))
    assert cfg.schema_version == SCHEMA_VERSION
    assert problems(write(tmp_path, {"run": {"name": "r1"}})) == [
        "output: required key is missing"]


def test_misspelt_key_is_named_with_a_suggestion(files: Path) -> None:
    cfg = good()
    cfg["xrd"]["integration"]["nptt"] = 1000
    cfg["xdr"] = {}
    probs = problems(write(files, cfg))
    assert any(p.startswith("xrd.integration.nptt: unknown key 'nptt'") and
               "did you mean 'npt'" in p for p in probs), probs
    assert any(p.startswith("xdr: unknown key 'xdr'") and "did you mean 'xrd'" in p
               for p in probs), probs


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["xrd"]["integration"].update(npt=-5),
         "xrd.integration.npt: expected greater than 0; found -5"),
        (lambda c: c["xrd"]["integration"].update(npt="many"),
         "xrd.integration.npt: expected a valid integer"),
        (lambda c: c["xrd"]["integration"].update(unit="2theta"),
         "xrd.integration.unit: expected 'q_A^-1', '2th_deg' or 'd_A'; found '2theta'"),
        (lambda c: c["xrd"]["integration"].update(radial_range=[5, 1]),
         "xrd.integration.radial_range: expected (min, max) with min < max, found [5.0, 1.0]"),
        (lambda c: c["echem"].update(timezone="CEST"),
         "echem.timezone: expected an IANA timezone name"),
        (lambda c: c["echem"].pop("timezone"), "echem.timezone: required key is missing"),
        (lambda c: c["echem"].update(files=["echem/nope.mpt"]),
         "echem.files[0]: expected an existing file, found nothing at"),
        (lambda c: c["xrd"].update(files=["xrd/b_*.h5"]),
         "xrd.files[0]: expected at least one file matching the pattern, found none"),
        (lambda c: c["xrd"].update(files=[]), "xrd.files: expected at least 1 item(s), found 0"),
        (lambda c: c["run"].update(name="my run"), "run.name: expected string should match"),
        (lambda c: c["sync"].pop("trigger_file"),
         "sync: method 'triggers' expects 'trigger_file', found none"),
        (lambda c: c.pop("echem"), "(top level): 'sync' expects an 'echem' section"),
        (lambda c: c["echem"].update(format="csv"),
         "echem: format 'csv' expects a 'columns' map, found none"),
    ],
)
def test_each_bad_value_names_key_expected_and_found(files: Path, mutate, expected: str) -> None:
    cfg = good()
    mutate(cfg)
    probs = problems(write(files, cfg))
    assert any(p.startswith(expected) for p in probs), probs


def test_several_problems_are_reported_together(files: Path) -> None:
    cfg = good()
    cfg["xrd"]["integration"]["npt"] = 0
    cfg["echem"]["active_mass_mg"] = -1
    assert len(problems(write(files, cfg))) == 2


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("run:\n  name: [unclosed\noutput: {}\n")
    (prob,) = problems(p)
    assert prob.startswith("line ") and "expected valid YAML" in prob


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert problems(write(tmp_path, ["a", "b"])) == [
        "(top level): expected a mapping of sections, found list"]
    assert problems(tmp_path / "absent.yaml") == [
        "expected a YAML run config, found no such file"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert problems(empty) == [
        "(top level): expected a mapping of sections, found an empty document"]


def test_file_checks_can_be_skipped(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, good()), check_files=False)
    assert cfg.sync is not None and cfg.sync.trigger_file == (tmp_path / "echem/triggers.txt")


def test_schema_version_newer_is_refused_and_older_is_migrated(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert problems(write(files, good(schema_version=SCHEMA_VERSION + 1))) == [
        f"schema_version: expected at most {SCHEMA_VERSION} (this operando), found "
        f"{SCHEMA_VERSION + 1}; upgrade operando to read this file"]
    # a migration hook: version 0 called the output folder `outdir`
    monkeypatch.setattr(config_mod, "SCHEMA_VERSION", 1)

    def v0_to_v1(raw: dict) -> dict:
        raw["output"] = {"directory": raw["output"].pop("outdir")}
        return raw

    monkeypatch.setitem(config_mod.MIGRATIONS, 0, v0_to_v1)
    old = good(schema_version=0)
    old["output"] = {"outdir": "somewhere"}
    cfg = load_config(write(files, old))
    assert cfg.schema_version == 1 and cfg.output.directory == (files / "somewhere").resolve()


def test_committed_json_schema_is_current() -> None:
    committed = json.loads((REPO / "docs" / "config-schema.json").read_text())
    assert committed == json_schema(), "regenerate: operando schema -o docs/config-schema.json"


@pytest.mark.parametrize("name", ["demo.yaml", "template.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(REPO / "configs" / name, check_files=False)
    assert cfg.echem is not None and cfg.xrd is not None and cfg.sync is not None


def test_cli_validate_prints_resolved_yaml_or_errors(files: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(write(files, good()))])
    assert ok.exit_code == 0, ok.output
    resolved = yaml.safe_load(ok.stdout)
    assert resolved["echem"]["files"] == [str((files / "echem/cell.mpt").resolve())]
    assert resolved["xrd"]["integration"]["npt"] == 2000

    cfg = good()
    cfg["xrd"]["integraton"] = cfg["xrd"].pop("integration")
    bad = runner.invoke(app, ["validate", str(write(files, cfg, "bad.yaml"))])
    assert bad.exit_code == 1
    assert "xrd.integraton: unknown key 'integraton'" in bad.stderr
    assert "did you mean 'integration'" in bad.stderr
    assert str(files / "bad.yaml") in bad.stderr
