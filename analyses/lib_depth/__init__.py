"""Helpers of ``analyses/depth.py``: the sweep grids (:mod:`lib_depth.grids`), the summaries and
the verdict rule (:mod:`lib_depth.summary`) and the figures (:mod:`lib_depth.figures`)."""
