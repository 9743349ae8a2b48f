"""EMPO's published mechanism with the framework agents (sb3-sac, tianshou-sac): the penalty inside the
critic target (``penalty_at: update``, with and without its decay) and the temperature clamp
(``alpha_max``), checked against hand-computed targets as the built-in SAC is (tests/test_fidelity.py)."""

import json
import math

import numpy as np
import pytest
import torch
from tianshou.data import Batch
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

import empo.cli.train as train_cli
from empo.agents.sac import SACConfig, TargetPenalty
from empo.data.tasks import get_task
from empo.integrations import sb3_agent, tianshou_agent
from empo.loop.config import resolve_config
from empo.loop.trainer import Trainer
from tests.test_loop import read_rows, synthetic_dataset  # noqa: F401  (a fixture)
from tests.test_loop_support import FakeDynamics, synthetic_transitions

TASK = get_task("hopper-medium")
GAMMA = 0.99
N = 64


def fixed_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Mixed-looking rows: the first 8 real (no penalty), the rest model rows with a raw penalty."""
    gen = torch.Generator().manual_seed(seed)
    penalties = torch.rand(N, generator=gen) * 3
    penalties[:8] = 0.0
    return {
        "observations": torch.randn(N, 11, generator=gen),
        "actions": torch.rand(N, 3, generator=gen) * 2 - 1,
        "rewards": torch.randn(N, generator=gen),
        "next_observations": torch.randn(N, 11, generator=gen),
        "terminals": (torch.rand(N, generator=gen) < 0.2).float(),
        "penalties": penalties,
    }


def hand_target(batch, next_q, next_log_prob, alpha, penalty):
    """r - c * p + gamma * (1 - done) * (min Q' - alpha * log pi), c = coef or coef * clamp(V'/scale, 0, 1)."""
    next_value = next_q - alpha * next_log_prob
    coef = penalty.coef * (next_value / penalty.decay_scale).clamp(0.0, 1.0) if penalty.decay else penalty.coef
    taken = coef * batch["penalties"]
    return batch["rewards"] - taken + GAMMA * (1.0 - batch["terminals"]) * next_value, taken, next_value


def assert_real_rows_unpenalised(target, batch, next_value):
    """The first 8 rows (real data, penalty 0) get the plain soft target r + gamma * (1 - done) * V'."""
    plain = batch["rewards"] + GAMMA * (1.0 - batch["terminals"]) * next_value
    torch.testing.assert_close(target[:8], plain[:8], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(target[8:], plain[8:])


def assert_decay_bites_everywhere(next_value, scale):
    ratio = next_value / scale
    assert (ratio < 0).any() and (ratio > 1).any() and ((ratio > 0) & (ratio < 1)).any()


def center_on_the_clamp(target_critics: list[nn.Module], next_value: torch.Tensor, scale: float) -> None:
    """Shift the target critics' outputs so that V'(s') / scale has its median at 0.5: the decay's
    clamp then bites at both ends and in between."""
    shift = scale / 2 - float(next_value.median())
    with torch.no_grad():
        for critic in target_critics:
            [m for m in critic.modules() if isinstance(m, nn.Linear)][-1].bias.add_(shift)


class OneBatch:
    """The part of AgentContext a replay buffer reads: always the same batch."""

    def __init__(self, batch):
        self.batch = batch

    def mixed_batch(self, batch_size=None):
        return self.batch


# ------------------------------------------------------------------------------ stable-baselines3
def sb3_sac(penalty=None, alpha_max=None, init_alpha=1.0, batch=None):
    config = resolve_config(
        "hopper-medium", "mopo", "smoke", overrides={"sac": {"hidden_sizes": [16, 16], "init_alpha": init_alpha}}
    )
    sac = sb3_agent.make_sac(config, TASK, "cpu")
    sac.target_penalty, sac.alpha_max = penalty, alpha_max
    sac.replay_buffer.context = OneBatch(batch if batch is not None else fixed_batch())
    return sac


def sb3_draws(sac, batch, seed):
    """SB3's draws in train()'s order: a ~ pi(.|s) first, then a' ~ pi(.|s'); min Q'(s', a') and log pi(a'|s')."""
    torch.manual_seed(seed)
    with torch.no_grad():
        sac.actor.action_log_prob(batch["observations"])
        next_act, next_log_prob = sac.actor.action_log_prob(batch["next_observations"])
        next_q = torch.cat(sac.critic_target(batch["next_observations"], next_act), dim=1).min(dim=1).values
    return next_q, next_log_prob


@pytest.mark.parametrize("decay", [False, True])
def test_sb3_critic_target_matches_the_hand_computed_one(decay):
    penalty = TargetPenalty(coef=2.0, decay=decay, decay_scale=0.5)
    batch = fixed_batch()
    sac = sb3_sac(penalty, batch=batch)
    next_q, next_log_prob = sb3_draws(sac, batch, seed=3)
    center_on_the_clamp(list(sac.critic_target.q_networks), next_q - next_log_prob, penalty.decay_scale)
    next_q, next_log_prob = sb3_draws(sac, batch, seed=3)
    expected, taken, next_value = hand_target(batch, next_q, next_log_prob, 1.0, penalty)
    if decay:
        assert_decay_bites_everywhere(next_value, penalty.decay_scale)
    assert (taken[8:] != 0).any()
    # the target method, with the draw of a' it makes
    samples = sac.replay_buffer.sample(N)
    torch.manual_seed(3)
    sac.actor.action_log_prob(batch["observations"])
    target, penalty_taken = sac.target_q_values(samples, sac.temperature())
    torch.testing.assert_close(target.flatten(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(penalty_taken.flatten(), taken, rtol=1e-5, atol=1e-6)
    assert_real_rows_unpenalised(target.flatten(), batch, next_value)
    # and train() learns from it: the critic loss it logs is the one against the hand-computed target
    with torch.no_grad():
        q = sac.critic(batch["observations"], batch["actions"])
        critic_loss = 0.5 * sum(float((qi.flatten() - expected).pow(2).mean()) for qi in q)
    torch.manual_seed(3)
    sac.train(1, N)
    logged = sac.logger.name_to_value
    assert logged["train/critic_loss"] == pytest.approx(critic_loss, rel=1e-5)
    assert logged["train/penalty_in_target"] == pytest.approx(float(taken.mean()), rel=1e-5)


def test_sb3_temperature_is_clamped_in_the_losses_but_log_alpha_stays_free():
    batch = fixed_batch()
    sac = sb3_sac(TargetPenalty(coef=1.0), alpha_max=1.0, init_alpha=3.0, batch=batch)
    assert float(sac.temperature()) == 1.0
    next_q, next_log_prob = sb3_draws(sac, batch, seed=4)
    expected, _, _ = hand_target(batch, next_q, next_log_prob, 1.0, TargetPenalty(coef=1.0))
    torch.manual_seed(4)
    with torch.no_grad():
        actions_pi, log_prob = sac.actor.action_log_prob(batch["observations"])
        q = sac.critic(batch["observations"], batch["actions"])
    critic_loss = 0.5 * sum(float((qi.flatten() - expected).pow(2).mean()) for qi in q)
    torch.manual_seed(4)
    sac.train(1, N)
    logged = sac.logger.name_to_value
    assert logged["train/ent_coef"] == 1.0  # the alpha the losses used
    assert logged["train/critic_loss"] == pytest.approx(critic_loss, rel=1e-5)  # alpha 1 in the target, not 3
    # the actor loss uses alpha 1 too, with the critics as updated just before it
    with torch.no_grad():
        q_pi = torch.cat(sac.critic(batch["observations"], actions_pi), dim=1).min(dim=1).values
    assert logged["train/actor_loss"] == pytest.approx(float((1.0 * log_prob - q_pi).mean()), rel=1e-5)
    assert float(sac.log_ent_coef.detach()) == pytest.approx(math.log(3.0), abs=1e-2)  # moved, not clamped
    fixed = sb3_sac(alpha_max=0.5, init_alpha=3.0)
    fixed.ent_coef_optimizer, fixed.ent_coef_tensor = None, torch.tensor(3.0)  # a fixed temperature is clamped too
    assert float(fixed.temperature()) == 0.5


def test_sb3_own_update_is_kept_where_nothing_changes_the_target():
    """The loop body that carries the penalty is SB3's own step for step: with a zero penalty and a clamp
    that never bites, the weights after a few updates equal those of SB3's train()."""
    batch = fixed_batch()
    ours = sb3_sac(TargetPenalty(coef=0.0), alpha_max=1e6, batch=batch)
    theirs = sb3_sac(batch=batch)
    for sac in (ours, theirs):
        torch.manual_seed(5)
        sac.train(3, N)
    for (name, a), b in zip(ours.policy.state_dict().items(), theirs.policy.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
    torch.testing.assert_close(ours.log_ent_coef, theirs.log_ent_coef)
    assert ours.logger.name_to_value["train/critic_loss"] == pytest.approx(
        theirs.logger.name_to_value["train/critic_loss"]
    )


# ------------------------------------------------------------------------------ tianshou
SMALL = SACConfig(hidden_sizes=[16, 16])


def tianshou_batch(sac, batch):
    buffer = tianshou_agent.MixedBatchBuffer(lambda n: {key: value[:n] for key, value in batch.items()}, N)
    sampled, indices = buffer.sample(N)
    return buffer, sampled, indices


def tianshou_draws(sac, batch, seed):
    """tianshou's draw of a' ~ pi(.|s') for the target (the first of its update); min Q'(s', a'), log pi(a'|s')."""
    torch.manual_seed(seed)
    with torch.no_grad():
        next_act = sac.policy(Batch(obs=batch["next_observations"], info=[None] * N))
        next_q = torch.min(
            sac.critic_old(batch["next_observations"], next_act.act),
            sac.critic2_old(batch["next_observations"], next_act.act),
        )
    return next_q.flatten(), next_act.log_prob.flatten()


@pytest.mark.parametrize("decay", [False, True])
def test_tianshou_critic_target_matches_the_hand_computed_one(decay):
    penalty = TargetPenalty(coef=2.0, decay=decay, decay_scale=0.5)
    sac, _ = tianshou_agent.make_sac(11, 3, SMALL, seed=0, target_penalty=penalty)
    batch = fixed_batch()
    buffer, sampled, indices = tianshou_batch(sac, batch)
    with policy_within_training_step(sac.policy):
        next_q, next_log_prob = tianshou_draws(sac, batch, seed=1)
        center_on_the_clamp([sac.critic_old, sac.critic2_old], next_q - next_log_prob, penalty.decay_scale)
        next_q, next_log_prob = tianshou_draws(sac, batch, seed=1)
        expected, taken, next_value = hand_target(batch, next_q, next_log_prob, sac.alpha.value, penalty)
        if decay:
            assert_decay_bites_everywhere(next_value, penalty.decay_scale)
        assert (taken[8:] != 0).any()
        torch.manual_seed(1)
        returns = sac._preprocess_batch(sampled, buffer, indices).returns.flatten()
        torch.testing.assert_close(returns, expected, rtol=1e-5, atol=1e-5)
        assert_real_rows_unpenalised(returns, batch, next_value)
        assert sac.last_penalty_in_target == pytest.approx(float(taken.mean()), rel=1e-5)
        # and its update learns from it: each critic's loss is the one against the hand-computed target
        with torch.no_grad():
            losses = [
                float((critic(batch["observations"], batch["actions"]).flatten() - expected).pow(2).mean())
                for critic in (sac.critic, sac.critic2)
            ]
        torch.manual_seed(1)
        stats = sac.update(buffer, N)
    assert (stats.critic1_loss, stats.critic2_loss) == pytest.approx(losses, rel=1e-5)


def test_tianshou_temperature_is_clamped_in_the_losses_but_log_alpha_stays_free():
    config = SACConfig(hidden_sizes=[16, 16], init_alpha=3.0)
    sac, _ = tianshou_agent.make_sac(11, 3, config, seed=0, target_penalty=TargetPenalty(coef=1.0), alpha_max=1.0)
    assert isinstance(sac.alpha, tianshou_agent.ClampedAutoAlpha) and sac.alpha.value == 1.0
    batch = fixed_batch()
    buffer, _, _ = tianshou_batch(sac, batch)
    with policy_within_training_step(sac.policy):
        next_q, next_log_prob = tianshou_draws(sac, batch, seed=2)
        expected, _, _ = hand_target(batch, next_q, next_log_prob, 1.0, TargetPenalty(coef=1.0))
        with torch.no_grad():
            q1 = sac.critic(batch["observations"], batch["actions"]).flatten()
            # the actor's draw follows the target's: replay both to know a ~ pi(.|s)
            torch.manual_seed(2)
            sac.policy(Batch(obs=batch["next_observations"], info=[None] * N))
            actor_draw = sac.policy(Batch(obs=batch["observations"], info=[None] * N))
        torch.manual_seed(2)
        stats = sac.update(buffer, N)
    assert stats.critic1_loss == pytest.approx(float((q1 - expected).pow(2).mean()), rel=1e-5)  # alpha 1 in the target
    with torch.no_grad():  # the actor loss with alpha 1 and the critics as updated just before it
        q_pi = torch.min(
            sac.critic(batch["observations"], actor_draw.act), sac.critic2(batch["observations"], actor_draw.act)
        )
    assert stats.actor_loss == pytest.approx(float((1.0 * actor_draw.log_prob - q_pi).mean()), rel=1e-5)
    assert stats.alpha == 1.0
    assert float(sac.alpha._log_alpha.detach()) == pytest.approx(math.log(3.0), abs=1e-2)  # moved, not clamped
    fixed, alpha_optim = tianshou_agent.make_sac(
        11, 3, SACConfig(hidden_sizes=[16, 16], init_alpha=3.0, auto_alpha=False), alpha_max=0.5
    )
    assert fixed.alpha.value == 0.5 and alpha_optim is None
    # the clamp leaves the state dict as tianshou's: a checkpoint loads either way
    plain, _ = tianshou_agent.make_sac(11, 3, config, seed=0)
    plain.load_state_dict(dict(sac.state_dict()))


# ------------------------------------------------------------------------------ in the loop
@pytest.mark.parametrize("agent", ["sb3-sac", "tianshou-sac"])
def test_the_loop_hands_the_penalty_to_model_rows_only(tmp_path, agent):
    config = resolve_config(
        "hopper-medium", "empo", "smoke", overrides={"agent": agent, "training": {"eval_episodes": 0}}
    )
    assert (config.algorithm.penalty_at, config.algorithm.penalty_decay, config.algorithm.alpha_max) == (
        "update",
        True,
        1.0,
    )
    trainer = Trainer(
        config, synthetic_transitions().qlearning().to_tensors(), FakeDynamics(), tmp_path, progress=False
    )
    trainer.do_rollout()
    sac = trainer.agent.sac
    assert sac.target_penalty == trainer.penalty.target_penalty() and sac.target_penalty is not None
    real = int(200 * config.training.real_ratio)
    if agent == "sb3-sac":
        penalties = trainer.agent.sac.replay_buffer.sample(200).penalties.flatten()
    else:
        penalties = torch.as_tensor(trainer.agent.buffer.sample(200)[0].penalty)
    assert (penalties[:real] == 0).all() and (penalties[real:] > 0).all()
    assert "penalty_in_target" in trainer.agent.metric_names
    # the same settings at rollout time: nothing in the target, nothing reported
    rollout = resolve_config(
        "hopper-medium", "empo", "quick", overrides={"agent": agent, "training": {"eval_episodes": 0}}
    )
    other = Trainer(
        rollout, synthetic_transitions().qlearning().to_tensors(), FakeDynamics(), tmp_path / "r", progress=False
    )
    assert other.agent.sac.target_penalty is None and "penalty_in_target" not in other.agent.metric_names


@pytest.mark.parametrize("agent", ["sb3-sac", "tianshou-sac"])
def test_framework_agents_run_the_published_empo(tmp_path, synthetic_dataset, agent):  # noqa: F811
    """empo-train --algo empo --agent ... with the penalty in the critic target, its decay and alpha_max."""
    run_dir = tmp_path / "run"
    argv = [
        "--task",
        "hopper-medium",
        "--algo",
        "empo",
        "--preset",
        "smoke",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--agent",
        agent,
        "--set",
        "empo.penalty_at=update",
        "--set",
        "empo.penalty_decay=true",
        "--set",
        "empo.alpha_max=0.5",
        "--set",
        "training.epochs=2",
    ]
    assert train_cli.main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == agent
    rows = read_rows(run_dir)
    assert len(rows) == 2 and all(np.isfinite(float(row["critic_loss"])) for row in rows)
    assert all(0.0 < float(row["alpha"]) <= 0.5 for row in rows)
    penalties = [float(row["penalty_in_target"]) for row in rows]
    assert all(np.isfinite(penalties)) and penalties[-1] > 0  # model rows' penalties taken in the target
