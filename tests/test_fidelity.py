"""The authors' settings (docs/fidelity.md; settings in docs/models.md and docs/training.md) as options, each validated and wired.

ETM loss reduction (sum over the batch), inference gradient clamp, EMPO's penalty inside the
critic target with its decay, and the temperature clamp; checked against hand-computed values.
"""

import math

import pytest
import torch

from empo.agents import SAC, SACConfig, TargetPenalty
from empo.errors import EmpoError
from empo.loop.config import resolve_config
from empo.loop.penalty import Penalty
from empo.loop.rollout import rollout
from empo.loop.trainer import Trainer
from empo.models import load_model_config
from empo.models.etm import EnergyEnsemble, infonce_loss
from tests.test_loop_support import FakeDynamics, synthetic_transitions
from tests.test_rollout import CountdownModel, zero_policy


def linear_energy_net(slope: float, target_dim: int = 2) -> EnergyEnsemble:
    """E(x, y) = slope * y[0] + 100 for every x: one hidden unit that stays active."""
    net = EnergyEnsemble(members=1, input_dim=3, target_dim=target_dim, hidden_size=1, hidden_layers=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.target_weight[0, 0, 0] = slope
        net.input_layer.bias.fill_(100.0)
        net.output.weight.fill_(1.0)
    return net


def test_infonce_loss_reductions_on_a_hand_computed_case():
    slope = 10.0  # ||dE/dy|| = 10 everywhere: hinge (10 - 5)^2 = 25 at every point
    net = linear_energy_net(slope)
    x = torch.zeros(1, 2, 3)
    y_pos = torch.tensor([[[0.1, 0.0], [-0.3, 0.0]]])  # [M=1, B=2, D=2]
    negatives = torch.tensor([[[[0.5, 0.0], [-0.5, 0.0]], [[0.2, 0.0], [0.0, 0.0]]]])  # [1, 2, K=2, 2]
    expected_nce = []
    for b in range(2):
        energies = [slope * float(y_pos[0, b, 0]) + 100] + [slope * float(v) + 100 for v in negatives[0, b, :, 0]]
        logits = [-e for e in energies]
        expected_nce.append(math.log(sum(math.exp(v) for v in logits)) - logits[0])
    per_sample = [n + 25.0 for n in expected_nce]

    config = load_model_config("etm", "paper").etm
    assert config.loss_reduction == "sum"
    loss, nce, penalty = infonce_loss(net, x, y_pos, config, negatives=negatives)
    assert float(loss.detach()) == pytest.approx(sum(per_sample), rel=1e-5)
    assert float(nce[0]) == pytest.approx(sum(expected_nce) / 2, rel=1e-5)
    assert float(penalty[0]) == pytest.approx(25.0, rel=1e-5)

    mean_config = load_model_config("etm", "paper", {"etm": {"loss_reduction": "mean"}}).etm
    loss_mean, _, _ = infonce_loss(net, x, y_pos, mean_config, negatives=negatives)
    assert float(loss_mean.detach()) == pytest.approx(sum(per_sample) / 2, rel=1e-5)


def test_loss_reduction_and_inference_clamps_are_validated_and_published():
    with pytest.raises(EmpoError, match="loss_reduction"):
        load_model_config("etm", "paper", {"etm": {"loss_reduction": "avg"}})
    with pytest.raises(EmpoError, match="grad_clip"):
        load_model_config("etm", "paper", {"etm": {"rollout_langevin": {"grad_clip": -1}}})
    paper = load_model_config("etm", "paper").etm
    assert (paper.train_langevin.grad_clip, paper.rollout_langevin.grad_clip, paper.eval_langevin.grad_clip) == (10.0, 0.5, 0.5)
    for sampler in (paper.train_langevin, paper.rollout_langevin, paper.eval_langevin):
        assert sampler.step_size_reaches_end


def fixed_batch(n=64, penalties=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch = {
        "observations": torch.randn(n, 11, generator=gen),
        "actions": torch.rand(n, 3, generator=gen) * 2 - 1,
        "rewards": torch.randn(n, generator=gen),
        "next_observations": torch.randn(n, 11, generator=gen),
        "terminals": (torch.rand(n, generator=gen) < 0.2).float(),
    }
    if penalties:
        batch["penalties"] = torch.rand(n, generator=gen) * 3
    return batch


@pytest.mark.parametrize("decay", [False, True])
def test_update_time_penalty_matches_a_hand_computed_critic_target(decay):
    config = SACConfig(hidden_sizes=[32, 32])
    penalty = TargetPenalty(coef=2.0, decay=decay, decay_scale=1.0)
    agent = SAC(11, 3, config, seed=0, target_penalty=penalty)
    with torch.no_grad():  # shift the target values so that the decay's clamp bites at both ends
        agent.critic_target.out.bias.fill_(-1.5)
    batch = fixed_batch()
    # the same draws as the update: its next actions come first from the agent's generator
    gen = torch.Generator().manual_seed(0)
    gen.set_state(agent.generator.get_state())
    with torch.no_grad():
        next_act, next_log_prob = agent.actor.sample(batch["next_observations"], gen)
        next_q = agent.critic_target(batch["next_observations"], next_act).min(dim=0).values
        alpha = float(agent.alpha)
        next_value = next_q - alpha * next_log_prob
        coef = 2.0 * (next_value / 1.0).clamp(0.0, 1.0) if decay else torch.full_like(next_value, 2.0)
        target = batch["rewards"] - coef * batch["penalties"] + 0.99 * (1 - batch["terminals"]) * next_value
        q = agent.critic(batch["observations"], batch["actions"])
        critic_loss = (q - target).pow(2).mean(dim=1).sum()
    if decay:  # the case must exercise the clamp at both ends and in between
        ratio = next_value / 1.0
        assert (ratio < 0).any() and (ratio > 1).any() and ((ratio > 0) & (ratio < 1)).any()
    metrics = agent.update(batch)
    assert float(metrics["target_q_mean"]) == pytest.approx(float(target.mean()), rel=1e-5, abs=1e-6)
    assert float(metrics["critic_loss"]) == pytest.approx(float(critic_loss), rel=1e-5)
    assert float(metrics["penalty_in_target"]) == pytest.approx(float((coef * batch["penalties"]).mean()), rel=1e-5)


def test_without_a_target_penalty_the_penalties_column_is_ignored():
    a = SAC(11, 3, SACConfig(hidden_sizes=[32, 32]), seed=0)
    b = SAC(11, 3, SACConfig(hidden_sizes=[32, 32]), seed=0)
    ma, mb = a.update(fixed_batch(penalties=True)), b.update(fixed_batch(penalties=False))
    assert torch.equal(ma["critic_loss"], mb["critic_loss"])
    assert float(ma["penalty_in_target"]) == 0.0


def test_temperature_is_clamped_in_the_losses_but_log_alpha_stays_free():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[32, 32], init_alpha=3.0), seed=0, alpha_max=1.0)
    assert float(agent.alpha) == 1.0
    metrics = agent.update(fixed_batch())
    assert float(metrics["alpha"]) == 1.0
    assert float(agent.log_alpha.detach()) > 0.5  # about log 3, moved by one small step: not clamped itself
    free = SAC(11, 3, SACConfig(hidden_sizes=[32, 32], init_alpha=3.0), seed=0)
    assert float(free.alpha) == pytest.approx(3.0)


def test_rollout_keeps_raw_rewards_and_penalties_for_update_time_application():
    start = torch.tensor([[5.0, 0.0], [5.0, 1.0]])
    stored = rollout(CountdownModel(), zero_policy, start, horizon=1, penalty=Penalty(2.0, at="update"))
    t = stored.transitions
    assert torch.equal(t["rewards"], torch.tensor([10.0, 10.0]))
    assert torch.equal(t["penalties"], torch.tensor([1.0, 2.0]))
    assert float(stored.stats["penalised_reward_mean"]) == pytest.approx(10.0 - 2.0 * 1.5)
    applied = rollout(CountdownModel(), zero_policy, start, horizon=1, penalty=Penalty(2.0))
    assert torch.equal(applied.transitions["rewards"], torch.tensor([8.0, 6.0]))
    assert torch.equal(applied.transitions["penalties"], torch.tensor([1.0, 2.0]))


def test_empo_uses_the_authors_mechanism_and_mopo_its_own(tmp_path):
    paper = resolve_config("hopper-medium", "empo", "paper")
    assert (paper.algorithms["empo"].penalty_at, paper.algorithms["empo"].penalty_decay, paper.algorithms["empo"].alpha_max) == ("update", True, 1.0)
    assert (paper.algorithms["mopo"].penalty_at, paper.algorithms["mopo"].penalty_decay, paper.algorithms["mopo"].alpha_max) == ("rollout", False, None)
    with pytest.raises(EmpoError, match="penalty_at"):
        resolve_config("hopper-medium", "empo", "paper", overrides={"empo": {"penalty_at": "later"}})
    with pytest.raises(EmpoError, match="alpha_max"):
        resolve_config("hopper-medium", "empo", "paper", overrides={"empo": {"alpha_max": 0}})

    data = synthetic_transitions(n=300).qlearning().to_tensors("cpu")
    smoke = resolve_config("hopper-medium", "empo", "smoke", overrides={"training": {"eval_episodes": 0}})
    trainer = Trainer(smoke, data, FakeDynamics(), tmp_path / "empo", progress=False)
    assert trainer.agent.sac.target_penalty == TargetPenalty(2.0, True, 100.0) and trainer.agent.sac.alpha_max == 1.0
    trainer.do_rollout()
    stored = trainer.model_buffer.storage
    size = len(trainer.model_buffer)
    assert stored["penalties"][:size].abs().sum() > 0  # raw penalties kept for the critic target
    mopo = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"eval_episodes": 0}})
    trainer = Trainer(mopo, data, FakeDynamics(), tmp_path / "mopo", progress=False)
    assert trainer.agent.sac.target_penalty is None and trainer.agent.sac.alpha_max is None


def test_etm_trainer_uses_the_configured_reduction():
    """The same rows and negatives: the summed loss is batch-size times the averaged one."""
    from empo.models import build_model
    from empo.models.etm import ETMTrainer

    losses = {}
    for reduction in ("sum", "mean"):
        config = load_model_config("etm", "smoke", {"etm": {"loss_reduction": reduction}})
        torch.manual_seed(0)
        model = build_model("etm", 11, 3, "hopper", config)
        x, y = torch.randn(200, 14), torch.randn(200, 12) * 0.1
        model.fit_scalers(x, y)
        trainer = ETMTrainer(model, x, y, x[:0], y[:0], torch.Generator().manual_seed(1))
        assert trainer.loss_per_row == (reduction == "sum")
        index = torch.randint(200, (model.members, 16), generator=torch.Generator().manual_seed(2))
        losses[reduction] = float(trainer.loss_for(index, _NullTimer()).detach())
    assert losses["sum"] == pytest.approx(16 * losses["mean"], rel=1e-5)


class _NullTimer:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
