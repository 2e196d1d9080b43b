"""The run reset (hw/regs.py): only control state of the loaders and macro units keeps it.

The top holds every core loader and macro unit in reset between runs
(``ResetInserter`` of a copy of ``~running`` per block, `mars.hw.regs.run_reset`).  On
the ECP5 that reset is a net to the LSR pin of every flip-flop that keeps it; before the
datapath registers were made reset-less it reached 45,178 of the default top's 50,887
flip-flops and the top did not route (docs/synthesis.md, "The run reset").  The first
tests count the clocked bits of the elaborated Amaranth design (before synthesis: a bit
Yosys later finds constant still counts); the others run different networks back to back
on tiny tops in Amaranth's simulator (also after runs cut short mid-walk, or failed, and
ended by the domain reset), bit-exact and cycle-exact, so that a register made
reset-less whose old value does matter would show.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Fragment
from mars.hw.loader import CoreLoader
from mars.hw.top import MarsTop
from mars.hw.unit import MacroUnit
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import network_cycles
from mars.sw.golden.network import LayerNode
from mars.sw.host import HostDriver, run_inferences
from mars.sw.mapper import map_network
from mars.tb.networks import (
    NETWORKS,
    RESIDUAL_NETWORKS,
    random_inputs,
    residual_config,
    stable_seed,
)
from mars.tb.pysim_host import PysimTransport

from mars.config import PRESETS, ReadoutMode
from mars.contract import HostMemory, Status

TINY = PRESETS["tiny"]

#: The widest register allowed to keep the reset: the control state's widest are the
#: program counters and pointers (the sequencer's fetch address: 9 bits on default);
#: every payload, descriptor, parameter word or accumulator is far wider (a decoder's
#: descriptor 148 bits, one accumulator 32).
MAX_RESET_WIDTH = 16

#: Share of a unit's or loader's clocked bits that may keep the reset (outside
#: `KEEPS_RESET`).  Measured (this change): 138 of 12,031 bits (1.1 %) on the default
#: unit, 106 of 4,344 (2.4 %) in the tiny top's unit and loader, 111 of 4,960 (2.2 %)
#: with residual adds; before it, every bit (100 %).  5 % leaves room for more control
#: state, not for the wide datapath registers back on the reset (the width check catches
#: any one of them: the default writer's output word alone is 133 bits, the four
#: decoders' descriptors 4 x 148).
MAX_RESET_SHARE = 0.05


#: Blocks that keep the run reset on their datapath: the gather (docs/synthesis.md, "The
#: run reset"): with its registers reset-less the default unit alone fell from 100.3 /
#: 98.8 MHz (seeds 1 / 2) to 92.0 / 79.5 MHz on the gather's `take`, so it stays as it was.
KEEPS_RESET = ("gather",)


def clocked_bits(elaboratable, under: str | None = None,
                 skip: tuple[str, ...] = KEEPS_RESET) -> list[tuple[str, int, bool]]:
    """Every signal assigned in a clocked domain: (path.name, width, keeps the reset).
    `under`: only below subfragments whose name starts with it; `skip`: not below
    subfragments of these names."""
    found = {}

    def walk(fragment, path, inside):
        for domain, statements in fragment.statements.items():
            if domain == "comb" or not inside:
                continue
            for statement in statements:
                for signal in statement._lhs_signals():
                    found[id(signal)] = (".".join(path + (signal.name,)), len(signal),
                                         not signal.reset_less)
        for sub, name, _ in fragment.subfragments:
            name = name if isinstance(name, str) else "?"
            if name in skip:
                continue
            walk(sub, path + (name,), inside or (name.startswith(under)))

    walk(Fragment.get(elaboratable, None), (), under is None)
    return list(found.values())


def check(bits, where, max_share=MAX_RESET_SHARE):
    kept = [(name, width) for name, width, reset in bits if reset]
    share = sum(w for _, w in kept) / sum(w for _, w, _ in bits)
    wide = [(name, width) for name, width in kept if width > MAX_RESET_WIDTH]
    assert not wide, f"{where}: wide registers keep the run reset: {wide}"
    assert share <= max_share, (
        f"{where}: {share:.1%} of the clocked bits keep the run reset: "
        f"{sorted(kept, key=lambda k: -k[1])[:20]}")
    return share


def test_default_unit_keeps_the_reset_on_control_state_only():
    bits = clocked_bits(MacroUnit(PRESETS["default"]))
    assert sum(w for _, w, _ in bits) > 10_000        # the walk found the datapath
    check(bits, "default macro unit")


def test_loader_keeps_the_reset_on_control_state_only():
    """A loader is small (154 bits on default, 9 of them control: 5.8 %); its row data
    (128 bits) on the reset would make it 89 %."""
    check(clocked_bits(CoreLoader(PRESETS["default"])), "default core loader", 0.1)


@pytest.mark.parametrize("config", [TINY, residual_config(TINY)], ids=lambda c: c.name)
def test_tiny_top_units_and_loaders(config):
    """What the top holds in reset: its units and loaders (``unit*``, ``loader*``)."""
    units = clocked_bits(MarsTop(config), "unit")
    loaders = clocked_bits(MarsTop(config), "loader")
    assert units and loaders
    check(units + loaders, f"{config.name} top")


def test_two_networks_back_to_back_bit_exact_and_cycle_exact():
    """A run of one network, the accelerator idle (units and loaders in reset), then a
    different network (program, parameters, index code, weights, input) loaded and run in
    the same simulation: both bit-exact with the golden model and cycle-exact with the
    cycle model.  The second run starts with every reset-less register holding what the
    first left (descriptors, instructions, parameters, pipeline data): none may matter.
    The tb/test_top.py runs (Verilator and Icarus) also run two inputs back to back."""
    seed = stable_seed("run-reset") % 1000
    rng = np.random.default_rng(seed)
    cases = []
    for name in ("odd", "mlp"):
        build, sparsity = NETWORKS[name]
        network = build(TINY, rng, sparsity)
        cases.append((network, random_inputs(network, rng, 1), map_network(network)))
    driver = HostDriver(TINY, PysimTransport(TINY))
    answers = []
    for network, inputs, mapping in cases:
        driver.load(mapping.memories, mapping.n_phases)
        driver.set_skip_loads(False)
        driver.write_input(inputs[0])
        run = driver.run(20_000)
        h, w, c = mapping.output_shape
        answers.append((run, driver.read_results(h * w * c),
                        driver.read_phase_cycles(mapping.n_phases), driver.read_status()))
    driver.flush()
    for (network, inputs, mapping), (_, outputs, cycles, status) in zip(cases, answers):
        where = f"{mapping.n_phases}-phase network, seed {seed}"
        expected = run_accelerator(network, inputs).reshape(len(inputs), -1)[0]
        assert status.value == Status.DONE, where
        assert outputs.value == expected.tolist(), where
        assert cycles.value == [p.cycles for p in network_cycles(mapping)], where


# -- more back-to-back sequences: other configurations, aborted runs -------------------------

#: Tiny configurations whose datapaths the plain tiny top leaves out: reloads hidden behind
#: the walks (the loaders run with the units), residual adds (the writers' shortcut and
#: partial-sum reads), ternary readout with column scale factors (the macro's scale
#: registers, from the parameter words) and a saturating readout.
VARIANTS = {
    "tiny-hide": (TINY.replace(name="tiny-hide", hide_loads=True), ("cnn", "odd", "mlp")),
    "tiny-res": (residual_config(TINY), ("resnet-flat", "resnet")),
    "tiny-ternary": (TINY.replace(name="tiny-ternary", readout_mode=ReadoutMode.TERNARY,
                                  readout_threshold=2, scale_bits=6), ("odd", "mlp", "odd")),
    "tiny-saturating": (TINY.replace(name="tiny-saturating", readout_bits=2,
                                     readout_mode=ReadoutMode.SATURATING), ("mlp", "odd")),
}


def build_case(config, name, rng, count=2):
    """A random network `name` for `config` (with random column scale factors for a
    scaled readout), `count` inputs and its mapping."""
    build, sparsity = {**NETWORKS, **RESIDUAL_NETWORKS}[name]
    network = build(config, rng, sparsity)
    if config.scaled_readout:
        hi = 1 << (config.scale_bits - 1)
        network = dataclasses.replace(network, nodes=tuple(
            dataclasses.replace(n, scales=rng.integers(-hi, hi, (len(n.weight),
                                                                 config.weight_bits)))
            if isinstance(n, LayerNode) else n for n in network.nodes))
    return network, random_inputs(network, rng, count), map_network(network)


def run_and_expect(driver, network, inputs, mapping, budget=40_000):
    """`run_inferences` of `inputs`, read back, with what the golden and cycle models
    expect (a later input skips the loads when the weights are resident; without
    resident weights only the first input runs: a second would repeat it)."""
    inputs = inputs if mapping.resident else inputs[:1]
    driver.set_skip_loads(False)        # a previous network may have left it set
    h, w, c = mapping.output_shape
    answers = run_inferences(driver, inputs, memories=mapping.memories,
                             phases=mapping.n_phases, resident=mapping.resident,
                             n_outputs=h * w * c, budget=budget)
    expected = run_accelerator(network, inputs).reshape(len(inputs), -1).tolist()
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    return answers, expected, [first] + [later] * (len(inputs) - 1)


def check_answers(results, where):
    for k, (answers, expected, cycles) in enumerate(results):
        at = f"{where}, network {k + 1}"
        assert [a.status.value for a in answers] == [Status.DONE] * len(answers), at
        assert [a.outputs.value for a in answers] == expected, at
        assert [a.phase_cycles.value for a in answers] == cycles, at


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_networks_in_sequence_on_other_configurations(variant):
    """Several different networks in one simulation (two inputs of those whose weights
    stay resident, the second skipping the loads), on configurations the plain tiny top does
    not build: each run bit-exact and cycle-exact."""
    config, names = VARIANTS[variant]
    seed = stable_seed("run-reset", variant) % 1000
    rng = np.random.default_rng(seed)
    driver = HostDriver(config, PysimTransport(config))
    results = [run_and_expect(driver, *build_case(config, name, rng)) for name in names]
    driver.flush()
    check_answers(results, f"{variant} {names}, seed {seed}")


def test_aborted_and_failed_runs_then_good_ones():
    """Runs cut short by the domain reset leave the reset-less registers mid-walk: a run
    stopped halfway, a run whose decoder rejects a reversed index code (the unit stalls
    with the error flag up), then different networks, each bit-exact and cycle-exact;
    then the first network again, stopped early in its first walks, and run in full."""
    seed = stable_seed("run-reset", "aborted") % 1000
    rng = np.random.default_rng(seed)
    cnn, odd, mlp = (build_case(TINY, name, rng) for name in ("cnn", "odd", "mlp"))
    transport = PysimTransport(TINY)
    driver = HostDriver(TINY, transport)
    statuses, results = [], []

    def abort(case, cycles, memories=None):
        _, inputs, mapping = case
        driver.set_skip_loads(False)
        driver.load(memories or mapping.memories, mapping.n_phases)
        driver.write_input(inputs[0])
        statuses.append(transport.abort(cycles))

    total = sum(p.cycles for p in network_cycles(cnn[2]))
    abort(cnn, total // 2)
    bad = dict(odd[2].memories)
    key = (HostMemory.INDEX, 0, 0)
    bad[key] = bad[key][::-1]           # kept K-groups out of order: the decoder flags it
    abort(odd, sum(p.cycles for p in network_cycles(odd[2])), bad)
    results.append(run_and_expect(driver, *mlp))
    results.append(run_and_expect(driver, *odd))
    abort(cnn, total // 7)
    results.append(run_and_expect(driver, *cnn))
    driver.flush()
    where = f"seed {seed}"
    assert [s.value for s in statuses] == [Status.BUSY, Status.BUSY | Status.ERROR,
                                           Status.BUSY], where
    check_answers(results, where)
