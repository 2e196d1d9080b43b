"""The serial host link without a board: UART against a bit-level model, the frame bridge
against the reference receiver of `mars.contract.serial`, and the serial transport driving
the tiny accelerator through the bridge in Amaranth's simulator (golden model compared)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from mars.contract.banking import Banking
from mars.config import PRESETS
from mars.contract.host import HostFormat, HostMemory, Region, Status
from mars.contract.serial import (
    MAX_BODY,
    RUN_TIMEOUT_FLAG,
    Command,
    ErrorCode,
    FrameError,
    FrameReceiver,
    SerialFormat,
    crc16,
    parse_response,
    request_frame,
    response_frame,
)
from mars.hw.bridge import BridgedTop, SerialBridge
from mars.hw.uart import UARTReceiver, UARTTransmitter, divisor
from mars.sw.host import HostDriver, run_inferences
from mars.sw.host.serial import SerialLinkError, SerialTransport

TINY = PRESETS["tiny"]
TIMEOUT = 24


# -- CRC and frames (software) ------------------------------------------------------------

def test_crc16_is_ccitt_false():
    # The catalogue's check value of CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740).
    assert crc16(b"123456789") == 0x29B1
    frame = request_frame(Command.STATUS)
    assert crc16(frame[1:]) == 0                      # CRC sent MSB first: residue 0


def test_parse_response_rejects_damage():
    frame = response_frame(ErrorCode.OK, b"\x01\x02")
    assert parse_response(frame) == (ErrorCode.OK, b"\x01\x02")
    for bad in (frame[:-1], bytes([frame[0] ^ 1]) + frame[1:],
                frame[:3] + bytes([frame[3] ^ 0x10]) + frame[4:]):
        with pytest.raises(FrameError):
            parse_response(bad)


def test_divisor_checks():
    assert divisor(48e6, 3e6) == 16
    with pytest.raises(ValueError, match="at least 4"):
        divisor(12e6, 6e6)
    with pytest.raises(ValueError, match="off"):
        divisor(25e6, 3e6)                            # 8.33 cycles a bit: 4 % off


# -- UART against a bit-level model -------------------------------------------------------

def line_levels(data: bytes, period: float, rng) -> list[int]:
    """The 8N1 line for `data` with `period` cycles per bit (real), random idle gaps."""
    edges, t = [], 3.0
    for byte in data:
        t += rng.integers(0, 3) * period
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
        for bit in bits:
            edges.append((round(t), bit))
            t += period
    levels = [1] * (round(t) + 4 * round(period))
    for (start, bit), (end, _) in zip(edges, edges[1:] + [(len(levels), 1)]):
        levels[start:end] = [bit] * (end - start)
    return levels


def decode_levels(levels: list[int], period: int) -> list[int]:
    """Bytes of a sampled 8N1 line: each bit read at its middle; checks start and stop."""
    out, t = [], 0
    while t < len(levels):
        if levels[t]:
            t += 1
            continue
        mid = t + period // 2
        assert levels[mid] == 0, f"start bit not low at its middle (cycle {mid})"
        bits = [levels[mid + period * k] for k in range(1, 9)]
        assert levels[mid + 9 * period] == 1, f"stop bit low (cycle {mid + 9 * period})"
        out.append(sum(b << i for i, b in enumerate(bits)))
        t = mid + 9 * period
    return out


@pytest.mark.parametrize("div", [4, 7])
def test_uart_transmitter(div):
    rng = np.random.default_rng(div)
    data = rng.integers(0, 256, size=24).tolist()
    dut = UARTTransmitter(div)
    levels = []

    async def bench(ctx):
        queue = list(data)
        for _ in range(len(data) * 10 * div + 40):
            ctx.set(dut.data.valid, bool(queue))
            if queue:
                ctx.set(dut.data.payload, queue[0])
                if ctx.get(dut.data.ready):
                    queue.pop(0)
            levels.append(ctx.get(dut.tx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # Back to back: one byte every 10 bit times exactly, so the whole line fits
    # 10 * div cycles a byte from the first start bit.
    end = levels.index(0) + 10 * div * len(data)
    assert decode_levels(levels[:end], div) == data, f"seed {div}"
    assert set(levels[end:]) == {1}


def receive(div: int, levels: list[int]) -> tuple[list[int], int]:
    dut = UARTReceiver(div)
    got, errors = [], []

    async def bench(ctx):
        ctx.set(dut.data.ready, 1)
        for level in levels:
            ctx.set(dut.rx, level)
            if ctx.get(dut.data.valid):
                got.append(ctx.get(dut.data.payload))
            errors.append(ctx.get(dut.frame_error))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, sum(errors)


@pytest.mark.parametrize("mismatch", [-0.035, 0.0, 0.035])
def test_uart_receiver_tolerates_baud_mismatch(mismatch):
    seed = int(1000 * mismatch) + 100
    rng = np.random.default_rng(seed)
    div = 8
    data = rng.integers(0, 256, size=24).tolist()
    got, errors = receive(div, line_levels(bytes(data), div * (1 + mismatch), rng))
    assert (got, errors) == (data, 0), f"seed {seed}"


def test_uart_receiver_fails_beyond_its_tolerance():
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=24).tolist()
    got, errors = receive(8, line_levels(bytes(data), 8 * 1.10, rng))
    assert got != data


def test_uart_receiver_drops_a_byte_with_a_low_stop_bit():
    div = 6
    levels = line_levels(b"\x55\xa3", div, np.random.default_rng(0))
    # Pull the first byte's stop bit low (bit 9 of the first byte).
    start = levels.index(0)
    levels[start + 9 * div:start + 10 * div] = [0] * div
    got, errors = receive(div, levels)
    assert errors == 1 and 0x55 not in got


# -- the frame bridge against the reference receiver -------------------------------------

def fake_read(region: int, offset: int, data_bits: int) -> int:
    """What the fake host port answers for a read: a hash of the address."""
    return (offset * 0x9E3779B97F4A7C15 + region * 0x1234567) % (1 << data_bits)


def run_bridge(config, frames: list[bytes], *, run_cycles: int = 5,
               timeout: int = TIMEOUT) -> list[tuple[bytes, list[tuple]]]:
    """Feed each frame (one byte a cycle) into a `SerialBridge` whose host port is a Python
    fake, wait for its one response; returns (response bytes, host accesses) per frame."""
    dut = SerialBridge(config, timeout=timeout)
    data_bits = HostFormat(config).data_bits
    results = []

    async def bench(ctx):
        ctx.set(dut.tx.ready, 1)
        ctx.set(dut.host.ready, 1)
        pending, countdown = None, None
        for frame in frames:
            events, response, i = [], bytearray(), 0
            for _ in range(20 * (len(frame) + timeout + 600)):
                ctx.set(dut.rx.valid, i < len(frame))
                if i < len(frame):
                    ctx.set(dut.rx.payload, frame[i])
                    if ctx.get(dut.rx.ready):
                        i += 1
                ctx.set(dut.host_read.valid, pending is not None)
                if pending is not None:
                    ctx.set(dut.host_read.payload, pending)
                    if ctx.get(dut.host_read.ready):
                        pending = None
                if ctx.get(dut.host.valid):
                    word = ctx.get(dut.host.payload)
                    access = tuple(int(getattr(word, f)) for f in
                                   ("write", "region", "unit", "domain", "offset", "data"))
                    events.append(access)
                    if not access[0]:
                        pending = fake_read(access[1], access[4], data_bits)
                if ctx.get(dut.start):
                    countdown = run_cycles + 1      # done rises run_cycles after start
                    ctx.set(dut.done, 0)
                    ctx.set(dut.busy, 1)
                elif countdown is not None:
                    countdown -= 1
                    if countdown == 0:
                        ctx.set(dut.done, 1)
                        ctx.set(dut.busy, 0)
                        countdown = None
                if ctx.get(dut.tx.valid):
                    response.append(ctx.get(dut.tx.payload))
                await ctx.tick()
                if len(response) >= 2 and len(response) == response[1] + 4:
                    break
            else:
                raise AssertionError(f"no response to {frame.hex()}")
            results.append((bytes(response), events))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_bridge_executes_random_frames_exactly():
    seed = 11
    rng = np.random.default_rng(seed)
    fmt = SerialFormat(TINY)
    data_bits = HostFormat(TINY).data_bits
    frames, expected = [], []
    for _ in range(6):
        b = int(rng.integers(1, fmt.data_bytes + 1))
        n = int(rng.integers(1, min(6, fmt.max_write_words(b)) + 1))
        region, unit, domain = int(rng.integers(1, 9)), 0, int(rng.integers(0, 2))
        offset = int(rng.integers(0, 200))
        words = [int.from_bytes(rng.bytes(b), "little") for _ in range(n)]
        frames.append(request_frame(Command.WRITE, region=region, unit=unit, domain=domain,
                                    offset=offset, nbytes=b, words=words))
        expected.append(("write", [(1, region, unit, domain, offset + k, w)
                                   for k, w in enumerate(words)]))
        rb = int(rng.integers(1, 5))
        rn = int(rng.integers(1, 5))
        frames.append(request_frame(Command.READ, region=region, unit=unit, domain=domain,
                                    offset=offset, nbytes=rb, count=rn))
        values = [fake_read(region, offset + k, data_bits) % (1 << 8 * rb) for k in range(rn)]
        expected.append(("read", values))
    frames.append(request_frame(Command.RUN, budget=100))
    expected.append(("run", (5, int(Status.DONE))))
    frames.append(request_frame(Command.RUN, budget=3))
    expected.append(("run", (3, int(Status.BUSY) | RUN_TIMEOUT_FLAG)))
    frames.append(request_frame(Command.STATUS))
    expected.append(("status", None))
    results = run_bridge(TINY, frames)
    for (response, events), (kind, want) in zip(results, expected):
        code, data = parse_response(response)
        assert code == ErrorCode.OK, f"seed {seed}: {kind} answered {code!r}"
        if kind == "write":
            assert events == want and data == b"", f"seed {seed}"
        elif kind == "read":
            rb = len(data) // len(want)
            assert [int.from_bytes(data[k * rb:(k + 1) * rb], "little")
                    for k in range(len(want))] == want, f"seed {seed}"
            assert all(not e[0] for e in events) and len(events) == len(want)
        elif kind == "run":
            assert (int.from_bytes(data[:4], "little"), data[4]) == want, f"seed {seed}"
        else:
            assert data == bytes([0, 0, 0, int(Status.DONE)]), f"seed {seed}"


def expected_code(frame: bytes) -> ErrorCode:
    """The reference receiver's verdict on `frame` followed by a long idle line."""
    model = FrameReceiver(TINY, TIMEOUT)
    for value in frame:
        verdict = model.byte(value)
        if verdict is not None:
            return verdict.code
    return model.idle(10 * TIMEOUT).code


def test_bridge_rejects_every_corruption_and_truncation():
    seed = 5
    rng = np.random.default_rng(seed)
    good = request_frame(Command.WRITE, region=Region.WEIGHTS, unit=0, domain=0, offset=9,
                         nbytes=2, words=[0x1234, 0xBEEF, 0x0102])
    damaged, codes = [], []
    for position in range(len(good)):
        flip = int(rng.integers(1, 256))
        frame = bytearray(good)
        frame[position] ^= flip
        damaged.append(bytes(frame))
    damaged += [good[:cut] for cut in range(1, len(good))]
    for frame in damaged:
        codes.append(expected_code(frame))
        assert codes[-1] != ErrorCode.OK, f"seed {seed}: {frame.hex()} would be accepted"
    # Independent of the model: the start byte, the payload and the CRC bytes.
    assert codes[0] == ErrorCode.BAD_SYNC
    assert set(codes[2:len(good)]) == {ErrorCode.BAD_CRC}
    assert set(codes[len(good):]) == {ErrorCode.TIMEOUT}
    frames = damaged + [good, request_frame(Command.STATUS)]
    results = run_bridge(TINY, frames)
    for frame, code, (response, events) in zip(damaged, codes, results):
        got, data = parse_response(response)
        assert (got, data) == (code, b""), f"seed {seed}: {frame.hex()}"
        assert events == [], f"seed {seed}: {frame.hex()} reached the host port"
    response, events = results[len(damaged)]
    assert parse_response(response) == (ErrorCode.OK, b"") and len(events) == 3
    _, status = parse_response(results[-1][0])
    assert int.from_bytes(status[:2], "little") == len(damaged)
    assert status[2] == codes[-1]


def _raw(body: bytes) -> bytes:
    covered = bytes([len(body)]) + body
    return b"\xa5" + covered + crc16(covered).to_bytes(2, "big")


def test_bridge_rejects_bad_lengths_and_commands():
    data_bytes = SerialFormat(TINY).data_bytes
    header = bytes([Region.WEIGHTS, 0, 0, 0, 0])
    cases = [
        (_raw(bytes([Command.WRITE]) + header + bytes([0]) + b"\x01"), ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.WRITE]) + header + bytes([data_bytes + 1])
              + bytes(data_bytes + 1)), ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.WRITE]) + header + bytes([2]) + b"\x01\x02\x03"),
         ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.WRITE]) + header + bytes([2])), ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.READ]) + header + bytes([4, 64])), ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.READ]) + header + bytes([4, 0])), ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.RUN, 1, 2, 3])), ErrorCode.BAD_LENGTH),
        (_raw(bytes([Command.STATUS, 0])), ErrorCode.BAD_LENGTH),
        (_raw(bytes([0x77])), ErrorCode.BAD_COMMAND),
        (b"\xa5\x00", ErrorCode.BAD_LENGTH),
    ]
    assert all(expected_code(frame) == code for frame, code in cases)
    for (frame, code), (response, events) in zip(cases, run_bridge(TINY, [f for f, _ in cases])):
        assert parse_response(response) == (code, b""), frame.hex()
        assert events == [], frame.hex()


# -- the serial transport, end to end ------------------------------------------------------

class DamagingPort:
    """A `SimulatedPort` wrapper that flips a byte of the first `damage` frames written."""

    def __init__(self, port, damage: int, position: int = 4):
        self.port, self.damage, self.position = port, damage, position

    def write(self, data: bytes) -> int:
        if self.damage:
            self.damage -= 1
            data = bytearray(data)
            data[min(self.position, len(data) - 1)] ^= 0x40
        return self.port.write(bytes(data))

    def read(self, n: int) -> bytes:
        return self.port.read(n)


def test_transport_runs_a_network_bit_exact():
    from mars.sw.golden.accel import run_accelerator
    from mars.sw.golden.cycles import network_cycles
    from mars.sw.mapper import map_network
    from mars.tb.networks import NETWORKS, random_inputs
    from mars.tb.serial_link import SimulatedPort

    seed = 3
    rng = np.random.default_rng(seed)
    build, sparsity = NETWORKS["mlp"]
    network = build(TINY, rng, sparsity)
    inputs = random_inputs(network, rng, 2)
    mapping = map_network(network)
    expected = np.asarray(run_accelerator(network, inputs)).reshape(len(inputs), -1)
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    port = SimulatedPort(BridgedTop(TINY, timeout=64))
    retries = []
    # The first two frames are damaged on the way: NAKed, then sent again.
    transport = SerialTransport(DamagingPort(port, 2), TINY, on_retry=retries.append)
    driver = HostDriver(TINY, transport)
    h, w, c = mapping.output_shape
    answers = run_inferences(driver, inputs, memories=mapping.memories,
                             phases=mapping.n_phases, resident=mapping.resident,
                             n_outputs=h * w * c, budget=2 * sum(first) + 1000)
    driver.flush()
    outputs = np.array([a.outputs.value for a in answers])
    np.testing.assert_array_equal(outputs, expected, err_msg=f"seed {seed}")
    assert [a.phase_cycles.value for a in answers] == [first] + [later] * (len(inputs) - 1)
    assert len(retries) == 2 and "bad crc" in retries[0]
    link = transport.link_status()
    assert link.errors == 2 and link.last_error == ErrorCode.BAD_CRC
    assert link.status == Status.DONE
    # Read back what was written through the bridge: the first input's activations.
    banking = Banking(TINY)
    words = driver.read_memory(HostMemory.ACT, -(-inputs[-1].size // banking.group))
    driver.flush()
    assert banking.unpack(words.value, inputs[-1].size) == inputs[-1].reshape(-1).tolist()


def test_transport_gives_up_after_its_retries():
    from mars.tb.serial_link import SimulatedPort

    port = SimulatedPort(BridgedTop(TINY, timeout=32))
    transport = SerialTransport(DamagingPort(port, 10, position=0), TINY, retries=2)
    driver = HostDriver(TINY, transport)
    driver.set_phases(1)
    with pytest.raises(SerialLinkError, match=r"WRITE frame failed 3 times: last rejected "
                                              r"by the board \(bad sync\)"):
        driver.flush()


def test_transport_frames_fit():
    fmt = SerialFormat(TINY)
    for region in Region:
        b = fmt.word_bytes(region)
        assert 1 <= b <= fmt.data_bytes
        words = [(1 << 8 * b) - 1] * fmt.max_write_words(b)
        assert len(request_frame(Command.WRITE, region=region, nbytes=b, words=words)) \
            <= MAX_BODY + 4
        with pytest.raises(FrameError):
            request_frame(Command.WRITE, region=region, nbytes=b, words=words + [0])


def test_transport_round_trips_every_read_memory_on_the_model():
    from mars.tb.serial_link import ModelPort

    seed = 21
    rng = np.random.default_rng(seed)
    config = PRESETS["default"]                        # the widest words (64-bit weights)
    port = ModelPort(config)
    transport = SerialTransport(port, config)
    driver = HostDriver(config, transport)
    values = rng.integers(0, 1 << 32, size=150).tolist()    # words of 8 activations
    driver.write_memory(HostMemory.ACT, values)
    params = [int.from_bytes(rng.bytes(8), "little") for _ in range(5)]
    driver.write_memory(HostMemory.WEIGHTS, params, unit=1)
    back = driver.read_memory(HostMemory.ACT, len(values))
    driver.flush()
    assert back.value == values, f"seed {seed}"
    assert [port.memory[(Region.WEIGHTS, 1, 0, k)] for k in range(5)] == params
    # 150 four-byte words: 248 / 4 = 62 a WRITE frame, 254 / 4 = 63 a READ frame;
    # 8-byte rows: 31 a frame.
    assert transport.frames == -(-150 // 62) + 1 + -(-150 // 63)


def test_board_run_writes_what_mars_run_writes(tmp_path):
    from mars.sw.board import board_run
    from mars.sw.run import run_package
    from mars.tb.networks import write_random_package
    from mars.tb.serial_link import SimulatedPort

    logits = write_random_package(tmp_path / "pkg", TINY, "mlp", seed=4, count=1)
    run = board_run(tmp_path / "pkg", SimulatedPort(BridgedTop(TINY, timeout=64)))
    golden = run_package(tmp_path / "pkg", backend="golden")
    np.testing.assert_array_equal(run.result.logits, logits)
    np.testing.assert_array_equal(run.result.phase_cycles, golden.phase_cycles)
    assert run.retries == 0 and run.frames > 0 and run.bytes_received > 0
    run.result.save(tmp_path / "y.npz")
    assert str(np.load(tmp_path / "y.npz")["backend"]) == "board"


def test_board_run_command_names_a_missing_port(tmp_path, capsys):
    from mars.sw.cli import main

    assert main(["board", "run", "--port", str(tmp_path / "ttyNONE"), "--package",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mars: error: cannot open serial port") and err.count("\n") == 1


@pytest.mark.parametrize("args, words", [
    (["--baud", "0"], "--baud must be a positive rate, not 0"),
    (["--clock-mhz", "-1"], "--clock-mhz must be a positive clock in MHz, not -1.0"),
    (["--clock-mhz", "0"], "--clock-mhz must be a positive clock in MHz, not 0.0"),
])
def test_board_run_checks_its_numbers_before_the_port(tmp_path, capsys, args, words):
    from mars.sw.cli import main

    assert main(["board", "run", "--port", str(tmp_path / "ttyNONE"), "--package",
                 str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"mars: error: {words}\n"
