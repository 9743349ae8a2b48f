"""``empo-report``: tables, interval estimates and learning curves over runs and sweeps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from empo.cli.common import ArgumentParser, cli_entry, output_folder

DESCRIPTION = """\
Report over run folders, sweep folders (empo-sweep) or folders of runs: per task and algorithm the
final score, the mean of the last 10 evaluations and the best epoch (mean +- std over seeds and a
bootstrap 95% interval), across tasks the IQM and optimality gap with stratified bootstrap
intervals, and a learning-curve PNG per task. Writes report.md, report.json, summary.csv, runs.csv
and curves-<task>.png into --out.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="empo-report", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="SWEEP_DIR|RUN_DIR")
    parser.add_argument("--out", type=Path, help="where the report goes (default: the first path's report/ folder)")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empo.evaluation.report import collect_runs, write_report

    out = output_folder(args.out or args.paths[0] / "report", "--out")
    records = collect_runs(args.paths)
    path = write_report(records, out)
    print(path.read_text().split("\n![")[0])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
