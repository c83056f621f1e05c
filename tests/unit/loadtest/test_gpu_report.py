"""loadtest/lib/gpu_report.py, the GPU benchmark's pure parts: nvidia-smi's per-process memory
read back, and the table's server sections (one per server, the replicas' apart, each with its
capacity search)."""

from __future__ import annotations

from typing import Any

from loadtest.lib.gpu_report import compute_apps_mib, servers


def test_gpu_memory_is_read_per_process_for_the_servers_only() -> None:
    query = "4242, 2100\n4243, 2050\n999, 512\nnot a line\n4244, [N/A]\n"
    assert compute_apps_mib(query, [4242, 4243, 4244]) == {"4242": 2100, "4243": 2050}
    assert compute_apps_mib("", [4242]) == {}


def _probe(streams: int, admitted: int, passed: bool) -> dict[str, Any]:
    return {"streams": streams, "admitted": admitted, "refused": streams - admitted,
            "ttfa_p95_ms": 90.0, "stalls": 0, "frames_per_s": 1000.0, "passed": passed,
            "server": {"event_loop_ms_per_audio_s": 0.3}}


def test_each_server_has_its_section_and_its_own_capacity_table() -> None:
    data = {
        "server_ready": {"args": ["--workers", "8"], "pids": [1], "replicas": 1},
        "capacity_200": _probe(200, 200, True), "capacity_400": _probe(400, 310, False),
        "capacity": {"largest_passing": 200, "note": "arrivals over 10 s"},
        "replicas_server_ready": {"args": ["--workers", "4"], "pids": [2, 3], "replicas": 2},
        "replicas_gpu_memory_mib": {"2": 2100, "3": 2050},
        "replicas_capacity_400": _probe(400, 400, True),
        "replicas_capacity": {"largest_passing": 400, "note": "arrivals over 10 s"},
    }
    text = "\n".join(servers(data))
    main, replicas = text.split("## Replicas sharing the GPU")
    assert "## Server\n" in main and "Server for comparison" not in main
    assert "largest passing load (0 stalls, all admitted and whole): 200 streams" in main
    assert "| 200 | 200 | 0 |" in main and "| 400 | 310 | 90 |" in main
    assert "2 processes, streams dealt round-robin" in replicas
    assert "2100 MiB, 2050 MiB (a process each)" in replicas
    assert "400 streams" in replicas and "| 400 | 400 | 0 |" in replicas
    assert "| 200 |" not in replicas
