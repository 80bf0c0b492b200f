"""QR codes of enrolment payloads: PNG and SVG encoding, decoding with zxing-cpp."""

from __future__ import annotations

import io
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from wallet.enroll import EnrollmentError, EnrolmentPayload
from web.qr import decode_qr, qr_png, qr_svg

SVG = "{http://www.w3.org/2000/svg}"


def payload() -> EnrolmentPayload:
    """A realistic payload with a fresh token."""
    return EnrolmentPayload(
        "https://portal.example",
        secrets.token_urlsafe(32),
        "city-net",
        secrets.token_hex(32),
        ("https://node-1.city.example:7100", "https://node-2.city.example:7100"),
    )


def test_png_round_trip_gives_the_same_payload() -> None:
    """Payload -> PNG -> zxing-cpp -> the same payload."""
    original = payload()
    png = qr_png(original.encode())
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert EnrolmentPayload.decode(decode_qr(png)) == original


def test_png_file_round_trip(tmp_path: Path) -> None:
    """A PNG written to a file decodes from the file."""
    original = payload()
    (tmp_path / "label.png").write_bytes(qr_png(original.encode()))
    assert EnrolmentPayload.decode(decode_qr(tmp_path / "label.png")) == original


def test_a_scaled_and_recompressed_image_still_decodes() -> None:
    """A photo-like copy (smaller, JPEG) of the code still reads back."""
    original = payload()
    image = Image.open(io.BytesIO(qr_png(original.encode(), box_size=10)))
    copy = io.BytesIO()
    image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4)).save(copy, format="JPEG")
    assert EnrolmentPayload.decode(decode_qr(copy.getvalue())) == original


def test_svg_is_one_path_of_black_modules() -> None:
    """The SVG parses as XML and draws the modules as a path."""
    root = ET.fromstring(qr_svg(payload().encode()))
    assert root.tag == f"{SVG}svg"
    paths = root.findall(f".//{SVG}path")
    assert len(paths) == 1 and paths[0].get("d")


def test_svg_grows_with_the_data() -> None:
    """More data needs a larger symbol: the SVG's view box grows."""
    small = ET.fromstring(qr_svg("x")).get("viewBox")
    large = ET.fromstring(qr_svg(payload().encode())).get("viewBox")
    assert small is not None and large is not None
    assert float(large.split()[2]) > float(small.split()[2])


def test_an_image_without_a_code_is_refused() -> None:
    """A blank image raises EnrollmentError, not an empty answer."""
    blank = io.BytesIO()
    Image.new("L", (200, 200), 255).save(blank, format="PNG")
    with pytest.raises(EnrollmentError, match="no QR code"):
        decode_qr(blank.getvalue())


def test_bytes_that_are_no_image_are_refused() -> None:
    """Bytes Pillow cannot read raise EnrollmentError."""
    with pytest.raises(EnrollmentError, match="cannot read an image"):
        decode_qr(b"not an image at all")


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_any_text_round_trips(text: str) -> None:
    """Whatever text is encoded is what is decoded."""
    assert decode_qr(qr_png(text)) == text
