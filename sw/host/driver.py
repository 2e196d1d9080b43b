"""The host driver: speaks the accelerator's host protocol over a transport.

One class, `HostDriver`, knows the protocol (docs/architecture.md, "Host port";
docs/contract.md): it encodes every host word with the contract's `HostFormat`, writes the
memories a mapping fills (keyed by `HostMemory`), sets the control registers, runs the
accelerator, reads results, cycle counters and status, and raises `AcceleratorError` when
the status shows the error flag or a run does not finish within its cycle budget.

A *transport* moves words; it knows nothing of their meaning.  It has three operations:

* ``write(word)``: one host write;
* ``read(word) -> Pending``: one host read, its answer (an int) once available;
* ``run(budget) -> Pending``: pulse ``start`` and wait at most `budget` cycles for
  ``done``; its answer is a `RunStatus`.

Every answer is a `Pending` so that a transport may *batch*: record the operations and
execute them all at `Transport.flush` (the native Verilator harness runs a script at
native speed; the cocotb bench runs them in the simulator; a serial link to a board would
send a burst).  An immediate transport resolves each `Pending` at once.  The driver's
checks (error flag, timeout) run when the answers arrive: `HostDriver.flush` (or ``await
HostDriver.flush_async()`` for a transport whose flush is a coroutine) raises then.

`Transport.write_memory` is the one place a transport may take a shortcut for a whole
memory (a simulator backdoor); by default it sends the host words one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mars.config import MarsConfig
from mars.contract.banking import Banking
from mars.contract.host import (
    ControlRead,
    ControlWrite,
    HostFormat,
    HostMemory,
    Region,
    Scope,
    Status,
)
from mars.errors import MarsError

__all__ = ["AcceleratorError", "AcceleratorTimeout", "Pending", "RunStatus", "Transport",
           "RecordingTransport", "HostDriver", "Inference", "run_inferences"]


class AcceleratorError(MarsError, RuntimeError):
    """The accelerator reported an error: its status error flag is set (a decoder rejected
    a descriptor or an index code), or a run did not finish within its cycle budget."""


class AcceleratorTimeout(AcceleratorError):
    """A run did not raise ``done`` within its cycle budget: the accelerator hangs."""


_UNSET = object()


class Pending:
    """An answer that a batching transport delivers later.

    ``value`` is available once the transport resolved it (after `Transport.flush`);
    reading it earlier raises `RuntimeError`.  `then` derives a pending value (e.g. a
    decoded word) from one or more others without waiting for them.
    """

    __slots__ = ("_value", "_derive")

    def __init__(self, value: Any = _UNSET):
        self._value = value
        self._derive: Callable[[], Any] | None = None

    def resolve(self, value: Any) -> None:
        """Deliver the answer (transports call this)."""
        if self._value is not _UNSET:
            raise RuntimeError("this answer was already delivered")
        self._value = value

    @property
    def ready(self) -> bool:
        """The value is available."""
        try:
            self.value
        except _NotReady:
            return False
        return True

    @property
    def value(self) -> Any:
        if self._value is _UNSET and self._derive is not None:
            self._value = self._derive()        # raises _NotReady if an input is missing
        if self._value is _UNSET:
            raise _NotReady("the transport has not delivered this answer yet: flush it "
                            "(HostDriver.flush, or await HostDriver.flush_async)")
        return self._value

    @staticmethod
    def gather(items: Sequence[Pending], combine: Callable[[list], Any]) -> Pending:
        """A pending ``combine([item.value for item in items])``."""
        derived = Pending()
        derived._derive = lambda: combine([item.value for item in items])
        return derived

    def then(self, function: Callable[[Any], Any]) -> Pending:
        """A pending ``function(self.value)``."""
        return Pending.gather([self], lambda values: function(values[0]))


class _NotReady(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """What a transport's `run` reports.

    Members
    -------
    cycles : int or None
        Cycles from ``start`` to ``done``; None if ``done`` did not rise within the budget.
    status : Status
        The top's ``busy``, ``done`` and ``error`` outputs when the run ended (or gave up).
    """

    cycles: int | None
    status: Status


class Transport:
    """How host words reach the accelerator; subclasses implement `write`, `read`, `run`.

    Subclasses that batch override `flush` (or define ``async def flush`` and set
    ``is_async = True``) and resolve the `Pending` answers there.
    """

    #: `flush` is a coroutine (the driver's `HostDriver.flush_async` awaits it).
    is_async = False

    def write(self, word: int) -> None:
        """Send one host word (its ``write`` bit is 1)."""
        raise NotImplementedError

    def read(self, word: int) -> Pending:
        """Send one host read word (``write`` = 0); the answer is the read data."""
        raise NotImplementedError

    def run(self, budget: int) -> Pending:
        """Pulse ``start`` and wait at most `budget` cycles for ``done``; a `RunStatus`."""
        raise NotImplementedError

    def write_memory(self, memory: HostMemory, unit: int, domain: int, offset: int,
                     values: Sequence[int], words: Iterable[int]) -> None:
        """Fill words ``offset, offset+1, ...`` of one memory with `values`; `words` are the
        host words that write them (generated lazily).  By default every word is sent."""
        for word in words:
            self.write(word)

    def flush(self) -> None:
        """Execute what was recorded and deliver every answer (nothing to do here)."""


class RecordingTransport(Transport):
    """A transport that records a session and plays it at `flush`: the base of every
    batching transport (simulators restarted per session, cocotb).

    Recorded operations, in order, in ``self._ops``: ``("W", word, None)``,
    ``("R", word, Pending)`` and ``("S", budget, Pending)``.
    """

    def __init__(self) -> None:
        self._ops: list[tuple] = []

    def write(self, word: int) -> None:
        self._ops.append(("W", word, None))

    def read(self, word: int) -> Pending:
        answer = Pending()
        self._ops.append(("R", word, answer))
        return answer

    def run(self, budget: int) -> Pending:
        answer = Pending()
        self._ops.append(("S", budget, answer))
        return answer

    def take_ops(self) -> list[tuple]:
        """The recorded operations, leaving the record empty."""
        ops, self._ops = self._ops, []
        return ops


class HostDriver:
    """The host side of the accelerator built from `config`, over `transport`.

    Every method that reads returns a `Pending`; with a batching transport the values
    arrive at `flush` (`flush_async`).  The methods follow the host port of
    `mars.contract.host`: memories by `HostMemory`, control registers by `ControlWrite` /
    `ControlRead`, status bits by `Status`.
    """

    def __init__(self, config: MarsConfig, transport: Transport):
        self.config = config
        self.transport = transport
        self.format = HostFormat(config)
        # (offset, width) of each field of a host word, from the layout (packed by shifts:
        # `layout.const` per word would dominate a load of thousands of words).
        self._fields = {name: (field.offset, field.width)
                        for name, field in self.format.layout()}
        self._runs: list[tuple[Pending, int]] = []

    # -- words ---------------------------------------------------------------------------

    def word(self, region: Region, offset: int, data: int = 0, *, write: bool = True,
             unit: int = 0, domain: int = 0) -> int:
        """The host word (an int, `HostFormat.layout`) of one access."""
        word = 0
        for name, value in (("write", int(write)), ("region", int(region)), ("unit", unit),
                            ("domain", domain), ("offset", offset), ("data", data)):
            shift, width = self._fields[name]
            if not 0 <= value < 1 << width:
                raise ValueError(f"host word field {name} = {value} does not fit {width} bits")
            word |= value << shift
        return word

    def _check_address(self, memory: HostMemory, unit: int, domain: int, offset: int,
                       count: int = 1) -> None:
        cfg = self.config
        units = {Scope.TOP: 1, Scope.CORE: cfg.cores}.get(memory.scope, cfg.macros)
        domains = cfg.wordline_domains if memory.scope is Scope.DOMAIN else 1
        if not 0 <= unit < units:
            raise ValueError(f"{memory.value}: unit {unit} outside [0, {units})")
        if not 0 <= domain < domains:
            raise ValueError(f"{memory.value}: domain {domain} outside [0, {domains})")
        depth = memory.depth(cfg)
        if offset < 0 or offset + count > depth:
            raise ValueError(f"{memory.value}: words [{offset}, {offset + count}) outside "
                             f"its {depth} words")

    # -- memories ------------------------------------------------------------------------

    def write_memory(self, memory: HostMemory, words: Sequence[int], *, unit: int = 0,
                     domain: int = 0, offset: int = 0) -> None:
        """Write `words` into `memory` (copy `unit`, `domain`) from `offset` on."""
        memory = HostMemory(memory)
        if not memory.host_writes:
            raise ValueError(f"the host does not write the {memory.value} memory")
        values = [int(w) for w in words]
        self._check_address(memory, unit, domain, offset, len(values))
        width = memory.width(self.config)
        for value in values:
            if not 0 <= value < 1 << width:
                raise ValueError(f"{memory.value}: word {value:#x} does not fit {width} bits")
        region = memory.region

        def encoded() -> Iterator[int]:
            for i, value in enumerate(values):
                yield self.word(region, offset + i, value, unit=unit, domain=domain)

        self.transport.write_memory(memory, unit, domain, offset, values, encoded())

    def write_memories(self, memories: Mapping[tuple[HostMemory, int, int], Sequence[int]]
                       ) -> None:
        """Write every memory of a mapping (`mars.sw.mapper.Mapping.memories`)."""
        for (memory, unit, domain), words in memories.items():
            if len(words):
                self.write_memory(memory, words, unit=unit, domain=domain)

    def read_memory(self, memory: HostMemory, count: int, *, offset: int = 0) -> Pending:
        """Words ``offset .. offset+count-1`` of a memory the host reads (`HostMemory.ACT`,
        `RESULT`, `CYCLES`), as a pending list of ints (the result memory's signed)."""
        memory = HostMemory(memory)
        if not memory.host_reads:
            raise ValueError(f"the host does not read the {memory.value} memory")
        self._check_address(memory, 0, 0, offset, count)
        width = memory.width(self.config)
        reads = [self.transport.read(self.word(memory.region, offset + i, write=False))
                 for i in range(count)]

        def decode(values: list[int]) -> list[int]:
            words = [v & ((1 << width) - 1) for v in values]
            if memory.signed:
                words = [w - (1 << width) if w >> (width - 1) else w for w in words]
            return words

        return Pending.gather(reads, decode)

    # -- control -------------------------------------------------------------------------

    def set_phases(self, phases: int) -> None:
        """The number of phases a run has (`ControlWrite.PHASES`)."""
        if not 0 <= phases <= self.config.max_phases:
            raise ValueError(f"phases ({phases}) must lie in [0, {self.config.max_phases}]")
        self.transport.write(self.word(Region.CONTROL, ControlWrite.PHASES, phases))

    def set_skip_loads(self, skip: bool) -> None:
        """Whether the loaders copy nothing (the weights are resident in the macros)."""
        self.transport.write(self.word(Region.CONTROL, ControlWrite.SKIP_LOADS, int(skip)))

    def load(self, memories: Mapping[tuple[HostMemory, int, int], Sequence[int]],
             phases: int) -> None:
        """Write every memory of a mapping and its number of phases."""
        self.write_memories(memories)
        self.set_phases(phases)

    def read_status(self) -> Pending:
        """The status register (`ControlRead.STATUS`) as pending `Status` flags."""
        word = self.word(Region.CONTROL, ControlRead.STATUS, write=False)
        return self.transport.read(word).then(lambda v: Status(v & 0b111))

    def read_total_cycles(self) -> Pending:
        """Cycles of the last run (`ControlRead.TOTAL_CYCLES`)."""
        word = self.word(Region.CONTROL, ControlRead.TOTAL_CYCLES, write=False)
        return self.transport.read(word).then(lambda v: v & 0xFFFF_FFFF)

    def read_phase_cycles(self, phases: int) -> Pending:
        """Cycles of each of the first `phases` phases of the last run."""
        return self.read_memory(HostMemory.CYCLES, phases)

    def read_results(self, count: int) -> Pending:
        """The first `count` words of the result memory (signed raw accumulators)."""
        return self.read_memory(HostMemory.RESULT, count)

    def write_input(self, image: np.ndarray) -> None:
        """Write an input map (HWC, flattened) into activation bank 0, packed into words of
        G activations (`mars.contract.banking.Banking.input_words`)."""
        self.write_memory(HostMemory.ACT, Banking(self.config).input_words(image))

    def run(self, budget: int) -> Pending:
        """Start a run and wait at most `budget` cycles for ``done``: a pending
        `RunStatus`; `flush` raises `AcceleratorTimeout` or `AcceleratorError` if it
        timed out or ended with the error flag set."""
        if budget < 1:
            raise ValueError(f"budget ({budget}) must be at least 1 cycle")
        status = self.transport.run(budget)
        self._runs.append((status, budget))
        return status

    # -- answers -------------------------------------------------------------------------

    def flush(self) -> None:
        """Execute what the transport recorded, then check every run since the last flush."""
        if self.transport.is_async:
            raise TypeError("this transport's flush is a coroutine: await flush_async()")
        self.transport.flush()
        self._check_runs()

    async def flush_async(self) -> None:
        """`flush` for a transport whose flush is a coroutine (the cocotb bench)."""
        result = self.transport.flush()
        if self.transport.is_async:
            await result
        self._check_runs()

    def _check_runs(self) -> None:
        runs, self._runs = self._runs, []
        for n, (pending, budget) in enumerate(runs):
            outcome: RunStatus = pending.value
            # The error flag is the cause when both show: a rejected walk stalls its unit.
            if outcome.status & Status.ERROR:
                ended = ("" if outcome.cycles is not None else
                         f" and did not finish within {budget} cycles")
                raise AcceleratorError(
                    f"the accelerator raised its error flag in run {n + 1} of this batch "
                    f"(a decoder rejected a descriptor or an index code){ended}; status "
                    f"{_flags(outcome.status)}")
            if outcome.cycles is None:
                raise AcceleratorTimeout(
                    f"no done after {budget} cycles (run {n + 1} of this batch; status "
                    f"{_flags(outcome.status)}): the accelerator hangs")


def _flags(status: Status) -> str:
    names = [flag.name.lower() for flag in Status if status & flag]
    return "+".join(names) or "idle"


@dataclasses.dataclass
class Inference:
    """The pending answers of one inference (`run_inferences`).  After the flush:
    ``outputs`` (list of int, the result memory), ``phase_cycles`` (per phase) and
    ``run`` (`RunStatus`: cycles from start to done)."""

    run: Pending
    outputs: Pending
    phase_cycles: Pending
    status: Pending


def run_inferences(driver: HostDriver, inputs: np.ndarray, *,
                   memories: Mapping[tuple[HostMemory, int, int], Sequence[int]],
                   phases: int, resident: bool, n_outputs: int,
                   budget: int) -> list[Inference]:
    """Load a mapping and run each input, the way a deployed accelerator is driven.

    Writes `memories` and `phases`; then for each input: write it into activation bank 0,
    run (at most `budget` cycles), read `n_outputs` results, the cycles of each phase and
    the status.  With a `resident` mapping the inferences after the first set
    ``skip_loads`` (the weights stay in the macros).  Returns pending answers: flush the
    driver, then read them.
    """
    driver.load(memories, phases)
    answers = []
    for n, image in enumerate(np.asarray(inputs, dtype=np.int64)):
        if n == 1 and resident:
            driver.set_skip_loads(True)
        driver.write_input(image)
        run = driver.run(budget)
        answers.append(Inference(run=run, outputs=driver.read_results(n_outputs),
                                 phase_cycles=driver.read_phase_cycles(phases),
                                 status=driver.read_status()))
    return answers
