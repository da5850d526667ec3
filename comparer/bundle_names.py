"""OpenSSL's canonical form of a distinguished name, and the subject hash made of it.

OpenSSL compares issuer and subject names in this form, and names the links of a
hashed directory (`<hash>.0`) after its hash, so both are needed to judge a chain
or a directory the way OpenSSL does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from cryptography import x509

from comparer.bundle_parse import read_tlv

# String types that OpenSSL folds to lower-case UTF-8 before hashing a name.
_CANONICAL_STRING_TAGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString
    0x14: "latin-1",  # T61String, which OpenSSL reads as Latin-1
    0x16: "latin-1",  # IA5String
    0x1A: "latin-1",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_ASCII_SPACE = b" \t\n\v\f\r"
_ASCII_LOWER = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"
)


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def _canonical_value(tag: int, tlv: bytes, body: bytes) -> bytes:
    encoding = _CANONICAL_STRING_TAGS.get(tag)
    if encoding is None:
        return tlv
    try:
        text = body.decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        return tlv
    # Trim and collapse runs of ASCII white space, then lower-case ASCII only.
    words = re.split(rb"[ \t\n\v\f\r]+", text.strip(_ASCII_SPACE))
    return _der(0x0C, b" ".join(words).translate(_ASCII_LOWER))


def _children(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (tag, whole TLV, body) for each DER object in `data`."""
    offset = 0
    while offset < len(data):
        tag, header, length = read_tlv(data, offset)
        end = offset + header + length
        yield tag, data[offset:end], data[offset + header : end]
        offset = end


def canonical_name(name: x509.Name) -> bytes:
    """Return OpenSSL's canonical encoding of a name, which it compares and hashes.

    String values are decoded, trimmed, runs of ASCII white space collapsed to one
    space and ASCII letters lower-cased, then re-encoded as UTF8String. The RDN
    sets are concatenated without the outer SEQUENCE.
    """
    _tag, _tlv, rdns = next(_children(name.public_bytes()))
    canonical = []
    for _set_tag, _set_tlv, attributes in _children(rdns):
        entries = []
        for _seq_tag, _seq_tlv, attribute in _children(attributes):
            (_oid_tag, oid, _oid_body), (tag, value, body) = _children(attribute)
            entries.append(_der(0x30, oid + _canonical_value(tag, value, body)))
        canonical.append(_der(0x31, b"".join(sorted(entries))))
    return b"".join(canonical)


def subject_hash(name: x509.Name) -> str:
    """Return OpenSSL's subject hash of a name, the `<hash>` in `<hash>.0` links.

    This is `X509_NAME_hash_ex` of OpenSSL 1.0 and later: the first four bytes of
    the SHA-1 of `canonical_name`, read little-endian.
    """
    digest = hashlib.sha1(canonical_name(name)).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"
