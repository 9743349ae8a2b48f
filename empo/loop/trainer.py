"""The EMPO/MOPO training loop: rollouts into the model buffer, SAC on mixed batches, evaluation.

One epoch = ``steps_per_epoch`` SAC updates, with a model rollout every ``rollout.every`` updates
(at the start of each epoch with the published settings), then an evaluation in the real env,
logs and an atomic checkpoint. The hot loop (sampling, updates, rollouts) stays on the device;
the host reads the accumulated metrics once an epoch, which is also when the divergence guard
looks for NaN or inf.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empo.config import save_yaml
from empo.data.tasks import Task, get_task
from empo.errors import EmpoError
from empo.evaluation.dashboard import score_tag
from empo.evaluation.policy_eval import NonFiniteActionError
from empo.loop.agents import AgentContext, LoopAgent, build_agent
from empo.loop.buffers import TransitionBuffer
from empo.loop.config import TrainConfig
from empo.loop.diagnostics import DATA_PENALTY_ROWS, DIAGNOSTICS, data_penalty, empty_row, model_return
from empo.loop.graphed import apply_tf32, check_runtime, sync_debug
from empo.loop.penalty import Penalty
from empo.loop.rollout import rollout
from empo.models.dynamics import Dynamics, check_dynamics
from empo.recorder import RunRecorder
from empo.threads import ThreadCounter, flush_denormals

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
UPDATE_METRICS: tuple[str, ...] = (
    "critic_loss",
    "actor_loss",
    "alpha_loss",
    "alpha",
    "q1_mean",
    "q2_mean",
    "target_q_mean",
    "entropy",
    "penalty_in_target",
)
ROLLOUT_METRICS: tuple[str, ...] = (
    "mean_length",
    "terminated_fraction",
    "penalty_mean",
    "penalty_max",
    "raw_reward_mean",
    "penalised_reward_mean",
)
CSV_COLUMNS: tuple[str, ...] = (
    "epoch",
    "updates",
    "eval_return",
    "eval_return_std",
    "normalized_score",
    "normalized_score_std",
    "eval_length",
    *UPDATE_METRICS,
    *(f"rollout_{name}" for name in ROLLOUT_METRICS),
    "model_buffer_size",
    *(f"diag_{name}" for name in DIAGNOSTICS),
    "time_rollout",
    "time_update",
    "time_eval",
    "time_epoch",
    "wall_time",
)


def real_buffer_from_dataset(data: dict[str, torch.Tensor], device: torch.device) -> TransitionBuffer:
    """The real buffer: the qlearning transitions (``Transitions.qlearning().to_tensors()``)."""
    keys = ("observations", "actions", "rewards", "next_observations", "terminals")
    missing = [key for key in keys if key not in data]
    if missing:
        raise EmpoError(f"dataset tensors lack {', '.join(missing)}")
    if int(data["observations"].shape[0]) == 0:
        raise EmpoError("the dataset has no transitions to train on")
    return TransitionBuffer.from_tensors({key: data[key] for key in keys}, device)


class Trainer:
    """Runs (or resumes) one training run in ``run_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: dict[str, torch.Tensor],
        model: Dynamics,
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        task: Task | None = None,
        evaluator: Any | None = None,
        progress: bool = True,
        log: Callable[[str], Any] = print,
        threads: ThreadCounter | None = None,
        start_observations: torch.Tensor | None = None,
    ) -> None:
        self.config = config
        self.task = task or get_task(config.task)
        self.device = torch.device(device)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.evaluator = evaluator
        self.progress = progress
        self.log = log
        self.threads = threads  # re-counts the free CPU cores before every epoch (empo/threads.py)
        self._check_model_shapes()
        check_runtime(config.runtime, self.device)
        apply_tf32(config.runtime, self.device)
        flush_denormals()  # decayed weights of dead units slow CPU arithmetic many times (empo/threads.py)

        self.real_buffer = real_buffer_from_dataset(dataset, self.device)
        self.model_buffer = TransitionBuffer(
            config.model_buffer_capacity, self.task.obs_dim, self.task.act_dim, self.device
        )
        # separate streams so that changing one consumer (e.g. the rollout batch) leaves the others' draws alone
        self.sample_generator = torch.Generator(device=self.device)
        self.sample_generator.manual_seed(config.seed * 7919 + 11)
        self.rollout_generator = torch.Generator(device=self.device)
        self.rollout_generator.manual_seed(config.seed * 7919 + 23)
        self.diag_generator = torch.Generator(device=self.device)  # the diagnostics' own: they change no draw of the run
        self.diag_generator.manual_seed(config.seed * 7919 + 37)
        self._setup_diagnostics(dataset, start_observations)
        if config.rollout.episode_starts > 0:  # the starts of rollout.episode_starts (do_rollout)
            if start_observations is None or not len(start_observations):
                raise EmpoError("rollout.episode_starts needs the data's episode-start states, and this dataset gives none")
            self.episode_start_obs = start_observations.to(self.device, torch.float32)
        try:  # where and how the model's uncertainty meets the reward
            self.penalty = Penalty.of(config.algorithm, self.data_penalty_mean)
        except ValueError as exc:
            raise EmpoError(f"{config.algo}: {exc}") from None

        self.epoch = 0  # epochs completed
        self.updates = 0
        self.best_score = -math.inf
        self.best_return = -math.inf
        self.scores: list[float] = []
        self.wall_time = 0.0
        self.last_rollout_stats: dict[str, float] = {name: float("nan") for name in ROLLOUT_METRICS}
        self.status = "running"
        self.final_eval: dict[str, Any] | None = None
        # training.final_policy best_model_return: the chosen epoch's agent state, kept until the end
        self.selected: dict[str, Any] | None = None
        self.selection_applied = False
        self.last_policy_eval: dict[str, Any] | None = None
        self.recorder = RunRecorder(self.run_dir, "progress.csv", CSV_COLUMNS, CHECKPOINT)  # CSV, TensorBoard, checkpoint
        # the learner (empo/loop/agents.py): it draws its mixed batches from the two buffers and
        # adds its update metrics into metric_sums
        self.metric_sums = torch.zeros(len(UPDATE_METRICS), device=self.device)
        self.agent: LoopAgent = build_agent(AgentContext(
            config, self.task, self.device, self.real_buffer, self.model_buffer, self.sample_generator, self.penalty,
            UPDATE_METRICS, self.metric_sums, log,
        ))
        self.reported = [name in self.agent.metric_names for name in UPDATE_METRICS]

    # ------------------------------------------------------------------------------------ setup
    def _setup_diagnostics(self, dataset: dict[str, torch.Tensor], start_observations: torch.Tensor | None) -> None:
        """The start states the diagnostics roll out from (episode starts of the data when given,
        else dataset states), the model's mean penalty on the data and the Q bound max(reward) / (1 - gamma)."""
        cfg = self.config.diagnostics
        pick = torch.Generator().manual_seed(self.config.seed * 7919 + 41)
        pool = start_observations if start_observations is not None and len(start_observations) else dataset["observations"]
        index = torch.randperm(int(pool.shape[0]), generator=pick)[: cfg.start_states]
        self.diag_start_obs = pool[index.to(pool.device)].to(self.device, torch.float32)
        # the model's mean penalty on the data, once (its unit with penalty_unit: data; the diagnostics'
        # reference); its own generator, so that a resumed run measures the same value
        data_index = torch.randperm(int(dataset["observations"].shape[0]), generator=pick)[:DATA_PENALTY_ROWS].to(self.device)
        fixed = torch.Generator(device=self.device).manual_seed(self.config.seed * 7919 + 43)
        needed = cfg.start_states > 0 or self.config.algorithm.penalty_unit == "data"
        self.data_penalty_mean = data_penalty(self.model, dataset["observations"][data_index].to(self.device),
                                              dataset["actions"][data_index].to(self.device), fixed) if needed else float("nan")
        self.q_bound = float(dataset["rewards"].max()) / max(1.0 - self.config.sac.gamma, 1e-8)

    def diagnostics(self, evaluation: Any | None) -> dict[str, float]:
        """The epoch's diagnostics (empo/loop/diagnostics.py); NaN where they are off or lack an input."""
        cfg = self.config.diagnostics
        row = empty_row()
        if cfg.start_states == 0 or (self.epoch + 1) % cfg.every != 0:  # self.epoch: epochs before this one
            return row
        policy = lambda obs: self.agent.act(obs, deterministic=True)  # noqa: E731
        row.update(model_return(self.model, policy, self.diag_start_obs, cfg.horizon, self.penalty, self.diag_generator,
                                q_function=self.agent.q_value))
        with torch.no_grad():
            row["q_start"] = float(self.agent.q_value(self.diag_start_obs, policy(self.diag_start_obs)).mean())
        row["q_bound"] = self.q_bound
        stats = self.last_rollout_stats
        raw, penalised = stats["raw_reward_mean"], stats["penalised_reward_mean"]
        row["penalty_to_reward"] = (raw - penalised) / abs(raw) if raw else float("nan")
        if self.data_penalty_mean > 0:  # NaN or 0: nothing to compare with
            row["data_penalty_mean"] = self.data_penalty_mean
            row["penalty_vs_data"] = stats["penalty_mean"] / self.data_penalty_mean
        if evaluation is not None and evaluation.prefix_returns is not None:
            row["real_return"] = float(np.mean(evaluation.prefix_returns))
            row["real_length"] = float(np.mean(evaluation.prefix_lengths))
            row["real_discounted_return"] = float(np.mean(evaluation.discounted_returns))
            row["exploitation_gap"] = row["model_return"] - row["real_return"]
        return row

    def _check_model_shapes(self) -> None:
        check_dynamics(self.model, self.task, where="the transition model")

    @property
    def checkpoint_path(self) -> Path:
        return self.recorder.checkpoint_path

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "updates": self.updates,
            "best_score": self.best_score,
            "best_return": self.best_return,
            "scores": list(self.scores),
            "wall_time": self.wall_time,
            "last_rollout_stats": dict(self.last_rollout_stats),
            "agent": self.agent.state_dict(),
            "model_buffer": self.model_buffer.state_dict(),
            "sample_generator": self.sample_generator.get_state(),
            "rollout_generator": self.rollout_generator.get_state(),
            "diag_generator": self.diag_generator.get_state(),
            "selected": self.selected,
            "selection_applied": self.selection_applied,
            "last_policy_eval": self.last_policy_eval,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        model_generator = getattr(self.model, "generator", None)
        if isinstance(model_generator, torch.Generator):
            state["model_generator"] = model_generator.get_state()
        return state

    def save_checkpoint(self) -> None:
        self.recorder.save_checkpoint(self.state_dict())

    def load_checkpoint(self) -> None:
        state = self.recorder.load_checkpoint(map_location=self.device)
        path = self.checkpoint_path
        if state.get("version") != CHECKPOINT_VERSION:
            raise EmpoError(f"{path}: checkpoint version {state.get('version')}, expected {CHECKPOINT_VERSION}")
        self.agent.load_state_dict(state["agent"])
        self.model_buffer.load_state_dict(state["model_buffer"])
        self.sample_generator.set_state(state["sample_generator"].cpu())
        self.rollout_generator.set_state(state["rollout_generator"].cpu())
        if "diag_generator" in state:  # checkpoints from before the diagnostics have none
            self.diag_generator.set_state(state["diag_generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        model_generator = getattr(self.model, "generator", None)
        if "model_generator" in state and isinstance(model_generator, torch.Generator):
            model_generator.set_state(state["model_generator"].cpu())
        self.epoch = int(state["epoch"])
        self.updates = int(state["updates"])
        self.best_score = float(state["best_score"])
        self.best_return = float(state["best_return"])
        self.scores = [float(s) for s in state["scores"]]
        self.wall_time = float(state["wall_time"])
        self.last_rollout_stats = dict(state["last_rollout_stats"])
        self.selected = state.get("selected")  # checkpoints from before training.final_policy have none
        self.selection_applied = bool(state.get("selection_applied", False))
        self.last_policy_eval = state.get("last_policy_eval")
        self.recorder.resume_after(self.epoch, self.updates)  # TensorBoard's step is the update count
        summary_path = self.run_dir / "summary.json"
        if summary_path.is_file():  # a finished run's final evaluation is not run twice
            try:
                self.final_eval = json.loads(summary_path.read_text()).get("final_eval")
            except json.JSONDecodeError:
                self.final_eval = None

    # ---------------------------------------------------------------------------------- logging
    def _write_row(self, row: dict[str, Any]) -> None:
        self.recorder.log_row(row)

    def summary(self) -> dict[str, Any]:
        def finite_or_none(x: float) -> float | None:
            return x if math.isfinite(x) else None

        last10 = self.scores[-10:]
        return {
            "task": self.config.task,
            "algo": self.config.algo,
            "agent": self.config.agent,
            "seed": self.config.seed,
            "preset": self.config.preset,
            "status": self.status,
            "epochs": self.epoch,
            "epochs_planned": self.config.training.epochs,
            "updates": self.updates,
            "final_normalized_score": finite_or_none(self.scores[-1]) if self.scores else None,
            "best_normalized_score": finite_or_none(self.best_score),
            "last10_mean_normalized_score": finite_or_none(float(np.mean(last10))) if last10 else None,
            "best_return": finite_or_none(self.best_return),
            "wall_time_s": round(self.wall_time, 3),
            "device": str(self.device),
            # the model's mean raw penalty on the data, and the coefficient the run applies to the raw penalty
            "data_penalty_mean": finite_or_none(self.data_penalty_mean),
            "penalty_coef_applied": self.penalty.coef,
            # the finished policy over training.final_eval_episodes episodes: the figure to report
            "final_eval_normalized_score": self.final_eval["normalized_score"] if self.final_eval else None,
            "final_eval": self.final_eval,
            "final_policy": self.final_policy_info(),
            # with training.final_policy best_model_return: the last epoch's policy over the same episodes
            "last_policy_eval_normalized_score": self.last_policy_eval["normalized_score"] if self.last_policy_eval else None,
            "last_policy_eval": self.last_policy_eval,
        }

    def write_summary(self) -> None:
        self.recorder.write_summary(self.summary())

    def write_config(self) -> None:
        save_yaml(self.config.to_dict(), self.run_dir / "config.yaml")

    # ------------------------------------------------------------------------------------ phases
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def do_rollout(self) -> dict[str, torch.Tensor]:
        """Roll the policy out in the model into the model buffer; the statistics are the data-state rollouts'."""
        cfg = self.config.rollout
        generator = self.rollout_generator

        def roll_into_buffer(start_obs: torch.Tensor, horizon: int) -> dict[str, torch.Tensor]:
            result = rollout(self.model, lambda obs: self.agent.act(obs, generator=generator), start_obs, horizon=horizon,
                             penalty=self.penalty, generator=generator, q_function=self.agent.q_value)
            self.model_buffer.add(result.transitions)
            return result.stats

        index = torch.randint(0, len(self.real_buffer), (cfg.start_states,), device=self.device, generator=generator)
        stats = roll_into_buffer(self.real_buffer.storage["observations"][index], self.config.algorithm.horizon)
        if cfg.episode_starts > 0:  # longer rollouts from where real episodes begin (not published)
            pick = torch.randint(0, len(self.episode_start_obs), (cfg.episode_starts,), device=self.device, generator=generator)
            roll_into_buffer(self.episode_start_obs[pick], cfg.episode_horizon)
        return stats

    def run_epoch(self) -> dict[str, Any]:
        """One epoch; returns the CSV row. Raises EmpoError when a loss or model output is not finite."""
        cfg = self.config
        every = cfg.rollout.every
        metric_sums = self.metric_sums
        metric_sums.zero_()
        rollout_sums = torch.zeros(len(ROLLOUT_METRICS), device=self.device)
        nonfinite_model = torch.zeros((), device=self.device)
        rollouts = 0
        time_rollout = 0.0
        epoch_start = time.perf_counter()
        remaining = cfg.training.steps_per_epoch
        while remaining > 0:
            if self.updates % every == 0:
                self._sync()
                t0 = time.perf_counter()
                stats = self.do_rollout()
                rollout_sums += torch.stack([stats[name].float() for name in ROLLOUT_METRICS])
                nonfinite_model += stats["nonfinite_outputs"]
                rollouts += 1
                self._sync()
                time_rollout += time.perf_counter() - t0
            steps = min(remaining, every - self.updates % every)  # the updates up to the next rollout
            with sync_debug(cfg.runtime.sync_debug):
                self.agent.train(steps)
            self.updates += steps
            remaining -= steps
        self.agent.end_epoch()
        # the one host read of the epoch: metrics and the divergence guard together
        host = torch.cat([metric_sums, rollout_sums, nonfinite_model.reshape(1)]).cpu()
        time_update = time.perf_counter() - epoch_start - time_rollout
        means = host[: len(UPDATE_METRICS)] / cfg.training.steps_per_epoch
        means[~torch.tensor(self.reported)] = float("nan")  # metrics the agent does not report
        bad = [name for name, value, reported in zip(UPDATE_METRICS, means.tolist(), self.reported, strict=True)
               if reported and not math.isfinite(value)]
        nonfinite_outputs = int(host[-1])
        if nonfinite_outputs or not all(math.isfinite(v) for v in host[len(UPDATE_METRICS) : -1].tolist()):
            bad.append(f"model outputs ({nonfinite_outputs} non-finite values in rollouts)")
        if bad:
            self._diverged(bad)
        if rollouts:
            rollout_means = (host[len(UPDATE_METRICS) : -1] / rollouts).tolist()
            self.last_rollout_stats = dict(zip(ROLLOUT_METRICS, rollout_means, strict=True))

        t0 = time.perf_counter()
        eval_return = eval_return_std = score = score_std = eval_length = float("nan")
        result = None
        if self.evaluator is not None and cfg.training.eval_episodes > 0:
            try:
                result = self.evaluator.evaluate(
                    lambda obs: self.agent.act(obs, deterministic=True), seed=cfg.seed * 1_000_000 + self.epoch * 1000,
                    gamma=cfg.sac.gamma, prefix_steps=cfg.diagnostics.horizon,
                )
            except NonFiniteActionError as exc:  # a policy with non-finite weights: the run diverged
                self._diverged([f"policy actions (episode {exc.episode}, step {exc.step} of the evaluation)"])
            eval_return, eval_return_std = result.mean_return, result.std_return
            score, score_std, eval_length = result.mean_score, result.std_score, result.mean_length
        diagnostics = self.diagnostics(result)
        time_eval = time.perf_counter() - t0
        time_epoch = time.perf_counter() - epoch_start
        self.epoch += 1
        self.wall_time += time_epoch
        self._consider_for_final_policy(diagnostics["model_penalised_return"])
        self.scores.append(score)
        if math.isfinite(score) and score > self.best_score:
            self.best_score = score
        if math.isfinite(eval_return) and eval_return > self.best_return:
            self.best_return = eval_return
        row: dict[str, Any] = {
            "epoch": self.epoch,
            "updates": self.updates,
            "eval_return": eval_return,
            "eval_return_std": eval_return_std,
            "normalized_score": score,
            "normalized_score_std": score_std,
            "eval_length": eval_length,
            **dict(zip(UPDATE_METRICS, means.tolist(), strict=True)),
            **{f"rollout_{name}": value for name, value in self.last_rollout_stats.items()},
            "model_buffer_size": len(self.model_buffer),
            **{f"diag_{name}": value for name, value in diagnostics.items()},
            "time_rollout": time_rollout,
            "time_update": time_update,
            "time_eval": time_eval,
            "time_epoch": time_epoch,
            "wall_time": self.wall_time,
        }
        return row

    def _diverged(self, bad: list[str]) -> None:
        self.status = "diverged"
        kept = (
            f"the last good checkpoint (epoch {self.epoch}) is kept in {self.checkpoint_path}"
            if self.checkpoint_path.is_file()
            else "no checkpoint had been written yet"
        )
        summary = self.summary()
        summary["diverged_in_epoch"] = self.epoch + 1
        summary["non_finite"] = bad
        self.recorder.write_summary(summary)
        raise EmpoError(
            f"training diverged in epoch {self.epoch + 1}: non-finite {', '.join(bad)}; {kept}. "
            "Try a larger penalty coefficient, a shorter horizon or another seed"
        )

    def _log_tensorboard(self, row: dict[str, Any]) -> None:
        """Every CSV figure but the counters, tagged ``group/name`` without repeating the group
        (``rollout/mean_length``); the step is the number of SAC updates, so runs with different
        epoch lengths line up."""
        groups = {
            "eval": ("eval_return", "eval_return_std", "normalized_score", "normalized_score_std", "eval_length"),
            "sac": UPDATE_METRICS,
            "rollout": tuple(f"rollout_{name}" for name in ROLLOUT_METRICS) + ("model_buffer_size",),
            "diag": tuple(f"diag_{name}" for name in DIAGNOSTICS),
            "time": ("time_rollout", "time_update", "time_eval", "time_epoch", "wall_time"),
        }
        scalars = {f"{group}/{name.removeprefix(group + '_')}": row[name] for group, names in groups.items() for name in names}
        # the score once more under a tag naming the run's task, algorithm and preset: TensorBoard's charts
        # pick tags, not runs, by regex, so this is what groups a sweep's seeds (empo/evaluation/dashboard.py)
        cfg = self.config
        scalars[score_tag(cfg.task, cfg.algo, cfg.preset, cfg.agent)] = row["normalized_score"]
        self.recorder.log_scalars(scalars, step=row["updates"])

    # ---------------------------------------------------------------------------------- the run
    def run(self, stop_after_epochs: int | None = None) -> dict[str, Any]:
        """Train until ``training.epochs`` (or ``stop_after_epochs`` more epochs); returns the summary."""
        from tqdm.auto import tqdm

        total = self.config.training.epochs
        target = total if stop_after_epochs is None else min(total, self.epoch + stop_after_epochs)
        self.write_config()
        bar = tqdm(total=total, initial=self.epoch, disable=not self.progress, desc=f"{self.config.algo} {self.config.task}", unit="epoch")
        try:
            while self.epoch < target:
                if self.threads is not None:
                    self.threads.update()
                row = self.run_epoch()
                self._write_row(row)
                self._log_tensorboard(row)
                if self.epoch >= total:
                    self.status = "finished"
                self.save_checkpoint()
                self.write_summary()
                postfix = {"score": f"{row['normalized_score']:.1f}", "return": f"{row['eval_return']:.0f}"}
                if self.best_score > -math.inf:
                    postfix["best"] = f"{self.best_score:.1f}"
                bar.set_postfix(postfix)
                bar.update(1)
        finally:
            bar.close()
            self.recorder.close()
        if self.epoch >= total:
            self.status = "finished"
            self._apply_final_policy()
            self._final_evaluation()
            self.write_summary()
            self._log_hparams()
        return self.summary()

    def _log_hparams(self) -> None:
        """The run's main settings and final figures as TensorBoard hparams (compare runs by config)."""
        cfg, algo, summary = self.config, self.config.algorithm, self.summary()
        hparams = {
            "task": cfg.task, "algo": cfg.algo, "agent": cfg.agent, "preset": cfg.preset, "seed": cfg.seed,
            "model_kind": algo.model_kind,
            "model_preset": cfg.model.preset, "horizon": algo.horizon, "penalty_coef": algo.penalty_coef,
            "penalty_at": algo.penalty_at, "penalty_decay": algo.penalty_decay, "real_ratio": cfg.training.real_ratio,
            "epochs": cfg.training.epochs, "start_states": cfg.rollout.start_states,
        }
        metrics = {f"hparams/{key}": summary[key] for key in (
            "final_eval_normalized_score", "final_normalized_score", "last10_mean_normalized_score", "best_normalized_score"
        ) if summary.get(key) is not None}
        try:
            self.recorder.log_hparams(hparams, metrics)
        finally:
            self.recorder.close()

    # --------------------------------------------------------------------------- the final policy
    def _consider_for_final_policy(self, model_penalised_return: float) -> None:
        """training.final_policy best_model_return: keep the agent of the epoch just finished if its
        policy's penalised model return (the diagnostics') is the best from final_policy_from on."""
        if self.config.training.final_policy != "best_model_return" or self.epoch < self._final_policy_first_epoch():
            return
        if not math.isfinite(model_penalised_return):
            return
        if self.selected is None or model_penalised_return > self.selected["model_penalised_return"]:
            self.selected = {"epoch": self.epoch, "model_penalised_return": float(model_penalised_return),
                             "agent": copy.deepcopy(self.agent.state_dict())}

    def final_policy_info(self) -> dict[str, Any]:
        """Which epoch's policy the run finishes with, and why (summary.json's ``final_policy``)."""
        rule = self.config.training.final_policy
        if rule == "last" or self.selected is None:
            return {"rule": rule, "epoch": self.epoch, **({"note": "no epoch with a finite model return to choose from"}
                                                          if rule != "last" and self.epoch >= self.config.training.epochs else {})}
        return {"rule": rule, "epoch": self.selected["epoch"], "model_penalised_return": self.selected["model_penalised_return"],
                "from_epoch": self._final_policy_first_epoch()}

    def _final_policy_first_epoch(self) -> int:
        """The first epoch training.final_policy may choose: the one after final_policy_from x epochs."""
        return int(self.config.training.final_policy_from * self.config.training.epochs) + 1

    def _apply_final_policy(self) -> None:
        """Load the chosen epoch's agent for the final evaluation and the checkpoint that export and
        empo-eval read, after evaluating the last epoch's policy over the same episodes (once)."""
        if self.selected is None or self.selection_applied:
            return
        if self.selected["epoch"] != self.epoch:  # else the last policy is the chosen one: one evaluation serves both
            self.last_policy_eval = self._evaluate_final_episodes()
            self.agent.load_state_dict(self.selected["agent"])
        self.selection_applied = True
        self.save_checkpoint()

    def _evaluate_final_episodes(self) -> dict[str, Any] | None:
        """The acting policy over ``training.final_eval_episodes`` episodes, the same episodes every time."""
        episodes = self.config.training.final_eval_episodes
        if episodes <= 0 or self.config.training.eval_episodes <= 0:
            return None
        from empo.evaluation.policy_eval import PolicyEvaluator

        evaluator = PolicyEvaluator(self.task, episodes, self.device)
        try:
            result = evaluator.evaluate(lambda obs: self.agent.act(obs, deterministic=True), seed=self.config.seed * 1_000_000 + 999_000)
        finally:
            evaluator.close()
        return {
            "episodes": episodes,
            "return": result.mean_return,
            "return_std": result.std_return,
            "normalized_score": result.mean_score,
            "normalized_score_std": result.std_score,
            "length": result.mean_length,
        }

    def _final_evaluation(self) -> None:
        """The finished policy over ``training.final_eval_episodes`` episodes (once; runs that evaluate)."""
        if self.final_eval is None:
            self.final_eval = self._evaluate_final_episodes()
        if self.selection_applied and self.last_policy_eval is None:  # the rule chose the last epoch
            self.last_policy_eval = self.final_eval
