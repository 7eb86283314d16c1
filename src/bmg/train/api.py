"""What every runner of the engine shares: the error a guard raises when training stops being
finite (the Anakin runner and the host loop raise it; the package docstring lists the runners)."""


class NonFiniteError(ValueError):
    """Training produced a NaN or an infinity (both runners' guard); the message is one sentence
    for a person. `state` / `trace`, when given, are the last good state and the trace so far."""

    def __init__(self, message: str, state=None, trace=None):
        super().__init__(message)
        self.state = state
        self.trace = trace
