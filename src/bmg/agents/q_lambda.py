"""Online Q(lambda) with an epsilon-greedy behaviour whose epsilon is meta-learned, on any gymnax
environment stream.

One learner update phi (Flennerhag et al., ICLR 2022, exploration; Luketina et al., CoLLAs 2022,
appendix A.3, Table 4):

  1. learn from the stored rollout (T steps, collected by the current parameters x), by
     ``config.trace``:
     - "peng" (the published agent, Luketina et al. Table 4: "Q(lambda) (Peng & Williams,
       1994)", optimised at every step): for each of the T transitions in order, one
       incremental update ``bmg.rl.q_lambda_increment`` (its docstring has the equations):
         x <- x - lr * opt(-(e'_t zbar_t + e_t grad Q(s_t, a_t))),
         zbar_{t+1} = lambda discount_t (zbar_t + grad Q(s_t, a_t)),
       e_t = r_t + discount_t max_a Q(s_{t+1}, a) - Q(s_t, a_t), e'_t = the same target minus
       max_a Q(s_t, a); the trace zbar over the Q-network's parameters is carried from update to
       update in the learner state (``TraceState``), so lambda acts across updates whatever T;
     - "watkins": the same backward view with delta_t z_t, the trace cut where a_t was not
       greedy for the parameters that collected it;
     - "forward": Watkins' lambda-return over the rollout alone, one update per rollout,
       ``bmg.rl.q_lambda_loss`` (with T = 1 one-step Q-learning: lambda has no effect);
  2. the optimiser step (SGD, or Adam with ``optimizer="adam"``; after a global-norm clip of the
     gradient or the incremental update's direction);
  3. collect the next rollout epsilon-greedily with the new parameters and push its mean reward
     into the context.

With T = 1 (Table 4) an update follows every environment step, as in Peng & Williams'
algorithm: act, observe, update, act with the updated Q.

Epsilon never enters the update: it only changes which data is collected, so the meta-gradient of
any function of x_K with respect to epsilon is exactly zero. BMG reaches it with K = 0 by matching
the learner's epsilon-greedy policy to the greedy policy of the Q-function L updates ahead
(Flennerhag et al., ICLR 2022, exploration):

  mu = mean_s -log pi_eps(a*(s) | s),   a*(s) = argmax_a Q_target(s, a),
  pi_eps(a | s) = (1 - eps) [a = argmax_a Q_x(s, a)] + eps / |A|,

averaged over the states of the target's latest rollout, with eps read at the learner's own
context. Where today's and the target's greedy actions agree, mu falls as eps falls; where they
disagree, mu = -log(eps / |A|) falls as eps rises. The target's final step is one more Q(lambda)
step on the latest rollout (``target_step``), collecting nothing; the target carries its own copy
of the trace (a copy of the learner state), so bootstrapping never changes the learner's.

Probes: ``env_steps``, ``reward_sum``, ``episodes``, ``episode_return_sum`` (cumulative, see
``bmg.agents.stream.counter_probes``), ``policy_entropy`` (the epsilon-greedy behaviour's mean
entropy on the latest rollout's states) and ``epsilon`` (at the current context).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bmg import rl
from bmg.agents import stream
from bmg.agents.configs import SCHEDULES, QLambdaConfig, Schedule  # noqa: F401  (re-exported)
from bmg.agents.meta_schedule import make_meta_schedule
from bmg.agents.networks import MLP
from bmg.core import Learner, LearnerState

HYPER = ("epsilon", "meta_initial", "learning_rate")
"""The config fields a sweep may set per lane as data (``make_q_lambda(..., hyper=...)``)."""


class TraceState(NamedTuple):
    """The optimiser state of a backward-view Q(lambda) learner (``LearnerState.opt_state``).

    Attributes:
      trace: zbar, the eligibility trace of the pairs seen so far, already decayed by
        lambda * discount (``bmg.rl.q_lambda_increment``), a pytree like the Q-network's params.
      optimizer: the optax optimiser's state.
    """

    trace: Any
    optimizer: Any


def epsilon_greedy_probs(q: jax.Array, eps: jax.Array) -> jax.Array:
    """pi_eps(.|s) = (1 - eps) onehot(argmax q) + eps / |A| over the last axis."""
    num_actions = q.shape[-1]
    return (1 - eps) * jax.nn.one_hot(jnp.argmax(q, axis=-1), num_actions) + eps / num_actions


def epsilon_greedy_entropy(eps: jax.Array, num_actions: int) -> jax.Array:
    """Entropy (nats) of ``epsilon_greedy_probs`` (always one greedy action, ties to the first)."""
    greedy = 1 - eps + eps / num_actions
    other = eps / num_actions
    return -(greedy * jnp.log(greedy) + (num_actions - 1) * other * jnp.log(other))


def make_q_lambda(
    config: QLambdaConfig,
    env: Any,
    env_params: Any,
    *,
    schedule: Schedule = "meta",
    hyper: Mapping[str, Any] | None = None,
) -> Learner:
    """Epsilon-greedy Q(lambda) on ``env`` (any gymnax environment with discrete actions) as a
    ``bmg.core.Learner`` (see the module docstring).

    ``schedule``: "fixed" (eps = config.epsilon, held by fixed meta-parameters), "meta" (eps =
    sigmoid(meta-network(context)) or sigmoid(w), meta-learned) or "decay" (linear in environment
    steps, from ``decay_start`` to ``decay_final`` over ``decay_steps``).

    ``hyper``: numeric overrides of config fields, name -> float32 scalar (traced inside a
    sweep's per-lane function), among ``HYPER`` = epsilon, meta_initial, learning_rate; None:
    the config's values (bit-identical to the earlier code).

    Raises:
      ValueError: an unknown schedule or ``hyper`` name, or an action space that is not discrete.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    unknown = sorted(set(hyper or ()) - set(HYPER))
    if unknown:
        raise ValueError(f"hyper names {unknown} are not among {HYPER}.")
    value = lambda name: stream.hyper_value(config, hyper, name)  # noqa: E731
    meta_initial = value("meta_initial")
    initial_epsilon = value("epsilon") if meta_initial is None else meta_initial
    num_actions = stream.num_actions(env, env_params)
    obs = stream.observation_shape(env, env_params)
    truncates = stream.can_truncate(env)
    q_net = MLP((config.hidden_size, config.hidden_size), num_actions, bias_init=config.bias_init)
    meta_schedule = make_meta_schedule(
        initial_epsilon if schedule == "meta" else value("epsilon"),
        use_context=config.context == "reward" and schedule == "meta",
        context_length=config.context_length,
        hidden_size=config.meta_hidden_size,
        hidden_layers=config.meta_hidden_layers,
        init=config.meta_init,
        bias_init=config.bias_init,
    )
    optimizer = stream.make_optimizer(config, value("learning_rate"))

    def q_values(params, observations):
        return q_net.apply(params, obs.flatten(observations))

    def epsilon(meta_params, extras: stream.Extras):
        """The behaviour's epsilon; the context carries no gradient."""
        if schedule == "decay":
            progress = jnp.minimum(extras.stream.env_steps / config.decay_steps, 1.0)
            return config.decay_start + (config.decay_final - config.decay_start) * progress
        return meta_schedule.value(meta_params, stream.context(extras))

    def collect(params, eps, env_stream, key):
        """Act epsilon-greedily for T steps; parameters and epsilon are data here."""
        params, eps = jax.lax.stop_gradient((params, eps))
        explore_key, action_key, env_key = jax.random.split(key, 3)
        explore = jax.random.uniform(explore_key, (config.rollout_length,)) < eps
        random_actions = jax.random.randint(action_key, (config.rollout_length,), 0, num_actions)

        def act(o, noise):
            explore_t, random_t = noise
            return jnp.where(explore_t, random_t, jnp.argmax(q_values(params, o)))

        noise = (explore, random_actions)
        return rl.collect(
            env, env_params, act, noise, env_stream, env_key, discount=config.discount
        )

    def td_loss(params, rollout):
        q = q_values(params, rollout.obs)
        truncated = rollout.truncated if truncates else None
        q_final = q_values(params, rollout.final_obs) if truncates else None
        loss, _ = rl.q_lambda_loss(
            q[:-1],
            rollout.actions,
            rollout.rewards,
            rollout.discount_t,
            q[1:],
            truncated,
            q_final,
            lambda_=config.trace_lambda,
        )
        return loss

    def flat_q_values(params, flat_obs):
        return q_net.apply(params, flat_obs)

    def backward_learn(state: LearnerState):
        """T incremental updates, one per stored transition, in order (``config.trace`` "peng"
        or "watkins"); returns the new params, TraceState and the mean 1/2 e_t^2."""
        rollout = state.extras.rollout
        observations = obs.flatten(rollout.obs)
        rewards, discounts = rollout.rewards, rollout.discount_t
        if truncates:  # bootstrap a time limit from the state reached (start params)
            v_final = jnp.max(q_values(state.params, rollout.final_obs), axis=-1)
            rewards, discounts = rl.truncation_bootstrap(
                rewards, discounts, rollout.truncated, jax.lax.stop_gradient(v_final)
            )
        if config.trace == "watkins":  # greedy for the parameters that collected the rollout
            greedy = rollout.actions == jnp.argmax(
                q_values(state.params, rollout.obs[:-1]), axis=-1
            )
        else:
            greedy = jnp.ones_like(rollout.actions, bool)

        def step(carry, transition):
            params, opt_state = carry
            obs_t, obs_tp1, a_t, r_t, discount_t, greedy_t = transition
            direction, trace, info = rl.q_lambda_increment(
                flat_q_values,
                params,
                opt_state.trace,
                obs_t,
                a_t,
                r_t,
                discount_t,
                obs_tp1,
                lambda_=config.trace_lambda,
                kind=config.trace,
                greedy_t=greedy_t,
            )
            updates, inner = optimizer.update(direction, opt_state.optimizer, params)
            params = optax.apply_updates(params, updates)
            return (params, TraceState(trace, inner)), 0.5 * jnp.square(info["td_error"])

        transitions = (
            observations[:-1],
            observations[1:],
            rollout.actions,
            rewards,
            discounts,
            greedy,
        )
        (params, opt_state), losses = jax.lax.scan(
            step, (state.params, state.opt_state), transitions, unroll=config.rollout_length == 1
        )
        return params, opt_state, jnp.mean(losses)

    def learn_fn(meta_params, state: LearnerState, key):
        """One Q(lambda) learner update on the stored rollout, collecting nothing (the target's
        last step): T incremental updates ("peng", "watkins") or one forward-view step."""
        del meta_params, key
        if config.trace == "forward":
            loss, grads = jax.value_and_grad(td_loss)(state.params, state.extras.rollout)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        else:
            params, opt_state, loss = backward_learn(state)
        return state._replace(params=params, opt_state=opt_state), {"learner/td_loss": loss}

    def update_fn(meta_params, state: LearnerState, key):
        state, metrics = learn_fn(meta_params, state, key)
        extras: stream.Extras = state.extras
        eps = epsilon(meta_params, extras)
        rollout, env_stream = collect(state.params, eps, extras.stream, key)
        metrics = {
            **metrics,
            "learner/epsilon": eps,
            "learner/entropy": epsilon_greedy_entropy(eps, num_actions),
            "env/rollout_reward": jnp.sum(rollout.rewards),
        }
        return state._replace(extras=stream.advance(extras, rollout, env_stream)), metrics

    def meta_objective(state: LearnerState, key):
        """f(x) = the Q(lambda) loss of x on its own latest rollout (MG's objective)."""
        del key
        return td_loss(state.params, state.extras.rollout), {}

    def matching_fn(target: LearnerState, state: LearnerState, meta_params):
        """mean_s -log pi_eps(argmax Q_target(s) | s) over the target rollout's states, with eps
        at the learner's own context (``state``, not the target)."""
        observations = target.extras.rollout.obs[:-1]
        target_actions = jnp.argmax(q_values(target.params, observations), axis=-1)
        eps = epsilon(meta_params, state.extras)
        probs = epsilon_greedy_probs(q_values(state.params, observations), eps)
        chosen = jnp.take_along_axis(probs, target_actions[:, None], axis=-1)[:, 0]
        return -jnp.mean(jnp.log(chosen))

    def init_state(key):
        q_key, reset_key, collect_key = jax.random.split(key, 3)
        params = q_net.init(q_key, jnp.zeros((obs.size,)))
        # epsilon before any context: the decay's start, else the configured (initial) epsilon.
        eps = {"decay": config.decay_start, "meta": initial_epsilon}.get(schedule, value("epsilon"))
        rollout, env_stream = collect(
            params, jnp.asarray(eps), rl.start_stream(env, env_params, reset_key), collect_key
        )
        extras = stream.start(
            rollout, env_stream, config.context_length, config.context_normalization
        )
        opt_state = optimizer.init(params)
        if config.trace != "forward":
            opt_state = TraceState(jax.tree.map(jnp.zeros_like, params), opt_state)
        return LearnerState(params, opt_state, extras)

    def probes(meta_params, state: LearnerState):
        """Counters, ``policy_entropy`` (the epsilon-greedy behaviour's entropy, the same on every
        state: ``epsilon_greedy_entropy``), ``epsilon`` at the current context and
        ``context/{name}`` (epsilon on each of ``stream.PROBE_CONTEXTS``, whatever the current
        context: Luketina et al., CoLLAs 2022, Figure 2b)."""
        extras: stream.Extras = state.extras
        eps = epsilon(meta_params, extras)
        fixed = stream.probe_contexts(config.context_length, extras.context_stats is not None)
        on_probes = {
            f"context/{name}": eps
            if schedule != "meta"
            else meta_schedule.value(meta_params, context)
            for name, context in zip(stream.PROBE_CONTEXTS, fixed, strict=True)
        }
        return {
            **stream.counter_probes(extras),
            "policy_entropy": epsilon_greedy_entropy(eps, num_actions),
            "epsilon": eps,
            **on_probes,
        }

    return Learner(
        init_state=init_state,
        init_meta_params=meta_schedule.init,
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=matching_fn,
        target_step=learn_fn,
        probes=probes,
    )
