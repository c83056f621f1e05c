"""The GPU run: an offline bundle of wheels for a CUDA host, and the benchmark run there."""
