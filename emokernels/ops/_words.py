def words_for_bits(k: int) -> int:
    """Number of int32 words that hold ``k`` packed bits."""
    return (k + 31) // 32
