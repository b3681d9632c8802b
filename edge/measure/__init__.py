"""Measuring: `rustseg eval` (quality on labelled folders), `rustseg bench` (latency per stage),
the metrics they share, and the console progress line.
"""
