"""Helpers of ``analyses/hf_models.py``: its verdict rules and figures."""
