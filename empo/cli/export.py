"""``empo-export``: write a trained run's deterministic policy as a file that needs no empo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from empo.cli.common import ArgumentParser, cli_entry, output_file

# empo.runs.EXPORT_FORMATS, named here so that --help does not import torch
EXPORT_FORMATS = ("torch-export", "torchscript", "onnx")
DEFAULT_NAMES = {"torch-export": "policy.pt2", "torchscript": "policy.pt", "onnx": "policy.onnx"}

DESCRIPTION = """\
Write the deterministic policy of an empo-train run (tanh of the actor's Gaussian mean, on raw
observations) as a file that any Python with torch, or with onnxruntime, can run without empo:

    policy = torch.export.load("policy.pt2").module()      # --format torch-export (default)
    policy = torch.jit.load("policy.pt")                     # --format torchscript
    actions = policy(torch.as_tensor(obs, dtype=torch.float32))   # obs [batch, obs_dim]

    session = onnxruntime.InferenceSession("policy.onnx")   # --format onnx
    actions = session.run(None, {"obs": obs.astype(np.float32)})[0]

--format onnx needs onnx, onnxscript and onnxruntime (pip install 'empo[onnx]'); the file is
checked in onnxruntime against the policy before the command ends. Evaluate any of these files in
the real env with `empo-eval FILE --task TASK`.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="empo-export", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of empo-train (with config.yaml and checkpoint.pt)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torch-export", help="file format (default torch-export)")
    parser.add_argument(
        "--out", type=Path, help="output file (default RUN_DIR/policy.pt2; policy.pt for torchscript, policy.onnx for onnx)"
    )
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empo.cli.checks import check_agent_run
    from empo.runs import export_policy, load_run

    check_agent_run(args.run_dir, "RUN_DIR")
    out = output_file(args.out or args.run_dir / DEFAULT_NAMES[args.format], "--out")
    run = load_run(args.run_dir)
    out = export_policy(run, out, args.format)
    names = " (ONNX input 'obs', output 'action')" if args.format == "onnx" else ""
    print(
        f"wrote {out}: the deterministic policy of {run.config.algo} {run.config.task} seed {run.config.seed} "
        f"after epoch {run.epoch} (observations [B, {run.obs_dim}] -> actions [B, {run.act_dim}] in [-1, 1]){names}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
