"""The proxy accuracy study (``benchmarks/proxy_accuracy.py``): presets,
runs as loss x optimiser pairs, paired statistics."""
