"""The TensorDash scheduler as specified (kernels.td_schedule docstring), in plain Python: the test
oracle of tests/test_td_scheduler.py and tests/test_kernels.py."""


def td_reference(rows: list[int], lanes: int, H: int, ch, cd) -> tuple[int, list[int]]:
    """Plain Python, every lane and every candidate in order: (cycles, the rows left after)."""
    rows = [int(r) for r in rows]
    n, t, cycles = len(rows), 0, 0
    while t < n:
        for ln in range(lanes):
            if not (rows[t] >> ln) & 1:
                for h, d in zip(ch.tolist(), cd.tolist()):
                    if t + h < n and 0 <= ln + d < lanes and (rows[t + h] >> (ln + d)) & 1:
                        rows[t + h] &= ~(1 << (ln + d))
                        break
        cycles += 1
        t += 1
        skipped = 0
        while skipped < H and t < n and rows[t] == 0:
            t, skipped = t + 1, skipped + 1
    return cycles, rows
