"""The ETM's per-member mean heads alone, trained several ways, several seeds: which way predicts
out of distribution as the quick FTM does?

Why: with one mean head per member and small sampler steps, the quick ETM's prediction is nearly
its heads' (benchmarks/results/etm-recipes-hopper-medium-cpu.md: the heads alone err about as the
sampled model does), and the one dataset where it still errs more than the quick FTM is
hopper-random. The heads' parameters are their own (their loss term trains them alone), so a head
trained without the energies for the same updates is the head of an ETM fit; that makes each try
minutes instead of 30 CPU minutes, and lets every try run on several seeds (seed to seed, errors
off the data differ up to 2x).

Each recipe trains ``--members`` heads, each on its own minibatches (batch 256, Adam 1e-3, as the
quick ETM), for ``--updates`` updates on the task's training split (the split of an ETM fit of the
same seed), and is scored as the transition-error benchmarks score a model: holdout one step, and
one step and open loop over ``--horizon`` steps on each ``--ood`` dataset, with the members'
median (what the ETM's prediction takes) and mean (what the FTM's takes). The quick FTMs of the
same seeds (the model cache's, fitted first where missing: the same fits the learning sweep uses)
are scored beside them.

    python benchmarks/archive/bench_mean_heads.py --task hopper-medium --seeds 0 1 2 \
        --ood hopper-random hopper-medium-expert hopper-expert

Results go to ``$EMPO_HOME/bench-mean-heads/TASK/results.json`` after every fit (a rerun skips
what is there) and to ``benchmarks/results/mean-heads-TASK-cpu.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from empo.data import load_transitions
from empo.data.tasks import get_task
from empo.evaluation.transition_error import multi_step_error, one_step_error
from empo.models import load_model_config
from empo.models.config import FTMConfig
from empo.models.dynamics import DynamicsModel
from empo.models.etm import mean_head_loss, mean_head_network
from empo.models.ftm import GaussianEnsemble, gaussian_nll_loss
from empo.models.layers import EnsembleLinear, MaxAbsScaler, Standardizer
from empo.models.train import _tensors, holdout_split
from empo.pipeline import cached_model
from empo.utils import atomic_write_text, device_name, empo_home, git_commit

FTM_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # the FTM's per-layer L2 (docs/method.md, "FTM")


@dataclasses.dataclass(frozen=True)
class HeadRecipe:
    about: str
    layers: int = 2
    hidden: int = 128
    activation: str = "relu"  # "relu" (the ETM's heads) or "silu" (the FTM's)
    loss: str = "mse"  # "mse": scaled targets, squared error summed over dims (the ETM's heads); "nll": the FTM's loss, raw targets
    targets: str = "maxabs"  # mse only: "maxabs" (the ETM's target scaler) or "standard" (z-scores)
    adam_decay: float = 1e-4  # Adam's coupled decay (the quick ETM's optimiser, shared with the heads)
    l2_scale: float = 0.0  # mse only: the FTM's per-layer L2 times this, added to the loss
    members: int = 0  # 0: --members
    elites: int = 0  # > 0: keep the members with the lowest holdout error, as the FTM keeps 5 of 7
    updates: int = 0  # 0: --updates


RECIPES: dict[str, HeadRecipe] = {
    "etm-heads": HeadRecipe("the ETM's per-member heads as in ens-head-neg10: 2 x 128 ReLU, max-abs targets, MSE"),
    "silu": HeadRecipe("etm-heads with SiLU (the FTM's activation)", activation="silu"),
    "standard": HeadRecipe("etm-heads on z-scored targets instead of max-abs ones", targets="standard"),
    "l2": HeadRecipe("etm-heads with the FTM's per-layer L2 in the loss (no Adam decay)", adam_decay=0.0, l2_scale=1.0),
    "l2x10": HeadRecipe("etm-heads with 10x the FTM's per-layer L2 in the loss", adam_decay=0.0, l2_scale=10.0),
    "nll": HeadRecipe("2 x 128 SiLU Gaussian heads trained by the FTM's loss (NLL, L2, raw targets); the mean predicts", activation="silu", loss="nll"),
    "nll-4x200": HeadRecipe("the FTM's own network (4 x 200 SiLU, NLL) as heads, without elites or early stopping", layers=4, hidden=200, activation="silu", loss="nll"),
    "nll-4x200-5of7": HeadRecipe("nll-4x200 with 7 members, the 5 of lowest holdout error kept, 8,000 updates: the quick FTM's fit but for its bootstrap",
                                 layers=4, hidden=200, activation="silu", loss="nll", members=7, elites=5, updates=8000),
    "etm-heads-5of7": HeadRecipe("etm-heads with 7 members, the 5 of lowest holdout error kept", members=7, elites=5),
    "etm-heads-2k": HeadRecipe("etm-heads stopped at 2,000 updates (a less tight fit)", updates=2000),
    "etm-heads-12k": HeadRecipe("etm-heads trained for 12,000 updates", updates=12000),
    "etm-heads-24k": HeadRecipe("etm-heads trained for 24,000 updates", updates=24000),
    "etm-heads-48k": HeadRecipe("etm-heads trained for 48,000 updates", updates=48000),
    "etm-heads-4x200-24k": HeadRecipe("etm-heads with the FTM's depth and width (4 x 200 ReLU), 24,000 updates", layers=4, hidden=200, updates=24000),
}


class HeadsModel(DynamicsModel):
    """Heads as a transition model: predict = the members' median or mean (``aggregate``)."""

    kind = "heads"

    def __init__(self, obs_dim: int, act_dim: int, termination: str, config: Any, recipe: HeadRecipe, members: int) -> None:
        super().__init__(obs_dim, act_dim, termination, config)
        self.recipe, self.members, self.aggregate = recipe, members, "median"
        self.register_buffer("elites", torch.arange(members))
        if recipe.loss == "nll":
            decays = list(FTM_DECAYS[: recipe.layers]) + [FTM_DECAYS[-1]]
            cfg = FTMConfig(ensemble_size=members, elites=members, hidden_size=recipe.hidden, hidden_layers=recipe.layers, weight_decays=decays)
            self.ftm_config, self.net = cfg, GaussianEnsemble(cfg, obs_dim + act_dim, self.target_dim)
            self.target_scaler: nn.Module = nn.Identity()  # the FTM's targets are raw
        else:
            self.target_scaler = MaxAbsScaler(self.target_dim) if recipe.targets == "maxabs" else Standardizer(self.target_dim)
            if recipe.activation == "relu":
                self.net = mean_head_network(obs_dim + act_dim, self.target_dim, recipe.hidden, members, recipe.layers)
            else:
                sizes = [obs_dim + act_dim] + [recipe.hidden] * recipe.layers + [self.target_dim]
                modules: list[nn.Module] = []
                for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
                    modules += [EnsembleLinear(members, a, b)] + ([nn.SiLU()] if i < recipe.layers else [])
                self.net = nn.Sequential(*modules)

    def fit_scalers(self, inputs: Tensor, targets: Tensor) -> None:
        super().fit_scalers(inputs, targets)
        if not isinstance(self.target_scaler, nn.Identity):
            self.target_scaler.fit(targets)

    def member_means(self, x: Tensor) -> Tensor:
        """Scaled inputs [M, B, in] -> each member's mean in the training targets' units [M, B, D]."""
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out

    def member_deltas(self, x: Tensor) -> Tensor:
        """Scaled inputs [M, B, in] -> each member's (Delta s, r) in raw units [M, B, D]."""
        scaled = self.member_means(x)
        return scaled if isinstance(self.target_scaler, nn.Identity) else self.target_scaler.inverse(scaled)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Scaled inputs and raw targets [M, B, *]: the summed loss of all members."""
        if self.recipe.loss == "nll":
            return gaussian_nll_loss(self.net, x, y, self.ftm_config.logvar_loss_coef)[0]
        loss = mean_head_loss(self.member_means(x), self.target_scaler(y), per_row=False)  # the quick ETM's reduction
        if self.recipe.l2_scale:
            linears = [m for m in self.net if isinstance(m, EnsembleLinear)]
            decays = list(FTM_DECAYS[: len(linears) - 1]) + [FTM_DECAYS[-1]]
            loss = loss + self.recipe.l2_scale * sum(0.5 * wd * m.weight.square().sum() for wd, m in zip(decays, linears, strict=True))
        return loss

    def predict(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        x = self.input_scaler(torch.cat([obs, act], dim=-1)).unsqueeze(0).expand(self.members, -1, -1)
        with torch.no_grad():
            delta = self.member_deltas(x)[self.elites]
        delta = delta.median(dim=0).values if self.aggregate == "median" else delta.mean(dim=0)
        return obs + delta[:, :-1], delta[:, -1]


def train_heads(recipe: HeadRecipe, task: Any, data: Any, seed: int, members: int, updates: int) -> HeadsModel:
    """Heads fitted on the training split an ETM fit of ``seed`` uses (empo/models/train.py);
    the recipe's own ``members`` and ``updates`` win over the arguments."""
    members, updates = recipe.members or members, recipe.updates or updates
    config = load_model_config("etm", "quick")
    q = data.qlearning()
    hold_index, train_index = holdout_split(len(q), config.etm, seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = _tensors(q, torch.device("cpu"))
    x_train, y_train = x[train_index], y[train_index]
    model = HeadsModel(task.obs_dim, task.act_dim, task.env.termination, config, recipe, members)
    model.fit_scalers(x_train, y_train)
    model.holdout_index = hold_index
    xs = model.input_scaler(x_train)
    optimizer = torch.optim.Adam(model.net.parameters(), lr=config.etm.lr, weight_decay=recipe.adam_decay)
    batch = config.etm.batch_size
    for _ in range(updates):
        index = torch.randint(xs.shape[0], (members, batch), generator=generator)
        loss = model.loss(xs[index], y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    if recipe.elites:  # the FTM's rule: raw-unit holdout MSE over all target dimensions
        with torch.no_grad():
            delta = model.member_deltas(model.input_scaler(x[hold_index]).unsqueeze(0).expand(members, -1, -1))
        model.elites = torch.argsort((delta - y[hold_index]).square().mean(dim=(1, 2)))[: recipe.elites].sort().values
    return model


def same_recipe(recorded: dict[str, Any], recipe: HeadRecipe) -> bool:
    """A recorded fit is this recipe's: every field equal (a field added since counts at its default)."""
    return all(recorded.get(f.name, f.default) == getattr(recipe, f.name) for f in dataclasses.fields(recipe))


def score(model: DynamicsModel, data: Any, ood: dict[str, Any], horizon: int, samples: int, starts: int) -> dict[str, float]:
    """Holdout one-step next-state MSE; per OOD dataset one-step and open-loop ``horizon`` MSE."""
    out = {"holdout": one_step_error(model, data, model.holdout_index.cpu().numpy(), max_samples=samples)["next_obs_mse"]}
    for name, other in ood.items():
        out[f"{name} 1"] = one_step_error(model, other, max_samples=samples)["next_obs_mse"]
        out[f"{name} {horizon}"] = multi_step_error(model, other, (horizon,), max_starts=starts)[horizon]["next_obs_mse"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=5, help="heads per recipe (the ETM's ensemble size)")
    parser.add_argument("--updates", type=int, default=6000, help="updates per fit (about what the ETM makes in 30 CPU min)")
    parser.add_argument("--ood", nargs="+", default=["hopper-random", "hopper-medium-expert", "hopper-expert"])
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1000, help="rows scored one step")
    parser.add_argument("--starts", type=int, default=300, help="open-loop starts per OOD dataset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-fit", action="store_true", help="fit nothing: write the report of what results.json holds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task(args.task)
    data = load_transitions(args.task)
    ood = {name: load_transitions(name) for name in args.ood}
    work = empo_home() / "bench-mean-heads" / args.task
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    setup = {"members": args.members, "updates": args.updates, "horizon": args.horizon, "samples": args.samples, "starts": args.starts}

    def save(key: str, row: dict[str, Any]) -> None:
        results[key] = row
        atomic_write_text(results_path, json.dumps(results, indent=2))

    for seed in [] if args.no_fit else args.seeds:
        key = f"quick FTM|{seed}"
        if key not in results:
            ftm, where = cached_model(load_model_config("ftm", "quick"), task, data, seed, torch.device("cpu"), progress=False)
            save(key, {"errors": {"mean": score(ftm, data, ood, args.horizon, args.samples, args.starts)}, "where": str(where)})
            print(key, results[key]["errors"], flush=True)
        for name in args.recipes:
            key = f"{name}|{seed}"
            if key in results and results[key]["setup"] == setup and same_recipe(results[key]["recipe"], RECIPES[name]):
                continue
            started = time.process_time()
            model = train_heads(RECIPES[name], task, data, seed, args.members, args.updates)
            cpu_s = time.process_time() - started
            errors = {}
            for aggregate in ("median", "mean"):
                model.aggregate = aggregate
                errors[aggregate] = score(model, data, ood, args.horizon, args.samples, args.starts)
            save(key, {"errors": errors, "cpu_s": cpu_s, "setup": setup, "recipe": dataclasses.asdict(RECIPES[name])})
            print(key, f"{cpu_s / 60:.1f} CPU min", errors, flush=True)
    write_report(args, results)
    return 0


def write_report(args: argparse.Namespace, results: dict[str, Any], out: Path | None = None) -> None:
    """The markdown table (``out``, by default benchmarks/results/mean-heads-TASK-cpu.md); hand-written
    sections after it (from the first "## " heading on) are kept."""
    columns = ["holdout"] + [f"{name} {h}" for name in args.ood for h in (1, args.horizon)]

    def ftm_mean(seeds: list[int]) -> dict[str, float] | None:
        """The quick FTMs' errors averaged over ``seeds``, None unless every one was scored."""
        rows = [results.get(f"quick FTM|{s}") for s in seeds]
        if not seeds or None in rows:
            return None
        return {c: float(np.mean([r["errors"]["mean"][c] for r in rows])) for c in columns}

    lines = [
        f"# The ETM's mean heads alone, trained several ways, {args.task}",
        "",
        f"- command: `python benchmarks/archive/bench_mean_heads.py --task {args.task} --recipes {' '.join(args.recipes)} --seeds "
        f"{' '.join(map(str, args.seeds))} --members {args.members} --updates {args.updates} --ood {' '.join(args.ood)}`",
        f"- device: {device_name(torch.device('cpu'))}, {args.threads} torch thread(s); date {date.today()}; commit {git_commit()}",
        f"- next-state MSE in raw units: holdout one step ({args.samples} rows of the seed's holdout); other datasets: one step "
        f"({args.samples} rows) and {args.horizon}-step open loop ({args.starts} starts, the dataset's actions)",
        "- each cell: the mean over the recipe's seeds (of " + ", ".join(map(str, args.seeds)) + "), then in brackets the ratio to the mean "
        "of the quick FTMs of the same seeds (below 1: the heads err less)",
        "",
        "| recipe | members' | " + " | ".join(columns) + " | CPU min per fit |",
        "|---|---|" + "---|" * len(columns) + "---|",
    ]
    all_ftms = ftm_mean(args.seeds)
    if all_ftms is not None:
        lines.append(f"| quick FTM ({len(args.seeds)} seeds) | mean of elites | " + " | ".join(f"{all_ftms[c]:.4g}" for c in columns) + " | - |")
    for name in args.recipes:
        seeds = [s for s in args.seeds if f"{name}|{s}" in results]
        fits, reference = [results[f"{name}|{s}"] for s in seeds], ftm_mean(seeds)
        if not fits:
            continue
        for aggregate in ("median", "mean"):
            cells = []
            for c in columns:
                value = float(np.mean([f["errors"][aggregate][c] for f in fits]))
                cells.append(f"{value:.4g}" + (f" ({value / reference[c]:.2f})" if reference else ""))
            cpu = float(np.mean([f["cpu_s"] for f in fits])) / 60
            lines.append(f"| {name} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}) | {aggregate} | " + " | ".join(cells) + f" | {cpu:.1f} |")
    lines += ["", "Per seed (members' median for the heads):", "", "| recipe | seed | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name in ["quick FTM", *args.recipes]:
        for s in args.seeds:
            row = results.get(f"{name}|{s}")
            if row is not None:
                errors = row["errors"]["mean" if name == "quick FTM" else "median"]
                lines.append(f"| {name} | {s} | " + " | ".join(f"{errors[c]:.4g}" for c in columns) + " |")
    lines += ["", "Recipes:", ""] + [f"- `{name}`: {RECIPES[name].about}" for name in args.recipes]
    out = out or Path(__file__).resolve().parents[1] / "results" / f"mean-heads-{args.task}-cpu.md"
    old = out.read_text() if out.is_file() else ""
    notes = old[old.index("\n## ") :] if "\n## " in old else ""  # hand-written sections after the table survive a rerun
    atomic_write_text(out, "\n".join(lines) + "\n" + notes)
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
