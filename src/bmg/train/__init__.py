"""The engine: how a `bmg.core.Learner` and its meta-learner are driven through a lifetime.

- `anakin`: the whole lifetime compiled in chunks of meta-steps, lanes (seeds or a sweep's
  configurations) vmapped in groups and sharded over devices, orbax checkpoints between chunks
  (the Anakin pattern of Hessel et al., "Podracer architectures for scalable reinforcement
  learning", 2021); `driver` runs it into a run directory the same way for every system.
- `sebulba`: host environments on actor threads, a queue, a learner sharded over devices and
  processes; any agent.
- `host_loop`: a host-side loop with evaluation and model selection (few-shot).
- `lifetime`: a lifetime's arithmetic (chunks of meta-steps); `checkpoint`, `rundir`, `logging`,
  `records`, `backend`: checkpoints, run directories, metrics and progress, file schemas, the JAX
  backend.

It imports `bmg.core`, `bmg.rl` and `bmg.checks` only, never an agent or a system.
"""
