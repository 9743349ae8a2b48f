"""``empo-export``: write a trained run's deterministic policy as a file that needs no empo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from empo.cli.common import cli_entry

DESCRIPTION = """\
Write the deterministic policy of an empo-train run (tanh of the actor's Gaussian mean, on raw
observations) as a file that any Python with torch can run, without empo:

    policy = torch.export.load("policy.pt2").module()      # --format torch-export (default)
    policy = torch.jit.load("policy.pt")                     # --format torchscript
    actions = policy(torch.as_tensor(obs, dtype=torch.float32))   # obs [batch, obs_dim]

Evaluate the file in the real env with `empo-eval FILE --task TASK`.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empo-export", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of empo-train (with config.yaml and checkpoint.pt)")
    parser.add_argument(
        "--format", choices=("torch-export", "torchscript"), default="torch-export", help="file format (default torch-export)"
    )
    parser.add_argument("--out", type=Path, help="output file (default RUN_DIR/policy.pt2, or policy.pt for torchscript)")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empo.runs import export_policy, load_run

    run = load_run(args.run_dir)
    default = args.run_dir / ("policy.pt" if args.format == "torchscript" else "policy.pt2")
    out = export_policy(run, args.out or default, args.format)
    print(
        f"wrote {out}: the deterministic policy of {run.config.algo} {run.config.task} seed {run.config.seed} "
        f"after epoch {run.epoch} (observations [B, {run.obs_dim}] -> actions [B, {run.act_dim}] in [-1, 1])"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
