"""Memory images: the words an RTL memory loads, as a ``$readmemh`` text or a binary file.

An image is a list of words of one *kind*, each kind with a width fixed by the
configuration:

========== ================================ =============================================
kind       width                            content
========== ================================ =============================================
weights    C (``cols``)                     macro row words (`PackedLayer.rows`)
index      ``DecoderFormat.kgroup_bits``    index-memory words (`PackedLayer.index_memory`)
ktable     ``DecoderFormat.ktable_bits``    k-table words (`PackedLayer.ktable`)
========== ================================ =============================================

Both forms carry the same header fields: format version, kind, word width, word count,
the configuration's content hash and a SHA-256 checksum of the words.  The checksum is
taken over the binary payload (each word little-endian in ceil(width/8) bytes), so a hex
file and a binary file of the same words have the same checksum.

Hex (``.hex``/``.mem``, ``$readmemh``-compatible)::

    // mars-image version=1 kind=index width=9 words=3 config=<64 hex> sha256=<64 hex>
    005
    01a
    0ff

one word per line, ceil(width/4) lowercase hex digits.  Binary (``.bin``): an 84-byte
little-endian header ``magic "MARS-IMG" | u16 version | u16 kind code | u32 width |
u32 words | 32-byte config hash | 32-byte SHA-256`` followed by the payload.

`MemoryImage.read` rejects, with an `ImageError` naming the file and the problem: another
file type, another format version, another kind, another configuration (hash), a width
that is not the configuration's, a truncated or over-long file, a bad checksum and words
that do not fit their width.  Files are written atomically (a temporary file, then
``os.replace``), so nothing half-written is left looking valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path

from mars.errors import MarsError
from mars.config import MarsConfig

from mars.contract.decoder import DecoderFormat

__all__ = ["IMAGE_VERSION", "KINDS", "ImageError", "MemoryImage", "image_width"]

IMAGE_VERSION = 1
#: Image kinds and their codes in the binary header.
KINDS: dict[str, int] = {"weights": 1, "index": 2, "ktable": 3}
_MAGIC = b"MARS-IMG"
_HEADER = struct.Struct("<8sHHII32s32s")
_HEX_TAG = "// mars-image"
_HEX_FIELDS = ("version", "kind", "width", "words", "config", "sha256")


class ImageError(MarsError, ValueError):
    """A memory image that cannot be loaded: damaged, or made for something else."""


def image_width(kind: str, config: MarsConfig) -> int:
    """Word width of images of `kind` for `config`."""
    fmt = DecoderFormat(config)
    widths = {"weights": config.cols, "index": fmt.kgroup_bits, "ktable": fmt.ktable_bits}
    try:
        return widths[kind]
    except KeyError:
        raise ImageError(f"unknown image kind {kind!r} (kinds: {', '.join(KINDS)})") from None


def _payload(words: tuple[int, ...], width: int) -> bytes:
    n_bytes = -(-width // 8)
    return b"".join(word.to_bytes(n_bytes, "little") for word in words)


@dataclasses.dataclass(frozen=True, eq=False)
class MemoryImage:
    """The words of one memory, of one kind, for one configuration.

    Build it with `build` (which checks the words) or load it with `read`.
    """

    kind: str
    words: tuple[int, ...]
    config_hash: str
    width: int

    @classmethod
    def build(cls, kind: str, words: Iterable[int], config: MarsConfig) -> MemoryImage:
        """An image of `words` for `config`; `ImageError` if a word does not fit."""
        width = image_width(kind, config)
        words = tuple(int(w) for w in words)
        for i, word in enumerate(words):
            if not 0 <= word < 1 << width:
                raise ImageError(f"{kind} word {i} ({word:#x}) does not fit {width} bits")
        return cls(kind, words, config.content_hash, width)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryImage):
            return NotImplemented
        return (self.kind, self.words, self.config_hash, self.width) == \
            (other.kind, other.words, other.config_hash, other.width)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def checksum(self) -> str:
        """SHA-256 (hex) of the binary payload of the words."""
        return hashlib.sha256(_payload(self.words, self.width)).hexdigest()

    # -- writing ---------------------------------------------------------------------------

    def to_hex(self) -> str:
        digits = -(-self.width // 4)
        header = (f"{_HEX_TAG} version={IMAGE_VERSION} kind={self.kind} width={self.width} "
                  f"words={len(self.words)} config={self.config_hash} sha256={self.checksum}")
        return "\n".join([header, *(format(w, f"0{digits}x") for w in self.words)]) + "\n"

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(_MAGIC, IMAGE_VERSION, KINDS[self.kind], self.width,
                              len(self.words), bytes.fromhex(self.config_hash),
                              bytes.fromhex(self.checksum))
        return header + _payload(self.words, self.width)

    def write(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write to `path` atomically; `fmt` is ``"hex"`` or ``"bin"`` (default: from the
        suffix, ``.hex``/``.mem`` or ``.bin``)."""
        path = Path(path)
        fmt = fmt or _format_of_suffix(path)
        data = self.to_hex().encode() if fmt == "hex" else self.to_bytes()
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            staging.write_bytes(data)
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)
        return path

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | Path, config: MarsConfig, kind: str | None = None) -> MemoryImage:
        """Load an image file (either form, told apart by its first bytes) made for
        `config`, of `kind` if given."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ImageError(f"cannot read image {str(path)!r}: {error.strerror}") from None
        if data.startswith(_MAGIC):
            return cls.from_bytes(data, config, kind, source=str(path))
        if data.startswith(b"//"):
            try:
                text = data.decode("ascii")
            except UnicodeDecodeError:
                raise ImageError(f"{path}: a hex image must be ASCII text") from None
            return cls.from_hex(text, config, kind, source=str(path))
        raise ImageError(f"{path}: not a MARS memory image (neither the binary magic "
                         f"{_MAGIC!r} nor a '{_HEX_TAG}' header)")

    @classmethod
    def from_hex(cls, text: str, config: MarsConfig, kind: str | None = None, *,
                 source: str = "hex image") -> MemoryImage:
        lines = text.splitlines()
        first = lines[0] if lines else ""
        if not first.startswith(_HEX_TAG + " "):
            raise ImageError(f"{source}: not a MARS hex image (first line {first[:60]!r})")
        fields = dict(item.partition("=")[::2] for item in first[len(_HEX_TAG):].split())
        missing = [name for name in _HEX_FIELDS if not fields.get(name)]
        if missing:
            raise ImageError(f"{source}: header lacks {', '.join(missing)}")
        try:
            version, width, count = (int(fields[name]) for name in ("version", "width", "words"))
        except ValueError:
            raise ImageError(f"{source}: header fields version, width and words must be "
                             f"integers") from None
        header = _Header(source, version, fields["kind"], width, count, fields["config"],
                         fields["sha256"])
        header.check(config, kind)
        body = [line.strip() for line in lines[1:] if line.strip()]
        if len(body) < count:
            raise ImageError(f"{source}: truncated: the header says {count} words, the file "
                             f"holds {len(body)}")
        if len(body) > count:
            raise ImageError(f"{source}: {len(body)} words, but the header says {count}")
        digits = -(-width // 4)
        words = []
        for i, token in enumerate(body):
            if not re.fullmatch(r"[0-9a-fA-F]+", token) or len(token) > digits:
                raise ImageError(f"{source}: word {i} ({token[:20]!r}) is not a hex word of "
                                 f"at most {digits} digits")
            words.append(int(token, 16))
        return header.finish(words)

    @classmethod
    def from_bytes(cls, data: bytes, config: MarsConfig, kind: str | None = None, *,
                   source: str = "binary image") -> MemoryImage:
        if not data.startswith(_MAGIC):
            raise ImageError(f"{source}: not a MARS binary image (magic {data[:8]!r})")
        if len(data) < _HEADER.size:
            raise ImageError(f"{source}: truncated: {len(data)} bytes, shorter than the "
                             f"{_HEADER.size}-byte header")
        _, version, code, width, count, config_hash, checksum = _HEADER.unpack_from(data)
        names = {v: k for k, v in KINDS.items()}
        header = _Header(source, version, names.get(code, f"code {code}"), width, count,
                         config_hash.hex(), checksum.hex())
        header.check(config, kind)
        n_bytes = -(-width // 8)
        payload = data[_HEADER.size:]
        if len(payload) < count * n_bytes:
            raise ImageError(f"{source}: truncated: the header says {count} words of "
                             f"{n_bytes} bytes, the file holds {len(payload)} payload bytes")
        if len(payload) > count * n_bytes:
            raise ImageError(f"{source}: {len(payload) - count * n_bytes} bytes after the "
                             f"last of the {count} words")
        words = [int.from_bytes(payload[i * n_bytes:(i + 1) * n_bytes], "little")
                 for i in range(count)]
        return header.finish(words)


def _format_of_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".hex", ".mem"):
        return "hex"
    if suffix == ".bin":
        return "bin"
    raise ValueError(f"cannot tell the image format of {str(path)!r}: use a .hex, .mem or "
                     f".bin suffix, or pass fmt='hex' or 'bin'")


@dataclasses.dataclass(frozen=True)
class _Header:
    source: str
    version: int
    kind: str
    width: int
    count: int
    config_hash: str
    checksum: str

    def check(self, config: MarsConfig, kind: str | None) -> None:
        src = self.source
        if self.version != IMAGE_VERSION:
            raise ImageError(f"{src}: image format version {self.version} is not supported "
                             f"(this tool reads version {IMAGE_VERSION})")
        if self.kind not in KINDS:
            raise ImageError(f"{src}: unknown image kind {self.kind!r} "
                             f"(kinds: {', '.join(KINDS)})")
        if kind is not None and self.kind != kind:
            raise ImageError(f"{src}: a {self.kind!r} image, but a {kind!r} image is needed")
        if self.config_hash != config.content_hash:
            raise ImageError(
                f"{src}: made for configuration {self.config_hash[:12]}, not for "
                f"{config.name} ({config.short_hash}): the image does not match the hardware")
        expected = image_width(self.kind, config)
        if self.width != expected:
            raise ImageError(f"{src}: {self.kind} words are {expected} bits wide for "
                             f"{config.name}, the header says {self.width}")

    def finish(self, words: list[int]) -> MemoryImage:
        for i, word in enumerate(words):
            if word >= 1 << self.width:
                raise ImageError(f"{self.source}: word {i} ({word:#x}) does not fit "
                                 f"{self.width} bits")
        image = MemoryImage(self.kind, tuple(words), self.config_hash, self.width)
        if image.checksum != self.checksum:
            raise ImageError(f"{self.source}: checksum mismatch (header {self.checksum[:16]}, "
                             f"words {image.checksum[:16]}): the image is damaged")
        return image
