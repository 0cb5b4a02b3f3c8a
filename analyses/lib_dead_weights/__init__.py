"""Helpers of analyses/dead_weights.py (figures); no command line."""
