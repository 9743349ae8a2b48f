"""The GPU benchmark script's CPU smoke mode: every section runs and writes its figures."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_cpu_smoke_writes_every_figure(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks" / "gpu"))
    sys.modules.pop("bench_gpu", None)
    import bench_gpu

    assert bench_gpu.main(["--cpu-smoke", "--out-dir", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["profile"] == "smoke" and not figures["errors"]
    assert figures["sac"]["ours_updates_per_s"] > 0 and figures["sac"]["sb3_updates_per_s"] > 0
    langevin = {(r["sampler"], r["gradient"]) for r in figures["langevin"]["rows"]}
    assert langevin == {(s, g) for s in ("rollout_langevin", "eval_langevin") for g in ("analytic", "compiled", "autograd")}
    assert all(r["tflops"] > 0 for r in figures["langevin"]["rows"])
    assert {r["gradient"] for r in figures["etm_train"]["rows"]} == {"analytic", "compiled", "autograd"}
    for algo in ("empo", "mopo"):
        assert figures["loop"][algo]["time_epoch"] > 0
    assert figures["loop"]["empo"]["penalty_at"] == "update"
    assert figures["projection"]["empo_total_hours_without_eval"] > 0
    warm = figures["warm"]["rows"]
    assert {(r["what"], "published" in r["sampler"]) for r in warm} == {
        (what, published) for what in ("rollout step", "ETM training step") for published in (True, False)
    }
    assert all(r["seconds"] > 0 for r in warm) and figures["warm"]["ftm_step_seconds"] > 0
    fqe = figures["fqe"]
    assert fqe["policies"] == 12 and fqe["ratio"] > 0 and fqe["together"]["policy_updates_per_s"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "SAC updates/s" in report and "Langevin sampler" in report and "whole paper-preset run" in report and "Warm-started chains" in report
    assert "## FQE: 12 policies" in report
