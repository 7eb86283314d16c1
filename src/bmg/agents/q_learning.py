"""Online Watkins Q(lambda) with an epsilon-greedy behaviour whose epsilon is meta-learned.

One learner update phi (paper-notes section 3):

  1. on the stored rollout (T steps, collected by the current parameters x):
       G_t = r_t + gamma [(1 - lambda_t) max_a Q(s_{t+1}, a) + lambda_t G_{t+1}],
       lambda_t = lambda * [a_{t+1} = argmax_a Q(s_{t+1}, a)]   (Watkins: cut at exploration)
       loss = 1/2 mean (G_t - Q(s_t, a_t))^2;
  2. x <- x - lr * clip(grad loss);
  3. collect the next rollout epsilon-greedily with the new parameters and push its mean reward
     into the context.

Epsilon never enters the loss: it only changes which data is collected, so the meta-gradient of
any function of x_K with respect to epsilon is exactly zero. BMG reaches it with K = 0 by matching
the learner's epsilon-greedy policy to the greedy policy of the Q-function L updates ahead:

  mu = mean_s -log pi_eps(a*(s) | s),   a*(s) = argmax_a Q_target(s, a),
  pi_eps(a | s) = (1 - eps) [a = argmax_a Q_x(s, a)] + eps / |A|,

averaged over the states of the target's latest rollout. Where today's and the target's greedy
actions agree, mu falls as eps falls; where they disagree, mu = -log(eps / |A|) falls as eps rises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
import rlax

from bmg.agents import stream
from bmg.agents.meta_schedule import make_meta_schedule
from bmg.agents.networks import MLP
from bmg.core import LearnerState
from bmg.core.types import PyTree
from bmg.core.unroll import check_integer
from bmg.envs import two_colors


@dataclasses.dataclass(frozen=True)
class QLearningConfig:
    """Q(lambda) learner and its epsilon (sources in paper-notes.md section 3)."""

    hidden_size: int = 256
    """width of the two ReLU layers of the Q-network [related]."""
    rollout_length: int = 16
    """steps per rollout; one learner update per rollout [default, as the actor-critic]."""
    learning_rate: float = 0.1
    """inner SGD learning rate [default, as the actor-critic]."""
    discount: float = 0.99
    """gamma [related]."""
    trace_lambda: float = 0.9
    """lambda of Watkins Q(lambda) [related]."""
    max_grad_norm: float = 1.0
    """clip the learner gradient to this global norm, 0 = off [default, as the actor-critic]."""
    epsilon: float = 0.1
    """fixed epsilon ("fixed"), or the initial epsilon of the meta-learned schedule ("meta")."""
    decay_start: float = 1.0
    """decay: epsilon at step 0."""
    decay_final: float = 0.01
    """decay: epsilon from `decay_steps` on."""
    decay_steps: int = 1_000_000
    """decay: environment steps over which epsilon falls linearly."""
    context: Literal["reward", "none"] = "reward"
    """meta-network input: mean reward of recent rollouts, or none (one learned logit)."""
    context_length: int = 10
    """rollouts in the reward context [paper-notes default]."""
    meta_hidden_size: int = 32
    """width of the meta-network's hidden layer [default]."""

    def __post_init__(self):
        for name in (
            "hidden_size",
            "rollout_length",
            "context_length",
            "meta_hidden_size",
            "decay_steps",
        ):
            check_integer(name, getattr(self, name), 1)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        for name in ("discount", "trace_lambda", "decay_start", "decay_final"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}.")
        if not 0 < self.epsilon < 1:
            raise ValueError(
                f"epsilon must be in (0, 1) (it is a sigmoid output), got {self.epsilon!r}."
            )
        if not self.max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}.")
        if self.context not in ("reward", "none"):
            raise ValueError(f"context must be 'reward' or 'none', got {self.context!r}.")


class QLearner(NamedTuple):
    """The learner's pieces for `bmg.core` and the training loop."""

    update_fn: Callable[..., Any]
    learn_fn: Callable[..., Any]
    meta_objective: Callable[..., Any]
    matching_fn: Callable[..., Any]
    init_state: Callable[[jax.Array], LearnerState]
    init_meta_params: Callable[[jax.Array], PyTree]
    epsilon: Callable[[PyTree, stream.Extras], jax.Array]
    q_values: Callable[[PyTree, jax.Array], jax.Array]


def epsilon_greedy_probs(q: jax.Array, eps: jax.Array) -> jax.Array:
    """pi_eps(.|s) = (1 - eps) onehot(argmax q) + eps / |A| over the last axis."""
    num_actions = q.shape[-1]
    return (1 - eps) * jax.nn.one_hot(jnp.argmax(q, axis=-1), num_actions) + eps / num_actions


Schedule = Literal["fixed", "meta", "decay"]
SCHEDULES = ("fixed", "meta", "decay")


def epsilon_greedy_entropy(eps: jax.Array, num_actions: int) -> jax.Array:
    """Entropy (nats) of an epsilon-greedy policy with a unique greedy action."""
    greedy = 1 - eps + eps / num_actions
    other = eps / num_actions
    return -(greedy * jnp.log(greedy) + (num_actions - 1) * other * jnp.log(other))


def make_q_learner(
    config: QLearningConfig, env_params: two_colors.EnvParams, *, schedule: Schedule = "meta"
) -> QLearner:
    """Build phi, f, mu and initialisers of epsilon-greedy Q(lambda) on Two-colors.

    `schedule`: "fixed" (eps = config.epsilon, held by fixed meta-parameters), "meta" (eps =
    sigmoid(meta-network(context)) or sigmoid(w), meta-learned) or "decay" (linear in steps).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    num_actions = two_colors.NUM_ACTIONS
    q_net = MLP((config.hidden_size, config.hidden_size), num_actions)
    meta_schedule = make_meta_schedule(
        config.epsilon,
        use_context=config.context == "reward" and schedule == "meta",
        context_length=config.context_length,
        hidden_size=config.meta_hidden_size,
    )
    optimizer = optax.sgd(config.learning_rate)
    if config.max_grad_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optimizer)
    obs_size = two_colors.observation_size(env_params)

    def q_values(params, obs):
        return q_net.apply(params, obs)

    def epsilon(meta_params, extras: stream.Extras):
        """The behaviour's epsilon; the context carries no gradient."""
        if schedule == "decay":
            progress = jnp.minimum(extras.env_steps / config.decay_steps, 1.0)
            return config.decay_start + (config.decay_final - config.decay_start) * progress
        return meta_schedule.value(meta_params, extras.reward_history)

    def collect(params, eps, env_state, obs, key):
        """Act epsilon-greedily for T steps; parameters and epsilon are data here."""
        params, eps = jax.lax.stop_gradient((params, eps))
        explore_key, action_key, env_key = jax.random.split(key, 3)
        explore = jax.random.uniform(explore_key, (config.rollout_length,)) < eps
        random_actions = jax.random.randint(action_key, (config.rollout_length,), 0, num_actions)

        def act(obs, noise):
            explore_t, random_t = noise
            return jnp.where(explore_t, random_t, jnp.argmax(q_values(params, obs)))

        noise = (explore, random_actions)
        return stream.collect(act, noise, env_state, obs, env_key, env_params)

    def td_errors(params, rollout):
        """Watkins Q(lambda) errors G_t - Q(s_t, a_t) on a rollout (targets carry no gradient)."""
        q = q_values(params, rollout.obs)
        q_tm1, q_t = q[:-1], q[1:]
        greedy_next = jnp.concatenate(
            [rollout.actions[1:] == jnp.argmax(q_t[:-1], axis=-1), jnp.zeros((1,), bool)]
        )
        lambdas = config.trace_lambda * greedy_next.astype(q.dtype)
        discounts = jnp.full_like(rollout.rewards, config.discount)
        return rlax.q_lambda(q_tm1, rollout.actions, rollout.rewards, discounts, q_t, lambdas)

    def td_loss(params, rollout):
        return 0.5 * jnp.mean(jnp.square(td_errors(params, rollout)))

    def learn_fn(meta_params, state: LearnerState, key):
        """One Q(lambda) step on the stored rollout, collecting nothing (a target's last step)."""
        del meta_params, key
        loss, grads = jax.value_and_grad(td_loss)(state.params, state.extras.rollout)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(params=params, opt_state=opt_state), {"learner/td_loss": loss}

    def update_fn(meta_params, state: LearnerState, key):
        state, metrics = learn_fn(meta_params, state, key)
        extras: stream.Extras = state.extras
        eps = epsilon(meta_params, extras)
        rollout, env_state = collect(
            state.params, eps, extras.env_state, extras.rollout.obs[-1], key
        )
        metrics = {
            **metrics,
            "learner/epsilon": eps,
            "learner/entropy": epsilon_greedy_entropy(eps, num_actions),
            "env/rollout_reward": jnp.sum(rollout.rewards),
        }
        new_extras = stream.advance(extras, rollout, env_state)
        return state._replace(extras=new_extras), metrics

    def meta_objective(state: LearnerState, key):
        """f(x) = the Q(lambda) loss of x on its own latest rollout (MG's objective)."""
        del key
        return td_loss(state.params, state.extras.rollout), {}

    def matching_fn(target: LearnerState, state: LearnerState, meta_params):
        """mean_s -log pi_eps(argmax Q_target(s) | s) over the target rollout's states."""
        obs = target.extras.rollout.obs[:-1]
        target_actions = jnp.argmax(q_values(target.params, obs), axis=-1)
        eps = epsilon(meta_params, state.extras)
        probs = epsilon_greedy_probs(q_values(state.params, obs), eps)
        chosen = jnp.take_along_axis(probs, target_actions[:, None], axis=-1)[:, 0]
        return -jnp.mean(jnp.log(chosen))

    def init_state(key):
        q_key, reset_key, collect_key = jax.random.split(key, 3)
        params = q_net.init(q_key, jnp.zeros((obs_size,)))
        obs, env_state = two_colors.reset(reset_key, env_params)
        # epsilon before any context: the decay's start, else the configured (initial) epsilon.
        eps = config.decay_start if schedule == "decay" else config.epsilon
        rollout, env_state = collect(params, jnp.asarray(eps), env_state, obs, collect_key)
        extras = stream.start(rollout, env_state, config.context_length)
        return LearnerState(params, optimizer.init(params), extras)

    return QLearner(
        update_fn=update_fn,
        learn_fn=learn_fn,
        meta_objective=meta_objective,
        matching_fn=matching_fn,
        init_state=init_state,
        init_meta_params=meta_schedule.init,
        epsilon=epsilon,
        q_values=q_values,
    )
