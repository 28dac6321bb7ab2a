"""One run, one DataTree: ``operando.open_run`` on the NetCDF folder and on the Zarr store
(``output.format: zarr``, one ``run.zarr`` with a group per product) of the `small` run."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import operando
from operando.io.products import RUN_STORE, product_path, read_product, write_product
from operando.io.run import IncompleteRunWarning, NoProductError, shared_attrs
from operando.io.run import open_run as io_open_run
from pipelines.reduce import reduce_run

#: the streams the default suite reduces again to Zarr (confocal, the slowest, is in the
#: slow test below; its NetCDF product is written to Zarr and compared here)
ZARR_STREAMS = ["echem", "xrd", "peaks", "xanes", "kinetics"]
XRAY_DIMS = {"xrd": "frame", "peaks": "frame", "xanes": "scan", "confocal": "pass"}


def _zarr_config(cfg, out: Path):
    return cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": out, "format": "zarr", "overwrite": True})})


@pytest.fixture(scope="module")
def zarr_reduced(small_reduced, tmp_path_factory: pytest.TempPathFactory):
    """The `small` run reduced again with ``output.format: zarr`` (all streams but
    confocal); the confocal group is the NetCDF product written through write_product."""
    cfg, res = small_reduced
    zcfg = _zarr_config(cfg, tmp_path_factory.mktemp("zarr"))
    zres = reduce_run(zcfg, only=ZARR_STREAMS, scheduler="none")
    conf = read_product(res.products["confocal"])
    write_product(conf, product_path(zcfg.product_dir, "confocal", "zarr"), product="confocal",
                  extra_attrs={k: v for k, v in conf.attrs.items() if k.startswith("clock_")},
                  fmt="zarr")
    return zcfg, zres


def _assert_lazy(tree: xr.DataTree) -> None:
    """Every variable that is not an index (nor a scalar, which xarray reads with the
    metadata) is a dask array: nothing read yet."""
    for node in tree.subtree:
        for name, var in node.variables.items():
            if name in node.indexes or var.ndim == 0:
                continue
            assert isinstance(var.data, da.Array), (node.path, name, type(var.data))


def _assert_same_product(a: xr.Dataset, b: xr.Dataset, name: str) -> None:
    assert dict(a.sizes) == dict(b.sizes), name
    assert set(a.variables) == set(b.variables), name
    for k in a.variables:
        assert a[k].dims == b[k].dims, (name, k)
        assert a[k].attrs.get("units") == b[k].attrs.get("units"), (name, k)
        assert a[k].attrs.get("long_name") == b[k].attrs.get("long_name"), (name, k)
    xr.testing.assert_equal(a, b)  # values (strings as str either way), dims, coordinates


def test_zarr_products_are_groups_of_one_store_equal_to_netcdf(small_reduced,
                                                               zarr_reduced) -> None:
    _, res = small_reduced
    zcfg, zres = zarr_reduced
    assert set(zres.products) == set(ZARR_STREAMS)
    store = zcfg.product_dir / RUN_STORE
    for name, path in zres.products.items():
        assert path == store / name and (path / "zarr.json").is_file(), path
        z, nc = read_product(path), read_product(res.products[name])
        _assert_same_product(nc, z, name)
        assert z.attrs["product"] == name and z.attrs["operando_version"] == operando.__version__
    assert (store / "zarr.json").is_file()
    assert not [p.name for p in zcfg.product_dir.iterdir() if p.name.endswith(".part")]
    assert not list(zcfg.product_dir.glob("*.nc"))


def test_open_run_gives_the_same_lazy_tree_from_netcdf_and_zarr(small_reduced,
                                                                zarr_reduced) -> None:
    cfg, _ = small_reduced
    zcfg, _ = zarr_reduced
    with operando.open_run(cfg) as nc, operando.open_run(zcfg.product_dir) as z:
        groups = ["echem", "xrd", "peaks", "xanes", "confocal", "kinetics"]
        assert list(nc.children) == groups and list(z.children) == groups
        _assert_lazy(nc)
        _assert_lazy(z)
        assert nc.attrs["run"] == z.attrs["run"] == cfg.run.name
        assert nc.attrs["format"] == "netcdf" and z.attrs["format"] == "zarr"
        for key in ("operando_version", "clock_method", "clock_offset_s", "clock_drift_ppm"):
            assert nc.attrs[key] == z.attrs[key], key
        for g in groups:
            _assert_same_product(nc[g].to_dataset().load(), z[g].to_dataset().load(), g)


def test_dimension_names_do_not_collide_and_every_xray_group_has_time_utc(
        small_reduced) -> None:
    cfg, _ = small_reduced
    with operando.open_run(cfg.product_dir) as tree:
        assert "echem_time" in tree["echem"].dims
        for g, dim in XRAY_DIMS.items():
            node = tree[g]
            assert dim in node.dims and "time" not in node.dims, (g, node.dims)
            assert node["time"].attrs["units"] == "s", g
            assert node["time_utc"].dtype == np.dtype("datetime64[ns]"), g
            assert node["time_utc"].dims == node["time"].dims, g
            # the run's one clock (root attributes) maps time onto time_utc in every group
            utc_s = node["time_utc"].values.astype("datetime64[ns]").astype(np.int64) * 1e-9
            t = node["time"].values
            model = (tree.attrs["clock_reference_epoch_s"] + tree.attrs["clock_offset_s"]
                     + (1 + tree.attrs["clock_drift_ppm"] * 1e-6) * t)
            ok = np.isfinite(t)
            np.testing.assert_allclose(utc_s[ok], model[ok], atol=1e-5, err_msg=g)


def test_open_run_from_a_config_file(small_reduced, tmp_path: Path) -> None:
    """A run config path opens its product folder (the resolved config of a product)."""
    cfg, res = small_reduced
    with xr.open_dataset(res.products["echem"], engine="h5netcdf") as ds:
        (tmp_path / "run.yaml").write_text(ds.attrs["config_yaml"])
    with operando.open_run(tmp_path / "run.yaml") as tree:
        assert tree.attrs["run"] == cfg.run.name and "xrd" in tree.children


def test_no_product_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "run1"
    empty.mkdir()
    with pytest.raises(NoProductError, match=r"run1.*expected at least one product.*empty"):
        operando.open_run(empty)
    (empty / "notes.txt").write_text("x")
    with pytest.raises(NoProductError, match=r"found notes\.txt"):
        operando.open_run(empty)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        operando.open_run(tmp_path / "absent")
    with pytest.raises(NotADirectoryError, match="found a file"):
        io_open_run(empty / "notes.txt")
    with pytest.raises(TypeError, match="product_dir"):
        io_open_run(42)  # type: ignore[arg-type]


def test_both_formats_in_one_folder_needs_a_choice(tmp_path: Path) -> None:
    ds = xr.Dataset({"v": ("frame", np.arange(3.0), {"units": "1", "long_name": "v"})})
    write_product(ds, product_path(tmp_path, "xrd", "netcdf"), product="xrd")
    write_product(ds, product_path(tmp_path, "xrd", "zarr"), product="xrd", fmt="zarr")
    with pytest.raises(ValueError, match=r"both NetCDF products \(xrd\.nc\) and run\.zarr"):
        operando.open_run(tmp_path)
    for fmt in ("netcdf", "zarr"):
        with operando.open_run(tmp_path, format=fmt) as tree:
            assert list(tree.children) == ["xrd"] and tree.attrs["format"] == fmt
            np.testing.assert_array_equal(tree["xrd"]["v"].values, np.arange(3.0))


def test_zarr_group_rewrite_is_whole_or_kept(tmp_path: Path) -> None:
    """A group is replaced whole (no temporary left), kept when overwrite is off, and a
    failed write leaves the earlier group as it was."""
    path = product_path(tmp_path, "xanes", "zarr")
    one = xr.Dataset({"v": ("scan", np.arange(3.0), {"units": "1", "long_name": "v"})})
    write_product(one, path, product="xanes", fmt="zarr")
    write_product(one * 2, path, product="xanes", fmt="zarr")
    np.testing.assert_array_equal(read_product(path)["v"].values, 2 * np.arange(3.0))
    with pytest.raises(FileExistsError, match="overwrite is off"):
        write_product(one, path, product="xanes", fmt="zarr", overwrite=False)
    bad = one.assign(w=("scan", np.array([object(), 1, 2], dtype=object),
                        {"units": "1", "long_name": "not storable"}))
    with pytest.raises(Exception):  # noqa: B017 - whatever zarr raises, nothing changes
        write_product(bad, path, product="xanes", fmt="zarr")
    np.testing.assert_array_equal(read_product(path)["v"].values, 2 * np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_STORE]
    assert sorted(p.name for p in (tmp_path / RUN_STORE).iterdir()) == ["xanes", "zarr.json"]


def test_xrd_time_coordinates_with_and_without_a_clock() -> None:
    """time / time_utc of xrd_dataset: potentiostat times with a clock (an unknown count
    time takes the mapped exposure length), beamline time from the first exposure without
    one, frame numbers and NaT without timestamps."""
    from operando.xrd.product import xrd_dataset

    n, epoch = 3, 1.7e9 + np.array([0.0, 10.0, 20.0])
    common = {"radial": np.arange(4.0), "radial_name": "q", "radial_units": "1/angstrom",
              "frame_index": np.arange(n), "monitor": np.ones(n)}

    def utc(ds: xr.Dataset) -> np.ndarray:
        return ds["time_utc"].values.astype(np.int64) * 1e-9

    ones = np.ones((n, 4))
    on = xrd_dataset(ones, ones, epoch_s=epoch, count_time_s=np.array([1.0, np.nan, 1.0]),
                     time_start_s=np.array([5.0, 15.0, 25.0]),
                     time_end_s=np.array([6.0, 17.0, 26.0]), **common)
    assert on["intensity"].dims == ("frame", "q") and on["time"].attrs["clock"] == "potentiostat"
    np.testing.assert_allclose(on["time"].values, [5.5, 16.0, 25.5])
    np.testing.assert_allclose(utc(on), epoch + np.array([0.5, 1.0, 0.5]), atol=1e-6)
    off = xrd_dataset(ones, ones, epoch_s=epoch, count_time_s=np.ones(n), **common)
    assert off["time"].attrs["clock"] == "beamline"
    np.testing.assert_allclose(off["time"].values, [0.5, 10.5, 20.5])
    np.testing.assert_allclose(utc(off), epoch + 0.5, atol=1e-6)
    none = xrd_dataset(ones, ones, epoch_s=None, count_time_s=np.ones(n), **common)
    assert none["time"].attrs == {"units": "1", "long_name": "frame number (no timestamps, "
                                  "no clock model)", "clock": "none"}
    assert np.isnat(none["time_utc"].values).all() and "unknown" in \
        none["time_utc"].attrs["long_name"]


def test_shared_attrs_keeps_only_what_all_agree_on() -> None:
    got = shared_attrs({"xrd": {"operando_version": "1", "clock_offset_s": 1.7, "poni": "p"},
                        "xanes": {"operando_version": "1", "clock_offset_s": 1.8},
                        "kinetics": {"operando_version": "1"}})
    assert got == {"operando_version": "1"}


@pytest.mark.slow
def test_whole_run_reduced_to_zarr_opens_like_netcdf(small_reduced, tmp_path: Path) -> None:
    """Every stream, confocal included, written by the flow as Zarr."""
    cfg, _ = small_reduced
    zcfg = _zarr_config(cfg, tmp_path)
    reduce_run(zcfg, scheduler="none")
    with operando.open_run(cfg) as nc, operando.open_run(zcfg) as z:
        assert list(nc.children) == list(z.children)
        _assert_lazy(z)
        for g in nc.children:
            _assert_same_product(nc[g].to_dataset().load(), z[g].to_dataset().load(), g)


def test_a_run_still_being_acquired_opens_as_incomplete(tmp_path: Path) -> None:
    """Products written by a live pass carry complete = 0: the tree says so at its root and
    open_run warns that they are not final; a complete run does neither."""
    pdir = tmp_path / "run1"
    pdir.mkdir()
    echem = xr.Dataset({"voltage_V": ("echem_time", np.zeros(3))},
                       attrs={"complete": 0, "samples_covered": 3})
    xrd = xr.Dataset({"intensity": ("frame", np.zeros(2))},
                     attrs={"complete": 0, "frames_covered": 2})
    echem.to_netcdf(pdir / "echem.nc", engine="h5netcdf")
    xrd.to_netcdf(pdir / "xrd.nc", engine="h5netcdf")
    with pytest.warns(IncompleteRunWarning, match=r"still being acquired: echem \(3 samples\); "
                      r"xrd \(2 frames\) are incomplete"):
        tree = operando.open_run(pdir)
    assert tree.attrs["complete"] == 0 and tree.attrs["incomplete_products"] == "echem xrd"
    assert "frames_covered" not in tree.attrs
    tree.close()
    for name, ds in (("echem", echem), ("xrd", xrd)):
        ds.attrs = {}
        ds.to_netcdf(pdir / f"{name}.nc", engine="h5netcdf")
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteRunWarning)
        tree = operando.open_run(pdir)
    assert tree.attrs["complete"] == 1 and "incomplete_products" not in tree.attrs
    tree.close()
