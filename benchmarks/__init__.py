"""Benchmarks run by `python build.py bench <name>`; each module has `main(argv) -> int`."""
