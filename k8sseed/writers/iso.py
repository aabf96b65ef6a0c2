"""NoCloud seed ISO (ISO 9660 + Joliet + Rock Ridge 1.09, volume label 'cidata'), written directly, reproducibly.

A seed ISO is always a handful of small files at the root, so the layout is fixed and computed in one pass:

    0-15 system area | 16 primary VD | 17 Joliet VD | 18 terminator | 19 version VD (zeros)
    20, 22 ISO path tables (L, M) | 24, 26 Joliet path tables | 28 root directory | 29 Joliet root directory
    30 Rock Ridge continuation area (the ER entry) | 31... file data, in ISO 9660 name order

It is the layout (and the byte stream) pycdlib writes for the same files with interchange level 3, Joliet
level 3 and Rock Ridge 1.09; tests hold the two to byte equality, so a change here shows up as a diff, and
read the result back with pycdlib, isoinfo and xorriso. Reading ISOs (`read_iso`) still goes through pycdlib.
"""

from __future__ import annotations

import io
import struct
import time

VOLUME_LABEL = "cidata"
SYSTEM_ID = "LINUX"
APPLICATION_ID = "K8SSEED"
SECTOR = 2048
FILE_MODE = 0o100600
DIR_MODE = 0o40555

_ROOT_SECTOR, _JOLIET_ROOT_SECTOR, _CE_SECTOR, _FIRST_FILE_SECTOR = 28, 29, 30, 31
_PATH_TABLES = (20, 22, 24, 26)  # ISO L, ISO M, Joliet L, Joliet M
_ER_ID = b"RRIP_1991A"
_ER_DESCRIPTION = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
_ER_SOURCE = (b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY "
              b"VOLUME DESCRIPTOR FOR CONTACT INFORMATION.")


def _both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def _sectors(size: int) -> int:
    return -(-size // SECTOR)


def _record_date(epoch: int) -> bytes:
    t = time.gmtime(epoch)
    return bytes((t.tm_year - 1900, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0))


def _volume_date(epoch: int) -> bytes:
    if epoch == 0:
        return b"0" * 16 + b"\x00"  # what pycdlib writes for time 0: the ISO 9660 'not specified' date
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch)).encode("ascii") + b"00\x00"


def _iso_name(name: str) -> bytes:
    """A seed file's ISO 9660 identifier: upper case, '-' as '_', version 1 ('user-data' -> 'USER_DATA.;1')."""
    return f"{name.upper().replace('-', '_')}.;1".encode("ascii")


def _directory_record(extent: int, size: int, date: bytes, directory: bool, identifier: bytes,
                      system_use: bytes = b"") -> bytes:
    head = (_both32(extent) + _both32(size) + date + bytes((2 if directory else 0, 0, 0)) + _both16(1)
            + bytes((len(identifier),)) + identifier)
    pad = b"\x00" if len(identifier) % 2 == 0 else b""
    record = head + pad + system_use
    length = 2 + len(record)
    if length % 2:
        record += b"\x00"
        length += 1
    return bytes((length, 0)) + record


def _rr_posix(mode: int, links: int) -> bytes:
    return b"PX\x24\x01" + _both32(mode) + _both32(links) + _both32(0) + _both32(0)


def _rr_times(date: bytes) -> bytes:
    return b"TF\x1a\x01\x0e" + date * 3  # creation, modification, access


def _rr_name(name: bytes) -> bytes:
    return b"NM" + bytes((5 + len(name), 1, 0)) + name


def _er_entry() -> bytes:
    body = _ER_ID + _ER_DESCRIPTION + _ER_SOURCE
    return b"ER" + bytes((8 + len(body), 1, len(_ER_ID), len(_ER_DESCRIPTION), len(_ER_SOURCE), 1)) + body


def _path_table(extent: int, big_endian: bool) -> bytes:
    return b"\x01\x00" + struct.pack(">IH" if big_endian else "<IH", extent, 1) + b"\x00\x00"


def _text(value: str, length: int, joliet: bool) -> bytes:
    """A fixed-length identifier field padded with spaces: a-characters, or UCS-2 big-endian for Joliet."""
    data = value.encode("utf-16-be") + b"\x00 " * length if joliet else value.encode("ascii") + b" " * length
    return data[:length]


def _volume_descriptor(joliet: bool, total: int, root: bytes, path_l: int, path_m: int, epoch: int) -> bytes:
    date = _volume_date(epoch)
    never = b"0" * 16 + b"\x00"
    text_fields = (_text("", 128, joliet) * 3 + _text(APPLICATION_ID, 128, joliet)
                   + _text("", 37, joliet) * 3)
    descriptor = (bytes((2 if joliet else 1,)) + b"CD001\x01\x00"
                  + _text(SYSTEM_ID, 32, joliet) + _text(VOLUME_LABEL, 32, joliet) + bytes(8)
                  + _both32(total) + (b"%/E" + bytes(29) if joliet else bytes(32))
                  + _both16(1) + _both16(1) + _both16(SECTOR) + _both32(10)
                  + struct.pack("<I", path_l) + bytes(4) + struct.pack(">I", path_m) + bytes(4)
                  + root + text_fields + date + date + never + date + b"\x01\x00" + b" " * 512)
    return descriptor.ljust(SECTOR, b"\x00")


def iso_bytes(files: tuple[tuple[str, bytes], ...], epoch: int) -> bytes:
    """An ISO holding the given (name, content) files at its root, byte-identical for the same input.

    Names are seed file names (lower-case letters, digits and '-'); the ISO 9660 name is derived from each,
    the Rock Ridge and Joliet names are the name itself."""
    date = _record_date(epoch)
    ordered = sorted(files, key=lambda item: _iso_name(item[0]))
    extents: list[int] = []
    next_sector = _FIRST_FILE_SECTOR
    for _, content in ordered:
        extents.append(next_sector if content else 0)  # an empty file has no extent
        next_sector += _sectors(len(content))
    total = next_sector

    er = _er_entry()
    dir_rr = b"RR\x05\x01\x81" + _rr_posix(DIR_MODE, 2) + _rr_times(date)
    continuation = b"CE\x1c\x01" + _both32(_CE_SECTOR) + _both32(0) + _both32(len(er))
    root = [_directory_record(_ROOT_SECTOR, SECTOR, date, True, b"\x00",
                              b"SP\x07\x01\xbe\xef\x00" + dir_rr + continuation),
            _directory_record(_ROOT_SECTOR, SECTOR, date, True, b"\x01", dir_rr)]
    joliet_root = [_directory_record(_JOLIET_ROOT_SECTOR, SECTOR, date, True, b"\x00"),
                   _directory_record(_JOLIET_ROOT_SECTOR, SECTOR, date, True, b"\x01")]
    for (name, content), extent in zip(ordered, extents, strict=True):
        rr_name = name.encode("utf-8")
        root.append(_directory_record(extent, len(content), date, False, _iso_name(name),
                                      b"RR\x05\x01\x89" + _rr_name(rr_name) + _rr_posix(FILE_MODE, 1)
                                      + _rr_times(date)))
        joliet_root.append(_directory_record(extent, len(content), date, False, name.encode("utf-16-be")))
    root_block, joliet_block = b"".join(root), b"".join(joliet_root)
    if len(root_block) > SECTOR or len(joliet_block) > SECTOR:
        raise ValueError("too many seed files for a one-sector root directory")

    # The pieces in sector order, joined once with the zeros between them (no image-sized buffer to fill and
    # copy again: this runs once per node).
    pieces: list[bytes] = []
    end = 0

    def put(sector: int, data: bytes) -> None:
        nonlocal end
        start = sector * SECTOR
        if start < end:
            raise AssertionError(f"ISO layout: sector {sector} written out of order")
        pieces.extend((bytes(start - end), data))
        end = start + len(data)

    put(16, _volume_descriptor(False, total, _directory_record(_ROOT_SECTOR, SECTOR, date, True, b"\x00"),
                               _PATH_TABLES[0], _PATH_TABLES[1], epoch))
    put(17, _volume_descriptor(True, total, joliet_root[0], _PATH_TABLES[2], _PATH_TABLES[3], epoch))
    put(18, b"\xffCD001\x01")  # set terminator; sector 19 stays zero (version descriptor)
    put(_PATH_TABLES[0], _path_table(_ROOT_SECTOR, big_endian=False))
    put(_PATH_TABLES[1], _path_table(_ROOT_SECTOR, big_endian=True))
    put(_PATH_TABLES[2], _path_table(_JOLIET_ROOT_SECTOR, big_endian=False))
    put(_PATH_TABLES[3], _path_table(_JOLIET_ROOT_SECTOR, big_endian=True))
    put(_ROOT_SECTOR, root_block)
    put(_JOLIET_ROOT_SECTOR, joliet_block)
    put(_CE_SECTOR, er)
    for (_, content), extent in zip(ordered, extents, strict=True):
        if content:
            put(extent, content)
    pieces.append(bytes(total * SECTOR - end))
    return b"".join(pieces)


def read_iso(data: bytes) -> tuple[str, dict[str, bytes]]:
    """Volume label and the files at the root of an ISO: Rock Ridge names, else Joliet, else plain ISO 9660.

    Raises pycdlib.pycdlibexception.PyCdlibException (or ValueError) for data that is not an ISO 9660 image.
    """
    import pycdlib  # reading is rare (inspect, tests): the import stays off the build path

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode("ascii", "replace").strip()
        if iso.has_rock_ridge():
            facet, key = "rr_path", "rr"
        elif iso.has_joliet():
            facet, key = "joliet_path", "joliet"
        else:
            facet, key = "iso_path", "iso"
        files: dict[str, bytes] = {}
        for child in iso.list_children(**{facet: "/"}):
            if child.is_dot() or child.is_dotdot() or child.is_dir():
                continue
            if key == "rr" and child.rock_ridge is not None:
                name = child.rock_ridge.name().decode("utf-8", "replace")
            else:
                name = child.file_identifier().decode("utf-16-be" if key == "joliet" else "ascii", "replace")
            path = f"/{name}"
            if key == "iso":
                name = name.split(";")[0].rstrip(".").lower().replace("_", "-")
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **{facet: path})
            files[name] = out.getvalue()
    finally:
        iso.close()
    return label, files
