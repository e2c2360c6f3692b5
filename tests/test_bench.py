import json
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRED = ("device", "settings", "faithful_updates_per_s", "optimized_updates_per_s", "cached_updates_per_s",
            "act_latency_ms_b1", "act_throughput_b256", "peak_rss_mb")


def test_expo_bench_json_quick_prints_the_required_keys():
    # A subprocess: the bench changes process-wide settings (allocator, threads).
    out = subprocess.run([sys.executable, "-m", "expo_sdk.cli", "bench", "--json", "--quick", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out)
    for key in REQUIRED:
        assert key in result, key
    assert result["device"] == "cpu" and result["settings"]["preset"] == "quick"
    assert [p["path"] for p in result["ladder"]][0] == "faithful"
    for key in REQUIRED[2:]:
        assert result[key] > 0, key
    paths = [p["path"] for p in result["ladder"]]
    # the quick preset always runs the bf16-sampling path (elsewhere only where bf16 has hardware)
    assert "optimized + bf16 base sampling (approximate)" in paths
    assert result["bf16_sampling_s_per_update"] > 0
    # the compiled paths compiled and ran (a failure would be listed, not raised)
    assert result["failed_paths"] == {}
    assert paths[-3:] == ["cached + compiled critic scoring", "optimized + compiled base sampling",
                          "optimized + compiled base sampling + compiled critic"]
    assert result["compiled_critic_s_per_update"] > 0
    assert result["compiled_sampling_s_per_update"] > 0 and result["compiled_sampling_and_critic_s_per_update"] > 0
    assert result["act_latency_ms_b1_compiled_sampling"] > 0 and result["act_latency_ms_b1_compiled_acting"] > 0


PAIRED = Path(__file__).resolve().parents[1] / "benchmarks" / "paired_speed.py"


def test_paired_bench_times_each_path_in_turn_with_the_faithful_one():
    out = subprocess.run([sys.executable, "-m", "expo_sdk.cli", "bench", "--paired", "--json", "--quick",
                          "--repeats", "2", "--threads", "1", "--paths", "optimized,cached_compiled"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out)
    assert result["preset"] == "quick" and result["rounds"] == 2
    assert set(result["first_update_s"]) == {"faithful", "optimized", "cached_compiled"}
    faithful = result["faithful_runs_s"]
    assert len(faithful) == 2 and all(t > 0 for t in faithful) and result["faithful_act_ms_b1"] > 0
    for name in ("optimized", "cached_compiled"):
        path = result[name]
        assert len(path["runs_s"]) == 2 and path["act_ms_b1"] > 0
        # each round's ratio pairs that round's faithful update with the path's update
        for f, o, ratio in zip(faithful, path["runs_s"], path["vs_faithful_per_round"]):
            assert ratio == pytest.approx(f / o, rel=0.02, abs=0.01)
        spread = path["vs_faithful"]
        assert spread["min"] <= spread["median"] <= spread["max"]


def test_paired_speed_rejects_an_unknown_path_by_name():
    # benchmarks/paired_speed.py is the same harness behind its own options
    run = subprocess.run([sys.executable, str(PAIRED), "--quick", "--paths", "optimized,turbo"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "turbo" in run.stderr and "cached_compiled" in run.stderr
    run = subprocess.run([sys.executable, "-m", "expo_sdk.cli", "bench", "--paired", "--device", "cuda"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--paired times CPU paths only" in run.stderr
