"""One-off measurements whose decision is made (loadtest/README.md says which and where the
decision is recorded). Kept runnable, not maintained as benchmarks."""
