"""ETM sampler: next-state error against the number of Langevin steps, per start, and its cost.

For a trained ETM (and the FTM that warm-starts it), on the task's holdout: one-step next-state
MSE (raw units) and open-loop 5-step MSE along real episodes with the dataset's actions, for each
number of noiseless Langevin steps and each start:
  zeros       the published start (y = 0)
  ftm-warm    the FTM's mean prediction, refined by the ETM's sampler
  chains-4    4 chains from uniform starts, the lowest-energy last iterate
  head-warm   the ETM's own mean-regression head (an ETM fit with etm.mean_head: true), refined
Then the rollout sampler itself (the model's rollout_langevin: its noise and gradient clamp) from
zero and from the mean head, for ``--rollout-steps``: one-step MSE of one member's sample (what a
rollout transition is) and of the members' median, and the cost ratio to the FTM's step.
Also the time of one rollout step (every member sampled, batch ``--batch``) per setting, next to
the FTM's step, measured side by side in this process. Members are combined by their median, as
``ETMDynamics.predict`` does.

    python benchmarks/archive/bench_sampler_steps.py --task hopper-medium --etm DIR --ftm DIR \\
        [--steps 5 10 20 30 50 100] [--samples 1000] [--starts 200] [--batch 2500] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from empo.data import get_task, load_transitions
from empo.evaluation.transition_error import episode_window_starts
from empo.models import load_dynamics
from empo.utils import device_name, git_commit

STARTS = ("zeros", "ftm-warm", "chains-4", "head-warm")


def sampler_for(base, steps: int, start: str):
    """The noiseless sampler for ``start``, set explicitly: a model whose own evaluation sampler starts
    from its heads (quick-warm, quick-accurate) would otherwise be measured from them as "zeros"."""
    sampler = dataclasses.replace(base, steps=steps, noise=0.0, chains=1, init="zeros")  # ftm-warm: its init is passed
    if start == "chains-4":
        sampler = dataclasses.replace(sampler, chains=4, init="uniform")
    if start == "head-warm":
        sampler = dataclasses.replace(sampler, init="mean_head")
    return sampler


def etm_predict(etm, ftm, obs, act, sampler, start: str, generator) -> tuple[torch.Tensor, torch.Tensor]:
    init = None
    if start == "ftm-warm":
        next_obs, reward = ftm.predict(obs, act)
        init = torch.cat([next_obs - obs, reward.unsqueeze(-1)], dim=-1)
    delta = etm.sample_members(obs, act, sampler, generator, init=init).median(dim=0).values
    return obs + delta[:, :-1], delta[:, -1]


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    """One-step and open-loop h5 MSE against Langevin steps, one line per start (log scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for start in dict.fromkeys(r["start"] for r in rows):
        mine = [r for r in rows if r["start"] == start]
        for ax, key in zip(axes, ("one_step", "h5"), strict=True):
            ax.plot([r["steps"] for r in mine], [r[key] for r in mine], marker="o", label=start)
    for ax, label in zip(axes, ("one-step next-state MSE", "open-loop 5-step MSE"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="Langevin steps", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--etm", type=Path, required=True)
    parser.add_argument("--ftm", type=Path, required=True)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 30, 50, 100])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2500, help="rollout batch for the cost figures")
    parser.add_argument("--kinds", nargs="+", choices=STARTS, help="starts to measure (default: all the model allows)")
    parser.add_argument("--rollout-steps", type=int, nargs="+", default=[2, 5, 10],
                        help="steps of the mean-head rollout sampler (the zero start keeps the model's own)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    data = load_transitions(task.name)
    q = data.qlearning()
    etm, ftm = load_dynamics(args.etm, task), load_dynamics(args.ftm, task)
    base = etm.config.etm.eval_langevin
    hold = etm.holdout_index.cpu().numpy()[: args.samples]
    obs1, act1 = torch.as_tensor(q.observations[hold]), torch.as_tensor(q.actions[hold])
    true1 = q.next_observations[hold]
    starts = episode_window_starts(data, 5)
    starts = np.sort(np.random.default_rng(0).choice(starts, size=min(args.starts, starts.size), replace=False))
    gen_rows = np.random.default_rng(1).choice(len(q), size=args.batch, replace=False)
    obs_b, act_b = torch.as_tensor(q.observations[gen_rows]), torch.as_tensor(q.actions[gen_rows])

    @torch.no_grad()
    def ftm_step_seconds() -> float:
        ftm.step(obs_b, act_b, torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        for _ in range(3):
            ftm.step(obs_b, act_b, torch.Generator().manual_seed(0))
        return (time.perf_counter() - t0) / 3

    with torch.no_grad():
        ftm_one = float(np.mean((ftm.predict(obs1, act1)[0].numpy() - true1) ** 2))
        state = torch.as_tensor(data.observations[starts])
        for t in range(5):
            state, _ = ftm.predict(state, torch.as_tensor(data.actions[starts + t]))
    ftm_h5 = float(np.mean((state.numpy() - data.next_observations[starts + 4]) ** 2))
    ftm_s = ftm_step_seconds()

    rows = []
    started = time.time()
    kinds = args.kinds or [k for k in STARTS if k != "head-warm" or etm.mean_head is not None]
    for start in kinds:
        for steps in args.steps:
            sampler = sampler_for(base, steps, start)
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                pred, _ = etm_predict(etm, ftm, obs1, act1, sampler, start, gen)
            one = float(np.mean((pred.numpy() - true1) ** 2))
            state = torch.as_tensor(data.observations[starts])
            with torch.no_grad():
                for t in range(5):
                    state, _ = etm_predict(etm, ftm, state, torch.as_tensor(data.actions[starts + t]), sampler, start, gen)
            h5 = float(np.mean((state.numpy() - data.next_observations[starts + 4]) ** 2))
            # cost of a rollout step: every member sampled for the batch (plus the FTM for the warm start)
            rollout_sampler = dataclasses.replace(sampler, noise=etm.config.etm.rollout_langevin.noise)
            t0 = time.perf_counter()
            with torch.no_grad():
                etm_predict(etm, ftm, obs_b, act_b, rollout_sampler, start, gen)
            seconds = time.perf_counter() - t0
            row = {"start": start, "steps": steps, "one_step": one, "h5": h5, "step_s": seconds, "vs_ftm": seconds / ftm_s}
            rows.append(row)
            print(row, flush=True)

    # the rollout sampler as the loop runs it: noisy, one member's sample per transition
    rollout_rows = []
    rollout_base = etm.config.etm.rollout_langevin
    settings = [("zeros", rollout_base.steps)]
    if etm.mean_head is not None:
        settings += [("head-warm", k) for k in args.rollout_steps]
    for start, steps in settings:
        sampler = dataclasses.replace(rollout_base, steps=steps, init="mean_head" if start == "head-warm" else "zeros")
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            members = etm.sample_members(obs1, act1, sampler, gen)  # [M, B, D]
        one_member = float(np.mean((obs1.numpy() + members[0, :, :-1].numpy() - true1) ** 2))
        median = float(np.mean((obs1.numpy() + members.median(dim=0).values[:, :-1].numpy() - true1) ** 2))
        spread = float(members[..., :-1].std(dim=0).norm(dim=-1).mean())  # the loop's penalty, raw units
        t0 = time.perf_counter()
        with torch.no_grad():
            etm.sample_members(obs_b, act_b, sampler, gen)
        seconds = time.perf_counter() - t0
        rollout_rows.append({"start": start, "steps": steps, "member": one_member, "median": median, "penalty": spread,
                             "step_s": seconds, "vs_ftm": seconds / ftm_s})
        print(rollout_rows[-1], flush=True)

    lines = [
        f"# ETM sampler: error against Langevin steps, {task.name}",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- device: {device_name()}, torch threads {args.threads}; date {time.strftime('%Y-%m-%d')}; commit {git_commit()}",
        f"- ETM {args.etm}, FTM {args.ftm}; noiseless sampler with the model's evaluation settings "
        f"(gradient clamp {base.grad_clip}, step sizes {base.step_size_start} -> {base.step_size_end}) except steps and start",
        f"- one-step: {len(hold)} holdout rows; h5: {len(starts)} starts along real episodes with the dataset's actions",
        f"- cost: one rollout step on {args.batch} dataset rows (all {etm.members} members; the warm start includes the "
        f"FTM's prediction), seconds, and its ratio to the FTM's rollout step ({ftm_s * 1000:.1f} ms) measured in this process",
        f"- FTM alone: one-step {ftm_one:.4g}, h5 {ftm_h5:.4g}; total time {time.time() - started:.0f} s",
        "",
        "| start | steps | one-step MSE | open-loop h5 MSE | rollout step s | x FTM step |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['start']} | {r['steps']} | {r['one_step']:.4g} | {r['h5']:.4g} | {r['step_s']:.3f} | {r['vs_ftm']:.1f} |"
        )
    if rollout_rows:
        lines += [
            "",
            f"Rollout sampler (noise {rollout_base.noise}, gradient clamp {rollout_base.grad_clip}), one-step on the same "
            "holdout rows: one member's sample, the members' median, the mean penalty (norm of the members' std of the "
            "next state), and the cost of a rollout step:",
            "",
            "| start | steps | one member MSE | median MSE | mean penalty | rollout step s | x FTM step |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['start']} | {r['steps']} | {r['member']:.4g} | {r['median']:.4g} | {r['penalty']:.3f} | "
                  f"{r['step_s']:.3f} | {r['vs_ftm']:.1f} |" for r in rollout_rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        plot_curves(rows, args.out.with_suffix(".png"), f"ETM sampler on {task.name}: error against Langevin steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
