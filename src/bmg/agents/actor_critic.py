"""An online actor-critic with a meta-learned entropy cost, on any gymnax environment stream.

One learner update phi (Flennerhag et al., ICLR 2022, Two-colors; Luketina et al.,
CoLLAs 2022, appendix A.3):

  1. on the stored rollout (T steps, collected by the current parameters x), ``bmg.rl.a2c_loss``:
       G_t = r_t + discount_t G_{t+1},  G_T = V(s_T)            (bootstrapped n-step return;
                                                                 time limits bootstrap from
                                                                 V(final_obs));
       or G_t = r_t + discount_t V(s_{t+1})                      (``advantage="td"``)
       loss = PG + value_cost * mean (G_t - V(s_t))^2 - eps * mean H(pi(.|s_t)),
       PG = -mean log pi(a_t|s_t) sg(G_t - V(s_t));
  2. x <- x - lr * clip(grad loss)                 (SGD, differentiable in eps through the clip;
                                                   or Adam with ``optimizer="adam"``);
  3. collect the next rollout with the new parameters (the stream goes on; episodic games reset
     themselves) and push its mean reward into the context.

The entropy cost is eps = sigmoid(MLP_w(context)), context = mean reward of each of the last
``context_length`` rollouts, raw or normalised by running statistics and tanh
(``context_normalization``, ``bmg.agents.stream.context``; data: no gradient flows into it), or
eps = sigmoid(w) without context.
Observations of any shape are flattened into the MLPs (MinAtar's 10 x 10 x C grids included).

For meta-learning the agent supplies:
  meta_objective f(x) = PG(x) - outer_entropy_cost * H(x) on x's latest rollout, with the
    advantages of ``advantage`` (MG's objective and the BMG target's final step, a plain gradient
    step of ``MetaConfig.target_step_size``);
  target_step: with ``target_step="learner_update"``, the BMG target's final step is phi's
    gradient step on the latest rollout (no new rollout), so the target is L learner updates
    ahead; None (the plain step on f) otherwise;
  matching_fn mu = KL(pi_target(.|s) || pi_x(.|s)) averaged (``kl_reduction="mean"``) or summed
    (``"sum"``) over the T states of the target's rollout, plus a value term with
    ``matching="kl_value"`` (Flennerhag et al., ICLR 2022, Two-colors).

Probes: ``env_steps``, ``reward_sum``, ``episodes``, ``episode_return_sum`` (cumulative, see
``bmg.agents.stream.counter_probes``), ``policy_entropy`` (mean entropy of pi_x on the latest
rollout's states), ``entropy_cost`` (eps at the current context) and ``context/{name}`` (eps on
the five fixed contexts of ``bmg.agents.stream.PROBE_CONTEXTS``: Luketina et al.'s Figure 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
import rlax

from bmg import rl
from bmg.agents import stream
from bmg.agents.configs import MATCHINGS, ActorCriticConfig  # noqa: F401  (re-exported)
from bmg.agents.meta_schedule import make_meta_schedule
from bmg.agents.networks import MLP
from bmg.core import Learner, LearnerState, kl_and_value, policy_kl

HYPER = ("entropy_cost", "meta_initial", "outer_entropy_cost", "learning_rate")
"""The config fields a sweep may set per lane as data (``make_actor_critic(..., hyper=...)``)."""


def make_actor_critic(
    config: ActorCriticConfig,
    env: Any,
    env_params: Any,
    *,
    schedule: Literal["fixed", "meta"] = "meta",
    hyper: Mapping[str, Any] | None = None,
) -> Learner:
    """The actor-critic on ``env`` (any gymnax environment with discrete actions) as a
    ``bmg.core.Learner``: phi, f, mu, initialisers and probes (see the module docstring).

    ``schedule``: "meta" (the entropy cost starts at ``config.initial_entropy_cost``, in (0, 1),
    for MG and BMG to learn) or "fixed" (it is ``config.entropy_cost``, 0 allowed, held by
    meta-parameters that a fixed meta-learner never changes).

    ``hyper``: numeric overrides of config fields, name -> float32 scalar (traced inside a
    sweep's per-lane function: ``bmg.experiments.two_colors.system`` sweeps), among ``HYPER`` =
    entropy_cost, meta_initial, outer_entropy_cost, learning_rate. Values are not re-checked here:
    a sweep validates each grid point by building its config. None: the config's values (the
    numbers are then bit-identical to the earlier code).

    Raises:
      ValueError: an unknown schedule or ``hyper`` name, a meta-learned entropy cost starting
        outside (0, 1), or an action space that is not discrete.
    """
    if schedule not in ("fixed", "meta"):
        raise ValueError(f"schedule must be 'fixed' or 'meta', got {schedule!r}.")
    unknown = sorted(set(hyper or ()) - set(HYPER))
    if unknown:
        raise ValueError(f"hyper names {unknown} are not among {HYPER}.")
    if schedule == "meta" and not hyper:
        config.check_meta_learned()
    value = lambda name: stream.hyper_value(config, hyper, name)  # noqa: E731
    meta_initial = value("meta_initial")
    initial_entropy_cost = value("entropy_cost") if meta_initial is None else meta_initial
    outer_entropy_cost = value("outer_entropy_cost")
    num_actions = stream.num_actions(env, env_params)
    obs = stream.observation_shape(env, env_params)
    truncates = stream.can_truncate(env)
    hidden = (config.hidden_size, config.hidden_size)
    policy_net = MLP(hidden, num_actions, bias_init=config.bias_init)
    value_net = MLP(hidden, 1, bias_init=config.bias_init)
    meta_schedule = make_meta_schedule(
        value("entropy_cost") if schedule == "fixed" else initial_entropy_cost,
        use_context=config.context == "reward",
        context_length=config.context_length,
        hidden_size=config.meta_hidden_size,
        hidden_layers=config.meta_hidden_layers,
        # a fixed entropy cost is the same on every context, whatever meta_init says
        init=config.meta_init if schedule == "meta" else "zero_output",
        bias_init=config.bias_init,
    )
    optimizer = stream.make_optimizer(config, value("learning_rate"))

    def policy_logits(params, observations):
        return policy_net.apply(params["policy"], obs.flatten(observations))

    def values(params, observations):
        return value_net.apply(params["value"], obs.flatten(observations))[..., 0]

    def entropy_cost(meta_params, extras: stream.Extras):
        """eps = sigmoid(MLP_w(context)) or sigmoid(w); the context carries no gradient."""
        return meta_schedule.value(meta_params, stream.context(extras))

    def collect(params, env_stream, key):
        """Act for T steps with pi_params; parameters are data here (no gradient)."""
        params = jax.lax.stop_gradient(params)
        action_key, env_key = jax.random.split(key)
        gumbel = jax.random.gumbel(action_key, (config.rollout_length, num_actions))
        act = lambda o, g: jnp.argmax(policy_logits(params, o) + g)  # a ~ pi(.|o)
        return rl.collect(
            env, env_params, act, gumbel, env_stream, env_key, discount=config.discount
        )

    def value_inputs(params, rollout):
        """V(s_0..s_T), and the truncation marks with V(final_obs) (None for continuing envs)."""
        v = values(params, rollout.obs)
        if not truncates:
            return v, None, None
        return v, rollout.truncated, values(params, rollout.final_obs)

    def learner_loss(params, rollout, eps):
        v, truncated, v_final = value_inputs(params, rollout)
        loss, metrics = rl.a2c_loss(
            policy_logits(params, rollout.obs[:-1]),
            v[:-1],
            rollout.actions,
            rollout.rewards,
            rollout.discount_t,
            v[-1],
            truncated,
            v_final,
            entropy_cost=eps,
            value_cost=config.value_cost,
            advantage=config.advantage,
        )
        return loss, {f"learner/{name}": value for name, value in metrics.items()}

    def learner_step(meta_params, state: LearnerState):
        """phi's gradient step on the stored rollout: (params, opt_state, eps, metrics)."""
        eps = entropy_cost(meta_params, state.extras)
        grads, metrics = jax.grad(learner_loss, has_aux=True)(
            state.params, state.extras.rollout, eps
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return optax.apply_updates(state.params, updates), opt_state, eps, metrics

    def update_fn(meta_params, state: LearnerState, key):
        extras: stream.Extras = state.extras
        params, opt_state, eps, metrics = learner_step(meta_params, state)
        rollout, env_stream = collect(params, extras.stream, key)
        metrics = {
            **metrics,
            "learner/entropy_cost": eps,
            "env/rollout_reward": jnp.sum(rollout.rewards),
        }
        return LearnerState(params, opt_state, stream.advance(extras, rollout, env_stream)), metrics

    def meta_objective(state: LearnerState, key):
        """f(x) = PG(x) - outer_entropy_cost * H(x) on x's own latest rollout."""
        del key
        rollout = state.extras.rollout
        v, truncated, v_final = value_inputs(state.params, rollout)
        returns = rl.bootstrapped_returns(
            rollout.rewards,
            rollout.discount_t,
            v[:-1],
            v[-1],
            truncated,
            v_final,
            advantage=config.advantage,
        )
        advantages = jax.lax.stop_gradient(returns - v[:-1])
        logits = policy_logits(state.params, rollout.obs[:-1])
        pg_loss, entropy = rl.policy_gradient_and_entropy(logits, rollout.actions, advantages)
        return pg_loss - outer_entropy_cost * entropy, {"pg_loss": pg_loss}

    def matching_fn(target: LearnerState, state: LearnerState, meta_params):
        """KL(pi_target || pi_x) (+ value error) over the states of the target's rollout."""
        del meta_params
        observations = target.extras.rollout.obs[:-1]
        target_logits = policy_logits(target.params, observations)
        logits = policy_logits(state.params, observations)
        scale = observations.shape[0] if config.kl_reduction == "sum" else 1
        if config.matching == "kl":
            return scale * policy_kl(target_logits, logits)
        return scale * kl_and_value(
            target_logits,
            logits,
            values(target.params, observations),
            values(state.params, observations),
            value_weight=config.matching_value_cost,
        )

    def learner_update_target(meta_params, state: LearnerState, key):
        """The target's final step as phi's own gradient step (w held), collecting nothing."""
        del key
        params, opt_state, _, metrics = learner_step(meta_params, state)
        return state._replace(params=params, opt_state=opt_state), metrics

    def init_state(key):
        policy_key, value_key, reset_key, collect_key = jax.random.split(key, 4)
        dummy = jnp.zeros((obs.size,))
        params = {
            "policy": policy_net.init(policy_key, dummy),
            "value": value_net.init(value_key, dummy),
        }
        rollout, env_stream = collect(
            params, rl.start_stream(env, env_params, reset_key), collect_key
        )
        extras = stream.start(
            rollout, env_stream, config.context_length, config.context_normalization
        )
        return LearnerState(params, optimizer.init(params), extras)

    def probes(meta_params, state: LearnerState):
        """Counters, ``policy_entropy`` (mean H(pi_x) on the latest rollout's states, nats),
        ``entropy_cost`` (eps at the current context) and ``context/{name}`` (eps on each of
        ``stream.PROBE_CONTEXTS``, whatever the current context)."""
        extras: stream.Extras = state.extras
        logits = policy_logits(state.params, extras.rollout.obs[:-1])
        fixed = stream.probe_contexts(config.context_length, extras.context_stats is not None)
        return {
            **stream.counter_probes(extras),
            "policy_entropy": -rlax.entropy_loss(logits, jnp.ones(logits.shape[:-1])),
            "entropy_cost": entropy_cost(meta_params, extras),
            **{
                f"context/{name}": meta_schedule.value(meta_params, context)
                for name, context in zip(stream.PROBE_CONTEXTS, fixed, strict=True)
            },
        }

    return Learner(
        init_state=init_state,
        init_meta_params=meta_schedule.init,
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=matching_fn,
        probes=probes,
        target_step=learner_update_target if config.target_step == "learner_update" else None,
    )
