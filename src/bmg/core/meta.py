"""Meta-learners: meta-gradients (MG) and bootstrapped meta-gradients (BMG), one interface.

Both return a `MetaLearner(init, step, meta_gradient)`:

  MG:  w <- w - beta * grad_w f(x_K(w))
  BMG: w <- w - beta * grad_w mu(x~, x_K(w)),   x~ = TB(x_K) a constant

so they swap in any experiment and can be tested against each other. With L = 1, a plain target
step of size alpha and mu = 1/2 ||.||^2, grad_w mu = alpha * grad_w f(x_K(w)) exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import optax

from bmg.checks import check_integer
from bmg.core.bootstrap import gradient_step, make_target_bootstrap
from bmg.core.config import ALGOS, BATCHINGS, MetaConfig  # noqa: F401  (re-exported)
from bmg.core.matching import parameter_distance
from bmg.core.types import (
    Learner,
    LearnerState,
    MatchingFn,
    MetaGradientFn,
    MetaLearner,
    MetaObjective,
    MetaState,
    Metrics,
    PyTree,
    Reduce,
    StartFn,
    TargetBootstrap,
    UpdateFn,
)
from bmg.core.unrolling import (
    check_floating,
    check_objective,
    check_scalar,
    mean_over_steps,
    unroll,
)

ContinueFrom = (
    Literal["inner", "target", "inner_params"]
    | Callable[[LearnerState, LearnerState], LearnerState]
)


def _keep_state(meta_params: PyTree, learner_state: LearnerState) -> LearnerState:
    return learner_state


def _tree_add(a: PyTree, b: PyTree) -> PyTree:
    return jax.tree.map(jnp.add, a, b)


def leaf_name(path) -> str:
    """A pytree path as "a/b/0" (dict keys, attribute names and sequence indices)."""
    parts = []
    for key in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def median_of_nonnegative(x: jax.Array) -> jax.Array:
    """The median of a float32 vector of values >= 0 (e.g. |g_i|), as numpy's (the mean of the
    middle pair, rounded to float32), in O(n) passes instead of a sort: a non-negative float32's
    bit pattern, read as an int32, orders like the float, so each order statistic is found by
    bisecting the 2^31 patterns (32 counting passes). NaN anywhere gives NaN, as jnp.median
    does. On a 2-core CPU, 29k coordinates: about 0.3 ms against 6 ms for XLA's sort.

    Raises:
      ValueError: ``x`` is not a non-empty float32 vector.
    """
    if x.ndim != 1 or x.size == 0 or x.dtype != jnp.float32:
        raise ValueError(
            "median_of_nonnegative needs a non-empty float32 vector, "
            f"got shape {x.shape} and dtype {x.dtype}."
        )
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)

    def order_statistic(k: int) -> jax.Array:
        def halve(_, bounds):
            low, high = bounds
            middle = low + (high - low) // 2
            above = jnp.sum(bits <= middle) > k  # the k-th smallest is <= middle
            return jnp.where(above, low, middle + 1), jnp.where(above, middle, high)

        low, _ = jax.lax.fori_loop(0, 32, halve, (jnp.int32(0), jnp.int32(0x7F800000)))
        return jax.lax.bitcast_convert_type(low, jnp.float32)

    n = x.size
    lower = order_statistic((n - 1) // 2)
    median = lower if n % 2 else 0.5 * (lower + order_statistic(n // 2))
    return jnp.where(jnp.any(jnp.isnan(x)), jnp.nan, median)


def gradient_statistics(grads: PyTree) -> Metrics:
    """Per-coordinate views of a meta-gradient, beside its global norm: ``meta/grad_abs_max``
    and ``meta/grad_abs_median`` (max and median of |g_i| over every coordinate i), and, for each
    one-number leaf (e.g. a meta-learned logit, a network's single output bias), its signed
    gradient as ``meta/grad/<path>`` (``leaf_name``; ``meta/grad`` for a bare scalar).

    Adam's epsilon acts per coordinate (step_i ~ lr m_i / (sqrt(v_i) + eps)), so these, not the
    global norm, say whether a meta-step is in Adam's eps-dominated regime: a global norm of
    N coordinates can be sqrt(N) times any coordinate. Unrecorded metrics cost nothing under jit.
    """
    leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
    if not leaves:
        return {}
    flat = jnp.concatenate([jnp.ravel(jnp.abs(g)) for _, g in leaves])
    metrics: Metrics = {
        "meta/grad_abs_max": jnp.max(flat),
        "meta/grad_abs_median": median_of_nonnegative(flat.astype(jnp.float32)),
    }
    for path, g in leaves:
        if jnp.size(g) == 1:
            name = leaf_name(path)
            metrics["meta/grad" + (f"/{name}" if name else "")] = jnp.reshape(g, ())
    return metrics


def _dependent_outputs(jaxpr, sources) -> list[bool]:
    """For each output of `jaxpr`, whether it depends on any of the variables `sources` through
    anything but `stop_gradient`. Over-approximate: an equation with a dependent input makes all
    its outputs dependent, except calls (jit, custom_jvp, ...) whose inner jaxpr is searched."""
    dependent = set(sources)
    reads = lambda v: isinstance(v, jax_core.Var) and v in dependent  # noqa: E731
    for eqn in jaxpr.eqns:
        reached = [reads(v) for v in eqn.invars]
        if not any(reached) or eqn.primitive.name == "stop_gradient":
            continue
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        inner = getattr(inner, "jaxpr", inner)  # a ClosedJaxpr's Jaxpr
        if (
            isinstance(inner, jax_core.Jaxpr)
            and len(inner.invars) == len(eqn.invars)
            and len(inner.outvars) == len(eqn.outvars)
        ):
            sources_inside = [v for v, r in zip(inner.invars, reached, strict=True) if r]
            flags = _dependent_outputs(inner, sources_inside)
            dependent.update(v for v, flag in zip(eqn.outvars, flags, strict=True) if flag)
        else:
            dependent.update(eqn.outvars)
    return [reads(v) for v in jaxpr.outvars]


def _reads_meta_params(matching_loss, meta_params: PyTree, *args) -> bool:
    """Whether `matching_loss(meta_params, *args)` depends on the meta-parameters (traced
    abstractly: no computation). True when it cannot be told (e.g. a collective of a device axis
    traced on its own): the check then refuses nothing."""
    try:
        closed = jax.make_jaxpr(matching_loss)(meta_params, *args)
    except Exception:  # undecidable here: assume it does
        return True
    count = len(jax.tree.leaves(meta_params))
    return any(_dependent_outputs(closed.jaxpr, closed.jaxpr.invars[:count]))


def _make_meta_learner(
    meta_gradient: MetaGradientFn,
    meta_optimizer: optax.GradientTransformation,
    reduce: Reduce | None = None,
) -> MetaLearner:
    """Wrap a `meta_gradient` function with the meta-optimiser into `(init, step)`.

    `reduce` (e.g. `over_batch()`, `over_devices("d")`) transforms the meta-gradient function
    before the optimiser sees its gradients; `meta_gradient` of the result is the reduced one.
    """
    if reduce is not None:
        meta_gradient = reduce(meta_gradient)

    def init(meta_params: PyTree) -> MetaState:
        check_floating("meta-parameter", meta_params)
        return MetaState(
            meta_params=meta_params,
            opt_state=meta_optimizer.init(meta_params),
            step=jnp.zeros((), jnp.int32),
        )

    def step(meta_state: MetaState, learner_state: LearnerState, key: jax.Array):
        grads, (next_learner_state, metrics) = meta_gradient(
            meta_state.meta_params, learner_state, key
        )
        updates, opt_state = meta_optimizer.update(
            grads, meta_state.opt_state, meta_state.meta_params
        )
        meta_params = optax.apply_updates(meta_state.meta_params, updates)
        metrics = {
            **metrics,
            "meta/grad_norm": optax.tree.norm(grads),
            "meta/update_norm": optax.tree.norm(updates),
            **gradient_statistics(grads),
        }
        new_meta_state = MetaState(meta_params, opt_state, meta_state.step + 1)
        return new_meta_state, next_learner_state, metrics

    return MetaLearner(init=init, step=step, meta_gradient=meta_gradient)


def make_metagradient(
    update_fn: UpdateFn,
    meta_objective: MetaObjective,
    meta_optimizer: optax.GradientTransformation,
    *,
    num_inner_steps: int,
    remat: bool = False,
    unroll_loop: bool = False,
    start_fn: StartFn | None = None,
    reduce: Reduce | None = None,
) -> MetaLearner:
    """MG: back-propagate the meta-objective through K learner updates.

    meta-gradient = d f(x_K(w)) / d w, through all K updates (memory grows with K unless
    `remat`). The learner continues from x_K.

    Args:
      update_fn: phi, `(meta_params, state, key) -> (state, metrics)`.
      meta_objective: f, `(state, key) -> (loss, metrics)` evaluated at x_K.
      meta_optimizer: optax transformation for w (e.g. `optax.adam(1e-4)`).
      num_inner_steps: K >= 1.
      remat: rematerialise each inner update on the backward pass (`jax.checkpoint`).
      unroll_loop: compile the K updates as straight-line code, not a loop (see `unroll`).
      start_fn: x_0 as a function of w, `(meta_params, state) -> state`, differentiated with the
        unroll (MAML: the meta-parameters are the initialisation, x_0 = w). Default: the given
        state.
      reduce: averages the meta-gradient over a batch of tasks or over devices (`over_batch`,
        `over_devices`); None = one learner.
    """
    num_inner_steps = check_integer("num_inner_steps (K) for MG", num_inner_steps, 1)
    start_fn = start_fn or _keep_state

    def meta_gradient(meta_params: PyTree, learner_state: LearnerState, key: jax.Array):
        inner_key, objective_key = jax.random.split(key)

        def meta_loss(meta_params):
            state, inner_metrics = unroll(
                update_fn,
                meta_params,
                start_fn(meta_params, learner_state),
                inner_key,
                num_inner_steps,
                remat=remat,
                unroll_loop=unroll_loop,
            )
            loss, objective_metrics = check_objective(meta_objective(state, objective_key))
            return loss, (state, inner_metrics, objective_metrics)

        (loss, (state, inner_metrics, objective_metrics)), grads = jax.value_and_grad(
            meta_loss, has_aux=True
        )(meta_params)
        metrics: Metrics = {
            **mean_over_steps(inner_metrics),
            **{f"meta/{name}": value for name, value in objective_metrics.items()},
            "meta/loss": loss,
            "meta/objective": loss,
        }
        return grads, (state, metrics)

    return _make_meta_learner(meta_gradient, meta_optimizer, reduce)


def make_bmg(
    update_fn: UpdateFn,
    target_bootstrap: TargetBootstrap,
    matching_fn: MatchingFn,
    meta_optimizer: optax.GradientTransformation,
    *,
    num_inner_steps: int,
    continue_from: ContinueFrom = "inner",
    remat: bool = False,
    unroll_loop: bool = False,
    start_fn: StartFn | None = None,
    reduce: Reduce | None = None,
) -> MetaLearner:
    """BMG: match the K-step learner x_K(w) to a bootstrapped target x~ under mu.

    meta-gradient = d mu(x~, x_K(w), w) / d w with x~ = TB(x_K) held constant. Only the K inner
    updates are differentiated (one vector-Jacobian product through the unroll); the target is
    computed from the primal x_K, outside any differentiation, so compute and memory for the
    target grow with L like a forward pass and the backward pass does not depend on L at all.

    Args:
      update_fn: phi.
      target_bootstrap: from `make_target_bootstrap(update_fn, L, ...)`.
      matching_fn: mu, `(target, state, meta_params) -> scalar`.
      meta_optimizer: optax transformation for w.
      num_inner_steps: K >= 0. With K = 0 the learner is not unrolled and the meta-gradient comes
        only from meta-parameters that `matching_fn` uses directly (e.g. epsilon-greedy's epsilon)
        or through `start_fn`; when it reads neither, the first trace raises `ValueError` (the
        meta-gradient would be zero at every step).
      continue_from: where the learner goes on after the meta-step: "inner" (x_K, the default),
        "target" (x_{K+L-1}, the state before the target's final step; the L-1 bootstrap updates
        are then not wasted), "inner_params" (x_K's parameters and optimiser state with the
        `extras` of x_{K+L-1}: an RL learner keeps the environment stream the target advanced),
        or a function `(x_K, x_{K+L-1}) -> state`.
      remat: rematerialise each inner update on the backward pass.
      unroll_loop: compile the K updates as straight-line code, not a loop (see `unroll`); the
        target's updates are set in `make_target_bootstrap`.
      start_fn: x_0 as a function of w, as in `make_metagradient` (MAML-style initialisations).
      reduce: as in `make_metagradient`.
    """
    num_inner_steps = check_integer("num_inner_steps (K) for BMG", num_inner_steps, 0)
    start_fn = start_fn or _keep_state
    if continue_from == "inner":
        continue_fn = lambda inner, bootstrapped: inner
    elif continue_from == "target":
        continue_fn = lambda inner, bootstrapped: bootstrapped
    elif continue_from == "inner_params":
        continue_fn = lambda inner, bootstrapped: inner._replace(extras=bootstrapped.extras)
    elif callable(continue_from):
        continue_fn = continue_from
    else:
        raise ValueError(
            "continue_from must be 'inner', 'target', 'inner_params' or a function (inner_state, "
            f"bootstrapped_state) -> state; got {continue_from!r}."
        )

    checked = False  # the matching function's dependence, checked at the first trace

    def check_k0(meta_params: PyTree, learner_state: LearnerState, target: LearnerState) -> None:
        nonlocal checked
        if num_inner_steps == 0:
            loss = lambda w, state, target: matching_fn(target, start_fn(w, state), w)  # noqa: E731
            if not _reads_meta_params(loss, meta_params, learner_state, target):
                raise ValueError(
                    "BMG with inner_steps K = 0 needs a matching_fn (or start_fn) that reads the "
                    "meta-parameters directly, e.g. an epsilon-greedy policy's epsilon; this "
                    "learner's do not, so its meta-gradient would be zero at every step: use "
                    "K >= 1."
                )
        else:

            def loss(w_and_params, state, target):
                w, params = w_and_params
                return matching_fn(target, state._replace(params=params), w)

            sources = (meta_params, learner_state.params)
            if not _reads_meta_params(loss, sources, learner_state, target):
                raise ValueError(
                    "BMG's matching_fn depends on neither the learner's parameters nor the "
                    "meta-parameters, so its meta-gradient would be zero at every step: it must "
                    "compare the target with the learner state it is given."
                )
        checked = True

    def meta_gradient(meta_params: PyTree, learner_state: LearnerState, key: jax.Array):
        inner_key, target_key = jax.random.split(key)
        inner_state, vjp_fn, inner_metrics = jax.vjp(
            lambda w: unroll(
                update_fn,
                w,
                start_fn(w, learner_state),
                inner_key,
                num_inner_steps,
                remat=remat,
                unroll_loop=unroll_loop,
            ),
            meta_params,
            has_aux=True,
        )
        bootstrapped = target_bootstrap(meta_params, inner_state, target_key)
        if not checked:
            check_k0(meta_params, learner_state, bootstrapped.target)

        def matching_loss(state, meta_params):
            loss = matching_fn(bootstrapped.target, state, meta_params)
            check_scalar("matching_fn", loss)
            return loss

        # allow_int: integer leaves of the learner state (env state, counters) get float0
        # cotangents, which is what the VJP of the unroll expects for them.
        loss, (state_cotangent, direct_grads) = jax.value_and_grad(
            matching_loss, argnums=(0, 1), allow_int=True
        )(inner_state, meta_params)
        grads = _tree_add(direct_grads, vjp_fn(state_cotangent)[0])
        metrics: Metrics = {
            **mean_over_steps(inner_metrics),
            **bootstrapped.metrics,
            "meta/loss": loss,
            "target/distance": parameter_distance(bootstrapped.target.params, inner_state.params),
        }
        return grads, (continue_fn(inner_state, bootstrapped.state), metrics)

    return _make_meta_learner(meta_gradient, meta_optimizer, reduce)


def make_fixed(
    update_fn: UpdateFn, *, num_inner_steps: int = 1, reduce: Reduce | None = None
) -> MetaLearner:
    """No meta-learning: K learner updates per step with the meta-parameters held fixed.

    The baseline with the same interface as MG and BMG (its `meta_gradient` is zero).
    """
    num_inner_steps = check_integer("num_inner_steps (K)", num_inner_steps, 1)

    def meta_gradient(meta_params: PyTree, learner_state: LearnerState, key: jax.Array):
        state, inner_metrics = unroll(update_fn, meta_params, learner_state, key, num_inner_steps)
        return jax.tree.map(jnp.zeros_like, meta_params), (state, mean_over_steps(inner_metrics))

    return _make_meta_learner(meta_gradient, optax.identity(), reduce)


def make_meta_learner(
    learner: Learner,
    config: MetaConfig,
    *,
    reduce: Reduce | None = None,
    meta_optimizer: optax.GradientTransformation | None = None,
) -> MetaLearner:
    """Fixed, MG or BMG meta-learning for `learner`, as `config.algo` says.

    BMG's target is L-1 updates of phi and then `learner.target_step` (or a plain gradient step of
    size `config.target_step_size` on `learner.meta_objective`), matched with
    `learner.matching_fn`.

    Args:
      learner: a `Learner`.
      config: a `MetaConfig`.
      reduce: averages meta-gradients over tasks (`over_batch()`) or devices
        (`over_devices(axis_name)` under `shard_map`); compose them with `compose`.
      meta_optimizer: overrides `optax.adam(config.learning_rate, eps=config.adam_eps)`.

    Raises:
      ValueError: BMG for a learner without `matching_fn`; BMG with K = 0 whose `matching_fn`
        (and `start_fn`) read no meta-parameter, at the first trace of its step.
    """
    if meta_optimizer is None:
        meta_optimizer = optax.adam(config.learning_rate, eps=config.adam_eps)
    if config.algo == "fixed":
        return make_fixed(learner.update_fn, num_inner_steps=config.inner_steps, reduce=reduce)
    if config.algo == "mg":
        return make_metagradient(
            learner.update_fn,
            learner.meta_objective,
            meta_optimizer,
            num_inner_steps=config.inner_steps,
            remat=config.remat,
            unroll_loop=config.unroll_loop,
            start_fn=learner.start_fn,
            reduce=reduce,
        )
    if learner.matching_fn is None:
        raise ValueError("algo 'bmg' needs a learner with a matching_fn; this one has none.")
    final_step = learner.target_step or gradient_step(
        learner.meta_objective, step_size=config.target_step_size
    )
    bootstrap = make_target_bootstrap(
        learner.update_fn,
        config.bootstrap_steps,
        final_update_fn=final_step,
        unroll_loop=config.unroll_loop,
    )
    return make_bmg(
        learner.update_fn,
        bootstrap,
        learner.matching_fn,
        meta_optimizer,
        num_inner_steps=config.inner_steps,
        continue_from=config.continue_from,
        remat=config.remat,
        unroll_loop=config.unroll_loop,
        start_fn=learner.start_fn,
        reduce=reduce,
    )


Batching = Literal["vmap", "map", "unroll"]


def batch_map(fn, batching: Batching = "vmap"):
    """`fn` over the leading axis of a pytree, results stacked: `vmap` (one batched program),
    `lax.map` (a compiled loop) or "unroll" (a Python loop inside the compiled function,
    straight-line code). The same numbers each way; a speed choice only.

    Raises:
      ValueError: an unknown `batching`.
    """
    if batching == "vmap":
        return jax.vmap(fn)
    if batching == "map":
        return lambda xs: jax.lax.map(fn, xs)
    if batching == "unroll":

        def unrolled(xs):
            size = jax.tree.leaves(xs)[0].shape[0]
            results = [fn(jax.tree.map(lambda x, i=i: x[i], xs)) for i in range(size)]
            return jax.tree.map(lambda *ys: jnp.stack(ys), *results)

        return unrolled
    raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}.")


def over_batch(batching: Batching = "vmap") -> Reduce:
    """Average a meta-gradient over a batch of learners (e.g. the tasks of a meta-batch).

    The learner state passed to the reduced function has a leading batch axis B on every leaf.
    The key is either one key, split into B (`jax.random.split(key, B)`, one per learner), or
    already B keys (shape [B], as `over_devices` passes each device its share). Gradients and
    metrics are averaged over B; the next learner states come back stacked.

    `batching` is a speed choice only, the numbers are the same: "vmap" (one batched program),
    "map" (`lax.map`, one learner at a time in a compiled loop) or "unroll" (a Python loop inside
    the compiled function: straight-line code, fastest for convolutional learners on CPU).
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}.")

    def reduce(meta_gradient: MetaGradientFn) -> MetaGradientFn:
        def batched(meta_params: PyTree, learner_states: LearnerState, key: jax.Array):
            size = jax.tree.leaves(learner_states)[0].shape[0]
            keys = key if jnp.shape(key) == (size,) else jax.random.split(key, size)
            one = lambda args: meta_gradient(meta_params, *args)
            grads, (states, metrics) = batch_map(one, batching)((learner_states, keys))
            grads, metrics = jax.tree.map(lambda x: jnp.mean(x, axis=0), (grads, metrics))
            return grads, (states, metrics)

        return batched

    return reduce


def over_batch_shards(axis_name: str = "batch") -> Reduce:
    """A `bmg.core` reduction for one learner whose batch is split over the devices of
    `axis_name` (inside `jax.shard_map(..., check_vma=False)`): every device computes the
    meta-gradient of its shard's objective with the same key, then `jax.lax.pmean` averages
    the meta-gradients and metrics, so the replicated meta-parameters get the same update.

    Unlike `over_devices` (independent learners, one per device: keys split per
    device, meta-parameters marked device-varying) the learner here is one: it all-reduces its
    own gradients and slices its global draws, so the key must be the same everywhere.
    """

    def reduce(meta_gradient):
        def averaged(meta_params, learner_state, key):
            grads, (state, metrics) = meta_gradient(meta_params, learner_state, key)
            grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
            return grads, (state, metrics)

        return averaged

    return reduce


def over_devices(axis_name: str, *, batched: bool = True) -> Reduce:
    """Average a meta-gradient (and its metrics) over the devices of a `shard_map` axis.

    Inside `jax.shard_map(..., in_specs=(P(), P(axis_name), P()))` (meta-state replicated,
    learner states split, one replicated key) each device computes the meta-gradient of its
    shard, then `jax.lax.pmean` makes every device apply the same averaged update, so the
    meta-parameters stay replicated. The meta-parameters are marked device-varying first
    (`jax.lax.pcast`): otherwise, under shard_map's default `check_vma=True`, differentiating
    with respect to replicated values already sums over devices and the mean would be N x too
    large.

    Keys do not depend on the layout: with `batched` (compose with `over_batch`: a batch of B
    learners split over N devices) the key is split into B keys and device i gets its B / N
    of them, the same keys its learners get on one device; without it (one learner per device)
    device i gets `jax.random.split(key, N)[i]`. So N devices give the numbers of one device
    (to float reassociation in the mean).
    """

    def reduce(meta_gradient: MetaGradientFn) -> MetaGradientFn:
        def averaged(meta_params: PyTree, learner_state: LearnerState, key: jax.Array):
            meta_params = jax.lax.pcast(meta_params, axis_name, to="varying")
            devices = jax.lax.axis_size(axis_name)
            index = jax.lax.axis_index(axis_name)
            if batched:
                local = jax.tree.leaves(learner_state)[0].shape[0]
                keys = jax.random.split(key, devices * local).reshape(devices, local)
            else:
                keys = jax.random.split(key, devices)
            key = jax.lax.dynamic_index_in_dim(keys, index, keepdims=False)
            grads, (state, metrics) = meta_gradient(meta_params, learner_state, key)
            grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
            return grads, (state, metrics)

        return averaged

    return reduce


def compose(*reduces: Reduce) -> Reduce:
    """`compose(a, b)(mg) = b(a(mg))`: the first reduction is the innermost."""

    def reduce(meta_gradient: MetaGradientFn) -> MetaGradientFn:
        for r in reduces:
            meta_gradient = r(meta_gradient)
        return meta_gradient

    return reduce
