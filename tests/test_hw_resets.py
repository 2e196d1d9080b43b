"""The run reset (hw/regs.py): only control state of the loaders and macro units keeps it.

The top holds every core loader and macro unit in reset between runs
(``ResetInserter(~running)``).  On the ECP5 that reset is one net to the LSR pin of every
flip-flop that keeps it; before the datapath registers were made reset-less it reached
45,178 of the default top's 50,887 flip-flops and the top did not route
(docs/synthesis.md, "The run reset").  The first tests count the clocked bits of the
elaborated Amaranth design (before synthesis: a bit Yosys later finds constant still
counts); the last runs two different networks back to back on the tiny top in
Amaranth's simulator, bit-exact and cycle-exact, so that a register made reset-less
whose old value does matter would show.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment

from mars.config import PRESETS
from mars.contract import Status
from mars.hw.loader import CoreLoader
from mars.hw.top import MarsTop
from mars.hw.unit import MacroUnit
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import network_cycles
from mars.sw.host import HostDriver
from mars.sw.mapper import map_network
from mars.tb.networks import NETWORKS, random_inputs, residual_config, stable_seed
from mars.tb.pysim_host import PysimTransport

TINY = PRESETS["tiny"]

#: The widest register allowed to keep the reset: the control state's widest are the
#: program counters and pointers (the sequencer's fetch address: 9 bits on default);
#: every payload, descriptor, parameter word or accumulator is far wider (a decoder's
#: descriptor 148 bits, one accumulator 32).
MAX_RESET_WIDTH = 16

#: Share of a unit's or loader's clocked bits that may keep the reset (outside
#: `KEEPS_RESET`).  Measured (this change): 138 of 12,031 bits (1.1 %) on the default
#: unit, 106 of 4,344 (2.4 %) in the tiny top's unit and loader, 111 of 4,960 (2.2 %)
#: with residual adds; before it, every bit (100 %).  5 % leaves room for more control state, not for the wide datapath
#: registers back on the reset (the width check catches any one of them: the default
#: writer's output word alone is 133 bits, the four decoders' descriptors 4 x 148).
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
