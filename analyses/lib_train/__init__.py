"""Helpers shared by the training analyses (``trainability.py``, ``ablation.py``): the sweep
configs of a Fashion-MNIST ResNet run (:mod:`lib_train.runs`), rank statistics with bootstrap
intervals (:mod:`lib_train.stats`) and the figures (:mod:`lib_train.figures`). No command line:
the scripts own that."""
