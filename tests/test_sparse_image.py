"""Tests of the memory images (`mars.sw.sparse.image`): exact round trips in both forms,
every rejection the format promises (hash, kind, width, truncation, checksum, ...), and
that Icarus Verilog's ``$readmemh`` reads the hex form to the same words."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.config import PRESETS
from mars.sw.sparse import KINDS, DecoderFormat, ImageError, MemoryImage, image_width

TINY, DEFAULT = PRESETS["tiny"], PRESETS["default"]
HYPO = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def images(draw):
    config = draw(st.sampled_from([TINY, DEFAULT, PRESETS["wide8"]]))
    kind = draw(st.sampled_from(sorted(KINDS)))
    width = image_width(kind, config)
    words = draw(st.lists(st.integers(0, 2 ** width - 1), max_size=40))
    return config, MemoryImage.build(kind, words, config)


@HYPO
@given(images(), st.sampled_from(["hex", "bin"]))
def test_round_trip(tmp_path_factory, case, fmt):
    config, image = case
    path = tmp_path_factory.mktemp("img") / f"m.{fmt}"
    assert image.write(path) == path
    loaded = MemoryImage.read(path, config, image.kind)
    assert loaded == image and loaded.words == image.words
    assert MemoryImage.read(path, config).kind == image.kind     # kind from the header


def test_widths_come_from_the_configuration():
    fmt = DecoderFormat(TINY)
    assert image_width("weights", TINY) == TINY.cols
    assert image_width("index", TINY) == fmt.kgroup_bits
    assert image_width("ktable", TINY) == 2 * fmt.pos_bits + fmt.wrap_bits
    with pytest.raises(ImageError, match="unknown image kind 'bias'"):
        image_width("bias", TINY)
    with pytest.raises(ImageError, match="index word 1 .* does not fit 9 bits"):
        MemoryImage.build("index", [1, 512], TINY)


def test_hex_form_and_checksum_are_shared():
    image = MemoryImage.build("index", [5, 26, 255], TINY)
    lines = image.to_hex().splitlines()
    assert lines[0].startswith("// mars-image version=1 kind=index width=9 words=3 ")
    assert f"config={TINY.content_hash}" in lines[0] and f"sha256={image.checksum}" in lines[0]
    assert lines[1:] == ["005", "01a", "0ff"]
    data = image.to_bytes()
    assert data[:8] == b"MARS-IMG" and len(data) == 84 + 3 * 2
    assert data[52:84].hex() == image.checksum


def good(tmp_path, fmt, kind="ktable", config=TINY):
    words = list(range(1, 6))
    return MemoryImage.build(kind, words, config).write(tmp_path / f"k.{fmt}")


@pytest.mark.parametrize("fmt", ["hex", "bin"])
def test_rejects_another_configuration(tmp_path, fmt):
    path = good(tmp_path, fmt)
    with pytest.raises(ImageError, match=rf"made for configuration {TINY.short_hash}, not "
                                         rf"for default \({DEFAULT.short_hash}\)"):
        MemoryImage.read(path, DEFAULT)


@pytest.mark.parametrize("fmt", ["hex", "bin"])
def test_rejects_another_kind(tmp_path, fmt):
    with pytest.raises(ImageError, match="a 'ktable' image, but a 'weights' image is needed"):
        MemoryImage.read(good(tmp_path, fmt), TINY, "weights")


def test_rejects_truncated_and_overlong_hex(tmp_path):
    path = good(tmp_path, "hex")
    text = path.read_text()
    path.write_text("\n".join(text.splitlines()[:-2]) + "\n")
    with pytest.raises(ImageError, match="truncated: the header says 5 words, the file holds 3"):
        MemoryImage.read(path, TINY)
    path.write_text(text + "0000001\n")
    with pytest.raises(ImageError, match="6 words, but the header says 5"):
        MemoryImage.read(path, TINY)


def test_rejects_truncated_and_overlong_binary(tmp_path):
    path = good(tmp_path, "bin")
    data = path.read_bytes()
    for cut in (1, 4 * 5 - 1, 4 * 5, 4 * 5 + 40):
        path.write_bytes(data[:-cut])
        with pytest.raises(ImageError, match="truncated"):
            MemoryImage.read(path, TINY)
    path.write_bytes(data + b"\0")
    with pytest.raises(ImageError, match="1 bytes after the last of the 5 words"):
        MemoryImage.read(path, TINY)


@pytest.mark.parametrize("fmt", ["hex", "bin"])
def test_rejects_a_damaged_word(tmp_path, fmt):
    path = good(tmp_path, fmt)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01                          # the last word, in either form
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="checksum mismatch .* the image is damaged"):
        MemoryImage.read(path, TINY)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("version=1", "version=2"), "format version 2 is not supported"),
    (lambda t: t.replace("width=25", "width=24"), "ktable words are 25 bits wide for tiny"),
    (lambda t: t.replace(" words=5", ""), "header lacks words"),
    (lambda t: t.replace("kind=ktable", "kind=bias"), "unknown image kind 'bias'"),
    (lambda t: t.replace("// mars-image", "// other"), "not a MARS hex image"),
    (lambda t: t.replace("0000005", "00000zz"), r"word 4 \('00000zz'\) is not a hex word"),
    (lambda t: t.replace("0000005", "2000005"), "word 4 .* does not fit 25 bits"),
])
def test_rejects_a_bad_hex_header_or_word(tmp_path, edit, message):
    path = good(tmp_path, "hex")
    path.write_text(edit(path.read_text()))
    with pytest.raises(ImageError, match=message):
        MemoryImage.read(path, TINY)


def test_rejects_other_files(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x7fELF....")
    with pytest.raises(ImageError, match="not a MARS memory image"):
        MemoryImage.read(path, TINY)
    path.write_bytes(b"MARS-IMG\x01\x00")
    with pytest.raises(ImageError, match="truncated: 10 bytes, shorter than the 84-byte"):
        MemoryImage.read(path, TINY)
    with pytest.raises(ImageError, match="cannot read image"):
        MemoryImage.read(tmp_path / "missing.hex", TINY)
    with pytest.raises(ValueError, match="cannot tell the image format"):
        MemoryImage.build("index", [1], TINY).write(tmp_path / "x.txt")


def test_failed_write_leaves_nothing(tmp_path):
    image = MemoryImage.build("index", [1, 2], TINY)
    with pytest.raises(OSError):
        image.write(tmp_path / "no-such-folder" / "x.hex")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
def test_readmemh_reads_the_hex_form(tmp_path):
    """Icarus loads the hex image with $readmemh into a memory of the image's width."""
    image = MemoryImage.build("weights", [0, 1, 0xDEADBEEFCAFE0123, 2 ** 64 - 1, 77],
                              DEFAULT)
    image.write(tmp_path / "w.hex")
    (tmp_path / "t.v").write_text(f"""
module t;
  reg [{image.width - 1}:0] mem [0:{len(image) - 1}];
  integer i;
  initial begin
    $readmemh("w.hex", mem);
    for (i = 0; i < {len(image)}; i = i + 1) $display("%h", mem[i]);
  end
endmodule
""")
    subprocess.run(["iverilog", "-o", "t.vvp", "t.v"], cwd=tmp_path, check=True)
    done = subprocess.run(["vvp", "-n", "t.vvp"], cwd=tmp_path, check=True,
                          capture_output=True, text=True)
    words = [int(line, 16) for line in done.stdout.split() if line.strip()]
    assert words == list(image.words)
