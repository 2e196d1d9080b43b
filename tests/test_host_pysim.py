"""The host driver on the RTL of the `tiny` top in Amaranth's simulator (no Verilog, no
external simulator): the contract's address map, control registers and status bits against
the hardware, a network bit-exact with the golden model and cycle-exact with the cycle
model, and the error flag."""

from __future__ import annotations

import numpy as np
import pytest

from mars.config import PRESETS
from mars.contract import HostMemory, Status
from mars.contract.banking import Banking
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import network_cycles
from mars.sw.host import AcceleratorError, AcceleratorTimeout, HostDriver, run_inferences
from mars.sw.mapper import map_network
from mars.tb.networks import NETWORKS, random_inputs, stable_seed
from mars.tb.pysim_host import PysimTransport, run_on_pysim

TINY = PRESETS["tiny"]
SEED = 11


#: Two accumulators per result word (the writer's lanes): the host reads a field of a
#: registered word, chosen by the request's offset kept beside it (hw/top.py).
TWO_LANES = TINY.replace(name="tiny-2lanes", act_bits_per_cycle=2)


def tiny_mlp(seed, config=TINY):
    build, sparsity = NETWORKS["mlp"]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    return network, random_inputs(network, rng, 2), map_network(network)


@pytest.mark.parametrize("config", [TINY, TWO_LANES], ids=lambda c: c.name)
def test_network_bit_exact_and_cycle_exact(config):
    assert Banking(config).lane_bits == (config is TWO_LANES)
    network, inputs, mapping = tiny_mlp(SEED, config)
    driver = HostDriver(config, PysimTransport(config))
    h, w, c = mapping.output_shape
    answers = run_inferences(driver, inputs, memories=mapping.memories,
                             phases=mapping.n_phases, resident=mapping.resident,
                             n_outputs=h * w * c, budget=10_000)
    total = driver.read_total_cycles()
    driver.flush()
    expected = run_accelerator(network, inputs)
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    assert [a.outputs.value for a in answers] == expected.tolist(), f"seed {SEED}"
    assert [a.phase_cycles.value for a in answers] == [first, later], f"seed {SEED}"
    assert all(a.status.value == Status.DONE for a in answers)
    # the total counter counts the same cycles as the per-phase ones
    assert total.value == sum(later)


def test_registers_and_activation_memory():
    rng = np.random.default_rng(SEED)
    driver = HostDriver(TINY, PysimTransport(TINY))
    idle = driver.read_status()
    # both banks: words of G activations, bank 1 starts at half_words
    banking = Banking(TINY)
    bank1 = banking.half_words
    words = rng.integers(0, 1 << banking.word_bits, size=(2, 8)).tolist()
    driver.write_memory(HostMemory.ACT, words[0])
    driver.write_memory(HostMemory.ACT, words[1], offset=bank1 - 4)
    back0 = driver.read_memory(HostMemory.ACT, 8)
    back1 = driver.read_memory(HostMemory.ACT, 8, offset=bank1 - 4)
    no_phases = driver.run(20)                # 0 phases: start does nothing
    with pytest.raises(AcceleratorTimeout, match="no done after 20 cycles.*status idle"):
        driver.flush()
    # every answer arrived before the check raised
    assert idle.value == Status(0)
    assert [back0.value, back1.value] == words
    assert no_phases.value.cycles is None and no_phases.value.status == Status(0)


def test_corrupt_index_raises_the_error_flag():
    network, inputs, mapping = tiny_mlp(SEED)
    key = (HostMemory.INDEX, 0, 0)
    # kept K-groups must be listed in increasing order: reversed, the decoder flags it
    mapping.memories[key] = mapping.memories[key][::-1]
    driver = HostDriver(TINY, PysimTransport(TINY))
    h, w, c = mapping.output_shape
    run_inferences(driver, inputs[:1], memories=mapping.memories, phases=mapping.n_phases,
                   resident=False, n_outputs=h * w * c,
                   budget=2 * sum(p.cycles for p in network_cycles(mapping)))
    with pytest.raises(AcceleratorError, match="error flag") as info:
        driver.flush()
    assert "error" in str(info.value).rsplit("status", 1)[1], f"seed {SEED}"


# Two macro units on one core, a small activation buffer: the odd network has channel
# counts that are not multiples of G (K-groups over several words, outputs that straddle
# words), a floor-mode pool and a linear layer (docs/banking.md).
TWO_UNITS = TINY.replace(name="tiny-two-units", macros_per_core=2, act_buffer_words=256)


@pytest.mark.parametrize("name", ["odd"])
def test_two_units_share_the_write_ports_bit_and_cycle_exact(name):
    """Bit-exact and cycle-exact on two units, and in every cycle of the run at most one
    unit offers a word to the activation and result write stages: the unit whose slot it
    is (cycle t of the run: unit t mod U; the run's first cycle comes
    `MarsTop.START_LATENCY` cycles after start)."""
    config, seed = TWO_UNITS, stable_seed("two-units", name)
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    inputs = random_inputs(network, rng, 1)
    mapping = map_network(network)
    offers = []

    def monitor(ctx, top, cycle):
        for u, unit in enumerate(top.units):
            if ctx.get(unit.act_entry.valid) or ctx.get(unit.res_entry.valid):
                offers.append((cycle, u))

    [answer] = run_on_pysim(mapping, inputs, 100_000, monitor=monitor)
    assert answer.outputs.value == run_accelerator(network, inputs)[0].tolist(), \
        f"seed {seed}"
    assert answer.phase_cycles.value == [p.cycles for p in network_cycles(mapping)], \
        f"seed {seed}"
    assert offers, f"seed {seed}: no writes seen"
    # `cycle` counts from the first cycle of the run's LOAD state, where the slot is 0
    wrong = [(t, u) for t, u in offers if t % config.macros != u]
    assert not wrong, f"seed {seed}: offers outside their slot {wrong[:5]}"
    assert len({t for t, _ in offers}) == len(offers), f"seed {seed}: two offers in a cycle"


def test_status_after_start_is_busy_until_done():
    """From the cycle after a ``start`` pulse until the run ends the top says busy and not
    done (also when the last run left done high), and a status read accepted in the
    start's own cycle answers busy: a host that polls right after its start never takes
    the last run's done for this run's (`MarsTop.START_LATENCY`).  Both runs take the
    cycle model's count."""
    from amaranth.hdl import Module
    from amaranth.sim import Simulator

    from mars.contract import ControlRead, HostFormat, Region
    from mars.hw.controller import Controller
    from mars.hw.top import MarsTop

    _network, _inputs, mapping = tiny_mlp(SEED)
    top = MarsTop(TINY, init={**mapping.memories, "phases": mapping.n_phases})
    m = Module()
    m.submodules.top = top
    fmt = HostFormat(TINY)
    expected = sum(p.cycles for p in network_cycles(mapping))
    runs = []

    async def bench(ctx):
        ctx.set(top.host_read.ready, 1)
        for run in range(2):
            ctx.set(top.start, 1)
            ctx.set(top.host.valid, 1)
            ctx.set(top.host.payload, fmt.layout().const(
                {"write": 0, "region": Region.CONTROL, "offset": ControlRead.STATUS}))
            await ctx.tick()
            ctx.set(top.start, 0)
            ctx.set(top.host.valid, 0)
            flags, answer, cycles = [], None, 0
            while not ctx.get(top.done):
                flags.append((ctx.get(top.busy), ctx.get(top.done)))
                if ctx.get(top.host_read.valid) and answer is None:
                    answer = Status(ctx.get(top.host_read.payload))
                await ctx.tick()
                cycles += 1
                assert cycles < 10 * expected, "no done"
            runs.append((set(flags), answer, cycles, ctx.get(top.busy)))
            for _ in range(3):
                await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for flags, answer, cycles, busy_at_done in runs:
        assert flags == {(1, 0)} and answer == Status.BUSY and busy_at_done == 0
        # counted from the cycle after start: the rest of the start latency, every
        # phase's cycles, and the FINISH cycles before done
        assert cycles == MarsTop.START_LATENCY - 1 + expected + Controller.FINISH_CYCLES
