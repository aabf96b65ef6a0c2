"""NoCloud seed ISO (ISO9660 + Joliet + Rock Ridge, volume label 'cidata') via pycdlib, reproducibly."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.pycdlib
import pycdlib.utils

VOLUME_LABEL = "cidata"
_PYCDLIB_MODULES = (pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib, pycdlib.utils)


class _FixedClock:
    """Stands in for the time module inside pycdlib: one instant, always in UTC."""

    def __init__(self, epoch: int):
        self._epoch = float(epoch)
        self.gmtime = time.gmtime
        self.localtime = time.gmtime  # no host time zone may leak into the image
        self.strftime = time.strftime

    def time(self) -> float:
        return self._epoch


@contextlib.contextmanager
def _pycdlib_clock(epoch: int) -> Iterator[None]:
    saved = [m.time for m in _PYCDLIB_MODULES]
    clock = _FixedClock(epoch)
    for module in _PYCDLIB_MODULES:
        module.time = clock  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, original in zip(_PYCDLIB_MODULES, saved, strict=True):
            module.time = original


def iso_bytes(files: tuple[tuple[str, bytes], ...], epoch: int) -> bytes:
    """An ISO holding the given (name, content) files at its root, byte-identical for the same input."""
    with _pycdlib_clock(epoch):
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL,
                sys_ident="LINUX", app_ident_str="K8SSEED")
        for name, content in files:
            iso9660 = name.upper().replace("-", "_")
            iso.add_fp(io.BytesIO(content), len(content), f"/{iso9660}.;1", rr_name=name, joliet_path=f"/{name}",
                       file_mode=0o100600)
        out = io.BytesIO()
        iso.write_fp(out)
        iso.close()
    return out.getvalue()


def read_iso(data: bytes) -> tuple[str, dict[str, bytes]]:
    """Volume label and the files at the root of an ISO: Rock Ridge names, else Joliet, else plain ISO 9660.

    Raises pycdlib.pycdlibexception.PyCdlibException (or ValueError) for data that is not an ISO 9660 image.
    """
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
