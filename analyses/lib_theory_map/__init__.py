"""Helpers of ``analyses/theory_map.py``: where training fails against the depth scale ξ_c."""
