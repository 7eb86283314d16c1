"""STACX: an IMPALA learner that tunes its own loss hyper-parameters, on any gymnax image env.

STACX (Zahavy et al., "A Self-Tuning Actor-Critic Algorithm", NeurIPS 2020), the base agent of
the Atari experiments of Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022.

Network: a shared torso (``MinAtarTorso`` or IMPALA's ResNet, ``bmg.agents.torsos``) and
``num_heads`` = 3 heads, each a policy (logits) and a value. Head 0, the main head, acts; the
auxiliary heads only learn (they shape the shared torso) [Zahavy et al.]. Each head h has six
meta-parameters, logits w_h = (gamma, lambda, g_v, g_p, g_e, alpha), used as sigma = sigmoid(w):

  gamma_h = sigma,  lambda_h = sigma,  alpha_h = sigma,
  value_cost_h = 0.25 sigma,  policy_cost_h = 1 sigma,  entropy_cost_h = 0.01 sigma

(the loss weights are fractions of the outer weights), all logits initialised at 4.6 (sigma =
0.99) [Zahavy et al.]. The sigma values of head h (6 numbers) are embedded (a linear layer of
``meta_embedding_size`` units) and concatenated to the torso's features at head h, so values and
policies stay valid while gamma and the weights move [Zahavy et al.; Xu et al., "Meta-Gradient
Reinforcement Learning", NeurIPS 2018]. The inner loss conditions each head on its
own meta-parameters; the outer loss conditions the main head on the outer values (gamma 0.995,
lambda, alpha and the weight fractions 1) [default, after Xu et al. 2018].

One learner update phi (``update_fn``):
  1. act for T steps in each of B environments (``bmg.rl.collect`` vmapped; episodes reset
     themselves) with the main head's policy at the current parameters x; the batch is stored;
  2. inner loss, summed over heads, with rewards clipped to [-reward_clip, reward_clip]
     [IMPALA, Atari]:  sum_h g_v,h L_v + g_p,h L_pi - g_e,h H  on the leaky V-trace targets
     (``bmg.rl.vtrace.leaky_vtrace_loss``: c = lambda (alpha min(1, rho) + (1 - alpha) rho),
     discount_t = gamma_h (1 - terminated_t)), averaged over the B x T steps. The behaviour
     policy mu is the main head at x (on-policy): rho = 1 for the main head, so its alpha acts
     through the embedding only, while the auxiliary heads are off-policy (rho != 1);
  3. x <- x + RMSProp(clip(grad)): ``optax.chain(bmg.core.clip_by_global_norm(max_grad_norm),
     optax.rmsprop(learning_rate, decay, eps / (B T)^2, initial_scale=1 / (B T)^2))``: TensorFlow
     1's ``tf.train.RMSPropOptimizer``, which IMPALA and STACX used (momentum 0), on their
     losses summed over the batch: nu <- decay nu + (1 - decay) g^2, u = -lr g / sqrt(nu + eps)
     (eps *inside* the square root, as optax's default), with nu starting at 1.0 (TF1 creates
     its "rms" slot with ones; optax starts at ``initial_scale``, 0 by default). bmg's losses
     are batch means, whose gradients are 1 / (B T) of the summed ones, so both eps and the
     initial nu are divided by (B T)^2 (``StacxConfig.mean_loss_rmsprop_eps`` and
     ``.mean_loss_rmsprop_initial_scale``): every update, the first ones included, is TF1's
     on summed losses (tested over hundreds of steps). With eps > 0 it is differentiable
     everywhere, zero gradients included (tested), which MG and BMG need. The clip is
     bmg.core's (finite derivative at 0).

The meta-gradient flows through the targets: values and ratios are stop-gradient-ed as inputs,
not the returns (``bmg.rl.vtrace``), else gamma, lambda and alpha get exactly zero.

For meta-learning the agent supplies (Flennerhag et al., ICLR 2022, Atari; Zahavy et al.):
  meta_objective f(x') on the same batch (K = 1): the main head's plain V-trace loss (alpha = 1)
    with fixed (gamma, lambda, g_v, g_p, g_e) = (0.995, 1, 0.25, 1, 0.01), plus g_kl = 1 times
    KL(pi_x(.|s) || pi_x'(.|s)), the KL from the pre-update policy (the batch's behaviour logits,
    on-policy exactly pi_x) to the updated one, averaged over the batch's states;
  target_step: "rmsprop" (the paper's Atari target): one step on f preconditioned by the
    learner's own RMSProp state (``bmg.core.gradient_step(..., preconditioner_state="learner")``
    with the same clip + RMSProp chain at ``target_learning_rate``); "sgd": a plain gradient step
    of ``MetaConfig.target_step_size`` (the learner brings no target step);
  matching_fn mu: KL(pi_target || pi_x) of the main head (outer conditioning) over the states of
    the target's batch, plus ``matching_value_cost`` times the squared value error with
    matching="kl_value" ("KL & V").

Probes: ``env_steps``, ``reward_sum``, ``episodes``, ``episode_return_sum`` (cumulative, summed
over the B streams; ``env_steps`` saturates at 2^31 - 1) and the 18 sigma values under
``head{h}/{gamma,lambda,g_v,g_p,g_e,alpha}`` (the weights as fractions of the outer weights).

The batch over devices (``make_stacx(..., axis_name="batch")``, the Anakin pattern of Hessel et
al., "Podracer architectures for scalable reinforcement learning", 2021): inside a
``jax.shard_map`` (``check_vma=False``, pmap's semantics) whose ``axis_name`` splits the B
streams (``extras`` leaves, leading axis B) over N devices while parameters and meta-parameters
are replicated, each device's losses are its shard's means, the learner's gradients are
all-reduced with ``jax.lax.pmean`` as the first transformation of the optimiser chain (so the
clip, RMSProp and the RMSProp target step see the whole batch's gradient), metrics are
``pmean``-ed and probes ``psum``-ed, and the acting noise and environment keys are the global
draws sliced to the device's streams. The meta-gradient of each device is then averaged over
the axis (``bmg.core.over_batch_shards``: pmean, one key for all), which
by linearity is the meta-gradient of the whole batch's objective (the pmean inside the update
transposes to a pmean of the cotangents). N devices give the numbers of one device holding all
B streams, to float reassociation (tested with 4 forced host devices). The plain SGD target
step of ``bmg.core`` would step on one shard's gradient, so ``target_step="sgd"`` is refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bmg import rl
from bmg.agents import stream
from bmg.agents.configs import (  # noqa: F401  (the learner's config, re-exported)
    MATCHINGS,
    META_NAMES,
    STACX_TARGET_STEPS,
    TORSOS,
    StacxConfig,
)
from bmg.agents.torsos import ImpalaTorso, MinAtarTorso
from bmg.checks import check_integer
from bmg.core import Learner, LearnerState, clip_by_global_norm, gradient_step
from bmg.core.matching import kl_and_value, policy_kl
from bmg.rl.rollout import INT32_MAX
from bmg.rl.vtrace import leaky_vtrace_loss


class Head(nn.Module):
    """One head: linear policy logits and value from the torso's features concatenated with a
    linear embedding of the head's meta-parameters, ``W eta + b`` (Xu et al., NeurIPS 2018,
    a linear map has no dead units, so every meta-parameter always reaches the
    head); ``embedding_size`` 0: features only."""

    num_actions: int
    embedding_size: int

    @nn.compact
    def __call__(self, features: jax.Array, eta: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = features
        if self.embedding_size:
            embedding = nn.Dense(self.embedding_size, name="embed")(eta)
            embedding = jnp.broadcast_to(embedding, (*x.shape[:-1], self.embedding_size))
            x = jnp.concatenate([x, embedding.astype(x.dtype)], axis=-1)
        logits = nn.Dense(self.num_actions, name="policy")(x)
        value = nn.Dense(1, name="value")(x)[..., 0]
        return logits, value


class StacxNetwork(nn.Module):
    """Shared torso and ``num_heads`` heads named ``head0`` (main), ``head1``, ...

    ``__call__(obs [..., H, W, C], eta [num_heads, 6], heads=None)`` returns logits
    ``[..., heads, A]`` and values ``[..., heads]`` of the first ``heads`` heads (all by default).
    uint8 observations (Atari frames) are divided by 255 first; other dtypes go in as they are.
    """

    torso: nn.Module
    num_heads: int
    num_actions: int
    embedding_size: int

    @nn.compact
    def __call__(self, obs: jax.Array, eta: jax.Array, heads: int | None = None):
        if obs.dtype == jnp.uint8:  # Atari frames: bytes 0..255 -> [0, 1] [impala]
            obs = obs.astype(jnp.result_type(float)) / 255.0
        features = self.torso(obs)
        outputs = [
            Head(self.num_actions, self.embedding_size, name=f"head{h}")(features, eta[h])
            for h in range(self.num_heads if heads is None else heads)
        ]
        logits, values = zip(*outputs, strict=True)
        return jnp.stack(logits, axis=-2), jnp.stack(values, axis=-1)


class Extras(NamedTuple):
    """What the STACX learner carries besides parameters (``LearnerState.extras``).

    Attributes:
      streams: the B environment streams (``bmg.rl.Stream`` with a leading axis B).
      batch: the batch of the latest update (``bmg.rl.Rollout``, leaves [B, T(+1), ...]); zeros
        before the first update.
      behaviour_logits: float[B, T, A], the main head's logits that acted on ``batch`` (the
        pre-update policy).
    """

    streams: rl.Stream
    batch: rl.Rollout
    behaviour_logits: jax.Array


def meta_values(meta_params: dict) -> jax.Array:
    """sigma(w) as float[num_heads, 6], heads in order, columns in ``META_NAMES`` order."""
    return jnp.stack(
        [
            jnp.stack([jax.nn.sigmoid(meta_params[head][name]) for name in META_NAMES])
            for head in sorted(meta_params, key=lambda h: int(h.removeprefix("head")))
        ]
    )


def mean_over_devices(axis_name: str) -> optax.GradientTransformation:
    """A stateless optax transformation: ``jax.lax.pmean`` of the gradients over ``axis_name``
    (each device's gradient is of its shard's mean loss; equal shards make the mean the
    gradient of the whole batch's mean loss)."""
    return optax.stateless(lambda updates, params=None: jax.lax.pmean(updates, axis_name))


def make_optimizer(
    config: StacxConfig, learning_rate: float | None = None, axis_name: str | None = None
):
    """``chain(bmg.core.clip_by_global_norm(max_grad_norm), optax.rmsprop(lr, decay, eps,
    initial_scale))`` (no clip at ``max_grad_norm`` 0): TensorFlow 1's RMSProp (IMPALA's,
    eps inside the square root, squared-gradient average starting at 1.0) on summed losses,
    applied to our batch-mean losses: optax gets ``config.mean_loss_rmsprop_eps`` and
    ``config.mean_loss_rmsprop_initial_scale``, both divided by (B T)^2. The learner's update
    and the RMSProp target step (which reads the learner's state) are built here, so they share
    these semantics. The clip acts on the batch-mean gradient [default]. With
    ``axis_name`` the chain starts with ``mean_over_devices(axis_name)`` (the all-reduce comes
    before the clip, which must see the whole batch's gradient)."""
    rmsprop = optax.rmsprop(
        config.learning_rate if learning_rate is None else learning_rate,
        decay=config.rmsprop_decay,
        eps=config.mean_loss_rmsprop_eps,
        initial_scale=config.mean_loss_rmsprop_initial_scale,
    )
    reduce = () if axis_name is None else (mean_over_devices(axis_name),)
    if config.max_grad_norm > 0:
        return optax.chain(*reduce, clip_by_global_norm(config.max_grad_norm), rmsprop)
    return optax.chain(*reduce, rmsprop)


def make_torso(config: StacxConfig) -> nn.Module:
    """The configured torso (``bmg.agents.torsos``)."""
    if config.torso == "minatar":
        hidden = 128 if config.hidden_size is None else config.hidden_size
        return MinAtarTorso(config.minatar_channels, hidden, conv=config.conv)
    hidden = 256 if config.hidden_size is None else config.hidden_size
    return ImpalaTorso(config.impala_channels, config.impala_blocks, hidden, conv=config.conv)


class Parts(NamedTuple):
    """The pieces of the STACX learner that do not depend on where the data comes from
    (``make_parts``): ``make_stacx`` (Anakin: the learner acts itself) and
    ``make_stacx_on_batches`` (Sebulba: actors act, the learner reads given batches) are both
    built from them, so both run the same learner maths.

    Attributes:
      network: the ``StacxNetwork``.
      optimizer: the inner optimiser (``make_optimizer``, all-reduced over ``axis_name``).
      act_fn: ``(params, meta_params, obs [B, ...], key) -> (actions int32[B], logits [B, A])``,
        the main head's policy sample (Gumbel-argmax) and its logits; no gradients.
      learn_fn: ``(params, opt_state, eta, batch, actor_logits=None) -> (params, opt_state,
        pre_update_logits, metrics)``, with ``eta = meta_values(meta_params)`` (the learner's
        hyper-parameters and embedding inputs), one RMSProp step on the summed heads' leaky
        V-trace losses on ``batch`` (``bmg.rl.Rollout``, leaves [B, T(+1), ...]);
        ``actor_logits`` float[B, T, A] is the behaviour policy mu of V-trace (None: on-policy,
        mu = the main head at ``params``); ``pre_update_logits`` float[B, T, A] are the main
        head's logits at ``params`` (stop-gradient-ed), the KL reference of the meta-objective.
        Differentiable in ``eta`` (so in ``meta_params``).
      meta_objective: f on ``LearnerState.extras.batch`` and ``.behaviour_logits``.
      matching_fn: mu on the target's ``extras.batch``.
      target_step: the RMSProp-preconditioned target step, or None ("sgd").
      init_params: ``key -> (params, opt_state)``.
      init_meta_params: ``key -> meta_params`` (18 logits at ``meta_init``).
      meta_probes: ``meta_params -> {"head{h}/{name}": sigma}``.
    """

    network: StacxNetwork
    optimizer: optax.GradientTransformation
    act_fn: Any
    learn_fn: Any
    meta_objective: Any
    matching_fn: Any
    target_step: Any
    init_params: Any
    init_meta_params: Any
    meta_probes: Any


def make_parts(
    config: StacxConfig,
    obs_shape: tuple[int, ...],
    num_actions: int,
    *,
    truncates: bool,
    axis_name: str | None = None,
) -> Parts:
    """The STACX learner's pieces for observations of ``obs_shape`` ([H, W, C]) and
    ``num_actions`` discrete actions (see ``Parts`` and the module docstring). ``truncates``:
    bootstrap time limits from V(final_obs) (``config.truncation_bootstrap`` and an environment
    that truncates). ``axis_name``: the ``shard_map`` axis splitting the batch (losses are
    per-shard means, metrics ``pmean``-ed, gradients all-reduced in the optimiser).

    Raises:
      ValueError: observations not [H, W, C]; ``target_step="sgd"`` with ``axis_name``.
    """
    if len(obs_shape) != 3:
        raise ValueError(
            f"make_stacx needs image observations [H, W, C], got observations of shape {obs_shape}."
        )
    length = config.rollout_length
    network = StacxNetwork(
        make_torso(config), config.num_heads, num_actions, config.meta_embedding_size
    )
    if axis_name is not None and config.target_step == "sgd":
        raise ValueError(
            "target_step must be 'rmsprop' with the batch split over devices (axis_name): the "
            "plain SGD target of bmg.core would step on one shard's gradient; got 'sgd'."
        )
    optimizer = make_optimizer(config, axis_name=axis_name)
    outer_costs = jnp.asarray([config.value_cost, config.policy_cost, config.entropy_cost])
    # The outer loss's hyper-parameters in sigma units, fed to every head's embedding.
    outer_row = jnp.asarray([config.outer_discount, config.outer_lambda, 1.0, 1.0, 1.0, 1.0])
    outer_eta = jnp.tile(outer_row, (config.num_heads, 1))

    def mean(x):
        """The mean over the whole batch of per-shard means (identity on one device)."""
        return x if axis_name is None else jax.lax.pmean(x, axis_name)

    def total(x):
        """The sum over the whole batch of per-shard sums (identity on one device)."""
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    def clip_rewards(rewards):
        if config.reward_clip > 0:
            return jnp.clip(rewards, -config.reward_clip, config.reward_clip)
        return rewards

    def forward(params, batch, eta, heads=None):
        """Logits [B, T, h, A] at s_0..s_{T-1}, values [B, T + 1, h], values at final_obs
        [B, T, h] (None without truncation bootstraps)."""
        if truncates:
            observations = jnp.concatenate([batch.obs, batch.final_obs], axis=1)
        else:
            observations = batch.obs
        logits, values = network.apply(params, observations, eta, heads)
        v_final = values[:, length + 1 :] if truncates else None
        return logits[:, :length], values[:, : length + 1], v_final

    def head_loss(logits, values, v_final, batch, behaviour_logits, discount, **hyper):
        """Mean over the B streams of ``leaky_vtrace_loss`` for one head."""

        def one(logits, values, v_final, batch, behaviour_logits):
            truncated = batch.truncated if truncates else None
            return leaky_vtrace_loss(
                logits,
                values[:-1],
                values[-1],
                batch.actions,
                clip_rewards(batch.rewards),
                discount * batch.discount_t,
                behaviour_logits,
                truncated,
                v_final,
                clip_rho_threshold=config.clip_rho_threshold,
                clip_pg_rho_threshold=config.clip_pg_rho_threshold,
                **hyper,
            )

        loss, metrics = jax.vmap(one)(logits, values, v_final, batch, behaviour_logits)
        return jnp.mean(loss), jax.tree.map(lambda m: mean(jnp.mean(m)), metrics)

    def inner_loss(params, batch, eta, actor_logits):
        """sum_h of head h's leaky V-trace loss at its own meta-parameters (heads vmapped);
        mu = ``actor_logits``, or the main head at x (on-policy) when None."""
        logits, values, v_final = forward(params, batch, eta)
        pre_update_logits = jax.lax.stop_gradient(logits[:, :, 0])  # the main head at x
        behaviour_logits = pre_update_logits if actor_logits is None else actor_logits
        weights = eta[:, 2:5] * outer_costs  # [heads, 3]: g_v, g_p, g_e

        def one_head(logits, values, v_final, eta, weights):
            return head_loss(
                logits,
                values,
                v_final,
                batch,
                behaviour_logits,
                eta[0],
                alpha=eta[5],
                lambda_=eta[1],
                value_cost=weights[0],
                policy_cost=weights[1],
                entropy_cost=weights[2],
            )

        heads_first = lambda x: jnp.moveaxis(x, 2, 0)
        losses, head_metrics = jax.vmap(one_head)(
            heads_first(logits),
            heads_first(values),
            jax.tree.map(heads_first, v_final),
            eta,
            weights,
        )
        metrics = {
            f"learner/head{h}/{name}": value[h]
            for name, value in head_metrics.items()
            for h in range(config.num_heads)
        }
        total = jnp.sum(losses)
        metrics["learner/loss"] = total
        return total, (metrics, pre_update_logits)

    def learn_fn(params, opt_state, eta, batch, actor_logits=None):
        grads, (metrics, pre_update_logits) = jax.grad(inner_loss, has_aux=True)(
            params, batch, eta, actor_logits
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {**metrics, "env/rollout_reward": total(jnp.sum(batch.rewards))}
        metrics["learner/loss"] = mean(metrics["learner/loss"])
        return params, opt_state, pre_update_logits, metrics

    def act_fn(params, meta_params, obs, key):
        """a ~ pi_main(.|obs) for a batch of observations: argmax of logits + Gumbel noise."""
        params, eta = jax.lax.stop_gradient((params, meta_values(meta_params)))
        logits, _ = network.apply(params, obs, eta, heads=1)
        logits = logits[..., 0, :]
        noise = jax.random.gumbel(key, logits.shape, logits.dtype)
        return jnp.argmax(logits + noise, axis=-1).astype(jnp.int32), logits

    def main_head(params, observations):
        """The main head's logits and values under the outer conditioning."""
        logits, values = network.apply(params, observations, outer_eta, heads=1)
        return logits[..., 0, :], values[..., 0]

    def meta_objective(state: LearnerState, key):
        """f(x'): plain V-trace on the main head + g_kl KL(pre-update || x') on x's batch."""
        del key
        extras = state.extras
        logits, values, v_final = forward(state.params, extras.batch, outer_eta, heads=1)
        loss, metrics = head_loss(
            logits[:, :, 0],
            values[..., 0],
            None if v_final is None else v_final[..., 0],
            extras.batch,
            extras.behaviour_logits,
            config.outer_discount,
            alpha=1.0,
            lambda_=config.outer_lambda,
            value_cost=config.value_cost,
            policy_cost=config.policy_cost,
            entropy_cost=config.entropy_cost,
        )
        kl = policy_kl(extras.behaviour_logits, logits[:, :, 0])
        metrics = {**metrics, "kl": mean(kl)}
        return loss + config.outer_kl_cost * kl, metrics

    def matching_fn(target: LearnerState, state: LearnerState, meta_params):
        """KL(pi_target || pi_x) (+ value error) of the main head over the target batch's states."""
        del meta_params
        observations = target.extras.batch.obs[:, :-1]
        target_logits, target_values = main_head(target.params, observations)
        logits, values = main_head(state.params, observations)
        if config.matching == "kl":
            return policy_kl(target_logits, logits)
        return kl_and_value(
            target_logits,
            logits,
            target_values,
            values,
            value_weight=config.matching_value_cost,
        )

    def init_meta_params(key):
        del key
        logit = jnp.full((), config.meta_init)  # float32, or float64 under jax_enable_x64
        return {f"head{h}": {name: logit for name in META_NAMES} for h in range(config.num_heads)}

    def init_params(key):
        eta = meta_values(init_meta_params(None))
        params = network.init(key, jnp.zeros(obs_shape, jnp.float32), eta)
        return params, optimizer.init(params)

    def meta_probes(meta_params):
        values = meta_values(meta_params)
        return {
            f"head{h}/{name}": values[h, i]
            for h in range(config.num_heads)
            for i, name in enumerate(META_NAMES)
        }

    target_step = None
    if config.target_step == "rmsprop":
        target_step = gradient_step(
            meta_objective,
            preconditioner=make_optimizer(config, config.target_learning_rate, axis_name),
            preconditioner_state="learner",
        )
    return Parts(
        network,
        optimizer,
        act_fn,
        learn_fn,
        meta_objective,
        matching_fn,
        target_step,
        init_params,
        init_meta_params,
        meta_probes,
    )


def make_stacx(
    config: StacxConfig, env: Any, env_params: Any, *, axis_name: str | None = None
) -> Learner:
    """STACX on ``env`` (a gymnax environment with image observations [H, W, C] and discrete
    actions) as a ``bmg.core.Learner``: phi, f, mu, the RMSProp target step, initialisers and
    probes (see the module docstring). Use with ``MetaConfig(algo="fixed")`` for IMPALA with the
    initial hyper-parameters, ``"mg"`` with ``inner_steps=1`` for STACX, ``"bmg"`` for BMG.

    phi acts for T steps in the B streams (the Anakin pattern: the environment is JAX), then
    learns on that batch with ``Parts.learn_fn`` (on-policy); ``make_stacx_on_batches`` is the
    same learner reading batches that actors collected elsewhere (Sebulba).

    ``axis_name``: the ``shard_map`` mesh axis splitting the B streams over devices (see the
    module docstring); ``init_state`` then runs outside the ``shard_map`` (all B streams), the
    update, objectives and probes inside it. None: one device holds the batch.

    Raises:
      ValueError: the action space is not discrete, or observations are not [H, W, C].
    """
    num_actions = stream.num_actions(env, env_params)
    obs_shape = stream.observation_shape(env, env_params).shape
    truncates = config.truncation_bootstrap and stream.can_truncate(env)
    parts = make_parts(config, obs_shape, num_actions, truncates=truncates, axis_name=axis_name)
    num_envs, length = config.num_envs, config.rollout_length
    network = parts.network

    def total(x):
        """The sum over the whole batch of per-shard sums (identity on one device)."""
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    def local(x, sharded=True):
        """This device's streams of a global [B, ...] draw (all of it on one device)."""
        if axis_name is None or not sharded:
            return x
        size = num_envs // jax.lax.axis_size(axis_name)
        start = jax.lax.axis_index(axis_name) * size
        return jax.lax.dynamic_slice_in_dim(x, start, size)

    def collect(params, eta, streams, key, sharded=True):
        """Act T steps in each of the B streams with the main head; parameters are data.
        ``sharded=False``: all B streams (outside the ``shard_map``, for shapes)."""
        params, eta = jax.lax.stop_gradient((params, eta))
        action_key, env_key = jax.random.split(key)
        gumbel = local(jax.random.gumbel(action_key, (num_envs, length, num_actions)), sharded)

        def act(obs, noise):  # a ~ pi_main(.|obs): argmax of logits + Gumbel noise
            logits, _ = network.apply(params, obs, eta, heads=1)
            return jnp.argmax(logits[0] + noise)

        def one(env_stream, noise, k):
            return rl.collect(env, env_params, act, noise, env_stream, k, discount=1.0)

        return jax.vmap(one)(streams, gumbel, local(jax.random.split(env_key, num_envs), sharded))

    def update_fn(meta_params, state: LearnerState, key):
        extras: Extras = state.extras
        eta = meta_values(meta_params)
        batch, streams = collect(state.params, eta, extras.streams, key)
        params, opt_state, behaviour_logits, metrics = parts.learn_fn(
            state.params, state.opt_state, eta, batch
        )
        return LearnerState(params, opt_state, Extras(streams, batch, behaviour_logits)), metrics

    def init_state(key):
        params_key, reset_key = jax.random.split(key)
        eta = meta_values(parts.init_meta_params(None))
        params, opt_state = parts.init_params(params_key)
        streams = jax.vmap(lambda k: rl.start_stream(env, env_params, k))(
            jax.random.split(reset_key, num_envs)
        )
        shapes = jax.eval_shape(lambda *a: collect(*a, sharded=False), params, eta, streams, key)[0]
        batch = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        behaviour_logits = jnp.zeros((num_envs, length, num_actions), jnp.float32)
        return LearnerState(params, opt_state, Extras(streams, batch, behaviour_logits))

    def probes(meta_params, state: LearnerState):
        """Counters summed over the B streams and the 18 sigma values ``head{h}/{name}``."""
        streams: rl.Stream = state.extras.streams
        return {
            # All streams take the same number of steps.
            "env_steps": jnp.minimum(streams.env_steps[0], INT32_MAX // num_envs) * num_envs,
            "reward_sum": total(jnp.sum(streams.reward_sum)),
            "episodes": total(jnp.sum(streams.episodes)),
            "episode_return_sum": total(jnp.sum(streams.episode_return_sum)),
            **parts.meta_probes(meta_params),
        }

    return Learner(
        init_state=init_state,
        init_meta_params=parts.init_meta_params,
        update_fn=update_fn,
        meta_objective=parts.meta_objective,
        matching_fn=parts.matching_fn,
        target_step=parts.target_step,
        probes=probes,
    )


class BatchExtras(NamedTuple):
    """``LearnerState.extras`` of the STACX learner on given batches (``make_stacx_on_batches``).

    Attributes:
      rollouts: the N batches of one meta-step (``bmg.rl.Rollout``, leaves [N, B, T(+1), ...]),
        learned from in order: ``update_fn`` number i of the meta-step reads ``rollouts[i]``.
      actor_logits: float[N, B, T, A], the behaviour policy's logits (the actors') on them.
      index: int32, the next batch ``update_fn`` reads (clamped to N - 1).
      batch: the batch of the latest update (leaves [B, T(+1), ...]): what ``meta_objective``
        and ``matching_fn`` read, as in ``Extras``.
      behaviour_logits: float[B, T, A], the main head's logits at the parameters before the
        latest update (the KL reference of the meta-objective, as in ``Extras``).
    """

    rollouts: rl.Rollout
    actor_logits: jax.Array
    index: jax.Array
    batch: rl.Rollout
    behaviour_logits: jax.Array


def batch_extras(rollouts: rl.Rollout, actor_logits: jax.Array) -> BatchExtras:
    """``BatchExtras`` for N new batches (leaves [N, B, ...]): index 0, ``batch`` the first."""
    first = jax.tree.map(lambda x: x[0], rollouts)
    return BatchExtras(rollouts, actor_logits, jnp.zeros((), jnp.int32), first, actor_logits[0])


def rollout_shapes(
    config: StacxConfig, obs_shape: tuple[int, ...], obs_dtype: Any, num_batches: int
) -> rl.Rollout:
    """``jax.ShapeDtypeStruct``s of N = ``num_batches`` batches of B = ``config.num_envs``
    streams of T = ``config.rollout_length`` steps with observations ``obs_shape``."""
    n, b, t = num_batches, config.num_envs, config.rollout_length
    struct = jax.ShapeDtypeStruct
    return rl.Rollout(
        obs=struct((n, b, t + 1, *obs_shape), obs_dtype),
        actions=struct((n, b, t), jnp.int32),
        rewards=struct((n, b, t), jnp.float32),
        discount_t=struct((n, b, t), jnp.float32),
        truncated=struct((n, b, t), jnp.bool_),
        final_obs=struct((n, b, t, *obs_shape), obs_dtype),
    )


class OnBatches(NamedTuple):
    """``make_stacx_on_batches``'s result: the ``Learner`` and the actors' policy.

    Attributes:
      learner: the STACX ``Learner`` whose ``update_fn`` reads its batch from
        ``LearnerState.extras`` (``BatchExtras``).
      act_fn: ``Parts.act_fn``, ``(params, meta_params, obs [B, ...], key) -> (actions,
        logits)``.
      batch_extras: ``batch_extras``, the extras of a meta-step's N batches.
      parts: every piece (``Parts``).
    """

    learner: Learner
    act_fn: Any
    batch_extras: Any
    parts: Parts


def make_stacx_on_batches(
    config: StacxConfig,
    obs_shape: tuple[int, ...],
    obs_dtype: Any,
    num_actions: int,
    *,
    num_batches: int = 1,
    truncates: bool = True,
    axis_name: str | None = None,
) -> OnBatches:
    """STACX learning from batches collected elsewhere (Sebulba's actors; Hessel et al.,
    "Podracer architectures", 2021), with the learner maths of ``make_stacx`` (``Parts``).

    A meta-step consumes ``num_batches`` = N batches (K + L - 1 for BMG continuing from the
    target, K for MG and fixed): the runner puts them in the learner state with
    ``state._replace(extras=batch_extras(rollouts, actor_logits))`` and calls the meta-learner's
    ``step``. Update i reads batch i and learns with V-trace's mu = the actors' logits
    (off-policy by the policy lag); the KL of the meta-objective is to the main head at the
    parameters before the update. Probes: the 18 sigma values (counters are the runner's).

    Args:
      config: the learner; B = ``num_envs``, T = ``rollout_length``.
      obs_shape: one observation's shape [H, W, C]; ``obs_dtype`` its dtype (uint8 frames are
        scaled by 1/255 in the network).
      num_actions: A.
      num_batches: N.
      truncates: bootstrap truncated steps from V(final_obs) (with
        ``config.truncation_bootstrap``).
      axis_name: the ``shard_map`` axis splitting B over learner devices (as ``make_stacx``).
    """
    num_batches = check_integer("num_batches", num_batches, 1)
    truncates = config.truncation_bootstrap and truncates
    parts = make_parts(config, obs_shape, num_actions, truncates=truncates, axis_name=axis_name)

    def update_fn(meta_params, state: LearnerState, key):
        del key  # the batch is given
        extras: BatchExtras = state.extras
        pick = lambda x: jax.lax.dynamic_index_in_dim(x, extras.index, keepdims=False)
        batch = jax.tree.map(pick, extras.rollouts)
        params, opt_state, pre_update_logits, metrics = parts.learn_fn(
            state.params,
            state.opt_state,
            meta_values(meta_params),
            batch,
            pick(extras.actor_logits),
        )
        index = jnp.minimum(extras.index + 1, num_batches - 1)
        extras = extras._replace(index=index, batch=batch, behaviour_logits=pre_update_logits)
        return LearnerState(params, opt_state, extras), metrics

    def init_state(key):
        params, opt_state = parts.init_params(key)
        shapes = rollout_shapes(config, obs_shape, obs_dtype, num_batches)
        rollouts = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        logits = jnp.zeros((num_batches, config.num_envs, config.rollout_length, num_actions))
        return LearnerState(params, opt_state, batch_extras(rollouts, logits))

    learner = Learner(
        init_state=init_state,
        init_meta_params=parts.init_meta_params,
        update_fn=update_fn,
        meta_objective=parts.meta_objective,
        matching_fn=parts.matching_fn,
        target_step=parts.target_step,
        probes=lambda meta_params, state: parts.meta_probes(meta_params),
    )
    return OnBatches(learner, parts.act_fn, batch_extras, parts)


def sebulba_agent(config: StacxConfig):
    """STACX on batches as ``bmg.train.sebulba.Sebulba``'s agent (its ``MakeAgent``):
    ``make(spec, *, num_envs, rollout_length, num_batches, axis_name)`` builds
    ``make_stacx_on_batches`` for the environments like ``spec``, with B = ``num_envs`` and T =
    ``rollout_length`` replacing ``config``'s (the runner's layout decides them)."""

    def make(spec, *, num_envs, rollout_length, num_batches, axis_name) -> OnBatches:
        layout = dataclasses.replace(config, num_envs=num_envs, rollout_length=rollout_length)
        return make_stacx_on_batches(
            layout,
            tuple(spec.observation_shape),
            np.dtype(spec.observation_dtype),
            spec.num_actions,
            num_batches=num_batches,
            axis_name=axis_name,
        )

    return make
