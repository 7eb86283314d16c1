"""What every runner of the engine shares: the error a guard raises when training stops being
finite (every runner raises it: Anakin, Sebulba, the host loop; the package docstring lists
them)."""


class NonFiniteError(ValueError):
    """Training produced a NaN or an infinity (both runners' guard); the message is one sentence
    for a person. `state` / `trace`, when given, are the last good state and the trace so far."""

    def __init__(self, message: str, state=None, trace=None):
        super().__init__(message)
        self.state = state
        self.trace = trace
