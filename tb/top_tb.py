"""cocotb testbench of `mars_top`: runs a mapped network on its inputs.

Whole networks are simulated without Python in the per-cycle loop: every memory is loaded
by backdoor (written straight into the simulator's arrays), the number of phases goes in
through the host port, then for each input the image is written into activation bank 0,
``start`` is pulsed and the testbench sleeps until ``done`` rises (or the cycle budget runs
out).  The result memory and the per-phase cycle counters are read back by backdoor.

Environment (set by `mars.tb.accel.simulate`): ``MARS_CONFIG`` (configuration JSON),
``MARS_CASE`` (the case JSON: memories, inputs, phases, budget), ``MARS_STATS`` (where the
outputs go).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from mars.config import MarsConfig
from mars.contract.host import HostFormat, Region

CLOCK_NS = 10


def _array(dut, region: str, unit: int, domain: int):
    """The simulator array behind one memory of the mapping."""
    paths = {
        "program": f"unit{unit}.prog_mem",
        "params": f"unit{unit}.params",
        "index": f"unit{unit}.decoder{domain}.index_mem",
        "ktable": f"unit{unit}.decoder{domain}.ktable_mem",
        "weights": f"weights{unit}",
        "loader": f"loader{unit}.prog_mem",
        "act": "act",
        "result": "result",
        "cycles": "cycle_mem",
    }
    handle = dut
    for part in paths[region].split("."):
        handle = getattr(handle, part)
    return handle


async def _host_write(dut, config: MarsConfig, region: Region, offset: int, value: int):
    layout = HostFormat(config).layout()
    dut.host__payload.value = layout.const({"write": 1, "region": int(region),
                                            "offset": offset, "data": value}).as_bits()
    dut.host__valid.value = 1
    await RisingEdge(dut.clk)
    dut.host__valid.value = 0


@cocotb.test()
async def run_case(dut):
    config = MarsConfig.from_json(Path(os.environ["MARS_CONFIG"]).read_text())
    case = json.loads(Path(os.environ["MARS_CASE"]).read_text())
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.start.value = 0
    dut.host__valid.value = 0
    dut.host_read__ready.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    load_start = time.perf_counter()
    for entry in case["memories"]:
        array = _array(dut, entry["region"], entry["unit"], entry["domain"])
        for i, word in enumerate(entry["words"]):
            array[i].value = int(word, 16)
    await _host_write(dut, config, Region.CONTROL, 0, case["phases"])
    load_s = time.perf_counter() - load_start

    act, result, cycle_mem = (_array(dut, name, 0, 0) for name in ("act", "result", "cycles"))
    outputs, cycles, phase_cycles = [], [], []
    run_start = time.perf_counter()
    for n, image in enumerate(case["inputs"]):
        if n == 1 and case["resident"]:
            # The weights stay in the macros: later inferences copy no rows.
            await _host_write(dut, config, Region.CONTROL, 1, 1)
        for i, value in enumerate(image):
            act[i].value = value
        await RisingEdge(dut.clk)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        begin = get_sim_time(unit="ns")
        try:
            await with_timeout(RisingEdge(dut.done), case["budget"] * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(
                f"no done after {case['budget']} cycles (the cycle model's budget): the "
                f"accelerator hangs; error flag = {int(dut.error.value)}") from None
        await RisingEdge(dut.clk)
        cycles.append(int((get_sim_time(unit="ns") - begin) // CLOCK_NS))
        outputs.append([result[i].value.to_signed() for i in range(case["n_outputs"])])
        phase_cycles.append([int(cycle_mem[i].value) for i in range(case["phases"])])
    wall = time.perf_counter() - run_start
    Path(os.environ["MARS_STATS"]).write_text(json.dumps({
        "outputs": outputs, "cycles": cycles, "phase_cycles": phase_cycles,
        "error": int(dut.error.value), "wall_s": wall, "load_s": load_s,
        "cycles_per_s": sum(cycles) / wall if wall else 0.0,
    }))
