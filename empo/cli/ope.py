"""``empo-ope``: off-policy evaluation of a suite of policies with learned models and FQE."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from empo.cli.common import (
    ArgumentParser,
    add_device_argument,
    add_seed_argument,
    add_threads_argument,
    cli_entry,
    int_range,
    output_folder,
    start_threads,
)
from empo.config import MODEL_PRESETS
from empo.errors import EmpoError
from empo.utils import named_path

DESCRIPTION = """\
Estimate the value of each policy from the task's dataset alone, and compare with its true value
(DOPE protocol, docs/method.md "Off-policy evaluation"): true value = mean discounted return
(gamma 0.995) of real episodes; estimators: the policies rolled out in the ETM and in the FTM
(deterministic prediction; --sample for sampled transitions too), and fitted Q evaluation (FQE).
Metrics over the suite: absolute error of min-max normalised values, Spearman and Pearson
correlation, regret@1 (and @5 with 5+ policies), with bootstrap 95% intervals over policies.

Models come from --model-dir, else from the model cache (the one empo-train uses), fit first with
--preset when none is cached. Writes values.csv, metrics.json, report.md and scatter.png into --out.
"""

EPILOG = """\
policies (--policies, any mix): suite (the env's shipped suite of graded policies, with cached true
values; empo-data suite builds one); random; an empo-train run folder; a file of empo-export (.pt2,
TorchScript, .onnx); a behaviour actor (.pt of empo-data train-behaviour, e.g. its suite/ folder);
a stable-baselines3 SAC .zip; a folder of such files.

examples:
  empo-ope --task halfcheetah-medium --policies suite --preset quick
  empo-ope --task hopper-medium --policies random empo/data/policies/hopper-medium.pt runs/my-run
  empo-ope --task hopper-medium --policies ~/.empo/behaviour/hopper/suite --estimators etm fqe --preset quick
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="empo-ope", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", required=True, help="the dataset the estimators learn from, e.g. hopper-medium")
    parser.add_argument("--policies", nargs="+", required=True, metavar="POLICY", help="the suite (see below)")
    parser.add_argument(
        "--estimators", nargs="+", default=["etm", "ftm", "fqe"], choices=("etm", "ftm", "fqe"), help="default: all three"
    )
    parser.add_argument(
        "--preset", choices=MODEL_PRESETS, default="quick", help="model preset to fit (default quick; quick-warm, quick-accurate: docs/models.md)"
    )
    parser.add_argument(
        "--model-dir", action="append", default=[], type=named_path("etm=DIR or ftm=DIR"), metavar="KIND=DIR", help="use this trained model, e.g. etm=runs/models/x (repeatable)"
    )
    parser.add_argument("--sample", action="store_true", help="also estimate with sampled model transitions (model.step)")
    parser.add_argument("--episodes", type=int_range(1, 1000), default=10, help="real episodes per policy for the true value (default 10)")
    parser.add_argument("--starts", type=int_range(1, 100_000), default=10, help="dataset initial states per policy for model rollouts (default 10)")
    parser.add_argument("--horizon", type=int_range(1, 100_000), default=1000, help="model rollout length (default 1000)")
    parser.add_argument("--fqe-steps", type=int_range(1, 10**8), default=20_000, help="FQE updates per policy (default 20,000)")
    parser.add_argument("--fqe-no-layer-norm", action="store_true",
                        help="FQE's Q networks without LayerNorm (before 2026-12-07 the default; those fits diverged on walker2d-medium)")
    parser.add_argument("--fqe-tau", type=float, default=0.005,
                        help="FQE's target network step toward Q each update (default 0.005; 0.05 with --fqe-lr 1e-3 settles "
                             "in 10-15k updates on walker2d-medium but ranks hopper's and halfcheetah's suites worse: "
                             "docs/evaluation.md)")
    parser.add_argument("--fqe-lr", type=float, default=3e-4, help="FQE's Adam learning rate (default 3e-4)")
    add_seed_argument(parser, help="seed of the episodes, start states, FQE and the models")
    add_device_argument(parser)
    add_threads_argument(parser)
    parser.add_argument("--out", "--run-dir", dest="out", type=Path, help="output folder (default runs/ope-<task>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empo.evaluation.ope_run import OPEConfig, run_ope

    model_dirs: dict[str, Path] = {}
    for kind, folder in args.model_dir:
        if kind not in ("etm", "ftm"):
            raise EmpoError(f"--model-dir {kind}={folder}: expected etm=DIR or ftm=DIR")
        model_dirs[kind] = folder
    config = OPEConfig(
        task=args.task, policies=[str(p) for p in args.policies], estimators=list(args.estimators), preset=args.preset,
        model_dirs=model_dirs, sample=args.sample, episodes=args.episodes, starts=args.starts, horizon=args.horizon,
        fqe_steps=args.fqe_steps, fqe_layer_norm=not args.fqe_no_layer_norm, fqe_tau=args.fqe_tau, fqe_lr=args.fqe_lr,
        seed=args.seed,
    )
    out = output_folder(args.out or Path("runs") / f"ope-{args.task}-{time.strftime('%Y%m%d-%H%M%S')}", "--out")
    threads = start_threads(args.threads)
    result = run_ope(config, out, device=args.device, progress=not args.no_progress, threads=threads)
    print(result.table())
    print(f"wrote {out}/values.csv, metrics.json, report.md, scatter.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
