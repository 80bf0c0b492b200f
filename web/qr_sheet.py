"""A printable sheet of enrolment QR codes: A4 pages, 3 by 4 labelled codes a page, as one PDF (Pillow).

Each page is a 1-bit image at 150 dpi, each code drawn from its module matrix; Pillow writes the pages as a multi-page PDF. A large batch
is split into parts of :data:`SHEET_PART` codes so that no single download holds thousands of pages.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw

from web.qr import BORDER
from web.token_handout import HandedToken

__all__ = ["PER_PAGE", "SHEET_PART", "parts", "sheet_page", "sheet_pdf"]

_DPI: Final = 150
_PAGE: Final = (1240, 1754)  # A4 at 150 dpi
_COLUMNS, _ROWS = 3, 4
PER_PAGE: Final = _COLUMNS * _ROWS
"""QR codes per page."""
SHEET_PART: Final = 10 * PER_PAGE
"""QR codes per PDF part (10 pages: a few seconds to draw)."""
_MARGIN: Final = 60


def parts(count: int) -> int:
    """How many PDF parts a batch of ``count`` tokens makes."""
    return max(1, -(-count // SHEET_PART))


def _symbol(data: str, side: int) -> Image.Image:
    """The QR code of ``data`` (level M, as :mod:`web.qr` makes them), scaled by whole pixels to fit ``side``."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=BORDER)
    code.add_data(data.encode("utf-8"))
    code.make(fit=True)
    matrix = code.get_matrix()
    modules = Image.frombytes(
        "L", (len(matrix), len(matrix)), bytes(0 if m else 255 for row in matrix for m in row)
    )
    scale = max(1, side // len(matrix))
    return modules.resize((len(matrix) * scale,) * 2, Image.Resampling.NEAREST).convert("1")


def _cell(token: HandedToken, width: int, height: int) -> Image.Image:
    code = _symbol(token.payload, min(width - 20, height - 60))
    cell = Image.new("1", (width, height), 1)
    cell.paste(code, ((width - code.width) // 2, 10))
    draw = ImageDraw.Draw(cell)
    text_y = 14 + code.height
    draw.text((10, text_y), f"{token.model} {token.firmware}"[:48], fill=0)
    draw.text((10, text_y + 16), f"id {token.token_id[:16]}  expires {token.expires:%Y-%m-%d %H:%MZ}", fill=0)
    return cell


def sheet_page(tokens: Sequence[HandedToken]) -> Image.Image:
    """One A4 page (1-bit) with up to :data:`PER_PAGE` labelled QR codes."""
    page = Image.new("1", _PAGE, 1)
    width = (_PAGE[0] - 2 * _MARGIN) // _COLUMNS
    height = (_PAGE[1] - 2 * _MARGIN) // _ROWS
    for position, token in enumerate(tokens):
        row, column = divmod(position, _COLUMNS)
        page.paste(_cell(token, width, height), (_MARGIN + column * width, _MARGIN + row * height))
    return page


def sheet_pdf(tokens: Sequence[HandedToken], part: int = 1) -> bytes:
    """The PDF of part ``part`` (from 1) of the sheet of ``tokens``; ``ValueError`` if there is no such part."""
    if not 1 <= part <= parts(len(tokens)) or not tokens:
        raise ValueError(f"the sheet has parts 1 to {parts(len(tokens))}")
    chosen = tokens[(part - 1) * SHEET_PART : part * SHEET_PART]
    pages = [sheet_page(chosen[start : start + PER_PAGE]) for start in range(0, len(chosen), PER_PAGE)]
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], resolution=_DPI)
    return out.getvalue()
