"""Metric providers: router counters, process resources, business metrics and Prometheus, as analysis input."""
