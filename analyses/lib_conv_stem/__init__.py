"""Helpers of analyses/conv_stem.py (figures); no command line."""
