"""Depth-resolved (confocal) XRD: points on a (pass, depth) grid → local SOC → heterogeneity.

A confocal run measures N depth positions through the electrode, pass after pass; every
(pass, depth) point has its own acquisition time (a 2-D ``time(pass, depth)``, s on the
potentiostat clock), never one time per pass. Depth is a distance (µm) from an explicit
origin face, ``"separator"`` or ``"current_collector"``.

Modules (pure science: numpy / xarray in and out, no file I/O):

* :mod:`operando.confocal.grid` — acquired points → the (pass, depth) grid, with every
  irregularity recorded (missing points, passes cut short, off-grid depths), and per-point
  variables put on it (:func:`~operando.confocal.grid.points_on_grid`).
* :mod:`operando.confocal.soc` — a measured quantity (phase fraction, peak position, …)
  → local state of charge through a linear or tabulated calibration
  (:func:`~operando.confocal.soc.soc_from_quantity`), and SOC → Li content
  (:func:`~operando.confocal.soc.x_li_from_soc`). SOC is 0 discharged, 1 charged.
* :mod:`operando.confocal.metrics` — SOC(pass, depth) + times → heterogeneity metrics:
  reaction-front arrival times (t10, t½, t90) and local rates per depth, which face reacts
  first, the through-depth spread per pass, relaxation time constants in rests, all in one
  CF-annotated dataset (:func:`~operando.confocal.metrics.heterogeneity_dataset`).
  Interpolation onto a common time grid happens only on request
  (:func:`~operando.confocal.metrics.interpolate_to_grid`). Protocol segments are
  :class:`operando.echem.segments.SegmentRun`.
* :mod:`operando.confocal.product` — the ``confocal.nc`` Dataset from the points' patterns,
  peak fits and exposures: every point on the grid with its SOC and exposure-averaged
  electrochemistry, and the heterogeneity metrics
  (:func:`~operando.confocal.product.confocal_dataset`).
"""
