"""The machine's bounds and a program's cost, shared by the benchmarks (imported after
`use_all_cpu_cores()`, as it imports jax).

- `matmul_peak()`: float32 FLOP/s of a 2048 x 2048 product per device, all devices at once.
- `bandwidth_at(bytes)`: bytes/s of ``y = x * a + b`` over arrays of that size in all, sharded
  over every device: the bandwidth of the cache level or memory that holds such a working set.
- `loop_cost(compiled)`: FLOPs and bytes accessed of a compiled program with every loop body
  counted as many times as the loop runs. XLA's own `compiled.cost_analysis()` counts a while
  loop's body once, whatever its trip count (a `lax.scan` of 1 or 1,000 steps costs the same
  there, nested loops included), so a chunk of meta-steps, each a scan over environment steps,
  is undercounted by orders of magnitude. `loop_cost` walks the compiled HLO text instead,
  multiplying each body by XLA's `known_trip_count`, with XLA's conventions per operation: a
  dot or convolution is 2 x multiply-adds, other arithmetic one FLOP per output element; an
  operation's bytes are its operands read and its result written once (a fusion's inside is not
  counted again; a fused parameter read only through slices counts the slices; an in-place
  dynamic-update-slice counts the update, not the buffer).
- `machine_line()`: date, CPU model, cores and JAX version, for a benchmark's header.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import re
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec


def best_of(fn, *args, repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls of `fn(*args)` (after one untimed call), seconds."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def bandwidth_at(size_bytes: int) -> float:
    """Bytes/s of ``y = x * a + b`` over float32 arrays of ``size_bytes`` in all (x and y, split
    over every device), repeated inside one program so that dispatch does not count: the
    bandwidth of whichever cache level or memory holds a working set of that size."""
    devices = jax.devices()
    mesh = jax.sharding.Mesh(devices, ("d",))
    n = max(size_bytes // 8 // len(devices), 1024) * len(devices)  # x and y: 4 bytes each
    x = jax.device_put(jnp.ones((n,), jnp.float32), NamedSharding(mesh, PartitionSpec("d")))
    repeats = max(1, int(2e9 // (8 * n)))
    run = jax.jit(lambda x: jax.lax.fori_loop(0, repeats, lambda _, y: y * 0.9999 + 1e-4, x))
    return repeats * 8 * n / best_of(run, x, repeats=3)


def matmul_peak() -> float:
    """float32 FLOP/s of one 2048 x 2048 product per device, all devices at once, best of 5."""
    devices = jax.devices()
    mesh = jax.sharding.Mesh(devices, ("d",))
    m = 2048
    a = jnp.ones((len(devices), m, m), jnp.float32)
    a = jax.device_put(a, NamedSharding(mesh, PartitionSpec("d")))
    matmul = jax.jit(lambda a: jnp.einsum("dij,djk->dik", a, a))
    return len(devices) * 2 * m**3 / best_of(matmul, a)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """Date, CPU, cores, JAX version and devices, one line."""
    devices = jax.devices()
    return (
        f"{datetime.date.today().isoformat()}; {cpu_model()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__}, {len(devices)} {devices[0].platform} devices"
    )


def xla_cost(compiled) -> tuple[float, float]:
    """(FLOPs, bytes accessed) of XLA's cost analysis (every loop body counted once)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


# HLO text walker -------------------------------------------------------------------------------

_BYTES = {
    "pred": 1, "s4": 1, "u4": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
    "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4,
    "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
_HEADER = re.compile(r"^(ENTRY )?%(\S+) \(.*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (.*)$")
# no data moved or computed: the program's plumbing
_FREE = {
    "parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all",
    "partition-id", "replica-id", "iota", "opt-barrier", "add-dependency",
}  # fmt: skip
# one FLOP per output element (XLA's elementwise and reduction ops; transcendentals included)
_ARITHMETIC = {
    "add", "subtract", "multiply", "divide", "maximum", "minimum", "abs", "negate", "sign",
    "exponential", "exponential-minus-one", "log", "log-plus-one", "tanh", "logistic", "sqrt",
    "rsqrt", "cbrt", "power", "remainder", "atan2", "sine", "cosine", "tan", "erf", "floor",
    "ceil", "round-nearest-afz", "round-nearest-even", "compare", "select", "clamp", "and", "or",
    "xor", "not", "shift-left", "shift-right-logical", "shift-right-arithmetic", "is-finite",
    "reduce", "reduce-window", "convert",
}  # fmt: skip


def _arrays(shape: str) -> list[tuple[str, list[int]]]:
    return [
        (dtype, [int(d) for d in dims.split(",") if d])
        for dtype, dims in _ARRAY.findall(shape)
        if dtype in _BYTES
    ]


def _bytes(shape: str) -> int:
    return sum(_BYTES[t] * math.prod(dims) for t, dims in _arrays(shape))


def _elements(shape: str) -> int:
    return sum(math.prod(dims) for _, dims in _arrays(shape))


def _split_top(text: str) -> tuple[str, str]:
    """`text` starting with "(": (inside the balanced parentheses, what follows them)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[1:i], text[i + 1 :]
    return text[1:], ""


def _parse(rhs: str) -> tuple[str, str, list[str], str]:
    """`SHAPE opcode(operands), attrs` -> (shape, opcode, operand names, attrs)."""
    if rhs.startswith("("):
        inside, rest = _split_top(rhs)
        shape, rest = f"({inside})", rest.lstrip()
    else:
        shape, _, rest = rhs.partition(" ")
    opcode, _, rest = rest.partition("(")
    operands, attrs = _split_top("(" + rest)
    if opcode == "parameter":
        return shape, opcode, [], operands  # its index as the attributes
    return shape, opcode, re.findall(r"%([\w.\-]+)", operands), attrs


def _computations(text: str) -> tuple[dict, str]:
    """name -> [(name, shape, opcode, operands, attrs, is_root)] and the entry's name."""
    computations, entry, current = {}, None, None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = computations.setdefault(header.group(2), [])
            entry = header.group(2) if header.group(1) else entry
            continue
        if line.startswith("}"):
            current = None
            continue
        match = _INSTRUCTION.match(line) if current is not None else None
        if match:
            shape, opcode, operands, attrs = _parse(match.group(2))
            root = line.lstrip().startswith("ROOT ")
            current.append((match.group(1), shape, opcode, operands, attrs, root))
    return computations, entry


def _dot_flops(shape: str, lhs_shape: str, attrs: str) -> float:
    contracting = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", attrs)
    lhs = _arrays(lhs_shape)
    if not lhs:
        return 0.0
    dims = lhs[0][1]
    k = math.prod(dims[int(i)] for i in contracting.group(1).split(",") if i) if contracting else 1
    return 2.0 * _elements(shape) * k


def _conv_flops(shape: str, kernel_shape: str, attrs: str) -> float:
    kernel = _arrays(kernel_shape)
    labels = re.search(r"dim_labels=\w+_(\w+)->", attrs)
    if not kernel or not labels:
        return 0.0
    dims = kernel[0][1]
    out_features = dims[labels.group(1).index("o")] if "o" in labels.group(1) else 1
    return 2.0 * _elements(shape) * math.prod(dims) / max(out_features, 1)


class _Walker:
    def __init__(self, text: str, multiply: bool = True):
        self.computations, self.entry = _computations(text)
        self.shapes = {
            name: {i[0]: i[1] for i in instructions}
            for name, instructions in self.computations.items()
        }
        self.multiply = multiply
        self.unknown_loops = 0
        self._flops: dict[str, float] = {}
        self._cost: dict[str, tuple[float, float]] = {}

    def called(self, attrs: str) -> list[str]:
        return [n for n in re.findall(r"%([\w.\-]+)", attrs) if n in self.computations]

    def fused_flops(self, name: str) -> float:
        """FLOPs inside a fused (or applied) computation, once."""
        if name not in self._flops:
            shapes = self.shapes[name]
            self._flops[name] = sum(
                self.op_flops(shapes, shape, opcode, operands, attrs)
                for _, shape, opcode, operands, attrs, _ in self.computations[name]
            )
        return self._flops[name]

    def op_flops(self, shapes, shape, opcode, operands, attrs) -> float:
        if opcode == "dot":
            return _dot_flops(shape, shapes.get(operands[0], ""), attrs)
        if opcode == "convolution":
            return _conv_flops(shape, shapes.get(operands[1], ""), attrs)
        if opcode == "fusion":
            return sum(self.fused_flops(n) for n in self.called(attrs))
        if opcode in ("reduce", "reduce-window"):
            return float(sum(_elements(shapes.get(o, "")) for o in operands[: len(operands) // 2]))
        if opcode in _ARITHMETIC:
            return float(_elements(shape))
        return 0.0

    def fusion_bytes(self, shapes, shape, operands, attrs) -> float:
        """Operands read and result written by a fusion: a parameter used only through slices
        counts the slices; an in-place dynamic-update-slice root counts its update, not the
        buffer."""
        called = self.called(attrs)
        inside = self.computations.get(called[0], []) if called else []
        fused_shapes = self.shapes.get(called[0], {}) if called else {}
        params, users, root = {}, {}, None
        for name, op_shape, opcode, op_operands, op_attrs, is_root in inside:
            if opcode == "parameter":
                params[name] = int(op_attrs)
            for o in op_operands:
                users.setdefault(o, []).append((opcode, op_shape))
            if is_root:
                root = (opcode, op_operands)
        sizes = [_bytes(shapes.get(o, "")) for o in operands]
        in_place = None
        if root and root[0] == "dynamic-update-slice" and len(root[1]) > 1:
            in_place = root[1][0]  # the buffer, aliased with the result
        total = 0.0
        for name, index in params.items():
            uses = users.get(name, [])
            if name == in_place or index >= len(sizes):
                continue
            if uses and all(op in ("dynamic-slice", "slice", "gather") for op, _ in uses):
                total += sum(_bytes(s) for _, s in uses)
            else:
                total += sizes[index]
        if in_place is not None:
            return total + _bytes(fused_shapes.get(root[1][1], ""))
        return total + _bytes(shape)

    def cost(self, name: str) -> tuple[float, float]:
        """(FLOPs, bytes) of one run of computation `name`, loops multiplied out."""
        if name in self._cost:
            return self._cost[name]
        shapes = self.shapes[name]
        flops = bytes_ = 0.0
        for _, shape, opcode, operands, attrs, _ in self.computations[name]:
            if opcode in _FREE:
                continue
            if opcode == "while":
                body = re.search(r"body=%([\w.\-]+)", attrs).group(1)
                condition = re.search(r"condition=%([\w.\-]+)", attrs).group(1)
                trips = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', attrs)
                self.unknown_loops += trips is None
                n = int(trips.group(1)) if trips and self.multiply else 1
                checks = n + 1 if self.multiply else 1
                body_cost, condition_cost = self.cost(body), self.cost(condition)
                flops += n * body_cost[0] + checks * condition_cost[0]
                bytes_ += n * body_cost[1] + checks * condition_cost[1]
                continue
            if opcode in ("call", "conditional", "async-start"):
                costs = [self.cost(n) for n in self.called(attrs)]
                if costs:  # a conditional's dearest branch
                    flops += max(c[0] for c in costs)
                    bytes_ += max(c[1] for c in costs)
                continue
            flops += self.op_flops(shapes, shape, opcode, operands, attrs)
            if opcode == "fusion":
                bytes_ += self.fusion_bytes(shapes, shape, operands, attrs)
            elif opcode == "dynamic-update-slice":
                bytes_ += 2 * _bytes(shapes.get(operands[1], "")) if len(operands) > 1 else 0
            elif opcode in ("dynamic-slice", "slice", "gather"):
                bytes_ += 2 * _bytes(shape)
            else:
                bytes_ += _bytes(shape) + sum(_bytes(shapes.get(o, "")) for o in operands)
        self._cost[name] = (flops, bytes_)
        return flops, bytes_


def loop_cost(compiled, multiply: bool = True) -> dict:
    """FLOPs and bytes accessed of one run of a compiled program (per device, for a sharded
    one), every loop body counted as often as it runs (see the module docstring), and the
    number of loops whose trip count XLA did not know (counted once). `multiply=False` counts
    every loop once, as XLA's cost analysis does: a check of the walker against it."""
    walker = _Walker(compiled.as_text(), multiply)
    flops, bytes_ = walker.cost(walker.entry)
    return {"flops": flops, "bytes": bytes_, "unknown_loops": walker.unknown_loops}


PYTORCH_PORT = {("fixed", 1, None): 1_051.0, ("mg", 7, None): 390.0, ("bmg", 7, 9): 435.0}
"""Environment steps per second of the public PyTorch port of Two-colors
(MagiFeeney/Bootstrapped-Meta-Learning, one thread, one seed) on a 2-core machine of this kind,
by (algo, K, L): A2C and BMG K = 7, L = 9 measured side by side with ours; MG K = 7 earlier
(A2C measured 1,200 and BMG 430 then). Recorded, not re-run here."""
