"""SAC on its own: shapes, the tanh-Gaussian log-density, learning on a fixed batch, save/load."""

import math

import pytest
import torch

from empo.agents import SAC, SACConfig
from empo.errors import EmpoError


def fixed_batch(n=128, obs_dim=11, act_dim=3, terminal=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "observations": torch.randn(n, obs_dim, generator=gen),
        "actions": torch.rand(n, act_dim, generator=gen) * 2 - 1,
        "rewards": torch.randn(n, generator=gen),
        "next_observations": torch.randn(n, obs_dim, generator=gen),
        "terminals": torch.full((n,), terminal),
    }


def test_actions_are_batched_bounded_and_deterministic_when_asked():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[32, 32]), seed=0)
    obs = torch.randn(50, 11)
    sampled = agent.act(obs)
    assert sampled.shape == (50, 3) and sampled.abs().max() <= 1.0
    assert torch.equal(agent.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert not torch.equal(agent.act(obs), agent.act(obs))


def test_log_prob_matches_torch_distributions_and_log_std_is_clamped():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[32, 32]), seed=0)
    with torch.no_grad():
        agent.actor.head.bias[3:] = 10.0  # log-std far above the clamp
    obs = torch.randn(64, 11)
    mean, log_std = agent.actor(obs)
    assert torch.all(log_std == 2.0)
    with torch.no_grad():
        agent.actor.head.bias[3:] = -0.5
    gen = torch.Generator().manual_seed(3)
    action, log_prob = agent.actor.sample(obs, gen)
    mean, log_std = agent.actor(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)]
    )
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-3, rtol=1e-3)


def test_update_returns_tensors_and_lowers_the_critic_loss_on_a_fixed_batch():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[64, 64], critic_lr=1e-3), seed=0)
    batch = fixed_batch()  # terminal transitions: the critic target is the reward, a regression
    losses = []
    for _ in range(150):
        metrics = agent.update(batch)
        losses.append(metrics["critic_loss"])
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values())
    losses = torch.stack(losses)
    assert losses[-10:].mean() < 0.5 * losses[:10].mean()
    assert torch.isfinite(losses).all()


def test_temperature_and_targets_move():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[32, 32]), seed=0)
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    alpha_before = float(agent.alpha)
    agent.update(fixed_batch(terminal=0.0))
    assert float(agent.alpha) != alpha_before
    moved = [not torch.equal(a, b) for a, b in zip(target_before, agent.critic_target.parameters(), strict=True)]
    assert all(moved)
    assert math.isclose(agent.target_entropy, -3.0)


def test_state_dict_round_trip_continues_identically(tmp_path):
    config = SACConfig(hidden_sizes=[32, 32])
    agent = SAC(11, 3, config, seed=0, total_lr_steps=10)
    batch = fixed_batch(terminal=0.0)
    for _ in range(3):
        agent.update(batch)
    agent.step_lr_schedule()
    agent.save(str(tmp_path / "sac.pt"))
    copy = SAC(11, 3, config, seed=99, total_lr_steps=10)
    copy.load(str(tmp_path / "sac.pt"))
    assert copy.actor_optim.param_groups[0]["lr"] == agent.actor_optim.param_groups[0]["lr"] < config.actor_lr
    a, b = agent.update(batch), copy.update(batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(EmpoError, match="obs_dim"):
        SAC(17, 6, config).load_state_dict(agent.state_dict())


def test_layer_norm_critic_matches_a_per_member_reference_and_its_norms_train():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[32, 16], critic_layer_norm=True), seed=0)
    critic = agent.critic
    with torch.no_grad():  # make gains and biases non-trivial so the test sees them
        for gain, bias in zip(critic.norm_gain, critic.norm_bias, strict=True):
            gain.uniform_(0.5, 1.5)
            bias.uniform_(-0.2, 0.2)
    obs, act = torch.randn(20, 11), torch.rand(20, 3) * 2 - 1
    q = critic(obs, act)
    for member in range(2):
        x = torch.cat([obs, act], dim=-1)
        for index, layer in enumerate(critic.hidden):
            x = x @ layer.weight[member] + layer.bias[member]
            ln = torch.nn.LayerNorm(x.shape[-1])
            with torch.no_grad():
                ln.weight.copy_(critic.norm_gain[index][member, 0])
                ln.bias.copy_(critic.norm_bias[index][member, 0])
            x = torch.relu(ln(x))
        expected = (x @ critic.out.weight[member] + critic.out.bias[member]).squeeze(-1)
        assert torch.allclose(q[member], expected, atol=1e-5)
    # the gains are trained and soft-copied into the target critic like every other parameter
    target_gain = agent.critic_target.norm_gain[0].clone()
    gain = critic.norm_gain[0].clone()
    agent.update(fixed_batch(terminal=0.0))
    assert not torch.equal(critic.norm_gain[0], gain)
    assert not torch.equal(agent.critic_target.norm_gain[0], target_gain)
    # plain critics (the published setting) have no norm parameters
    assert SAC(11, 3, SACConfig(hidden_sizes=[32, 16]), seed=0).critic.norm_gain is None


def test_bc_weight_pulls_the_policy_to_the_real_rows_actions_only():
    # 64 real rows (first) whose actions are +0.5, 64 model rows whose actions are -0.5, on the same
    # states; terminal rows and zero rewards, so that Q gives the actor no direction of its own
    batch = fixed_batch(n=128)
    batch["observations"][64:] = batch["observations"][:64]
    batch["actions"][:64], batch["actions"][64:] = 0.5, -0.5
    batch["rewards"].zero_()
    states = batch["observations"][:64]

    def distance_after(bc_weight, real_rows):
        agent = SAC(11, 3, SACConfig(hidden_sizes=[32, 32], actor_lr=3e-3, bc_weight=bc_weight), seed=0)
        with torch.no_grad():
            agent.critic_target.load_state_dict(agent.critic.state_dict())
        for _ in range(200):
            agent.update(batch, real_rows=real_rows)
        return float((agent.act(states, deterministic=True) - 0.5).abs().mean())

    # mean|Q| scales the term: the critics' outputs start near 0 and learn the reward 0, so a large
    # weight is needed here; in the loop Q is in the hundreds
    cloned, free, none_real = distance_after(1e4, 64), distance_after(0.0, 64), distance_after(1e4, 0)
    assert cloned < 0.1, cloned
    assert free > 0.3 and none_real > 0.3, (free, none_real)


def test_bc_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="bc_weight"):
        SACConfig(bc_weight=-1.0)


def test_the_averaged_actor_acts_deterministically_and_resumes_exactly(tmp_path):
    from empo.loop.builtin_agent import policy
    from empo.loop.config import resolve_config

    obs, batch = torch.randn(40, 11), fixed_batch(terminal=0.0)
    config = SACConfig(hidden_sizes=[32, 32], actor_lr=3e-3, actor_average_rate=0.05)
    agent = SAC(11, 3, config, seed=0)
    assert torch.equal(agent.act(obs, deterministic=True), agent.actor.deterministic(obs))  # it starts as a copy
    for _ in range(20):
        agent.update(batch)
    raw, averaged = agent.actor.deterministic(obs), agent.act(obs, deterministic=True)
    assert torch.equal(averaged, agent.actor_average.deterministic(obs)) and not torch.allclose(raw, averaged, atol=1e-4)
    # each update moves the average rate x (actor - average): at rate 1 it is the actor itself
    copied = SAC(11, 3, SACConfig(hidden_sizes=[32, 32], actor_lr=3e-3, actor_average_rate=1.0), seed=0)
    copied.update(batch)
    assert torch.equal(copied.act(obs, deterministic=True), copied.actor.deterministic(obs))
    # a checkpoint keeps it: the resumed agent acts and updates as the original
    agent.save(str(tmp_path / "sac.pt"))
    resumed = SAC(11, 3, config, seed=5)
    resumed.load(str(tmp_path / "sac.pt"))
    assert torch.equal(resumed.act(obs, deterministic=True), averaged)
    agent.update(batch), resumed.update(batch)
    assert torch.equal(resumed.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    # the exported policy is the averaged one
    train_config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"sac": {"hidden_sizes": [32, 32], "actor_average_rate": 0.05}})
    exported = policy(train_config, None, agent.state_dict())
    assert torch.allclose(exported(obs), agent.act(obs, deterministic=True), atol=1e-6)
    # a checkpoint without one cannot resume a run that keeps one
    with pytest.raises(EmpoError, match="no averaged actor"):
        resumed.load_state_dict(SAC(11, 3, SACConfig(hidden_sizes=[32, 32]), seed=0).state_dict())
    with pytest.raises(ValueError, match="actor_average_rate"):
        SACConfig(actor_average_rate=0.0)

