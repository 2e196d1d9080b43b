"""cocotb testbench of `mars_top`: runs a mapped network on its inputs through the host driver.

The bench is a transport (`CocotbTransport`) of the same `mars.sw.host.HostDriver` that
drives the native Verilator harness: the driver loads the mapping's memories, sets the
phases and ``skip_loads``, writes each input, starts the run, waits for ``done`` and reads
the results, the per-phase cycle counters and the status through the host port, and fails
the test on the error flag or a timeout.  The transport batches: the driver records the
whole session, then `CocotbTransport.flush` plays it in the simulator.

``MARS_BACKDOOR=1`` makes the transport write whole memories straight into the simulator's
arrays instead (the same driver calls, one simulated cycle instead of one per word); the
host-port load is the default since it checks the port and costs little next to the
inferences (docs/architecture.md, "Host driver").

Environment (set by `mars.tb.accel.simulate`): ``MARS_CONFIG`` (configuration JSON),
``MARS_CASE`` (the case JSON: memories, inputs, phases, budget), ``MARS_STATS`` (where the
outputs go), ``MARS_BACKDOOR`` (optional).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from mars.config import MarsConfig
from mars.contract.host import HostMemory, Status
from mars.sw.host import (
    AcceleratorError,
    AcceleratorTimeout,
    HostDriver,
    RecordingTransport,
    RunStatus,
    run_inferences,
)

CLOCK_NS = 10

#: Where each memory of the top sits in the simulator's hierarchy (for the backdoor).
_PATHS = {
    HostMemory.PROGRAM: "unit{unit}.sequencer.prog_mem",
    HostMemory.PARAMS: "unit{unit}.sequencer.params",
    HostMemory.INDEX: "unit{unit}.decoder{domain}.index_mem",
    HostMemory.KTABLE: "unit{unit}.decoder{domain}.ktable_mem",
    HostMemory.WEIGHTS: "weights{unit}",
    HostMemory.LOADER: "loader{unit}.prog_mem",
    HostMemory.ACT: "act",
    HostMemory.RESULT: "result",
    HostMemory.CYCLES: "cycle_mem",
}


def _array(dut, memory: HostMemory, unit: int, domain: int):
    """The simulator array behind one memory of the top."""
    handle = dut
    for part in _PATHS[memory].format(unit=unit, domain=domain).split("."):
        handle = getattr(handle, part)
    return handle


def _arrays(dut, memory: HostMemory, unit: int, domain: int) -> list:
    """Every simulator array that holds one memory: the activation memory has a copy per
    read port (``act``, ``act_read0``, ``act_read1``, ...; mars.hw.top)."""
    arrays = [_array(dut, memory, unit, domain)]
    if memory is HostMemory.ACT:
        k = 0
        while hasattr(dut, f"act_read{k}"):
            arrays.append(getattr(dut, f"act_read{k}"))
            k += 1
    return arrays


class CocotbTransport(RecordingTransport):
    """The host port of a simulated `mars_top`, driven from cocotb.

    Operations are recorded and played by ``await flush()``; every operation starts and
    ends just after a rising edge.  A write holds ``host.valid`` until ``host.ready``; a
    read then waits for ``host_read.valid``; a run pulses ``start`` and waits for ``done``
    (at most the budget), then samples ``busy``, ``done`` and ``error``.
    """

    is_async = True

    def __init__(self, dut, *, backdoor: bool = False):
        super().__init__()
        self._dut = dut
        self._backdoor = backdoor
        #: Cycles from start to done of every finished run, in order.
        self.run_cycles: list[int] = []

    def write_memory(self, memory: HostMemory, unit: int, domain: int, offset: int,
                     values: Sequence[int], words: Iterable[int]) -> None:
        if self._backdoor:
            self._ops.append(("M", memory, unit, domain, offset, list(values)))
        else:
            super().write_memory(memory, unit, domain, offset, values, words)

    async def flush(self) -> None:
        ops = self.take_ops()
        dut = self._dut
        for op in ops:
            if op[0] == "W":
                await self._send(op[1])
                self._idle(op[1])
            elif op[0] == "R":
                await self._send(op[1])
                self._idle(op[1])
                while True:
                    await ReadOnly()
                    if dut.host_read__valid.value == 1:
                        value = dut.host_read__payload.value.to_unsigned()
                        await RisingEdge(dut.clk)
                        break
                    await RisingEdge(dut.clk)
                op[2].resolve(value)
            elif op[0] == "S":
                op[2].resolve(await self._run(op[1]))
            else:
                _, memory, unit, domain, offset, values = op
                for array in _arrays(dut, memory, unit, domain):
                    for i, value in enumerate(values):
                        array[offset + i].value = value
                await RisingEdge(dut.clk)

    def _idle(self, word: int) -> None:
        """Drop ``valid`` and scramble the payload: without ``valid`` it means nothing,
        and a read whose answer still looked at the offset would fail."""
        dut = self._dut
        dut.host__valid.value = 0
        dut.host__payload.value = ~word % (1 << len(dut.host__payload))

    async def _send(self, word: int) -> None:
        dut = self._dut
        dut.host__payload.value = word
        dut.host__valid.value = 1
        while True:
            await ReadOnly()
            ready = dut.host__ready.value == 1
            await RisingEdge(dut.clk)
            if ready:
                return

    async def _run(self, budget: int) -> RunStatus:
        dut = self._dut
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        begin = get_sim_time(unit="ns")
        cycles = None
        try:
            await with_timeout(RisingEdge(dut.done), budget * CLOCK_NS, "ns")
            await RisingEdge(dut.clk)
            cycles = int((get_sim_time(unit="ns") - begin) // CLOCK_NS)
            self.run_cycles.append(cycles)
        except SimTimeoutError:
            pass
        await ReadOnly()
        status = Status(int(dut.busy.value) | int(dut.done.value) << 1
                        | int(dut.error.value) << 2)
        await RisingEdge(dut.clk)
        return RunStatus(cycles, status)


@cocotb.test()
async def run_case(dut):
    config = MarsConfig.from_json(Path(os.environ["MARS_CONFIG"]).read_text())
    case = json.loads(Path(os.environ["MARS_CASE"]).read_text())
    backdoor = os.environ.get("MARS_BACKDOOR", "0") == "1"
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.start.value = 0
    dut.host__valid.value = 0
    dut.host_read__ready.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    transport = CocotbTransport(dut, backdoor=backdoor)
    driver = HostDriver(config, transport)
    memories = {(HostMemory(entry["memory"]), entry["unit"], entry["domain"]):
                [int(word, 16) for word in entry["words"]] for entry in case["memories"]}
    start = time.perf_counter()
    start_ns = get_sim_time(unit="ns")
    answers = run_inferences(driver, case["inputs"], memories=memories,
                             phases=case["phases"], resident=case["resident"],
                             n_outputs=case["n_outputs"], budget=case["budget"])
    try:
        await driver.flush_async()
    except AcceleratorError as error:
        # Reported to the caller (`mars.tb.accel.simulate` raises it again there), so that
        # `mars run --backend icarus` prints one line, as the native harness does.
        Path(os.environ["MARS_STATS"]).write_text(json.dumps({
            "accelerator_error": str(error),
            "timeout": isinstance(error, AcceleratorTimeout)}))
        return
    wall = time.perf_counter() - start
    simulated = int((get_sim_time(unit="ns") - start_ns) // CLOCK_NS)
    Path(os.environ["MARS_STATS"]).write_text(json.dumps({
        "outputs": [a.outputs.value for a in answers],
        "cycles": transport.run_cycles,
        "phase_cycles": [a.phase_cycles.value for a in answers],
        "error": int(any(a.status.value & Status.ERROR for a in answers)),
        "wall_s": wall, "backdoor": backdoor, "cycles_simulated": simulated,
        "cycles_per_s": simulated / wall if wall else 0.0,
    }))
