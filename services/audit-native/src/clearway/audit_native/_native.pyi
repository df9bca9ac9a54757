from collections.abc import Buffer, Sequence

def hash_block(
    buf: Buffer, offset: int, start: int, stop: int, inner: Sequence[int], /
) -> tuple[bytes, list[bytes], list[list[bytes]]] | None: ...
