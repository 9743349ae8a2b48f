"""Reports over runs: per task and algorithm, across tasks, and learning curves (``empo-report``).

Per (task, algorithm, preset): the dataset's own score (its episodes' mean, from run.json: what
the agent should beat), the final policy's score over its final evaluation (50 episodes by
default, ``training.final_eval_episodes``), the last epoch's score, the mean of the last 10 epochs'
evaluations and the best epoch (normalised scores), each as mean +- std over seeds
with a bootstrap 95% interval of the mean, the number of seeds and the wall time. Across tasks,
per algorithm: the interquartile mean (IQM) and the optimality gap of the final scores (divided by
100) with stratified bootstrap intervals (seeds resampled within each task), the estimators of
rliable (Agarwal et al., 2021; docs/method.md "Offline RL score"). Learning curves: one PNG per
task, normalised score against SAC updates, mean over seeds and a bootstrap band, a line per
algorithm. Each run says which dataset it used (run.json).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empo.errors import EmpoError
from empo.evaluation.stats import spearman
from empo.utils import git_commit

# Published D4RL v2 scores of peers (OfflineRL-Kit's README, 4 seeds, 3M updates; docs/method.md
# "Reference scores"): at their own budgets and on D4RL's v2 envs, shown beside, never compared as equal.
PUBLISHED: dict[str, dict[str, str]] = {
    "halfcheetah-medium": {"MOPO": "72.4 +- 4.2", "COMBO": "71.9 +- 8.5", "MOBILE": "75.8 +- 0.8"},
    "hopper-medium": {"MOPO": "62.8 +- 38.1", "COMBO": "84.7 +- 9.3", "MOBILE": "103.6 +- 1.0"},
    "walker2d-medium": {"MOPO": "84.1 +- 3.2", "COMBO": "83.9 +- 2.0", "MOBILE": "88.3 +- 2.5"},
    "halfcheetah-medium-replay": {"MOPO": "72.1 +- 3.8", "COMBO": "66.5 +- 6.5", "MOBILE": "71.9 +- 3.2"},
    "hopper-medium-replay": {"MOPO": "92.7 +- 20.7", "COMBO": "90.1 +- 25.2", "MOBILE": "105.1 +- 1.3"},
    "walker2d-medium-replay": {"MOPO": "85.9 +- 5.3", "COMBO": "89.4 +- 6.4", "MOBILE": "90.5 +- 1.7"},
    "halfcheetah-medium-expert": {"MOPO": "83.6 +- 12.5", "COMBO": "98.2 +- 0.2", "MOBILE": "100.9 +- 1.5"},
    "hopper-medium-expert": {"MOPO": "74.6 +- 44.2", "COMBO": "108.8 +- 2.6", "MOBILE": "112.5 +- 0.2"},
    "walker2d-medium-expert": {"MOPO": "108.2 +- 4.3", "COMBO": "110.0 +- 0.2", "MOBILE": "114.5 +- 2.2"},
}

SCORES = ("final_eval_normalized_score", "final_normalized_score", "last10_mean_normalized_score", "best_normalized_score",
          "last_policy_eval_normalized_score")


def describe_scores(summary: dict[str, Any]) -> str:
    """A run's normalised scores in one phrase, named as reports name them: "final" is the finished
    policy over its final evaluation (``training.final_eval_episodes``), never an epoch's few episodes."""

    def fmt(value: Any) -> str:
        value = _finite_or_none(value)
        return "n/a" if value is None else f"{value:.1f}"

    episodes = (summary.get("final_eval") or {}).get("episodes")
    final = f"final {fmt(summary.get('final_eval_normalized_score'))}" + (f" ({episodes} episodes)" if episodes else "")
    chosen = summary.get("final_policy") or {}
    if chosen.get("rule", "last") != "last":  # training.final_policy: the final policy is an earlier epoch's
        final += (f" (the policy of epoch {chosen.get('epoch')}, chosen by its model return; the last epoch's policy "
                  f"{fmt(summary.get('last_policy_eval_normalized_score'))})")
    return (
        f"{final}, last epoch {fmt(summary.get('final_normalized_score'))}, "
        f"last-10 {fmt(summary.get('last10_mean_normalized_score'))}, best {fmt(summary.get('best_normalized_score'))}"
    )


@dataclass
class RunRecord:
    run_dir: Path
    task: str
    algo: str
    preset: str
    seed: int
    status: str
    summary: dict[str, Any]
    updates: np.ndarray
    scores: np.ndarray
    dataset: str
    dataset_score: float | None = None  # the dataset's own normalised score (run.json; runs before 2026-11-27 lack it)
    settings: dict[str, Any] = field(default_factory=dict)  # _run_settings: what makes the run what it is, seed aside
    # the last 10 epochs' mean of each diagnostic (progress.csv's diag_* columns; runs before 2026-12-06 have none)
    diagnostics: dict[str, float] = field(default_factory=dict)
    # score_tracking: which signals of the loop rank the epochs' policies as their real evaluations do
    tracking: dict[str, float] = field(default_factory=dict)


def run_table(
    records: list[RunRecord], field_name: str, columns: tuple[tuple[str, str], ...], number: str, caption: str,
    formats: dict[str, str] | None = None,
) -> list[str]:
    """A markdown table of one row per run that has ``field_name`` (a dict of figures by column), under
    ``caption``; each figure formatted with ``number`` unless ``formats`` names its column."""
    formats = formats or {}
    shown = [r for r in records if getattr(r, field_name)]
    if not shown:
        return []
    lines = ["", caption, "", "| task | algorithm | seed | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for r in sorted(shown, key=lambda r: (r.task, r.algo, r.seed)):
        figures = getattr(r, field_name)
        cells = [formats.get(c, number).format(figures[c]) if c in figures else "n/a" for _, c in columns]
        lines.append(f"| {r.task} | {r.algo} | {r.seed} | " + " | ".join(cells) + " |")
    return lines


# The diagnostics a report shows (empo/loop/diagnostics.py; docs/training.md, "Diagnostics"), by column
REPORTED_DIAGNOSTICS: tuple[tuple[str, str], ...] = (
    ("model return", "diag_model_return"), ("real return", "diag_real_return"), ("gap", "diag_exploitation_gap"),
    ("model length", "diag_model_length"), ("real length", "diag_real_length"), ("Q start", "diag_q_start"),
    ("real discounted", "diag_real_discounted_return"), ("penalty / reward", "diag_penalty_to_reward"),
    ("penalty / data's", "diag_penalty_vs_data"),
)


def _run_settings(run_dir: Path) -> dict[str, Any]:
    """The run's settings but its seed (empo.loop.config.run_settings, and its model's,
    empo.models.config.model_settings), from config.yaml and model_config.yaml, with the defaults of
    keys added since the run filled in; a config of an older version that no longer loads is taken
    as written."""
    from empo.config import flatten, from_dict, load_yaml
    from empo.loop.config import config_from_dict, run_settings
    from empo.models.config import ModelConfig, model_settings

    settings: dict[str, Any] = {}
    config_path, model_path = run_dir / "config.yaml", run_dir / "model_config.yaml"
    if config_path.is_file():
        data = load_yaml(config_path)
        try:
            settings.update(run_settings(config_from_dict(data, where=str(config_path))))
        except EmpoError:
            settings.update({k: v for k, v in flatten(data).items() if not k.startswith("runtime.")})
        settings.pop("seed", None)
    if model_path.is_file():
        data = load_yaml(model_path)
        try:
            model = model_settings(from_dict(ModelConfig, data, where=str(model_path)))
        except EmpoError:
            model = flatten(data)
        settings.update({f"model:{k}": v for k, v in model.items()})
    return settings


def split_by_settings(records: list[RunRecord], shown: int = 3) -> list[str]:
    """Runs of one task, algorithm and preset whose settings differ are not seeds of one thing: each
    such run's ``algo`` gets the differing settings, e.g. ``empo [empo.penalty_coef=0.5]``, so that
    they are grouped apart. Returns one note per split group."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[(record.task, record.algo, record.preset)].append(record)
    notes = []
    missing = object()
    for (task, algo, preset), group in sorted(groups.items()):
        keys = sorted({k for r in group for k in r.settings})
        differing = [k for k in keys if len({repr(r.settings.get(k, missing)) for r in group}) > 1]
        if not differing:
            continue
        for record in group:
            values = [f"{k}={record.settings.get(k, '(unset)')}" for k in differing[:shown]]
            more = f", +{len(differing) - shown} more" if len(differing) > shown else ""
            record.algo = f"{algo} [{', '.join(values)}{more}]"
        notes.append(f"{task} {algo} ({preset}): its runs differ in {', '.join(differing)}; reported apart")
    return notes


def _read_run(run_dir: Path) -> RunRecord:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EmpoError(f"{run_dir / 'summary.json'}: cannot read it ({exc})") from None
    updates, scores = [], []
    diag_rows: list[dict[str, str]] = []
    progress = run_dir / "progress.csv"
    if progress.is_file():
        with progress.open(newline="") as f:
            reader = csv.DictReader(f)
            missing_columns = {"updates", "normalized_score"} - set(reader.fieldnames or [])
            if missing_columns:
                raise EmpoError(f"{progress}: no column {', '.join(sorted(missing_columns))} (not a progress table of empo-train?)")
            for row in reader:
                updates.append(float(row["updates"]))
                scores.append(float(row["normalized_score"]) if row["normalized_score"] not in ("", "nan") else math.nan)
                diag_rows.append(row)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    missing = [k for k in ("task", "algo", "preset", "seed", "status") if k not in summary]
    if missing:
        raise EmpoError(f"{run_dir / 'summary.json'}: missing {', '.join(missing)} (not a run of empo-train?)")
    # runs of another agent (empo-train --agent) are their own group, never pooled with the built-in SAC's
    agent = summary.get("agent", "sac")
    algo = summary["algo"] if agent == "sac" else f"{summary['algo']} ({agent})"
    return RunRecord(
        run_dir, summary["task"], algo, summary["preset"], int(summary["seed"]), summary["status"], summary,
        np.asarray(updates), np.asarray(scores), str(info.get("dataset_source", "unknown")),
        _finite_or_none(info.get("dataset_normalized_score")), _run_settings(run_dir), last_diagnostics(diag_rows),
        score_tracking(diag_rows),
    )


def last_diagnostics(rows: list[dict[str, str]], last: int = 10) -> dict[str, float]:
    """The mean over the last ``last`` epochs that measured it of each reported diagnostic column."""
    out = {}
    for _, column in REPORTED_DIAGNOSTICS:
        values = [float(r[column]) for r in rows if r.get(column) not in (None, "", "nan")]
        values = [v for v in values if math.isfinite(v)][-last:]
        if values:
            out[column] = float(np.mean(values))
    return out


# The loop's own estimates of the current policy that a report ranks against its real evaluations, by column
TRACKING_SIGNALS: tuple[tuple[str, str], ...] = (
    ("model return ~ score", "diag_model_penalised_return"), ("Q start ~ score", "diag_q_start"),
)


def score_tracking(rows: list[dict[str, str]], skip: float = 0.1, minimum: int = 10) -> dict[str, float]:
    """Spearman's correlation over epochs between the real score and each of ``TRACKING_SIGNALS``.

    Read together: when the model's (penalised) return of each epoch's policy from the data's start
    states ranks the epochs as the real evaluations do and Q of those states does not, the critic is
    the weak link (it cannot tell apart policies that the model can); when neither does, the model
    cannot either. The first ``skip`` of the epochs (the warm-up, where everything rises together)
    are left out; fewer than ``minimum`` usable epochs give no figure. Also ``epochs``: how many
    epochs the figures rest on (docs/training.md, "Diagnostics").
    """
    rows = rows[int(len(rows) * skip):]
    out: dict[str, float] = {}
    for _, column in TRACKING_SIGNALS:
        pairs = [(float(r["normalized_score"]), float(r[column])) for r in rows
                 if r.get(column) not in (None, "", "nan") and r.get("normalized_score") not in (None, "", "nan")]
        pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
        if len(pairs) >= minimum:
            score, signal = np.array(pairs).T
            out[column] = spearman(score, signal)
            out["epochs"] = float(len(pairs))
    return out


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def dataset_score(records: list[RunRecord]) -> float | None:
    """The data's own score of these runs, from those that recorded it; None when none did or when they
    ran on different data (a local build and a D4RL file, say), which no one number describes."""
    known = {round(r.dataset_score, 6) for r in records if r.dataset_score is not None}
    return known.pop() if len(known) == 1 else None


def runs_without_results(sweep_dir: Path) -> list[tuple[str, str, str]]:
    """(run id, status, error) of the runs a sweep folder's index lists that have no summary yet."""
    index_path = sweep_dir / "sweep.json"
    if not index_path.is_file():
        return []
    try:
        runs = json.loads(index_path.read_text()).get("runs", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    return [
        (str(r.get("run_id")), str(r.get("status", "?")), str(r.get("error") or ""))
        for r in runs
        if isinstance(r, dict) and not (sweep_dir / str(r.get("run_id")) / "summary.json").is_file()
    ]


def collect_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Runs from sweep folders (their sweep.json), run folders, or folders holding run folders."""
    records: list[RunRecord] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise EmpoError(f"{path}: no such folder")
        if (path / "summary.json").is_file():
            folders = [path]
        else:
            folders = sorted(p for p in path.iterdir() if (p / "summary.json").is_file()) if path.is_dir() else []
            without = runs_without_results(path)
            for run_id, status, error in without:  # a sweep's failed or unstarted runs are said, not dropped
                print(f"note: {path.name}/{run_id} has no results ({status}{': ' + error if error else ''})")
            if not folders:
                what = f"a sweep folder whose {len(without)} runs have no results yet" if without else "no runs here"
                raise EmpoError(f"{path}: {what} (expected a run folder, a sweep folder or folders of runs)")
        for folder in folders:
            if folder.resolve() in seen:  # given twice (a sweep and one of its runs): counted once, not as another seed
                print(f"note: {folder} was given more than once; it counts once")
                continue
            seen.add(folder.resolve())
            records.append(_read_run(folder))
    for note in split_by_settings(records):
        print(f"note: {note}")
    return records


def bootstrap_mean_interval(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def iqm(values: np.ndarray) -> float:
    """Mean of the middle 50% of the values (rliable's IQM: trim 25% at each end)."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(values)
    cut = int(math.floor(0.25 * n))
    kept = values[cut : n - cut] if n - 2 * cut > 0 else values
    return float(kept.mean())


def optimality_gap(values: np.ndarray, gamma: float = 1.0) -> float:
    """Mean shortfall below ``gamma`` (scores already divided by 100): mean(max(gamma - x, 0))."""
    return float(np.mean(np.maximum(gamma - np.asarray(values, dtype=np.float64), 0.0)))


def stratified_interval(per_task: list[np.ndarray], statistic, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of ``statistic`` over all runs, resampling runs within each task."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        sample = np.concatenate([task[rng.integers(0, len(task), len(task))] for task in per_task])
        values.append(statistic(sample))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def summarize(records: list[RunRecord]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[(record.task, record.algo, record.preset)].append(record)
    rows = []
    for (task, algo, preset), group in sorted(groups.items()):
        # a run still going (or stopped part way) has scores of a shorter run: they are not pooled with
        # the finished runs' but said with the epoch it reached (its curve is in the plots)
        done = [r for r in group if r.status == "finished"]
        row: dict[str, Any] = {"task": task, "algo": algo, "preset": preset, "seeds": len(group),
                               "finished": len(done),
                               "unfinished_epochs": sorted(int(r.summary.get("epochs") or 0) for r in group if r.status != "finished"),
                               "datasets": sorted({r.dataset for r in group}),
                               "dataset_score": dataset_score(group),
                               "wall_time_h": float(np.mean([r.summary.get("wall_time_s", 0.0) for r in done] or [math.nan])) / 3600}
        for key in SCORES:
            values = np.asarray([r.summary.get(key) for r in done if r.summary.get(key) is not None], dtype=np.float64)
            row[key] = {
                "mean": float(values.mean()) if len(values) else math.nan,
                "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                "ci95": bootstrap_mean_interval(values),
                "n": int(len(values)),
            }
        rows.append(row)
    return rows


def aggregate(records: list[RunRecord]) -> dict[str, dict[str, Any]]:
    """Per algorithm and preset, across tasks: IQM and optimality gap of final scores / 100 (the final
    evaluation's where the run has one, else the last epoch's), over finished runs only."""
    out: dict[str, dict[str, Any]] = {}
    by_algo: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.status != "finished":
            continue
        final = r.summary.get("final_eval_normalized_score")
        final = r.summary.get("final_normalized_score") if final is None else final
        if final is not None:
            by_algo[f"{r.algo} ({r.preset})"][r.task].append(final / 100.0)
    for name, tasks in sorted(by_algo.items()):
        per_task = [np.asarray(v) for v in tasks.values()]
        everything = np.concatenate(per_task)
        out[name] = {
            "tasks": len(per_task), "runs": int(len(everything)),
            "iqm": iqm(everything), "iqm_ci95": stratified_interval(per_task, iqm),
            "optimality_gap": optimality_gap(everything), "optimality_gap_ci95": stratified_interval(per_task, optimality_gap),
        }
    return out


def curve_label(name: str, runs: list[RunRecord]) -> str:
    """"empo (quick), 3 seeds (1 unfinished)": a curve of runs still going is shorter and says so."""
    unfinished = sum(r.status != "finished" for r in runs)
    return f"{name}, {len(runs)} seed{'s' if len(runs) > 1 else ''}" + (f" ({unfinished} unfinished)" if unfinished else "")


def learning_curves(records: list[RunRecord], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task in sorted({r.task for r in records}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in sorted({f"{r.algo} ({r.preset})" for r in records if r.task == task}):
            runs = [r for r in records if r.task == task and f"{r.algo} ({r.preset})" == name and len(r.scores)]
            if not runs:
                continue
            length = min(len(r.scores) for r in runs)
            scores = np.stack([r.scores[:length] for r in runs])
            mean = np.nanmean(scores, axis=0)
            line = ax.plot(runs[0].updates[:length], mean, label=curve_label(name, runs))[0]
            if len(runs) > 1:
                rng = np.random.default_rng(0)
                boot = np.stack([np.nanmean(scores[rng.integers(0, len(runs), len(runs))], axis=0) for _ in range(500)])
                ax.fill_between(runs[0].updates[:length], np.percentile(boot, 2.5, 0), np.percentile(boot, 97.5, 0),
                                color=line.get_color(), alpha=0.2)
        data = dataset_score([r for r in records if r.task == task])
        if data is not None:
            ax.axhline(data, color="grey", linestyle="--", linewidth=1, label=f"data ({data:.1f})")
        ax.set_xlabel("SAC updates")
        ax.set_ylabel("normalised score")
        ax.set_title(task)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"curves-{task}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def seeds_note(row: dict[str, Any]) -> str:
    """"2 finished" or "1 finished; 1 at epoch 39" for the seeds column."""
    note = f"{row['finished']} finished"
    epochs = row["unfinished_epochs"]
    if epochs:
        note += f"; {len(epochs)} at epoch {', '.join(map(str, epochs))}"
    return note


def hours(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def write_report(records: list[RunRecord], out_dir: str | Path) -> Path:
    """report.md, summary.csv, runs.csv and curves-<task>.png into ``out_dir``; returns the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, across = summarize(records), aggregate(records)
    with (out_dir / "runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_dir", "task", "algo", "preset", "seed", "status", *SCORES, "wall_time_s", "dataset",
                         "dataset_normalized_score"])
        for r in records:
            writer.writerow([r.run_dir, r.task, r.algo, r.preset, r.seed, r.status, *(r.summary.get(k) for k in SCORES),
                             r.summary.get("wall_time_s"), r.dataset, r.dataset_score])
    with (out_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "algo", "preset", "seeds", "dataset_normalized_score",
                         *[f"{k}_{s}" for k in SCORES for s in ("mean", "std", "ci_low", "ci_high")]])
        for row in rows:
            writer.writerow([row["task"], row["algo"], row["preset"], row["seeds"], row["dataset_score"],
                             *[v for k in SCORES for v in (row[k]["mean"], row[k]["std"], *row[k]["ci95"])]])
    curves = learning_curves(records, out_dir)

    def cell(stat: dict[str, Any]) -> str:
        if stat["n"] == 0:
            return "n/a"
        low, high = stat["ci95"]
        interval = "" if math.isnan(low) else f" [{low:.1f}, {high:.1f}]"
        spread = "" if math.isnan(stat["std"]) else f" +- {stat['std']:.1f}"
        return f"{stat['mean']:.1f}{spread}{interval}"

    lines = [
        "# Report",
        "",
        f"- {len(records)} runs; written {time.strftime('%Y-%m-%d %H:%M')}, commit {git_commit()}",
        "- scores are D4RL-normalised returns of the deterministic policy; **final** = the finished policy over its",
        "  final evaluation (50 episodes by default), **last epoch** = the last epoch's evaluation (5-10 episodes),",
        "  **last-10** = the mean of the last 10 epochs' evaluations, **best** = the best epoch (optimistic);",
        "  mean +- std over seeds, [bootstrap 95% interval of the mean]; scores and wall time of finished runs only",
        "  (a run still going is counted under seeds with the epoch it reached; its curve is in the plots)",
        "- datasets: " + "; ".join(sorted({r.dataset for r in records})) + " (a local build uses gymnasium v5 envs: "
        "not the D4RL v2 benchmark that published scores use)",
        "- **data** = the dataset's own score (the mean normalised return of its episodes): the behaviour an offline",
        "  agent should beat",
        "- runs of one task, algorithm and preset whose settings differ are reported apart, the algorithm named with",
        "  the settings that differ (`empo [empo.penalty_coef=0.5]`)",
        "",
    ]
    # runs with training.final_policy best_model_return finish with an earlier epoch's policy: the last
    # epoch's policy over the same final episodes goes beside it
    chosen = any(row["last_policy_eval_normalized_score"]["n"] for row in rows)
    if chosen:
        lines[-1:-1] = ["- **last policy** = the last epoch's policy over the same final episodes, where the run finishes with",
                        "  the policy of the epoch it chose by model return (training.final_policy, docs/training.md)"]
    lines += [
        "| task | algorithm | preset | seeds | data | final |" + (" last policy |" if chosen else "")
        + " last epoch | last-10 | best | wall time h |",
        "|---|---|---|---|---|---|" + ("---|" if chosen else "") + "---|---|---|---|",
    ]
    for row in rows:
        data = "n/a" if row["dataset_score"] is None else f"{row['dataset_score']:.1f}"
        lines.append(
            f"| {row['task']} | {row['algo']} | {row['preset']} | {row['seeds']} ({seeds_note(row)}) | {data} | "
            f"{cell(row['final_eval_normalized_score'])} | "
            + (f"{cell(row['last_policy_eval_normalized_score'])} | " if chosen else "")
            + f"{cell(row['final_normalized_score'])} | "
            f"{cell(row['last10_mean_normalized_score'])} | "
            f"{cell(row['best_normalized_score'])} | {hours(row['wall_time_h'])} |"
        )
    peers = [task for task in sorted({r.task for r in records}) if task in PUBLISHED]
    if peers:
        lines += ["", "Published figures, D4RL v2 at 3M updates (OfflineRL-Kit's README; another benchmark and budget: "
                  "for orientation, not a like-for-like comparison):", "", "| task | MOPO | COMBO | MOBILE |", "|---|---|---|---|"]
        lines += [f"| {task} | " + " | ".join(PUBLISHED[task][m] for m in ("MOPO", "COMBO", "MOBILE")) + " |" for task in peers]
    lines += ["", "Across tasks (final scores / 100 of finished runs; stratified bootstrap 95% intervals):", "",
              "| algorithm | tasks | runs | IQM | optimality gap |", "|---|---|---|---|---|"]
    for name, a in across.items():
        lines.append(
            f"| {name} | {a['tasks']} | {a['runs']} | {a['iqm']:.3f} [{a['iqm_ci95'][0]:.3f}, {a['iqm_ci95'][1]:.3f}] | "
            f"{a['optimality_gap']:.3f} [{a['optimality_gap_ci95'][0]:.3f}, {a['optimality_gap_ci95'][1]:.3f}] |"
        )
    lines += run_table(
        records, "diagnostics", REPORTED_DIAGNOSTICS, "{:.3g}",
        "Diagnostics, mean of each run's last 10 measured epochs (docs/training.md, \"Diagnostics\"): the policy "
        "rolled out in the model from the data's episode starts against its real episodes over the same steps, "
        "Q of the start states against the real discounted return, the penalty's share of the raw reward and "
        "its size against the model's penalty on the data:")
    lines += run_table(
        records, "tracking", (("epochs", "epochs"), *TRACKING_SIGNALS), "{:.2f}",
        "What tracks the score, epoch by epoch: Spearman's correlation over each run's epochs (the first 10% "
        "left out) between the real evaluation and the model's penalised return of the same policy from the "
        "data's start states, and Q of those states. A model that tracks the score while Q does not is a critic "
        "that cannot tell apart the policies the model can (docs/training.md, \"Diagnostics\"):",
        formats={"epochs": "{:.0f}"})
    lines += ["", *[f"![{p.stem}]({p.name})" for p in curves], ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    (out_dir / "report.json").write_text(json.dumps({"groups": rows, "across_tasks": across}, indent=2, default=str) + "\n")
    return path
