"""Deployment analysis: measurements as data, judged by pure functions (expressions, thresholds, sequential tests)."""
