"""Scale-out: an existing Dask scheduler gives the products of one process; a facility
cluster through dask-jobqueue is described in its own terms (job script checked, nothing
submitted); the worker memory tuning applies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipelines.cluster import (
    ClusterSpec,
    cluster_spec,
    jobqueue_cluster,
    load_cluster_spec,
    tune_malloc,
)

REPO = Path(__file__).resolve().parents[1]


def _dask_cli() -> list[str]:
    exe = shutil.which("dask")
    return [exe] if exe else [sys.executable, "-m", "dask"]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop what this test started, by PID: workers first, then the scheduler."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, 9)
            p.wait()


def _assert_same(a: Path, b: Path) -> None:
    """Every numeric variable and coordinate of two products equal within 1e-6."""
    with xr.open_dataset(a, engine="h5netcdf") as x, xr.open_dataset(b, engine="h5netcdf") as y:
        assert set(x.variables) == set(y.variables)
        assert dict(x.sizes) == dict(y.sizes)
        for name in x.variables:
            u, v = x[name].values, y[name].values
            if u.dtype.kind in "fc":
                np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-9, equal_nan=True,
                                           err_msg=f"{a.name}: {name}")
            elif u.dtype.kind in "iub":
                np.testing.assert_array_equal(u, v, err_msg=f"{a.name}: {name}")


def test_existing_scheduler_equals_single_process(small_run, small_reduced,
                                                  tmp_path: Path) -> None:
    """`operando reduce CONFIG --scheduler tcp://127.0.0.1:PORT --only xrd peaks` on a
    `dask scheduler` and two `dask worker` processes started here gives the xrd.nc and
    peaks.nc of `--scheduler none` (the session's small_reduced)."""
    from distributed import Client
    from typer.testing import CliRunner

    from operando.cli import app, expand_multi_value_options
    from operando.config import load_config

    _, ref = small_reduced
    cfg = load_config(small_run.run_config_path)
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp_path / "out", "overwrite": True})})
    config = tmp_path / "run.yaml"
    config.write_text(cfg.to_yaml(), encoding="utf-8")

    # the scheduler takes a free port itself and writes its address once it listens (a port
    # picked here and connected to before the scheduler binds it can be taken by the
    # client's own socket: a TCP self-connection, then "Address already in use")
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    logs = [open(tmp_path / f"dask{i}.log", "wb") for i in range(3)]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [*_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            cwd=tmp_path, env=env, stdout=logs[0], stderr=logs[0]))
        for i in (1, 2):
            procs.append(subprocess.Popen(
                [*_dask_cli(), "worker", "--scheduler-file", str(sched_file), "--nthreads",
                 "1", "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}",
                 "--local-directory", str(tmp_path / f"w{i}")],
                cwd=tmp_path, env=env, stdout=logs[i], stderr=logs[i]))
        with Client(scheduler_file=str(sched_file), timeout=120) as client:
            client.wait_for_workers(2, timeout=300)
            address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:"), address
        argv = ["reduce", str(config), "--scheduler", address, "--only", "xrd", "peaks",
                "--overwrite"]
        res = CliRunner().invoke(app, expand_multi_value_options(argv))
        assert res.exit_code == 0, res.output
    finally:
        _stop(procs)
        for f in logs:
            f.close()
    out = cfg.product_dir
    for product in ("xrd", "peaks"):
        _assert_same(out / f"{product}.nc", ref.products[product])
    assert not (out / "confocal.nc").exists()


SLURM_YAML = """\
# dask-jobqueue's own configuration layout (as in ~/.config/dask/jobqueue.yaml)
jobqueue:
  slurm:
    name: operando-worker
    cores: 8
    processes: 2
    memory: 32GB
    queue: id31
    account: ma1234
    walltime: "02:00:00"
    job-extra-directives: ["--exclusive", "--constraint=x86"]
    job-script-prologue: ["module load operando"]
    scheduler-options: {host: 127.0.0.1}
scale:
  jobs: 4
"""


def test_slurm_cluster_file_job_script(tmp_path: Path) -> None:
    """A cluster file in dask-jobqueue's layout → SLURMCluster whose job script carries the
    directives; no job is submitted (no sbatch needed)."""
    path = tmp_path / "cluster.yaml"
    path.write_text(SLURM_YAML, encoding="utf-8")
    spec = load_cluster_spec(path)
    assert spec.system == "slurm" and spec.jobs == 4 and spec.threads == 32
    assert spec.options["job_extra_directives"] == ["--exclusive", "--constraint=x86"]
    assert spec.options["job_name"] == "operando-worker"
    with jobqueue_cluster(spec) as cluster:
        script = cluster.job_script()
        assert cluster.scheduler.address.startswith("tcp://127.0.0.1:")
        assert not cluster.workers  # nothing submitted
    for line in ("#SBATCH -J operando-worker", "#SBATCH -p id31", "#SBATCH -A ma1234",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G", "#SBATCH -t 02:00:00",
                 "#SBATCH --exclusive", "#SBATCH --constraint=x86", "module load operando",
                 "--nworkers 2", "--nthreads 4"):
        assert line in script, (line, script)


def test_pbs_section_and_scale_forms(tmp_path: Path) -> None:
    """One batch-system section in keyword form (PBS) and the other scale forms."""
    spec = cluster_spec({"pbs": {"cores": 4, "memory": "8GB", "queue": "batch",
                                 "resource_spec": "select=1:ncpus=4:mem=8GB",
                                 "walltime": "01:00:00",
                                 "scheduler_options": {"host": "127.0.0.1"}},
                         "scale": {"adapt": {"minimum_jobs": 1, "maximum_jobs": 3}}},
                        source="c.yaml")
    assert spec.adapt == {"minimum_jobs": 1, "maximum_jobs": 3} and spec.threads == 12
    with jobqueue_cluster(spec) as cluster:
        script = cluster.job_script()
    for line in ("#PBS -q batch", "#PBS -l select=1:ncpus=4:mem=8GB", "#PBS -l walltime=01:00:00"):
        assert line in script, (line, script)
    w = cluster_spec({"sge": {"cores": 2, "memory": "4GB", "processes": 2},
                      "scale": {"workers": 6}})
    assert w.workers == 6 and w.jobs is None and w.threads == 6
    assert cluster_spec({"slurm": {"cores": 2, "memory": "1GB"}}).jobs == 1


@pytest.mark.parametrize(("data", "message"), [
    ({"slurm": {"cores": 1}, "pbs": {"cores": 1}}, "exactly one batch-system section"),
    ({"kubernetes": {}}, "found kubernetes"),
    ({"slurm": {"cores": 1}, "scale": {"jobs": 0}}, "scale.jobs: expected a positive"),
    ({"slurm": {"cores": 1}, "scale": {"nodes": 2}}, "scale: expected one of"),
    ({"jobqueue": {"slurm": ["cores"]}}, "jobqueue.slurm: expected a mapping"),
])
def test_bad_cluster_file(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        cluster_spec(data, source="/x/cluster.yaml")
    assert str(err.value).startswith("/x/cluster.yaml")


def test_bad_option_and_bad_yaml_name_the_file(tmp_path: Path) -> None:
    spec = ClusterSpec(system="slurm", options={"cores": 2, "memory": "2GB", "colour": "red",
                                                "scheduler_options": {"host": "127.0.0.1"}},
                       source="/x/cluster.yaml")
    with pytest.raises(ValueError, match=r"^/x/cluster.yaml: slurm: .*SLURMCluster rejects"):
        jobqueue_cluster(spec)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- slurm\n- pbs\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml: expected a YAML mapping"):
        load_cluster_spec(bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_malloc() -> None:
    """glibc accepts the thresholds (the worker plugin calls this in every worker)."""
    assert tune_malloc() is True


def test_reduce_cluster_option_errors(small_run, tmp_path: Path) -> None:
    """`operando reduce --cluster FILE`: a bad file, or --cluster with --scheduler, stops
    with one message (exit code 2) before anything runs."""
    from typer.testing import CliRunner

    from operando.cli import app
    from operando.config import load_config

    cfg = load_config(small_run.run_config_path)
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp_path / "out"})})
    config = tmp_path / "run.yaml"
    config.write_text(cfg.to_yaml(), encoding="utf-8")
    bad = tmp_path / "cluster.yaml"
    bad.write_text("slurm: {cores: 2}\npbs: {cores: 2}\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["reduce", str(config), "--cluster", str(bad)])
    assert res.exit_code == 2 and "exactly one batch-system section" in res.output
    assert str(bad) in res.output.replace("\n", "")
    res = CliRunner().invoke(app, ["reduce", str(config), "--cluster", str(bad),
                                   "--scheduler", "none"])
    assert res.exit_code == 2 and "not both" in res.output
    assert not cfg.product_dir.exists()
