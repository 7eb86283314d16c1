"""Runners: how a `bmg.core.Learner` and its meta-learner are driven through a lifetime.

- `anakin`: the whole lifetime compiled in chunks of meta-steps, vmapped over seeds and sharded
  over devices (the Anakin pattern of Hessel et al., "Podracer architectures for scalable
  reinforcement learning", 2021), with orbax checkpoints between chunks.
- `host_loop`: a host-side loop with evaluation and model selection (few-shot).

An experiment module declares its config, presets, metrics and report; a runner does the rest.
"""
