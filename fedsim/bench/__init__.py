"""``fedsim bench`` and ``fedsim report``: a grid of runs and the tables, plots and HTML built from them.

* :mod:`fedsim.bench.grid` — the grid (axes → cells, cell names) from CLI flags or a YAML
  ``grid:`` section, validated through :func:`fedsim.config.load_config` before anything runs.
* :mod:`fedsim.bench.plan` — what each cell's run directory holds (new, to resume, done) and
  the ``fedsim run`` command that continues it.
* :mod:`fedsim.bench.runner` — cells as ``python -m fedsim run --quiet`` subprocesses, N at a
  time, with a progress display.
* :mod:`fedsim.bench.results` — one row per cell from its ``summary.json`` and ``rounds.jsonl``.
* :mod:`fedsim.bench.stats`, :mod:`fedsim.bench.tables`, :mod:`fedsim.bench.plots`,
  :mod:`fedsim.bench.html` — mean ± std and t-distribution CIs, ``bench.md``, PNGs, ``report.html``.
* :mod:`fedsim.bench.report` — :func:`~fedsim.bench.report.build_report`, the one function both
  commands call to (re)write the results from the files of a bench or of a single run.
"""
