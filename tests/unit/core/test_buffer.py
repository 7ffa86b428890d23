from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack.core.buffer import ReceiveBuffer
from hastack.errors import BufferLimitExceeded


def drain_lines(buf: ReceiveBuffer) -> list[bytes]:
    out = []
    while (line := buf.take_line(b"\r\n")) is not None:
        out.append(line)
    return out


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"")), max_size=20), st.data()
)
def test_any_split_yields_the_same_lines(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    buf = ReceiveBuffer(max_bytes=len(stream) + 1)
    got: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        buf.feed(stream[prev:cut])
        prev = cut
        got += drain_lines(buf)
    assert got == [line + b"\r\n" for line in lines]
    assert len(buf) == 0


def test_limit_raises_with_the_codec_reply() -> None:
    buf = ReceiveBuffer(max_bytes=8, overflow_reply=b"CLIENT_ERROR line too long\r\n")
    buf.feed(b"12345678")
    with pytest.raises(BufferLimitExceeded) as info:
        buf.feed(b"9")
    assert info.value.reply == b"CLIENT_ERROR line too long\r\n"
    assert info.value.fatal


def test_take_and_discard() -> None:
    buf = ReceiveBuffer(max_bytes=100)
    buf.feed(b"hello world")
    assert buf.take(20) is None
    assert buf.take(5) == b"hello"
    assert buf.discard(100) == 6
    assert not buf
