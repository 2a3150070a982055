"""Fake cameras and test media, shared by the integration tests and the benchmarks."""
