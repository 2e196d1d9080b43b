"""The MARS accelerator top: N cores x M macro units, activation buffers, controller, host.

Structure (docs/architecture.md):

* ``cores`` cores, each with a weight SRAM (``weight_sram_rows`` macro rows), a
  `CoreLoader` and ``macros_per_core`` `MacroUnit` s (a CIM macro each, with its decoders,
  accumulators and writer);
* the activation memory: two banks of ``act_buffer_words`` Ab-bit words (ping-pong: each
  layer reads one bank and writes the other), read by every lane of every unit, written
  by every unit's writer;
* the result memory (``result_words`` signed ``acc_bits`` words) for the last layer's raw
  accumulators;
* the controller (`Controller`): per phase, a LOAD part (the loaders copy the phase's macro
  rows) and a WALK part (the units compute), each ended by a SYNC of every participant; a
  cycle counter per phase;
* the host port (`HostPort`): a stream of word writes (and reads) into every memory and
  the control registers.

The activation memory has as many read ports as the units have lanes: a behavioural
model (simulation and small FPGA builds replicate it); a silicon implementation would bank
it.  See docs/architecture.md for the reasons and the address map.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.host import ControlWrite, HostFormat, HostMemory, Region
from mars.contract.program import UnitFormat

from .controller import Controller
from .host import HostPort
from .loader import CoreLoader
from .unit import MacroUnit

__all__ = ["MarsTop"]


class MarsTop(wiring.Component):
    """The accelerator.

    Parameters
    ----------
    config : MarsConfig
    init : dict, optional
        Initial memory contents keyed like `mars.sw.mapper.Mapping.memories`:
        ``(HostMemory, unit, domain)`` to a list of words; ``"phases"`` presets the
        number of phases.  Empty by default (the host port loads everything).

    Members
    -------
    host : In(stream.Signature(HostFormat(config).layout()))
        Writes (``write`` = 1) into any memory or control register; reads (``write`` = 0)
        of the activation, result, control and cycle registers answer on `host_read`.
    host_read : Out(stream.Signature(unsigned(data_bits)))
    start : In(1)
        Pulse: run the programs from the start (the phase count the host wrote).
    busy, done, error : Out(1)
        Running; finished (until the next start); a decoder reported an error.
    """

    def __init__(self, config: MarsConfig, *, init: dict | None = None):
        self._config = config
        self._init = init or {}
        self._host = HostFormat(config)
        #: The top's own memories (activations, results, cycle counters), once elaborated.
        self.memories: dict[HostMemory, Memory] = {}
        super().__init__({
            "host": In(stream.Signature(self._host.layout())),
            "host_read": Out(stream.Signature(unsigned(self._host.data_bits))),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        m.submodules.host_port = port = HostPort(cfg)
        m.submodules.controller = ctrl = Controller(cfg, phases=self._init.get("phases", 0))
        wiring.connect(m, wiring.flipped(self.host), port.host)
        wiring.connect(m, port.host_read, wiring.flipped(self.host_read))
        loaders, units = self._cores(m, port, ctrl.running)
        self._activation_memory(m, port, units)
        self._result_memory(m, port, units)
        self._cycle_memory(m, port, ctrl)

        m.d.comb += [
            # Writes past the control registers are ignored.
            ctrl.control.valid.eq(port.region[Region.CONTROL]
                                  & (port.offset < len(ControlWrite))),
            ctrl.control.payload.addr.eq(port.offset),
            ctrl.control.payload.data.eq(port.data),
            ctrl.start.eq(self.start),
            self.busy.eq(ctrl.running), self.done.eq(ctrl.done),
            self.error.eq(Cat(*(u.error for u in units)).any()),
            port.status.eq(Cat(self.busy, self.done, self.error)),
            port.total_cycles.eq(ctrl.total_cycles),
        ]
        for c, loader in enumerate(loaders):
            m.d.comb += [ctrl.loaders_waiting[c].eq(loader.waiting),
                         loader.go.eq(ctrl.go_loaders), loader.skip.eq(ctrl.skip_loads)]
        for u, unit in enumerate(units):
            m.d.comb += [ctrl.units_waiting[u].eq(unit.waiting), unit.go.eq(ctrl.go_units)]
        return m

    def _cores(self, m, port, running) -> tuple[list[CoreLoader], list[MacroUnit]]:
        """Each core's weight SRAM, loader and macro units, with their host writes.

        Loaders and units are held in reset (program counters at 0) while the controller
        is idle (``running`` low); their memories keep what the host wrote.
        """
        cfg, init = self._config, self._init
        loaders, units = [], []
        for c in range(cfg.cores):
            loader = CoreLoader(cfg, init=init.get((HostMemory.LOADER, c, 0)))
            m.submodules[f"loader{c}"] = ResetInserter(~running)(loader)
            loaders.append(loader)
            sram = Memory(shape=unsigned(cfg.cols), depth=cfg.weight_sram_rows,
                          init=init.get((HostMemory.WEIGHTS, c, 0), []),
                          attrs={"ram_style": "block"})
            m.submodules[f"weights{c}"] = sram
            sw = sram.write_port()
            sr = sram.read_port()
            m.d.comb += [sw.addr.eq(port.offset), sw.data.eq(port.data),
                         sw.en.eq(port.region[Region.WEIGHTS] & port.unit[c]),
                         sr.addr.eq(loader.sram_addr), sr.en.eq(loader.sram_en),
                         loader.sram_data.eq(sr.data),
                         loader.prog_write.valid.eq(port.region[Region.LOADER] & port.unit[c]),
                         loader.prog_write.payload.addr.eq(port.offset),
                         loader.prog_write.payload.data.eq(port.data)]
            for j in range(cfg.macros_per_core):
                unit = self._unit(m, port, c * cfg.macros_per_core + j, running)
                wiring.connect(m, loader.loads[j], unit.load)
                units.append(unit)
        return loaders, units

    def _unit(self, m, port, u: int, running) -> MacroUnit:
        """Macro unit `u` with its memories' initial contents and host writes."""
        init, D = self._init, self._config.wordline_domains
        unit = MacroUnit(self._config, init={
            "program": init.get((HostMemory.PROGRAM, u, 0), []),
            "params": init.get((HostMemory.PARAMS, u, 0), []),
            **{("index", d): init.get((HostMemory.INDEX, u, d)) for d in range(D)},
            **{("ktable", d): init.get((HostMemory.KTABLE, u, d)) for d in range(D)}})
        m.submodules[f"unit{u}"] = ResetInserter(~running)(unit)
        for target, region in ((unit.prog_write, Region.PROGRAM),
                               (unit.param_write, Region.PARAMS)):
            m.d.comb += [target.valid.eq(port.region[region] & port.unit[u]),
                         target.payload.addr.eq(port.offset),
                         target.payload.data.eq(port.data)]
        for target, region in ((unit.index_write, Region.INDEX),
                               (unit.ktable_write, Region.KTABLE)):
            m.d.comb += [target.valid.eq(port.region[region] & port.unit[u]),
                         target.payload.domain.eq(port.domain),
                         target.payload.write.addr.eq(port.offset),
                         target.payload.write.data.eq(port.data)]
        return unit

    def _activation_memory(self, m, port, units: list[MacroUnit]) -> None:
        """Both ping-pong banks: per unit lane a write port and a pooling read port
        (transparent for that write), per unit a read port per gather lane, and the host's
        write (shared with the first writer) and read ports."""
        cfg = self._config
        act = Memory(shape=unsigned(cfg.act_bits), depth=2 * cfg.act_buffer_words,
                     init=self._init.get((HostMemory.ACT, 0, 0), []))
        m.submodules.act = act
        self.memories[HostMemory.ACT] = act
        for u, unit in enumerate(units):
            for lane in range(UnitFormat(cfg).write_lanes):
                write = act.write_port()
                addr, value, enable = (unit.out_addr[lane], unit.out_data[lane],
                                       unit.out_en[lane])
                if u == 0 and lane == 0:
                    # The host shares the first writer's port (it writes only while the
                    # accelerator is idle): with one unit and one lane the memory has a
                    # single write port and maps to block RAM.
                    addr = Mux(enable, addr, port.offset)
                    value = Mux(enable, value, port.data)
                    enable = enable | port.region[Region.ACT]
                m.d.comb += [write.addr.eq(addr), write.data.eq(value), write.en.eq(enable)]
                pool = act.read_port(transparent_for=(write,))
                m.d.comb += [pool.addr.eq(unit.pool_addr[lane]),
                             unit.pool_data[lane].eq(pool.data)]
            for lane in range(cfg.wordline_domains * cfg.rows_per_step):
                read = act.read_port()
                m.d.comb += [read.addr.eq(unit.act_addr[lane]), read.en.eq(unit.act_en),
                             unit.act_data[lane].eq(read.data)]
        host_read = act.read_port()
        m.d.comb += [host_read.addr.eq(port.offset), port.act_data.eq(host_read.data)]

    def _result_memory(self, m, port, units: list[MacroUnit]) -> None:
        """The result memory: a write port per unit lane, the host's read port."""
        cfg = self._config
        result = Memory(shape=signed(cfg.acc_bits), depth=cfg.result_words, init=[])
        m.submodules.result = result
        self.memories[HostMemory.RESULT] = result
        for unit in units:
            for lane in range(UnitFormat(cfg).write_lanes):
                write = result.write_port()
                m.d.comb += [write.addr.eq(unit.res_addr[lane]),
                             write.data.eq(unit.res_data[lane]),
                             write.en.eq(unit.res_en[lane])]
        host_read = result.read_port()
        m.d.comb += [host_read.addr.eq(port.offset), port.result_data.eq(host_read.data)]

    def _cycle_memory(self, m, port, ctrl) -> None:
        """The per-phase cycle counts, written by the controller, read by the host."""
        cycles = Memory(shape=unsigned(32), depth=self._config.max_phases, init=[])
        m.submodules.cycle_mem = cycles
        self.memories[HostMemory.CYCLES] = cycles
        write = cycles.write_port()
        host_read = cycles.read_port()
        m.d.comb += [write.addr.eq(ctrl.phase), write.data.eq(ctrl.phase_cycles + 1),
                     write.en.eq(ctrl.phase_end),
                     host_read.addr.eq(port.offset), port.cycles_data.eq(host_read.data)]
