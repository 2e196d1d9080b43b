"""The host side of the accelerator: `HostDriver` speaks the host protocol of
`mars.contract.host` over a transport (the native Verilator harness, the cocotb bench, a
board's serial link)."""

from .driver import (
    AcceleratorError,
    AcceleratorTimeout,
    HostDriver,
    Inference,
    Pending,
    RecordingTransport,
    RunStatus,
    Transport,
    run_inferences,
)

__all__ = ["AcceleratorError", "AcceleratorTimeout", "HostDriver", "Inference", "Pending",
           "RecordingTransport", "RunStatus", "Transport", "run_inferences"]
