"""Tests of the host driver (`mars.sw.host`) over a fake transport.

The fake is a Python model of the top's host port written from the contract's JSON (the
way a driver in another language would read it): it decodes every word with the field
offsets of ``contract.json``, keeps the memories and control registers, refuses what the
protocol forbids (writing a read-only memory, a word wider than its memory, an offset past
the depth), and answers runs with a scripted accelerator.  One word is also checked against
bits counted by hand.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mars.config import PRESETS
from mars.contract import HostFormat, HostMemory, Region, Status, contract_json
from mars.errors import MarsError
from mars.sw.host import (
    AcceleratorError,
    AcceleratorTimeout,
    HostDriver,
    Pending,
    RunStatus,
    Transport,
)
from mars.sw.host.driver import run_inferences

TINY = PRESETS["tiny"]


def field_reader(layout_doc: dict):
    """Decode a host word with the JSON layout (flat struct of integer fields)."""
    fields = {f["name"]: (f["offset"], f["width"]) for f in layout_doc["fields"]}

    def read(word: int) -> dict:
        return {name: (word >> off) & ((1 << width) - 1) for name, (off, width) in
                fields.items()}
    return read


class FakeTop(Transport):
    """A model of the host port (see the module docstring).  `batch`: answers arrive at
    `flush` only.  `accelerator(model)` is called on each run; it fills the result and
    cycle memories and returns (cycles or None, error)."""

    def __init__(self, config, *, batch=False, accelerator=None):
        doc = contract_json(config)
        self.decode = field_reader(doc["layouts"]["host"])
        self.regions = {value: name for name, value in doc["host"]["regions"].items()}
        self.memories_doc = {m["region"]: m for m in doc["memories"]}
        self.control_write = {v: k for k, v in doc["host"]["control_write"].items()}
        self.control_read = {v: k for k, v in doc["host"]["control_read"].items()}
        self.status_bit = doc["host"]["status_bits"]
        self.mem: dict[tuple[str, int, int], dict[int, int]] = {}
        self.registers = {"phases": 0, "skip_loads": 0}
        self.status = 0
        self.total = 0
        self.log: list[tuple] = []
        self.batch = batch
        self.queue: list = []
        self.accelerator = accelerator or (lambda model: (100, False))

    # -- protocol ---------------------------------------------------------------------
    def _do_write(self, word: int) -> None:
        f = self.decode(word)
        assert f["write"] == 1
        region = self.regions[f["region"]]
        if region == "control":
            self.registers[self.control_write[f["offset"]]] = f["data"]
            self.log.append(("control", self.control_write[f["offset"]], f["data"]))
            return
        m = self.memories_doc[region]
        assert m["host_writes"], f"write into read-only {region}"
        assert f["offset"] < m["depth"], f"{region}: offset {f['offset']} past the depth"
        assert f["data"] < 1 << m["width"], f"{region}: data wider than {m['width']} bits"
        self.mem.setdefault((region, f["unit"], f["domain"]), {})[f["offset"]] = f["data"]
        self.log.append(("write", region))

    def _do_read(self, word: int) -> int:
        f = self.decode(word)
        assert f["write"] == 0
        region = self.regions[f["region"]]
        self.log.append(("read", region, f["offset"]))
        if region == "control":
            name = self.control_read[f["offset"]]
            return self.status if name == "status" else self.total
        assert self.memories_doc[region]["host_reads"], f"read of write-only {region}"
        return self.mem.get((region, 0, 0), {}).get(f["offset"], 0)

    def _do_run(self, budget: int) -> RunStatus:
        self.log.append(("run", self.registers["skip_loads"]))
        if self.registers["phases"] == 0:            # start does nothing
            return RunStatus(None, Status(self.status))
        cycles, error = self.accelerator(self)
        if cycles is None or cycles > budget:
            self.status = 1 << self.status_bit["busy"]
            return RunStatus(None, Status(self.status))
        self.status = (1 << self.status_bit["done"]) | (error << self.status_bit["error"])
        self.total = cycles
        return RunStatus(cycles, Status(self.status))

    # -- transport --------------------------------------------------------------------
    def write(self, word):
        if self.batch:
            self.queue.append((self._do_write, word, None))
        else:
            self._do_write(word)

    def _answer(self, action, arg):
        if not self.batch:
            return Pending(action(arg))
        answer = Pending()
        self.queue.append((action, arg, answer))
        return answer

    def read(self, word):
        return self._answer(self._do_read, word)

    def run(self, budget):
        return self._answer(self._do_run, budget)

    def flush(self):
        queue, self.queue = self.queue, []
        for action, arg, answer in queue:
            value = action(arg)
            if answer is not None:
                answer.resolve(value)


def negating_accelerator(model):
    """Results = minus the first activations (signed, so the sign decoding shows); phase
    cycles = 10, 20, ...; 30 cycles a phase."""
    phases = model.registers["phases"]
    words = model.mem.get(("act", 0, 0), {})
    # activation words hold G fields of act_bits (mars.contract.banking), from the JSON
    group = model.memories_doc["act"]["width"] // TINY.act_bits
    act = [(words.get(i // group, 0) >> (TINY.act_bits * (i % group))) & TINY.act_max
           for i in range(4)]
    width = model.memories_doc["result"]["width"]
    result = model.mem.setdefault(("result", 0, 0), {})
    for i in range(4):
        result[i] = (-act[i] - 1) & ((1 << width) - 1)
    model.mem[("cycles", 0, 0)] = {i: 10 * (i + 1) for i in range(phases)}
    return 30 * phases, False


# -- words -------------------------------------------------------------------------------

def test_host_word_hand_counted_tiny():
    # tiny: 1 unit (1 bit), 2 domains (1 bit), deepest memory act 2*2048/4 words of 4
    # activations (10 offset bits): write @0, region @1..4, unit @5, domain @6,
    # offset @7..16, data @17..
    driver = HostDriver(TINY, FakeTop(TINY))
    assert driver.word(Region.ACT, 5, 3) == 1 | 1 << 1 | 5 << 7 | 3 << 17
    assert driver.word(Region.KTABLE, 2, 9, unit=0, domain=1) == \
        1 | 8 << 1 | 1 << 6 | 2 << 7 | 9 << 17
    assert driver.word(Region.RESULT, 7, write=False) == 2 << 1 | 7 << 7


@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_host_word_is_amaranths_packing(preset):
    config = PRESETS[preset]
    layout = HostFormat(config).layout()
    driver = HostDriver(config, FakeTop(config))
    rng = np.random.default_rng(5)
    for _ in range(50):
        fields = {name: int(rng.integers(0, 1 << min(field.width, 62)))
                  for name, field in layout}
        fields["region"] = int(rng.integers(0, len(Region)))
        word = driver.word(Region(fields["region"]), fields["offset"], fields["data"],
                           write=bool(fields["write"]), unit=fields["unit"],
                           domain=fields["domain"])
        assert word == layout.const(fields).as_bits()
    with pytest.raises(ValueError, match="offset"):
        driver.word(Region.ACT, 1 << HostFormat(config).offset_bits)


def test_load_writes_every_word_of_every_memory():
    rng = np.random.default_rng(7)
    memories = {}
    for memory in HostMemory:
        if not memory.host_writes or memory is HostMemory.ACT:
            continue
        copies = TINY.wordline_domains if memory.scope.value == "domain" else 1
        for d in range(copies):
            width = memory.width(TINY)
            n = int(rng.integers(1, min(8, memory.depth(TINY)) + 1))
            memories[(memory, 0, d)] = [int(rng.integers(0, 1 << min(width, 62))) << max(
                0, width - 62) for _ in range(n)]
    fake = FakeTop(TINY)
    HostDriver(TINY, fake).load(memories, phases=3)
    expected = {(m.value, u, d): dict(enumerate(words)) for (m, u, d), words in
                memories.items()}
    assert fake.mem == expected
    assert fake.registers["phases"] == 3
    assert sum(1 for entry in fake.log if entry[0] == "write") == \
        sum(len(w) for w in memories.values())


def test_load_a_real_mapping():
    from mars.sw.mapper import map_network
    from mars.tb.networks import NETWORKS

    build, sparsity = NETWORKS["cnn"]
    mapping = map_network(build(TINY, np.random.default_rng(3), sparsity))
    fake = FakeTop(TINY)
    HostDriver(TINY, fake).load(mapping.memories, mapping.n_phases)
    for (memory, unit, domain), words in mapping.memories.items():
        assert fake.mem.get((memory.value, unit, domain), {}) == dict(enumerate(words))
    assert fake.registers["phases"] == mapping.n_phases


# -- runs --------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [False, True])
def test_inferences_results_cycles_and_skip_loads(batch):
    fake = FakeTop(TINY, batch=batch, accelerator=negating_accelerator)
    driver = HostDriver(TINY, fake)
    images = np.arange(2 * 3 * 4).reshape(2, 1, 3, 4) % 16
    answers = run_inferences(driver, images, memories={}, phases=2, resident=True,
                             n_outputs=4, budget=1000)
    if batch:
        with pytest.raises(RuntimeError, match="flush"):
            answers[0].outputs.value
    driver.flush()
    for image, answer in zip(images, answers):
        assert answer.outputs.value == [-int(v) - 1 for v in image.reshape(-1)[:4]]
        assert answer.phase_cycles.value == [10, 20]
        assert answer.run.value == RunStatus(60, Status.DONE)
        assert answer.status.value == Status.DONE
    runs = [entry for entry in fake.log if entry[0] == "run"]
    assert runs == [("run", 0), ("run", 1)]      # resident: the second skips the loads
    # each input is written before its run, the results read after it
    first_run = fake.log.index(("run", 0))
    assert ("write", "act") in fake.log[:first_run]
    assert ("read", "result", 0) in fake.log[first_run:]


def test_not_resident_never_skips_loads():
    fake = FakeTop(TINY, accelerator=negating_accelerator)
    driver = HostDriver(TINY, fake)
    run_inferences(driver, np.zeros((3, 1, 1, 2), dtype=np.int64), memories={}, phases=1,
                   resident=False, n_outputs=1, budget=100)
    driver.flush()
    assert [e for e in fake.log if e[0] == "run"] == [("run", 0)] * 3
    assert ("control", "skip_loads", 1) not in fake.log


@pytest.mark.parametrize("batch", [False, True])
def test_error_flag_raises(batch):
    fake = FakeTop(TINY, batch=batch, accelerator=lambda model: (50, True))
    driver = HostDriver(TINY, fake)
    driver.set_phases(1)
    status = driver.run(100)
    with pytest.raises(AcceleratorError, match="error flag.*; status done[+]error$") as info:
        driver.flush()
    assert isinstance(info.value, MarsError)
    assert not isinstance(info.value, AcceleratorTimeout)
    assert status.value.status == Status.DONE | Status.ERROR


def test_error_flag_is_named_when_the_run_also_hangs():
    class Stalled(FakeTop):
        def _do_run(self, budget):
            return RunStatus(None, Status.BUSY | Status.ERROR)

    driver = HostDriver(TINY, Stalled(TINY))
    driver.set_phases(1)
    driver.run(100)
    with pytest.raises(AcceleratorError, match="error flag.*did not finish within 100 "
                       "cycles; status busy[+]error") as info:
        driver.flush()
    assert not isinstance(info.value, AcceleratorTimeout)


@pytest.mark.parametrize("hang", [None, 500])
def test_timeout_raises(hang):
    fake = FakeTop(TINY, accelerator=lambda model: (hang, False))
    driver = HostDriver(TINY, fake)
    driver.set_phases(2)
    driver.run(100)
    with pytest.raises(AcceleratorTimeout, match="no done after 100 cycles.*busy"):
        driver.flush()


def test_no_phases_means_no_done():
    driver = HostDriver(TINY, FakeTop(TINY))
    driver.run(10)
    with pytest.raises(AcceleratorTimeout, match="status idle"):
        driver.flush()


def test_status_and_total_cycles_registers():
    fake = FakeTop(TINY, accelerator=negating_accelerator)
    driver = HostDriver(TINY, fake)
    assert driver.read_status().value == Status(0)
    driver.set_phases(3)
    driver.run(1000)
    driver.flush()
    assert driver.read_status().value == Status.DONE
    assert driver.read_total_cycles().value == 90


def test_async_transport():
    class AsyncFake(FakeTop):
        is_async = True

        async def flush(self):
            await asyncio.sleep(0)
            FakeTop.flush(self)

    fake = AsyncFake(TINY, batch=True, accelerator=negating_accelerator)
    driver = HostDriver(TINY, fake)
    answers = run_inferences(driver, np.ones((1, 1, 1, 4), dtype=np.int64), memories={},
                             phases=1, resident=False, n_outputs=2, budget=100)
    with pytest.raises(TypeError, match="flush_async"):
        driver.flush()
    asyncio.run(driver.flush_async())
    assert answers[0].outputs.value == [-2, -2]


@pytest.mark.parametrize("call, message", [
    (lambda d: d.write_memory(HostMemory.RESULT, [1]), "does not write the result"),
    (lambda d: d.read_memory(HostMemory.WEIGHTS, 1), "does not read the weights"),
    (lambda d: d.write_memory(HostMemory.PROGRAM, [0] * (HostMemory.PROGRAM.depth(TINY) + 1)),
     f"outside its {HostMemory.PROGRAM.depth(TINY)} words"),
    (lambda d: d.write_memory(HostMemory.INDEX, [1], domain=2), "domain 2 outside"),
    (lambda d: d.write_memory(HostMemory.WEIGHTS, [1], unit=1), "unit 1 outside"),
    (lambda d: d.write_memory(HostMemory.ACT, [1 << 16]), "does not fit 16 bits"),
    (lambda d: d.set_phases(TINY.max_phases + 1), "phases"),
    (lambda d: d.run(0), "budget"),
])
def test_bad_requests_are_refused_before_any_word(call, message):
    fake = FakeTop(TINY)
    with pytest.raises(ValueError, match=message):
        call(HostDriver(TINY, fake))
    assert fake.log == []
