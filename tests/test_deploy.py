"""The Prefect deployments of the beamline service (pipelines/deploy.py, prefect.yaml),
built and inspected without a server: schedules, entrypoints, parameters; `serve --prefect`
serves exactly those."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from typer.testing import CliRunner

from operando.cli import app
from pipelines.deploy import DEFAULT_CRON, beamtime_sweep, deployments, reduce_config
from pipelines.serve import ServeOptions

REPO = Path(__file__).resolve().parents[1]


def test_deployments_schedule_entrypoints_parameters(tmp_path: Path) -> None:
    opts = ServeOptions(patterns=("*/*/run.yaml",), end_marker="DONE", quiet_s=30.0,
                        scheduler="none")
    sweep, reduce = deployments(tmp_path, opts, cron="*/5 * * * *")
    assert sweep.name == "beamtime-sweep" and sweep.flow_name == "operando-beamtime-sweep"
    assert sweep.entrypoint.endswith("pipelines/deploy.py:beamtime_sweep")
    assert [s.schedule.cron for s in sweep.schedules] == ["*/5 * * * *"]
    assert sweep.parameters == {"beamtime_dir": str(tmp_path.resolve()),
                                "patterns": ["*/*/run.yaml"], "end_marker": "DONE",
                                "quiet_s": 30.0, "scheduler": "none"}
    assert reduce.name == "reduce-run" and reduce.flow_name == "operando-reduce-run"
    assert reduce.entrypoint.endswith("pipelines/deploy.py:reduce_config")
    assert not reduce.schedules
    assert reduce.parameters == {"scheduler": "none", "lock_wait_s": 0.0}
    # the run config is the one parameter a reduce-run flow run must be given
    assert reduce._parameter_openapi_schema.required == ["config"]
    assert sweep._parameter_openapi_schema.required == ["beamtime_dir"]
    assert deployments(tmp_path)[0].schedules[0].schedule.cron == DEFAULT_CRON


def test_prefect_yaml_declares_the_same_flows() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    deps = {d["name"]: d for d in spec["deployments"]}
    assert set(deps) == {"beamtime-sweep", "reduce-run"}
    for d, fl in ((deps["beamtime-sweep"], beamtime_sweep), (deps["reduce-run"], reduce_config)):
        path, name = d["entrypoint"].split(":")
        mod = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert getattr(mod, name) is fl
        assert set(d["parameters"]) <= set(fl.parameters.properties)
        assert d["work_pool"]["name"] == "operando"
    assert deps["beamtime-sweep"]["schedules"][0]["cron"] == DEFAULT_CRON


def test_serve_prefect_serves_the_deployments(tmp_path: Path, monkeypatch) -> None:
    import pipelines.deploy

    seen = {}
    monkeypatch.setattr(pipelines.deploy, "serve_deployments",
                        lambda root, opts, cron: seen.update(root=root, opts=opts, cron=cron))
    out = CliRunner().invoke(app, ["serve", str(tmp_path), "--prefect", "--cron", "0 * * * *",
                                   "--quiet", "5"])
    assert out.exit_code == 0, out.output
    assert seen["root"] == tmp_path and seen["cron"] == "0 * * * *"
    assert seen["opts"].quiet_s == 5.0
