"""Names in the generated netlist that the synthesis script relies on.

`mars.hw` names some signals so that `mars.sw.synth` can find them in Yosys's netlist;
both import the marks from here, so neither re-spells the other.
"""

__all__ = ["REPLICA"]

#: Ends the name of a register that duplicates another on purpose (register replication:
#: copies of one signal placed near different consumers, `mars.hw.writer.act_write_stage`).
#: Yosys's ``opt_merge`` would fold identical registers into one; the synthesis script
#: marks the flip-flops driving these names ``keep`` first.
REPLICA = "_replica"
