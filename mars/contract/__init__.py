"""The hardware/software contract: everything the RTL and the software must agree on.

The generators (`mars.hw`) build their ports and memories from these definitions and the
software (`mars.sw`: sparse format, mapper, cycle model) and the testbenches (`mars.tb`)
encode and decode words with the same ones, so neither side re-spells the other.  This
package imports only `mars.config`, `mars.errors`, Amaranth's shapes and NumPy: never the
hardware, the software or the testbenches (checked by import-linter, see pyproject.toml).

* `mars.contract.layer`: a layer's geometry (`LayerGeometry`, `LayerKind`).
* `mars.contract.decoder`: the decoder's format (`DecoderFormat`, `descriptor`,
  `ktable_words`) and word layouts.
* `mars.contract.program`: macro-unit instructions, parameter words, loader instructions.
* `mars.contract.banking`: how activations and results lie in their memories' words
  (`Banking`).
* `mars.contract.host`: the host port (`Region`, `HostMemory`, control registers,
  `Status`, `HostFormat`).
* `mars.contract.netlist`: names in the generated netlist that synthesis relies on
  (`REPLICA`).
* `mars.contract.export`: all of it as JSON (`contract_json`; ``contract.json`` beside the
  Verilog that ``mars verilog`` writes).
"""

from .decoder import (
    DecoderFormat,
    DecoderLimitError,
    descriptor,
    descriptor_fields,
    descriptor_layout,
    error_layout,
    index_write_layout,
    ktable_fields,
    ktable_layout,
    ktable_words,
    ktable_write_layout,
    payload_fields,
    payload_layout,
)
from .export import contract_json, contract_text, layout_json
from .banking import Banking, BankingError
from .host import (
    READ_LATENCY,
    ControlRead,
    ControlWrite,
    HostFormat,
    HostMemory,
    Region,
    Scope,
    Status,
)
from .layer import LayerGeometry, LayerKind
from .program import Op, UnitFormat, instruction_layout, load_layout, param_layout

__all__ = [
    "Banking", "BankingError",
    "DecoderFormat", "DecoderLimitError", "descriptor", "descriptor_fields",
    "descriptor_layout", "error_layout", "index_write_layout", "ktable_fields",
    "ktable_layout", "ktable_words", "ktable_write_layout", "payload_fields",
    "payload_layout",
    "contract_json", "contract_text", "layout_json",
    "READ_LATENCY", "ControlRead", "ControlWrite", "HostFormat", "HostMemory", "Region",
    "Scope", "Status",
    "LayerGeometry", "LayerKind",
    "Op", "UnitFormat", "instruction_layout", "load_layout", "param_layout",
]
