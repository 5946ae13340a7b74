"""Which CPU cores each local engine's worker may use (vLLM's CPU backend only).

vLLM's own CPU binding gives every engine the same cores (all but one reserved for the
front end), so two engines on one machine time-share them. Nudging runs the two models
one after the other and, speculatively, side by side: each engine wants its own cores.
"""

from __future__ import annotations


def spread_cores(engines: int, cores: int) -> list[str] | None:
    """One `VLLM_CPU_OMP_THREADS_BIND` value per engine, or None to keep vLLM's binding.

    With more cores than engines one core stays free for the front end (as vLLM does);
    the rest are split into contiguous, disjoint slices. With fewer, engines share
    cores round-robin.
    """
    if engines < 2 or cores < 2:
        return None
    usable = cores - 1 if cores > engines else cores
    if engines >= usable:
        return [str(i % usable) for i in range(engines)]
    size, extra = divmod(usable, engines)
    slices, start = [], 0
    for i in range(engines):
        end = start + size + (1 if i < extra else 0)
        slices.append(f"{start}-{end - 1}" if end - start > 1 else str(start))
        start = end
    return slices
