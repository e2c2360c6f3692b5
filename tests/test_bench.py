import json
import subprocess
import sys

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
    assert result["act_latency_ms_b1_compiled_sampling"] > 0
