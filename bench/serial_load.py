"""Serial-link cost of loading a model package and running images (docs/serial.md).

Drives the host driver's serial transport against a software model of the bridge
(`mars.tb.serial_link.ModelPort`), counts frames and bytes each way, and turns them into
link time at a baud rate (10 bits a byte, 8N1) plus a per-frame turnaround (the host waits
for each answer: USB latency).

    .venv/bin/python bench/serial_load.py PKG [--baud 3000000] [--images 100] [--turnaround-ms 1]
"""

import argparse

import numpy as np

from mars.sw.package import load_package
from mars.sw.host import HostDriver, run_inferences
from mars.sw.host.serial import SerialTransport
from mars.sw.mapper import map_network
from mars.tb.serial_link import ModelPort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--baud", type=float, default=3e6)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--turnaround-ms", type=float, default=1.0)
    args = parser.parse_args()
    network = load_package(args.package).network
    mapping = map_network(network)
    config = mapping.config
    words = sum(len(v) for v in mapping.memories.values())
    h, w, c = mapping.output_shape
    images = np.zeros((args.images, *network.input_shape), dtype=np.int64)

    def cost(transport, before):
        frames = transport.frames - before[0]
        sent = transport.bytes_sent - before[1]
        got = transport.bytes_received - before[2]
        wire = (sent + got) * 10 / args.baud
        return frames, sent, got, wire, wire + frames * args.turnaround_ms * 1e-3

    transport = SerialTransport(ModelPort(config), config)
    driver = HostDriver(config, transport)
    driver.load(mapping.memories, mapping.n_phases)
    driver.flush()
    load = cost(transport, (0, 0, 0))
    mark = (transport.frames, transport.bytes_sent, transport.bytes_received)
    run_inferences(driver, images, memories={}, phases=mapping.n_phases,
                   resident=mapping.resident, n_outputs=h * w * c, budget=1 << 30)
    driver.flush()
    run = cost(transport, mark)
    print(f"config {config.name}: {words} memory words, baud {args.baud:g}, turnaround "
          f"{args.turnaround_ms:g} ms a frame")
    for name, (frames, sent, got, wire, total) in (("load", load),
                                                   (f"{args.images} images", run)):
        print(f"{name}: {frames} frames, {sent} bytes sent, {got} received, "
              f"{wire * 1e3:.1f} ms on the wire, {total * 1e3:.1f} ms with turnaround")


if __name__ == "__main__":
    main()
