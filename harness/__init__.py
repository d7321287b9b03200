"""Benchmark harness for joint search and recommendation generative retrieval."""

__version__ = "0.1.0"
