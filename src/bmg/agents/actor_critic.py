"""An online actor-critic learner with a meta-learned entropy weight, on a continuing stream.

One learner update phi (paper-notes section 2, Table 1 of the paper):

  1. on the stored rollout (T = 16 steps, collected by the current parameters x):
       G_t = sum_{i=t}^{T-1} gamma^{i-t} r_i + gamma^{T-t} V(s_T)       (bootstrapped n-step return)
       loss = PG + value_weight * mean (G_t - V(s_t))^2 - eps * mean H(pi(.|s_t)),
       PG = -mean log pi(a_t|s_t) sg(G_t - V(s_t));
  2. x <- x - lr * grad loss                                   (SGD, differentiable in eps);
  3. collect the next rollout with the new parameters (the stream continues, no resets) and push
     its mean reward into the context.

The entropy weight is eps = sigmoid(MLP_w(context)), context = mean reward of each of the last
`context_length` rollouts (data: no gradient flows into it), or eps = sigmoid(w) without context.

For meta-learning the agent supplies:
  meta_objective f(x) = PG(x) - outer_entropy_weight * H(x) on x's stored rollout (MG's objective
    and the BMG target's final step);
  matching_fn mu = KL(pi_target(.|s) || pi_x(.|s)) averaged over the states of the target's
    rollout (plus a value term with `matching="kl_value"`).
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
from bmg.core import LearnerState, kl_and_value, policy_kl
from bmg.core.types import PyTree
from bmg.core.unroll import check_integer
from bmg.envs import two_colors


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
    """Actor-critic learner and its meta-learned entropy weight (sources in paper-notes.md)."""

    hidden_size: int = 256
    """width of the two ReLU layers of the policy and of the value MLP [related]."""
    rollout_length: int = 16
    """steps per rollout; one learner update per rollout [paper: batch 16]."""
    learning_rate: float = 0.1
    """inner SGD learning rate [paper]."""
    discount: float = 0.99
    """gamma [paper]."""
    value_weight: float = 0.5
    """weight of the value loss [default]."""
    max_grad_norm: float = 1.0
    """clip the learner gradient to this global norm before the SGD step, 0 = off [default: SGD 0.1
    without it diverged (value net to inf) at the first flip in 2 of 10 seeds]."""
    entropy_weight: float = 0.01
    """fixed entropy weight of `ac`; initial entropy weight of `mg` and `bmg` [default]."""
    context: Literal["reward", "none"] = "reward"
    """meta-network input: mean reward of recent rollouts, or none (one learned logit)."""
    context_length: int = 10
    """rollouts in the reward context [paper-notes default]."""
    meta_hidden_size: int = 32
    """width of the meta-network's hidden layer [default]."""
    outer_entropy_weight: float = 0.0
    """fixed entropy weight inside the meta-objective f (MG, and the BMG target step) [related]."""
    matching: Literal["kl", "kl_value"] = "kl"
    """BMG matching: policy KL, or policy KL + squared value error."""
    matching_value_weight: float = 1.0
    """weight of the value term with matching="kl_value"."""

    def __post_init__(self):
        for name in ("hidden_size", "rollout_length", "context_length", "meta_hidden_size"):
            check_integer(name, getattr(self, name), 1)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        if not 0 <= self.discount <= 1:
            raise ValueError(f"discount must be in [0, 1], got {self.discount!r}.")
        if not 0 < self.entropy_weight < 1:
            raise ValueError(
                "entropy_weight must be in (0, 1) (it is a sigmoid output), "
                f"got {self.entropy_weight!r}."
            )
        for name in (
            "value_weight",
            "max_grad_norm",
            "outer_entropy_weight",
            "matching_value_weight",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.context not in ("reward", "none"):
            raise ValueError(f"context must be 'reward' or 'none', got {self.context!r}.")
        if self.matching not in ("kl", "kl_value"):
            raise ValueError(f"matching must be 'kl' or 'kl_value', got {self.matching!r}.")


class ActorCritic(NamedTuple):
    """The learner's pieces for `bmg.core` and the training loop."""

    update_fn: Callable[..., Any]
    meta_objective: Callable[..., Any]
    matching_fn: Callable[..., Any]
    init_state: Callable[[jax.Array], LearnerState]
    init_meta_params: Callable[[jax.Array], PyTree]
    entropy_weight: Callable[[PyTree, jax.Array], jax.Array]
    policy_logits: Callable[[PyTree, jax.Array], jax.Array]


def make_actor_critic(config: ActorCriticConfig, env_params: two_colors.EnvParams) -> ActorCritic:
    """Build phi, f, mu and initialisers of the actor-critic on Two-colors."""
    num_actions = two_colors.NUM_ACTIONS
    hidden = (config.hidden_size, config.hidden_size)
    policy_net = MLP(hidden, num_actions)
    value_net = MLP(hidden, 1)
    schedule = make_meta_schedule(
        config.entropy_weight,
        use_context=config.context == "reward",
        context_length=config.context_length,
        hidden_size=config.meta_hidden_size,
    )
    optimizer = optax.sgd(config.learning_rate)
    if config.max_grad_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optimizer)
    obs_size = two_colors.observation_size(env_params)

    def policy_logits(params, obs):
        return policy_net.apply(params["policy"], obs)

    def values(params, obs):
        return value_net.apply(params["value"], obs)[..., 0]

    def entropy_weight(meta_params, reward_history):
        """eps = sigmoid(MLP_w(context)) or sigmoid(w); the context carries no gradient."""
        return schedule.value(meta_params, reward_history)

    def collect(params, env_state, obs, key):
        """Act for T steps with pi_params from `obs`; parameters are data here (no gradient)."""
        params = jax.lax.stop_gradient(params)
        action_key, env_key = jax.random.split(key)
        gumbel = jax.random.gumbel(action_key, (config.rollout_length, num_actions))
        act = lambda obs, g: jnp.argmax(policy_logits(params, obs) + g)  # a ~ pi(.|obs)
        return stream.collect(act, gumbel, env_state, obs, env_key, env_params)

    def returns_and_values(params, rollout):
        v = values(params, rollout.obs)
        discounts = jnp.full_like(rollout.rewards, config.discount)
        returns = rlax.discounted_returns(rollout.rewards, discounts, jax.lax.stop_gradient(v[-1]))
        return returns, v[:-1]

    def policy_terms(params, rollout, advantages):
        logits = policy_logits(params, rollout.obs[:-1])
        weights = jnp.ones_like(advantages)
        pg_loss = rlax.policy_gradient_loss(logits, rollout.actions, advantages, weights)
        entropy = -rlax.entropy_loss(logits, weights)
        return pg_loss, entropy

    def learner_loss(params, rollout, eps):
        returns, v = returns_and_values(params, rollout)
        advantages = jax.lax.stop_gradient(returns - v)
        value_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(returns) - v))
        pg_loss, entropy = policy_terms(params, rollout, advantages)
        loss = pg_loss + config.value_weight * value_loss - eps * entropy
        return loss, {
            "learner/pg_loss": pg_loss,
            "learner/value_loss": value_loss,
            "learner/entropy": entropy,
        }

    def update_fn(meta_params, state: LearnerState, key):
        extras: stream.Extras = state.extras
        eps = entropy_weight(meta_params, extras.reward_history)
        grads, metrics = jax.grad(learner_loss, has_aux=True)(state.params, extras.rollout, eps)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        rollout, env_state = collect(params, extras.env_state, extras.rollout.obs[-1], key)
        metrics = {
            **metrics,
            "learner/entropy_weight": eps,
            "env/rollout_reward": jnp.sum(rollout.rewards),
        }
        return LearnerState(params, opt_state, stream.advance(extras, rollout, env_state)), metrics

    def meta_objective(state: LearnerState, key):
        """f(x) = PG(x) - outer_entropy_weight * H(x) on x's own latest rollout."""
        del key
        rollout = state.extras.rollout
        returns, v = returns_and_values(state.params, rollout)
        advantages = jax.lax.stop_gradient(returns - v)
        pg_loss, entropy = policy_terms(state.params, rollout, advantages)
        return pg_loss - config.outer_entropy_weight * entropy, {"pg_loss": pg_loss}

    def matching_fn(target: LearnerState, state: LearnerState, meta_params):
        """KL(pi_target || pi_x) (+ value error) over the states of the target's rollout."""
        del meta_params
        obs = target.extras.rollout.obs[:-1]
        target_logits = policy_logits(target.params, obs)
        logits = policy_logits(state.params, obs)
        if config.matching == "kl":
            return policy_kl(target_logits, logits)
        return kl_and_value(
            target_logits,
            logits,
            values(target.params, obs),
            values(state.params, obs),
            value_weight=config.matching_value_weight,
        )

    def init_state(key):
        policy_key, value_key, reset_key, collect_key = jax.random.split(key, 4)
        dummy = jnp.zeros((obs_size,))
        params = {
            "policy": policy_net.init(policy_key, dummy),
            "value": value_net.init(value_key, dummy),
        }
        obs, env_state = two_colors.reset(reset_key, env_params)
        rollout, env_state = collect(params, env_state, obs, collect_key)
        extras = stream.start(rollout, env_state, config.context_length)
        return LearnerState(params, optimizer.init(params), extras)

    return ActorCritic(
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=matching_fn,
        init_state=init_state,
        init_meta_params=schedule.init,
        entropy_weight=entropy_weight,
        policy_logits=policy_logits,
    )
