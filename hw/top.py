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
* the controller: per layer, a LOAD phase (the loaders copy the layer's macro rows) and a
  WALK phase (the units compute), each ended by a SYNC of every participant; a cycle
  counter per layer;
* the host port: a stream of word writes (and reads) into every memory and the control
  registers.

The activation memory has as many read ports as the units have lanes: a behavioural
model (simulation and small FPGA builds replicate it); a silicon implementation would bank
it.  See docs/architecture.md for the reasons and the address map.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.host import HostFormat, HostMemory, Region
from mars.contract.program import UnitFormat

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
        Pulse: run the program from the start (``n_layers`` layers).
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
        fmt = UnitFormat(cfg)
        D, G = cfg.wordline_domains, cfg.rows_per_step
        m = Module()
        host = self.host
        hp = host.payload
        host_write = host.valid & hp.write

        def host_hits(region: Region, unit: int | None = None):
            hit = host_write & (hp.region == region)
            return hit if unit is None else hit & (hp.unit == unit)

        # -- macro units and core loaders --------------------------------------------------
        units = []
        loaders = []
        # Loaders and units are held in reset (program counters at 0) while the controller
        # is idle; their memories keep what the host wrote.
        running = Signal()
        for c in range(cfg.cores):
            loader = CoreLoader(cfg, init=self._init.get((HostMemory.LOADER, c, 0)))
            m.submodules[f"loader{c}"] = ResetInserter(~running)(loader)
            loaders.append(loader)
            sram = Memory(shape=unsigned(cfg.cols), depth=cfg.weight_sram_rows,
                          init=self._init.get((HostMemory.WEIGHTS, c, 0), []),
                          attrs={"ram_style": "block"})
            m.submodules[f"weights{c}"] = sram
            sw = sram.write_port()
            sr = sram.read_port()
            m.d.comb += [sw.addr.eq(hp.offset), sw.data.eq(hp.data),
                         sw.en.eq(host_hits(Region.WEIGHTS, c)),
                         sr.addr.eq(loader.sram_addr), sr.en.eq(loader.sram_en),
                         loader.sram_data.eq(sr.data),
                         loader.prog_write.valid.eq(host_hits(Region.LOADER, c)),
                         loader.prog_write.payload.addr.eq(hp.offset),
                         loader.prog_write.payload.data.eq(hp.data)]
            for j in range(cfg.macros_per_core):
                u = c * cfg.macros_per_core + j
                unit = MacroUnit(cfg, init={
                    "program": self._init.get((HostMemory.PROGRAM, u, 0), []),
                    "params": self._init.get((HostMemory.PARAMS, u, 0), []),
                    **{("index", d): self._init.get((HostMemory.INDEX, u, d)) for d in range(D)},
                    **{("ktable", d): self._init.get((HostMemory.KTABLE, u, d)) for d in range(D)}})
                m.submodules[f"unit{u}"] = ResetInserter(~running)(unit)
                units.append(unit)
                wiring.connect(m, loader.loads[j], unit.load)
                for port, region in ((unit.prog_write, Region.PROGRAM),
                                     (unit.param_write, Region.PARAMS)):
                    m.d.comb += [port.valid.eq(host_hits(region, u)),
                                 port.payload.addr.eq(hp.offset),
                                 port.payload.data.eq(hp.data)]
                for port, region in ((unit.index_write, Region.INDEX),
                                     (unit.ktable_write, Region.KTABLE)):
                    m.d.comb += [port.valid.eq(host_hits(region, u)),
                                 port.payload.domain.eq(hp.domain),
                                 port.payload.write.addr.eq(hp.offset),
                                 port.payload.write.data.eq(hp.data)]

        # -- activation memory: two banks, a read port per unit lane ----------------------
        act = Memory(shape=unsigned(cfg.act_bits), depth=2 * cfg.act_buffer_words,
                     init=self._init.get((HostMemory.ACT, 0, 0), []))
        m.submodules.act = act
        lanes = fmt.write_lanes
        for u, unit in enumerate(units):
            for lane in range(lanes):
                write = act.write_port()
                addr, value, enable = unit.out_addr[lane], unit.out_data[lane], \
                    unit.out_en[lane]
                if u == 0 and lane == 0:
                    # The host shares the first writer's port (it writes only while the
                    # accelerator is idle): with one unit and one lane the memory has a
                    # single write port and maps to block RAM.
                    addr = Mux(enable, addr, hp.offset)
                    value = Mux(enable, value, hp.data)
                    enable = enable | host_hits(Region.ACT)
                m.d.comb += [write.addr.eq(addr), write.data.eq(value), write.en.eq(enable)]
                pool = act.read_port(transparent_for=(write,))
                m.d.comb += [pool.addr.eq(unit.pool_addr[lane]),
                             unit.pool_data[lane].eq(pool.data)]
            for lane in range(D * G):
                read = act.read_port()
                m.d.comb += [read.addr.eq(unit.act_addr[lane]), read.en.eq(unit.act_en),
                             unit.act_data[lane].eq(read.data)]
        act_host_r = act.read_port()

        result = Memory(shape=signed(cfg.acc_bits), depth=cfg.result_words, init=[])
        m.submodules.result = result
        for unit in units:
            for lane in range(lanes):
                write = result.write_port()
                m.d.comb += [write.addr.eq(unit.res_addr[lane]),
                             write.data.eq(unit.res_data[lane]),
                             write.en.eq(unit.res_en[lane])]
        result_host_r = result.read_port()

        cycles_mem = Memory(shape=unsigned(32), depth=cfg.max_layers, init=[])
        m.submodules.cycle_mem = cycles_mem
        self.memories.update({HostMemory.ACT: act, HostMemory.RESULT: result,
                              HostMemory.CYCLES: cycles_mem})
        cycles_w = cycles_mem.write_port()
        cycles_r = cycles_mem.read_port()

        # -- controller ----------------------------------------------------------------------
        n_layers = Signal(range(cfg.max_layers + 1), init=self._init.get("phases", 0))
        layer = Signal(range(cfg.max_layers + 1))
        layer_cycles = Signal(32)
        total_cycles = Signal(32)
        all_loaders = Cat(*(ld.waiting for ld in loaders)).all()
        all_units = Cat(*(u.waiting for u in units)).all()
        go_loaders = Signal()
        go_units = Signal()
        for ld in loaders:
            m.d.comb += ld.go.eq(go_loaders)
        for unit in units:
            m.d.comb += unit.go.eq(go_units)
        m.d.comb += [self.error.eq(Cat(*(u.error for u in units)).any()),
                     cycles_w.addr.eq(layer), cycles_w.data.eq(layer_cycles + 1)]
        skip_loads = Signal()
        for ld in loaders:
            m.d.comb += ld.skip.eq(skip_loads)
        with m.If(host_hits(Region.CONTROL) & (hp.offset == 0)):
            m.d.sync += n_layers.eq(hp.data)
        with m.If(host_hits(Region.CONTROL) & (hp.offset == 1)):
            m.d.sync += skip_loads.eq(hp.data[0])

        # Programs: a loader runs each layer's LOADs then a SYNC; a unit starts with a SYNC
        # and runs each layer's WALKs then a SYNC.  LOAD phase: wait until every loader is
        # at its SYNC (every unit already waits at its own), release the units.  WALK
        # phase: wait until every unit is back at a SYNC, release the loaders.
        m.d.comb += self.busy.eq(running)
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(self.start & (n_layers != 0)):
                    m.d.sync += [running.eq(1), layer.eq(0), layer_cycles.eq(0),
                                 total_cycles.eq(0), self.done.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [layer_cycles.eq(layer_cycles + 1),
                             total_cycles.eq(total_cycles + 1)]
                with m.If(all_loaders & all_units):
                    m.d.comb += go_units.eq(1)
                    m.next = "WALK"
            with m.State("WALK"):
                m.d.sync += [layer_cycles.eq(layer_cycles + 1),
                             total_cycles.eq(total_cycles + 1)]
                with m.If(all_units):
                    m.d.comb += cycles_w.en.eq(1)
                    m.d.sync += [layer.eq(layer + 1), layer_cycles.eq(0)]
                    with m.If(layer + 1 == n_layers):
                        m.d.sync += [self.done.eq(1), running.eq(0)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += go_loaders.eq(1)
                        m.next = "LOAD"

        # -- host reads: answered one cycle after the request ----------------------------
        read_pending = Signal()
        read_region = Signal(4)
        read_offset = Signal.like(hp.offset)
        m.d.comb += [
            host.ready.eq(~read_pending),
            act_host_r.addr.eq(hp.offset), result_host_r.addr.eq(hp.offset),
            cycles_r.addr.eq(hp.offset),
        ]
        with m.If(host.valid & ~hp.write & ~read_pending):
            m.d.sync += [read_pending.eq(1), read_region.eq(hp.region),
                         read_offset.eq(hp.offset)]
        with m.If(self.host_read.valid & self.host_read.ready):
            m.d.sync += read_pending.eq(0)
        status = Cat(self.busy, self.done, self.error)
        m.d.comb += [
            self.host_read.valid.eq(read_pending),
            self.host_read.payload.eq(Mux(
                read_region == Region.ACT, act_host_r.data, Mux(
                    read_region == Region.RESULT, result_host_r.data.as_unsigned(), Mux(
                        read_region == Region.CYCLES, cycles_r.data, Mux(
                            read_offset == 0, status, total_cycles))))),
        ]
        return m
