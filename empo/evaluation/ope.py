"""Off-policy evaluation (OPE): a policy's value estimated from the dataset alone, against its true value.

Protocol (DOPE, as docs/method.md "Off-policy evaluation" states it): for a suite of policies of
graded quality, the true value is the mean discounted return (gamma 0.995) of real episodes from
the env's own initial states; each estimator gives its own value per policy; the metrics compare
the two over the suite (:func:`ope_metrics`).

Estimators share one interface, ``estimate(policies) -> values``:

- :class:`ModelEstimator`: the policies rolled out in a learned model (ETM, FTM or any
  ``empo.models.Dynamics``) from the dataset's episode-initial states, all policies in one batch
  on the device, with the task's termination rule, next states and rewards clipped to the data's
  range widened by 10% (as the authors' code does), discounted, up to ``horizon`` steps;
- :class:`FQE`: fitted Q evaluation, hand-written on the device: a Q network for each fixed
  policy trained on the dataset with TD targets from a slowly-moving target network; value = mean
  Q(s0, pi(s0)) over initial states.

Another estimator (importance sampling, a new model) is one more class with ``name`` and ``estimate``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from empo.data.tasks import Task
from empo.data.transitions import Transitions
from empo.errors import EmpoError
from empo.evaluation.stats import pearson, rank, spearman  # noqa: F401 (rank: part of this module's API)
from empo.models.dynamics import Dynamics
from empo.models.termination import get_termination_fn

GAMMA = 0.995
PolicyFn = Callable[[Tensor], Tensor]


@dataclass
class OPEPolicy:
    """A deterministic policy on raw observations ([B, obs_dim] -> [B, act_dim] in [-1, 1])."""

    name: str
    act: PolicyFn
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    reset: Callable[[], None] | None = None  # a stateful policy's restart (random actions), before each use


class Estimator(Protocol):
    name: str

    def estimate(self, policies: Sequence[OPEPolicy]) -> np.ndarray: ...


# ------------------------------------------------------------------------------------ policies
class _UniformRandom(nn.Module):
    def __init__(self, act_dim: int, seed: int = 0) -> None:
        super().__init__()
        self.act_dim, self.seed = act_dim, seed
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        """Back to the first draw: every estimator (and the true value) sees the same random actions."""
        self.generator.manual_seed(self.seed)

    def forward(self, obs: Tensor) -> Tensor:
        return (torch.rand(obs.shape[0], self.act_dim, generator=self.generator) * 2 - 1).to(obs.device)


class _BehaviourActor(nn.Module):
    """A behaviour-training actor (empo-data train-behaviour) acting deterministically."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.actor.mu(self.actor.latent_pi(obs)))


class _SB3Policy:
    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, obs: Tensor) -> Tensor:
        actions, _ = self.model.predict(obs.detach().cpu().numpy(), deterministic=True)
        return torch.as_tensor(actions, dtype=torch.float32, device=obs.device)


def _on_cpu(module: nn.Module) -> PolicyFn:
    """Run a CPU policy module on observations from any device, without autograd."""

    def act(obs: Tensor) -> Tensor:
        with torch.no_grad():
            return module(obs.detach().to("cpu", torch.float32)).to(obs.device)

    return act


def load_policy(spec: str | Path, task: Task) -> list[OPEPolicy]:
    """The policies named by ``spec``: ``suite`` (the env's shipped suite); ``random``; an empo-train run folder; a folder of policy files;
    a file of empo-export (.pt2, TorchScript, .onnx); a behaviour actor of ``empo-data train-behaviour``
    (``.pt`` with ``state_dict`` and ``meta``, as the shipped ones); a stable-baselines3 ``.zip``.
    Each is checked to take ``task``'s observations and give its actions (one-line error otherwise).
    """
    from empo.data.behaviour import load_policy as load_behaviour
    from empo.runs import load_policy_file, load_run

    spec_str = str(spec)
    if spec_str == "suite" and not Path(spec_str).exists():  # the env's shipped suite, with cached true values
        from empo.evaluation.suites import shipped_suite

        return shipped_suite(task)
    if spec_str == "random":
        uniform = _UniformRandom(task.act_dim)
        return [_checked(OPEPolicy("random", _on_cpu(uniform), "uniform random actions", reset=uniform.reset), task)]
    path = Path(spec)
    if path.is_dir():
        if (path / "config.yaml").is_file() and (path / "checkpoint.pt").is_file():
            run = load_run(path)
            if run.config.task.split("-")[0] != task.env.name:
                raise EmpoError(f"{path}: a run on {run.config.task}, not on {task.env.name}")
            policy = OPEPolicy(path.name, _on_cpu(run.policy), f"empo-train run {path}", {"epoch": run.epoch})
            return [_checked(policy, task, path)]
        files = sorted(p for p in path.iterdir() if p.suffix in (".pt", ".pt2", ".onnx", ".zip"))
        if not files:
            raise EmpoError(f"{path}: no policies here (expected a run folder or .pt/.pt2/.onnx/.zip files)")
        return [policy for file in files for policy in load_policy(file, task)]
    if not path.is_file():
        raise EmpoError(f"{path}: no such policy file or folder (or 'random')")
    if path.suffix == ".zip":
        try:
            from stable_baselines3 import SAC
        except ImportError:  # pragma: no cover - stable-baselines3 is a dependency
            raise EmpoError(f"{path}: reading stable-baselines3 models needs stable-baselines3") from None
        try:
            model = SAC.load(path, device="cpu")
        except Exception as exc:
            raise EmpoError(f"{path}: not a stable-baselines3 SAC model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        return [_checked(OPEPolicy(path.stem, _SB3Policy(model), f"stable-baselines3 {path}"), task, path)]
    if path.suffix == ".pt":
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            blob = None
        if isinstance(blob, dict) and not ("state_dict" in blob and "meta" in blob):
            keys = ", ".join(sorted(map(str, blob))[:5]) + (", ..." if len(blob) > 5 else "")
            raise EmpoError(
                f"{path}: a torch file holding a dict ({keys or 'empty'}), not a policy: expected a behaviour actor of "
                "empo-data train-behaviour (a dict with 'state_dict' and 'meta') or a module written by empo-export"
            )
        if isinstance(blob, dict):
            weights = blob["state_dict"]
            if not isinstance(weights, dict) or "latent_pi.0.weight" not in weights or "mu.weight" not in weights:
                raise EmpoError(f"{path}: its 'state_dict' holds no actor weights (expected latent_pi.0.weight and mu.weight)")
            sizes = (weights.get("latent_pi.0.weight", torch.zeros(0, 0)).shape[-1], weights.get("mu.weight", torch.zeros(0)).shape[0])
            if sizes != (task.obs_dim, task.act_dim):
                env = blob["meta"].get("env", "?") if isinstance(blob["meta"], dict) else "?"
                raise EmpoError(
                    f"{path}: a policy for observations of size {sizes[0]} and {sizes[1]} actions ({env}); "
                    f"{task.name} has {task.obs_dim} and {task.act_dim}"
                )
            saved = load_behaviour(path, task.env)
            meta = dict(saved.meta)
            return [_checked(OPEPolicy(path.stem, _on_cpu(_BehaviourActor(saved.actor)), f"behaviour actor {path}", meta), task, path)]
    module = load_policy_file(path)
    return [_checked(OPEPolicy(path.stem, _on_cpu(module), f"exported policy {path}"), task, path)]


def _checked(policy: OPEPolicy, task: Task, path: Path | None = None) -> OPEPolicy:
    where = path or policy.name
    try:
        probe = policy.act(torch.zeros(2, task.obs_dim))
    except Exception as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise EmpoError(f"{where}: does not take {task.name}'s observations of size {task.obs_dim} ({first})") from None
    if tuple(probe.shape) != (2, task.act_dim):
        raise EmpoError(
            f"{where}: gives actions of shape {list(probe.shape)[1:]} for observations of size {task.obs_dim}; "
            f"{task.name} needs {task.act_dim} actions"
        )
    return policy


def restart(policies: Sequence[OPEPolicy]) -> None:
    """Restart the stateful policies (random actions), so that each use draws the same numbers whatever ran before."""
    for policy in policies:
        if policy.reset is not None:
            policy.reset()


def load_policies(specs: Sequence[str | Path], task: Task) -> list[OPEPolicy]:
    policies = [policy for spec in specs for policy in load_policy(spec, task)]
    names = [p.name for p in policies]
    for i, name in enumerate(names):  # names label rows and plot points: make them unique
        if names.count(name) > 1:
            policies[i].name = f"{name}#{names[:i].count(name) + 1}"
    return policies


# ---------------------------------------------------------------------------------- true values
def true_values(
    policies: Sequence[OPEPolicy],
    task: Task,
    episodes: int = 10,
    gamma: float = GAMMA,
    seed: int = 0,
    max_steps: int = 1000,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean discounted return of ``episodes`` real episodes per policy (env seeds seed..seed+episodes-1)
    and its standard error."""
    from tqdm.auto import tqdm

    from empo.data.envs import make_env

    if episodes < 1:
        raise EmpoError(f"--episodes must be at least 1, got {episodes}")
    restart(policies)
    envs = [make_env(task.gym_id) for _ in range(episodes)]
    means, errors = [], []
    try:
        for policy in tqdm(policies, desc="true values", unit="policy", disable=not progress):
            returns, _ = real_episodes(policy, envs, gamma, seed, max_steps)
            means.append(returns.mean())
            errors.append(returns.std(ddof=1) / math.sqrt(episodes) if episodes > 1 else float("nan"))
    finally:
        for env in envs:
            env.close()
    return np.asarray(means), np.asarray(errors)


def real_episodes(policy: OPEPolicy, envs: Sequence[Any], gamma: float = GAMMA, seed: int = 0, max_steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One episode of ``policy`` in each env (env i reset with seed ``seed + i``), stepped side by
    side: each episode's discounted return and its length in steps. A NaN or inf action raises
    :class:`~empo.evaluation.policy_eval.NonFiniteActionError` before it reaches an env."""
    from empo.evaluation.policy_eval import check_actions

    label = policy.name if policy.source in ("", policy.name) else f"{policy.name} ({policy.source})"
    env_id = getattr(getattr(envs[0], "spec", None), "id", None) if len(envs) else None
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    alive = np.ones(len(envs), dtype=bool)
    returns, lengths = np.zeros(len(envs)), np.zeros(len(envs), dtype=np.int64)
    for t in range(max_steps):
        index = np.flatnonzero(alive)
        if index.size == 0:
            break
        actions = policy.act(torch.as_tensor(obs[index])).numpy()
        check_actions(actions, label, t, index, seed + index, env_id)
        for row, i in enumerate(index):
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
            returns[i] += gamma**t * float(reward)
            lengths[i] += 1
            obs[i] = next_obs
            if terminated or truncated:
                alive[i] = False
    return returns, lengths


def true_values_cached(
    policies: Sequence[OPEPolicy], task: Task, episodes: int = 10, gamma: float = GAMMA, seed: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`true_values`, taking a shipped suite's cached value (``meta["cached_true_value"]``) where it
    was computed with the same episodes, gamma and seed; returns (values, errors, how many were cached)."""
    values, errors = np.full(len(policies), np.nan), np.full(len(policies), np.nan)
    missing = []
    for i, policy in enumerate(policies):
        cached = policy.meta.get("cached_true_value")
        if cached is not None and (cached[2].get("episodes"), cached[2].get("gamma"), cached[2].get("seed")) == (episodes, gamma, seed):
            values[i], errors[i] = cached[0], cached[1]
        else:
            missing.append(i)
    if missing:
        computed, computed_err = true_values([policies[i] for i in missing], task, episodes, gamma, seed, progress=progress)
        values[missing], errors[missing] = computed, computed_err
    return values, errors, len(policies) - len(missing)


def initial_states(dataset: Transitions, count: int, seed: int = 0) -> np.ndarray:
    """``count`` episode-initial observations of the dataset (all of them when it has fewer episodes)."""
    starts = dataset.observations[dataset.episode_starts]
    if count < len(starts):
        starts = starts[np.random.default_rng(seed).choice(len(starts), count, replace=False)]
    return starts.astype(np.float32)


# --------------------------------------------------------------------------- model-based estimator
class ModelEstimator:
    """Roll every policy out in ``model`` from the same start states, in one batch; discounted return.

    ``mode``: ``predict`` (the model's deterministic prediction: the ETM's noiseless evaluation
    sampler, median over members; the FTM's mean) or ``sample`` (``model.step``: one member's sample
    per row, the penalty ignored). Next states and rewards are clipped to the dataset's range widened
    by 10% of its bounds; a row stops when the task's rule says its state is terminal.
    """

    def __init__(
        self,
        model: Dynamics,
        task: Task,
        dataset: Transitions,
        name: str | None = None,
        starts: int = 10,
        horizon: int = 1000,
        gamma: float = GAMMA,
        mode: str = "predict",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if mode not in ("predict", "sample"):
            raise EmpoError(f"model estimator mode must be predict or sample, got {mode!r}")
        if horizon < 1:
            raise EmpoError(f"--horizon must be at least 1, got {horizon}")
        if starts < 1:
            raise EmpoError(f"--starts must be at least 1, got {starts}")
        self.model, self.task, self.mode, self.horizon, self.gamma = model, task, mode, horizon, gamma
        self.name = name or f"{model.kind}-{mode}"
        self.device = model.device
        self.starts = torch.as_tensor(initial_states(dataset, starts, seed), device=self.device)
        self.termination = get_termination_fn(task.env.termination)
        q = dataset.qlearning()
        self.obs_low, self.obs_high = (torch.as_tensor(a, device=self.device) for a in widened_range(q.next_observations))
        self.rew_low, self.rew_high = (torch.as_tensor(a, device=self.device) for a in widened_range(q.rewards))
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.progress = progress
        # per policy, the mean number of model steps before the task's rule ended a rollout (or the
        # horizon): a model that ends good policies' episodes early undervalues them
        self.rollout_steps: np.ndarray | None = None

    @torch.no_grad()
    def estimate(self, policies: Sequence[OPEPolicy]) -> np.ndarray:
        from tqdm.auto import tqdm

        restart(policies)
        n_starts, n_policies = self.starts.shape[0], len(policies)
        obs = self.starts.repeat(n_policies, 1)  # rows [p * n_starts : (p + 1) * n_starts] are policy p's
        owner = torch.arange(n_policies, device=self.device).repeat_interleave(n_starts)
        values = torch.zeros(n_policies * n_starts, device=self.device, dtype=torch.float64)
        steps = torch.zeros(n_policies * n_starts, device=self.device)
        alive = torch.arange(n_policies * n_starts, device=self.device)
        for t in tqdm(range(self.horizon), desc=f"{self.name} rollouts", unit="step", disable=not self.progress):
            if alive.numel() == 0:
                break
            act = torch.empty(alive.numel(), self.task.act_dim, device=self.device)
            for p, policy in enumerate(policies):
                rows = owner[alive] == p
                if bool(rows.any()):
                    act[rows] = policy.act(obs[rows]).to(self.device, torch.float32)
            if self.mode == "predict":
                next_obs, reward = self.model.predict(obs, act, self.generator)
            else:
                step = self.model.step(obs, act, self.generator)
                next_obs, reward = step.next_obs, step.reward
            next_obs = torch.maximum(torch.minimum(next_obs, self.obs_high), self.obs_low)
            reward = reward.reshape(-1).clamp(float(self.rew_low), float(self.rew_high))
            values[alive] += (self.gamma**t) * reward.double()
            steps[alive] += 1
            done = self.termination(next_obs).reshape(-1).bool()
            keep = ~done
            alive, obs = alive[keep], next_obs[keep]
        self.rollout_steps = steps.view(n_policies, n_starts).mean(dim=1).cpu().numpy()
        return values.view(n_policies, n_starts).mean(dim=1).cpu().numpy()


def widened_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (low, high) of ``values``, each bound moved out by 10% of its magnitude: where the
    model estimator clips next states and rewards."""
    low, high = values.min(axis=0), values.max(axis=0)
    return (low - 0.1 * np.abs(low)).astype(np.float32), (high + 0.1 * np.abs(high)).astype(np.float32)


# ------------------------------------------------------------------------------------------ FQE
class _StackedQ(nn.Module):
    """P Q networks of one architecture in stacked weights: [P, B, in] -> [P, B].

    Each member computes what ``nn.Sequential(Linear, [LayerNorm], ReLU, ..., Linear)`` computes,
    with its own weights; one batched matmul a layer instead of P small ones. Adam acts on each
    element alone, so one optimizer over the stacked weights trains P independent networks.
    """

    def __init__(self, template: nn.Sequential, members: int) -> None:
        super().__init__()
        linears = [m for m in template if isinstance(m, nn.Linear)]
        norms = [m for m in template if isinstance(m, nn.LayerNorm)]
        self.layer_norm = bool(norms)
        stack = lambda t: nn.Parameter(t.detach().unsqueeze(0).repeat(members, *([1] * t.dim())).clone())  # noqa: E731
        self.weights = nn.ParameterList([stack(m.weight.t()) for m in linears])  # [P, in, out]
        self.biases = nn.ParameterList([stack(m.bias.unsqueeze(0)) for m in linears])  # [P, 1, out]
        self.norm_weights = nn.ParameterList([stack(m.weight.unsqueeze(0)) for m in norms])
        self.norm_biases = nn.ParameterList([stack(m.bias.unsqueeze(0)) for m in norms])

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                if self.layer_norm:
                    x = nn.functional.layer_norm(x, x.shape[-1:]) * self.norm_weights[i] + self.norm_biases[i]
                x = torch.relu(x)
        return x.squeeze(-1)

    def member(self, index: int) -> nn.Sequential:
        """Member ``index`` as a plain ``nn.Sequential`` on [B, in] (a copy)."""
        layers: list[nn.Module] = []
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            linear = nn.Linear(weight.shape[1], weight.shape[2]).to(weight.device)
            with torch.no_grad():
                linear.weight.copy_(weight[index].t())
                linear.bias.copy_(bias[index, 0])
            layers.append(linear)
            if i < last:
                if self.layer_norm:
                    norm = nn.LayerNorm(weight.shape[2]).to(weight.device)
                    with torch.no_grad():
                        norm.weight.copy_(self.norm_weights[i][index, 0])
                        norm.bias.copy_(self.norm_biases[i][index, 0])
                    layers.append(norm)
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)


class FQE:
    """Fitted Q evaluation of each fixed policy on the dataset (hand-written, on the device).

    Per policy: Q(s, a), an MLP, trained for ``steps`` minibatch updates on the dataset with the
    target ``r + gamma * (1 - terminal) * Q'(s', pi(s'))`` (Q' a Polyak-averaged copy, ``tau``),
    Huber loss, Adam; value = mean Q(s0, pi(s0)) over the dataset's episode-initial states.
    ``layer_norm`` (default on) puts a LayerNorm after each hidden layer: without it the fits of
    walker2d-medium's suite diverged (docs/evaluation.md, "Has FQE converged?").

    Up to ``policies_at_once`` policies are fitted together in stacked weights (:class:`_StackedQ`):
    the same fits as one at a time but for float rounding (the same initial weights and minibatches
    for every policy, each with its own weights, target and Adam state), in one call a layer instead
    of one per policy; the policies' actions at every next state are held for the group
    (``policies_at_once`` x rows x action floats).

    ``curves`` keeps, per policy name, the fit's mean loss and its value estimate every
    ``CURVE_EVERY`` updates: whether the estimate had settled when the fit ended (a value still
    moving means more ``steps``; docs/evaluation.md, "Has FQE converged?").
    """

    CURVE_EVERY = 1000

    name = "fqe"

    def __init__(
        self,
        dataset: Transitions,
        task: Task,
        steps: int = 20_000,
        batch_size: int = 256,
        hidden: Sequence[int] = (256, 256),
        lr: float = 3e-4,
        tau: float = 0.005,
        gamma: float = GAMMA,
        starts: int = 1000,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool = False,
        layer_norm: bool = True,
        horizon_units: bool = False,
        policies_at_once: int = 16,
    ) -> None:
        if steps < 1:
            raise EmpoError(f"--fqe-steps must be at least 1, got {steps}")
        if policies_at_once < 1:
            raise EmpoError(f"policies_at_once must be at least 1, got {policies_at_once}")
        self.task, self.steps, self.batch_size, self.hidden = task, steps, batch_size, tuple(hidden)
        self.lr, self.tau, self.gamma, self.seed, self.layer_norm = lr, tau, gamma, seed, layer_norm
        self.policies_at_once = policies_at_once
        self.device = torch.device(device)
        self.data = dataset.qlearning().to_tensors(self.device)
        self.starts = torch.as_tensor(initial_states(dataset, starts, seed), device=self.device)
        # rewards are scaled into about [-1, 1] for the fit and the value scaled back; in horizon
        # units also by (1 - gamma), so that the values themselves lie in about [-1, 1]
        self.reward_scale = float(max(1e-6, self.data["rewards"].abs().max())) / ((1 - gamma) if horizon_units else 1.0)
        self.progress = progress
        self.curves: dict[str, dict[str, list[float]]] = {}

    def _q_network(self) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = self.task.obs_dim + self.task.act_dim
        for size in self.hidden:
            layers += [nn.Linear(width, size), *([nn.LayerNorm(size)] if self.layer_norm else []), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        return nn.Sequential(*layers).to(self.device)

    def fit(self, policy: OPEPolicy) -> tuple[nn.Module, dict[str, list[float]]]:
        """The trained Q network of ``policy`` and its curve (:meth:`fit_together` of one)."""
        return self.fit_together([policy])[0]

    def fit_together(self, policies: Sequence[OPEPolicy], bar: Any = None) -> list[tuple[nn.Module, dict[str, list[float]]]]:
        """Each policy's trained Q network and its curve: ``updates``, the mean ``loss`` of the
        last ``CURVE_EVERY`` updates and the ``value`` estimate after them; all fitted at once."""
        torch.manual_seed(self.seed)
        q = _StackedQ(self._q_network(), len(policies))
        target = copy.deepcopy(q).requires_grad_(False)
        optimizer = torch.optim.Adam(q.parameters(), lr=self.lr)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        data, n = self.data, self.data["observations"].shape[0]
        members = len(policies)
        curves: list[dict[str, list[float]]] = [{"updates": [], "loss": [], "value": []} for _ in policies]
        running = torch.zeros(members, device=self.device)
        with torch.no_grad():
            # the policies' actions at every next state, once: the policies are fixed
            next_actions = torch.stack([
                torch.cat([policy.act(data["next_observations"][i : i + 65536]).to(self.device) for i in range(0, n, 65536)])
                for policy in policies
            ])
            start_inputs = torch.stack([torch.cat([self.starts, policy.act(self.starts).to(self.device)], -1) for policy in policies])
        rewards = data["rewards"] / self.reward_scale
        continues = self.gamma * (1 - data["terminals"])
        last_curve = 0
        for step in range(self.steps):
            index = torch.randint(n, (self.batch_size,), generator=generator, device=self.device)
            inputs = torch.cat([data["observations"][index], data["actions"][index]], -1).expand(members, -1, -1)
            with torch.no_grad():
                next_obs = data["next_observations"][index].expand(members, -1, -1)
                next_q = target(torch.cat([next_obs, next_actions[:, index]], -1))
                y = rewards[index] + continues[index] * next_q
            # the sum of each policy's mean loss: each network gets the gradient of its own loss
            losses = nn.functional.smooth_l1_loss(q(inputs), y, reduction="none").mean(-1)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            with torch.no_grad():
                for p_target, p in zip(target.parameters(), q.parameters(), strict=True):
                    p_target.lerp_(p, self.tau)
            running += losses.detach()
            done = step + 1
            if bar is not None:
                bar.update(members)
            if done % self.CURVE_EVERY == 0 or done == self.steps:
                with torch.no_grad():
                    values = (q(start_inputs).mean(-1) * self.reward_scale).tolist()
                mean_losses = (running / (done - last_curve)).tolist()
                for curve, loss, value in zip(curves, mean_losses, values, strict=True):
                    curve["updates"].append(done)
                    curve["loss"].append(loss)
                    curve["value"].append(value)
                last_curve = done
                running.zero_()
        return [(q.member(i), curve) for i, curve in enumerate(curves)]

    def estimate(self, policies: Sequence[OPEPolicy]) -> np.ndarray:
        from tqdm.auto import tqdm

        restart(policies)
        values = []
        with tqdm(total=len(policies) * self.steps, desc="FQE", unit="update", unit_scale=True, disable=not self.progress) as bar:
            for first in range(0, len(policies), self.policies_at_once):
                group = policies[first : first + self.policies_at_once]
                with torch.enable_grad():
                    fits = self.fit_together(group, bar=bar)
                for policy, (_, curve) in zip(group, fits, strict=True):
                    self.curves[policy.name] = curve
                    values.append(curve["value"][-1])
        return np.asarray(values)


# ---------------------------------------------------------------------------------------- metrics
def regret_at(k: int, true: np.ndarray, estimate: np.ndarray) -> float:
    """(best true value - best true value among the k ranked highest by the estimate) / true range."""
    true, estimate = np.asarray(true, np.float64), np.asarray(estimate, np.float64)
    span = true.max() - true.min()
    top = np.argsort(-estimate, kind="mergesort")[:k]
    return float((true.max() - true[top].max()) / span) if span > 0 else 0.0


def normalised_abs_error(true: np.ndarray, estimate: np.ndarray) -> float:
    """Mean |estimate - true| with both min-max normalised by the true values' range."""
    true, estimate = np.asarray(true, np.float64), np.asarray(estimate, np.float64)
    span = true.max() - true.min()
    if span <= 0:
        return float("nan")
    return float(np.mean(np.abs(estimate - true)) / span)


def ope_metrics(true: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    out = {
        "abs_error": normalised_abs_error(true, estimate),
        "spearman": spearman(true, estimate),
        "pearson": pearson(true, estimate),
        "regret@1": regret_at(1, true, estimate),
    }
    if len(true) >= 5:
        out["regret@5"] = regret_at(5, true, estimate)
    return out


def bootstrap_intervals(
    true: np.ndarray, estimate: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of each metric, resampling policies with replacement."""
    rng = np.random.default_rng(seed)
    true, estimate = np.asarray(true), np.asarray(estimate)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        index = rng.integers(0, len(true), len(true))
        if np.unique(index).size < 2:
            continue
        for key, value in ope_metrics(true[index], estimate[index]).items():
            if math.isfinite(value):
                samples.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    return {key: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for key, v in samples.items()}
