"""Per-sample bit vectors as hex strings: how baselines store which samples were correct (or present)
compactly and diffably, one line per number."""

from __future__ import annotations

from collections.abc import Sequence


def encode_bits(bits: Sequence[bool]) -> str:
    """Hex string of a bit vector: digit j holds bits 4j..4j+3, bit 4j as its most significant bit."""
    digits = []
    for j in range(0, len(bits), 4):
        chunk = list(bits[j:j + 4]) + [False] * (4 - len(bits[j:j + 4]))
        digits.append("0123456789abcdef"[sum(8 >> i for i, b in enumerate(chunk) if b)])
    return "".join(digits)


def decode_bits(text: str, n: int) -> list[bool]:
    if len(text) != (n + 3) // 4 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"expected {(n + 3) // 4} lower-case hex digits for {n} samples, got {text!r}")
    return [bool(int(text[i // 4], 16) & (8 >> (i % 4))) for i in range(n)]
