"""The repo service's tar headers, built by hand for speed, read back by Python's tarfile
(what any tar reader does) and by the client's own parser, whatever the name and size."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from tusk.client.tarstream import HASH_RECORD, _header, _pax_records
from tusk.objectstore.chunks import ChunkedFile, hash_bytes
from tusk_repo.archive import Member, _padding
from tusk_repo.archive import _header as build_header

names = st.lists(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/\x00"), min_size=1),
    min_size=1,
    max_size=4,
).map("/".join).filter(lambda n: n not in (".", "..") and ".." not in n.split("/"))


@settings(max_examples=300, deadline=None)
@given(names, st.binary(max_size=1500), st.booleans(), st.integers(0, 8**11 - 1))
def test_tarfile_reads_the_headers(name: str, data: bytes, hashes: bool, mtime: int) -> None:
    digest = hash_bytes(data)
    member = Member(name, ChunkedFile(digest, len(data), ((digest, len(data)),)))
    stream = build_header(member, mtime, hashes) + data + _padding(len(data)) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as archive:
        (info,) = archive.getmembers()
        assert (info.name, info.size, info.mtime, info.isreg()) == (name, len(data), mtime, True)
        assert info.pax_headers.get(HASH_RECORD) == (digest if hashes else None)
        assert archive.extractfile(info).read() == data  # type: ignore[union-attr]


def test_a_size_beyond_the_octal_field_goes_in_a_record() -> None:
    size = 8**11 + 5
    member = Member("huge", ChunkedFile("ab" * 32, size, (("ab" * 32, size),)))
    header = build_header(member, 0, True)
    _, length, kind = _header(header[:512])
    assert kind == b"x"
    records = _pax_records(header[512 : 512 + length])
    assert records == {HASH_RECORD: "ab" * 32, "size": str(size)}
    assert _header(header[-512:])[:2] == ("huge", 0)
