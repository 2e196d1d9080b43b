"""The words of the programs and parameters the host writes: macro-unit instructions,
parameter words and loader instructions, with the widths they are built from.

Part of the hardware/software contract (`mars.contract`): the RTL (`mars.hw.unit`,
`mars.hw.loader`) decodes these layouts and the mapper (`mars.sw.mapper`) encodes them;
docs/architecture.md ("Programs") says what each field means.
"""

from __future__ import annotations

import enum

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from mars.config import MarsConfig

from .decoder import DecoderFormat, descriptor_layout

__all__ = ["Op", "UnitFormat", "CONTROL_WORD_BITS", "instruction_layout", "param_layout",
           "load_layout", "split_word", "join_words", "residual_fields"]

#: Width of one stored word of a macro unit's program and parameter memories.  An
#: instruction (`instruction_layout`) or a parameter word (`param_layout`) is far wider
#: than a block RAM's port, so it is stored as ``ceil(bits / 36)`` consecutive narrow words
#: (least significant first) that the sequencer reads one a cycle, ahead of use
#: (docs/synthesis.md, "Block-RAM budget").  36 bits is the widest port of an ECP5 DP16KD
#: (512x36), so one block RAM holds 512 such words.
CONTROL_WORD_BITS = 36


class Op(enum.IntEnum):
    """Program word opcodes: a unit's WALK or a loader's LOAD (the same code), or SYNC."""

    WALK = 0
    LOAD = 0
    SYNC = 1


class UnitFormat:
    """Widths of the macro unit's program and parameter words, from the configuration."""

    def __init__(self, config: MarsConfig):
        self.config = config
        self.decoder = DecoderFormat(config)
        self.shift_bits = (config.acc_bits + config.requant_mult_bits).bit_length()
        self.act_addr_bits = self.decoder.addr_bits + 1        # + the ping-pong bank
        self.value_bits = self.decoder.value_bits
        # pool window 1..7; with residual adds 1..15 (the global pool of a CIFAR ResNet
        # is 8x8), kept at 3 bits otherwise so that existing instructions do not grow
        self.pool_bits = 4 if config.residual_adds else 3
        self.result_addr_bits = max(1, (config.result_words - 1).bit_length())
        # Channels the writer handles per cycle: enough that a pixel's writes never take
        # longer than one macro step (cycles_per_step), so the writer never limits.
        # Rounded up to a power of two at most G, so that an aligned group of lanes never
        # straddles an activation word (docs/banking.md).
        n = config.channels_per_macro
        lanes = min(n, -(-n // config.cycles_per_step))
        self.write_lanes = min(max(1, config.rows_per_step), 1 << (lanes - 1).bit_length())
        #: Bits of one channel's column scale factor codes (binary/ternary readouts: Wb
        #: codes of ``scale_bits``; 0 for the other readouts, whose words do not grow).
        self.scale_field_bits = (config.weight_bits * config.scale_bits
                                 if config.scaled_readout else 0)
        #: Bits of one parameter word: bias, M and S (and the column scale factors) of
        #: every macro channel (and the shortcut's M and S with ``residual_adds``).
        self.param_bits = n * (config.acc_bits + config.requant_mult_bits + self.shift_bits
                               + self.scale_field_bits)
        if config.residual_adds:
            self.param_bits += n * (config.requant_mult_bits + self.shift_bits)
        #: Stored words (`CONTROL_WORD_BITS` each) of one parameter word.
        self.param_chunks = -(-self.param_bits // CONTROL_WORD_BITS)

    @property
    def insn_chunks(self) -> int:
        """Stored words (`CONTROL_WORD_BITS` each) of one instruction."""
        return -(-instruction_layout(self.config).size // CONTROL_WORD_BITS)

    @property
    def program_depth(self) -> int:
        """Stored words of a unit's program memory: program_words x insn_chunks."""
        return self.config.program_words * self.insn_chunks

    @property
    def param_depth(self) -> int:
        """Stored words of a unit's parameter memory: param_words x param_chunks."""
        return self.config.param_words * self.param_chunks


def instruction_layout(config: MarsConfig) -> data.StructLayout:
    """One program word of a macro unit (docs/architecture.md, "Programs")."""
    fmt = UnitFormat(config)
    D = config.wordline_domains
    depth_bits = fmt.decoder.index_depth.bit_length()
    vb = fmt.value_bits
    region = unsigned(max(1, (config.act_regions - 1).bit_length()))
    return data.StructLayout({
        "op": unsigned(2),
        # stored-word address of the first of the parameter word's param_chunks words;
        # in the first stored word, so that the sequencer reads the parameter word
        # alongside the instruction's other words (hw/sequencer.py)
        "param_addr": range(config.param_words * fmt.param_chunks),
        "desc": descriptor_layout(config),          # index_start/count: per domain below
        "index_start": data.ArrayLayout(unsigned(fmt.decoder.slot_bits), D),
        "count": data.ArrayLayout(unsigned(depth_bits), D),
        "in_bank": region,                          # activation region read
        "out_bank": region,                         # activation region written
        "acc_out": 1,                               # raw accumulators to the result memory
        "n_valid": range(config.channels_per_macro + 1),
        "pool_k": unsigned(fmt.pool_bits),
        "pool_w": unsigned(vb),
        "pool_h": unsigned(vb),
        "out_base": unsigned(vb),
        "out_pitch": unsigned(vb),
        "out_row_pitch": unsigned(vb),
        **(residual_fields(config) if config.residual_adds else {}),
    })


def residual_fields(config: MarsConfig) -> dict:
    """The WALK fields of a fused residual add (``residual_adds`` configurations only;
    docs/architecture.md, "Residual adds"): ``add`` (the writer adds the shortcut),
    ``sc_res`` (the shortcut is raw accumulators in the result memory, else activations
    in region ``sc_bank``), ``sc_base`` (element of the walk's first pixel's channel 0 in
    the shortcut map) and ``sc_pitch`` (elements from one pixel to the next: the map's
    channel count)."""
    fmt = UnitFormat(config)
    vb = max(fmt.value_bits, fmt.result_addr_bits)
    return {
        "add": 1,
        "psum": 1,                                  # K-splitting: add the stored partial sum
        "sc_res": 1,
        "sc_bank": unsigned(max(1, (config.act_regions - 1).bit_length())),
        "sc_base": unsigned(vb + 1),
        "sc_pitch": unsigned(fmt.value_bits),
    }


def param_layout(config: MarsConfig) -> data.ArrayLayout:
    """One parameter word: bias, multiplier M and shift S of every macro channel.

    Binary/ternary readouts (``config.scaled_readout``) add each channel's column scale
    factor codes, ``scale[j]`` signed ``scale_bits`` wide for weight bit column j (the
    macro's `scales` input, docs/macro.md); the other readouts have no such field.
    """
    fmt = UnitFormat(config)
    fields = {
        "bias": signed(config.acc_bits),
        "mult": unsigned(config.requant_mult_bits),
        "shift": unsigned(fmt.shift_bits),
    }
    if config.scaled_readout:
        fields["scale"] = data.ArrayLayout(signed(config.scale_bits), config.weight_bits)
    if config.residual_adds:            # residual add: the shortcut's M and S
        fields["sc_mult"] = unsigned(config.requant_mult_bits)
        fields["sc_shift"] = unsigned(fmt.shift_bits)
    return data.ArrayLayout(data.StructLayout(fields), config.channels_per_macro)


def split_word(value: int, chunks: int) -> list[int]:
    """An instruction or parameter word (an unsigned int) as `chunks` stored words of
    `CONTROL_WORD_BITS` bits, least significant first."""
    mask = (1 << CONTROL_WORD_BITS) - 1
    return [(value >> (CONTROL_WORD_BITS * i)) & mask for i in range(chunks)]


def join_words(words: list[int]) -> int:
    """The inverse of `split_word`: stored words (least significant first) as one int."""
    return sum(int(w) << (CONTROL_WORD_BITS * i) for i, w in enumerate(words))


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def load_layout(config: MarsConfig) -> data.StructLayout:
    """One loader program word."""
    return data.StructLayout({
        "op": unsigned(2),
        "unit": range(config.macros_per_core),
        "src": unsigned(_bits(config.weight_sram_rows)),
        "dst": range(config.rows),
        "count": range(config.rows + 1),
    })
