"""The board top (UART, serial bridge, tiny accelerator) in Verilator behind a pty, driven
by `mars board run`'s code through pyserial: a random network bit-exact against the golden
model with the cycle model's counts, and damaged frames rejected on the real UART path."""

import numpy as np
import pytest

from mars.config import PRESETS
from mars.contract.serial import Command, ErrorCode, parse_response, request_frame

TINY = PRESETS["tiny"]


@pytest.mark.sim
def test_board_top_over_a_pty(tmp_path):
    serial = pytest.importorskip("serial")
    from mars.sw.board import board_run
    from mars.sw.host.serial import SerialTransport
    from mars.sw.run import run_package
    from mars.tb.board import BoardSimulation, build
    from mars.tb.networks import write_random_package

    seed = 4
    logits = write_random_package(tmp_path / "pkg", TINY, "cnn", seed=seed, count=3)
    golden = run_package(tmp_path / "pkg", backend="golden")
    with BoardSimulation(build(TINY)) as sim:
        port = serial.Serial(sim.path, 3_000_000, timeout=5)
        run = board_run(tmp_path / "pkg", port)
        np.testing.assert_array_equal(run.result.logits, logits, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(run.result.phase_cycles, golden.phase_cycles)
        assert run.retries == 0
        # A damaged frame (one payload byte flipped) and a truncated one: NAKed.
        good = request_frame(Command.WRITE, region=1, offset=0, nbytes=1, words=[1, 2, 3])
        bad = bytearray(good)
        bad[5] ^= 0x21
        for frame, code in ((bytes(bad), ErrorCode.BAD_CRC), (good[:6], ErrorCode.TIMEOUT)):
            port.write(frame)
            assert parse_response(port.read(5)) == (code, b"")
        link = SerialTransport(port, TINY).link_status()
        assert link.errors == 2 and link.last_error == ErrorCode.TIMEOUT
        port.close()
        stats = sim.close()
    assert stats["link_error"] == 1
