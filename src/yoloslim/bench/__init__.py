"""Measurement: parameters, FLOPs, latency, memory, reports."""
