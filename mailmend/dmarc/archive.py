"""Unpacking a report file or attachment (XML, ``.zip``, ``.gz``) within size limits.

Reports come from strangers, so an archive is judged before it is unpacked: a zip's
declared sizes, entry count and encryption flag; a gzip's declared size (its ISIZE trailer).
Declared sizes can lie, so the bytes are then streamed through a cap as well: nothing
grows past :attr:`Limits.max_xml` in memory whatever the archive says.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 64 * 1024
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"


class ArchiveError(ValueError):
    """The file cannot be unpacked safely (one-line message)."""


@dataclass(frozen=True)
class Limits:
    """Size limits for one report file or attachment."""

    max_input: int = 32 * 1024 * 1024  # the file or attachment as received
    max_xml: int = 64 * 1024 * 1024  # one report's XML, unpacked
    max_members: int = 8  # entries in one zip


DEFAULT_LIMITS = Limits()


def kind_of(data: bytes) -> str:
    """``zip``, ``gzip``, ``xml`` or ``other``, by the first bytes (not the file name)."""
    if data.startswith(ZIP_MAGIC):
        return "zip"
    if data.startswith(GZIP_MAGIC):
        return "gzip"
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return "xml" if head.startswith(b"<") else "other"


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[str, bytes]]:
    """The report XML documents in ``data``: (member name or "", XML bytes).

    Raises :class:`ArchiveError` for an archive that is too large, truncated, corrupt,
    encrypted or holds no XML.
    """
    if len(data) > limits.max_input:
        raise ArchiveError(f"{len(data)} bytes: larger than the {limits.max_input}-byte limit")
    kind = kind_of(data)
    if kind == "zip":
        yield from _unzip(data, limits)
    elif kind == "gzip":
        yield "", _gunzip(data, limits)
    elif kind == "xml":
        if len(data) > limits.max_xml:
            raise ArchiveError(f"XML of {len(data)} bytes: over the {limits.max_xml}-byte limit")
        yield "", data
    else:
        raise ArchiveError("neither XML, zip nor gzip")


def _unzip(data: bytes, limits: Limits) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise ArchiveError(f"truncated or corrupt zip archive ({err})") from None
    if len(members) > limits.max_members:
        raise ArchiveError(f"zip with {len(members)} entries (at most {limits.max_members})")
    reports = [m for m in members if not m.is_dir() and m.filename.lower().endswith(".xml")]
    if not reports:
        raise ArchiveError("zip archive without an .xml file")
    for member in reports:  # judge every entry before unpacking any
        if member.flag_bits & 0x1:
            raise ArchiveError(f"zip entry {member.filename!r} is encrypted")
        if member.file_size > limits.max_xml:
            raise ArchiveError(
                f"zip entry {member.filename!r} declares {member.file_size} bytes unpacked "
                f"(limit {limits.max_xml}): refused before unpacking"
            )
    for member in reports:
        try:
            with archive.open(member) as stream:
                yield member.filename, _capped(iter(lambda: stream.read(CHUNK), b""), limits)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as err:
            raise ArchiveError(
                f"truncated or corrupt zip entry {member.filename!r} ({err})"
            ) from None


def _gunzip(data: bytes, limits: Limits) -> bytes:
    if len(data) < 18:
        raise ArchiveError("truncated gzip file")
    (declared,) = struct.unpack("<I", data[-4:])  # ISIZE: the size modulo 2**32
    if declared > limits.max_xml:
        raise ArchiveError(
            f"gzip declares {declared} bytes unpacked (limit {limits.max_xml}; or the file is "
            "truncated): refused before unpacking"
        )
    return _capped(_inflate(data, limits.max_xml + 1), limits)


def _inflate(data: bytes, most: int) -> Iterator[bytes]:
    """The members of a gzip stream, decompressed in chunks of at most ``most`` bytes."""
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while not inflater.eof:
                chunk = inflater.decompress(pending, most)
                if not chunk and not pending:
                    raise ArchiveError("truncated gzip file")
                yield chunk
                pending = inflater.unconsumed_tail
        except zlib.error as err:
            raise ArchiveError(f"corrupt gzip file ({err})") from None
        rest = inflater.unused_data.lstrip(b"\0")  # NUL padding may follow the last member


def _capped(chunks: Iterator[bytes], limits: Limits) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > limits.max_xml:
            raise ArchiveError(
                f"unpacks to more than {limits.max_xml} bytes (its declared size was wrong): "
                "refused"
            )
    return bytes(out)
