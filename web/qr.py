"""QR codes (ISO/IEC 18004) for enrolment payloads: encode to PNG or SVG, decode from an image.

Encoding uses the ``qrcode`` library (Pillow for PNG, its own SVG writer); decoding uses zxing-cpp
through :func:`wallet.enroll.read_qr_image`, the one place the device side reads QR images.
Error correction is level M (15 % of the symbol can be lost), enough for a code printed on a label.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Final

import qrcode
import qrcode.constants
import qrcode.image.svg

from wallet.enroll import read_qr_image

__all__ = ["BOX_SIZE", "BORDER", "qr_png", "qr_svg", "decode_qr"]

BOX_SIZE: Final = 8
"""Pixels per module in a PNG (and the SVG's scale)."""
BORDER: Final = 4
"""Quiet zone in modules (ISO/IEC 18004 asks for at least 4)."""


def _code(data: str, box_size: int, border: int) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=border)
    code.add_data(data.encode("utf-8"))
    code.make(fit=True)
    return code


def qr_png(data: str, *, box_size: int = BOX_SIZE, border: int = BORDER) -> bytes:
    """A PNG image of the QR code of ``data`` (black on white)."""
    image = _code(data, box_size, border).make_image(fill_color="black", back_color="white")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def qr_svg(data: str, *, box_size: int = BOX_SIZE, border: int = BORDER) -> bytes:
    """An SVG image (one path, UTF-8 XML) of the QR code of ``data``."""
    image = _code(data, box_size, border).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


def decode_qr(image: bytes | Path) -> str:
    """The text of the QR code in ``image`` (PNG, JPEG or any format Pillow reads; bytes or a file)."""
    return read_qr_image(image)
