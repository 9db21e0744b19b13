"""Benchmark scripts: latency, accuracy, distillation cost, and the report that joins them."""
