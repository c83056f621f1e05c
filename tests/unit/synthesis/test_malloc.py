"""Whose malloc settings stand: glibc's environment is the operator's (synthesis/workers.py)."""

from litestream.synthesis import workers


def test_glibc_malloc_settings_in_the_environment_are_the_operators() -> None:
    assert workers.malloc_set_by_operator({"PATH": "/bin"}) is None
    assert workers.malloc_set_by_operator({"MALLOC_ARENA_MAX": "2"}) == "MALLOC_ARENA_MAX"
    assert workers.malloc_set_by_operator({"MALLOC_TRIM_THRESHOLD_": "0"}) == (
        "MALLOC_TRIM_THRESHOLD_")
    assert workers.malloc_set_by_operator(
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.rtld.nns=4"}) == "GLIBC_TUNABLES"
    assert workers.malloc_set_by_operator({"GLIBC_TUNABLES": "glibc.rtld.nns=4"}) is None
    assert workers.malloc_set_by_operator({"MALLOC_PERTURB_": "7"}) is None  # debugging only
