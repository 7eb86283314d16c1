"""Runners: how a `bmg.core.Learner` and its meta-learner are driven through a lifetime.

- `anakin`: the whole lifetime compiled in chunks of meta-steps, vmapped over seeds and sharded
  over devices (the Anakin pattern of Hessel et al., "Podracer architectures for scalable
  reinforcement learning", 2021), with orbax checkpoints between chunks; `lifetime` drives its
  run directory (metrics, progress, resume, results) the same way for every system on it.
- `host_loop`: a host-side loop with evaluation and model selection (few-shot).

An experiment module declares its config, presets, metrics and report; a runner does the rest.
"""


class NonFiniteError(ValueError):
    """Training produced a NaN or an infinity (both runners' guard); the message is one sentence
    for a person. `state` / `trace`, when given, are the last good state and the trace so far."""

    def __init__(self, message: str, state=None, trace=None):
        super().__init__(message)
        self.state = state
        self.trace = trace
