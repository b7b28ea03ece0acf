"""The DASH search space: for every searched convolution, one joint choice of kernel size k and dilation d."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

__all__ = ["SearchSpace"]


def _int_tuple(name: str, values: Iterable[int]) -> Tuple[int, ...]:
    if isinstance(values, (int, str)) or values is None:
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must hold ints, got {v!r} in {tuple(values)!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name} must not be empty, got {tuple(values)!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {tuple(out)!r}")
    return tuple(sorted(out))


@dataclass(frozen=True, init=False)
class SearchSpace:
    """Kernel sizes x dilations, searched jointly per layer (DASH's one categorical over (k, d) pairs).

    Candidates are in k-major order: ``index = i_k * len(dilations) + i_d``.

    Args:
        kernel_sizes: odd positive kernel sizes, e.g. ``(3, 5, 7, 9)``.
        dilations: positive dilations, e.g. ``(1, 3, 7, 15)``.
        dims: number of spatial dimensions of the convolutions, 1 or 2.

    Example:
        >>> space = SearchSpace((3, 5, 7, 9), (1, 3, 7, 15), dims=2)
        >>> len(space), space.max_field
        (16, 121)
        >>> space.pair(5)
        (5, 3)
    """

    kernel_sizes: Tuple[int, ...]
    dilations: Tuple[int, ...]
    dims: int

    def __init__(self, kernel_sizes: Sequence[int] = (3, 5, 7, 9), dilations: Sequence[int] = (1, 3, 7, 15),
                 dims: int = 2):
        ks = _int_tuple("kernel_sizes", kernel_sizes)
        ds = _int_tuple("dilations", dilations)
        bad_k = [k for k in ks if k < 1 or k % 2 == 0]
        if bad_k:
            raise ValueError(f"kernel_sizes must be odd positive ints (a centred 'same' kernel needs an odd size), "
                             f"got {bad_k!r} in {ks!r}")
        bad_d = [d for d in ds if d < 1]
        if bad_d:
            raise ValueError(f"dilations must be positive ints, got {bad_d!r} in {ds!r}")
        if isinstance(dims, bool) or dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims!r}")
        object.__setattr__(self, "kernel_sizes", ks)
        object.__setattr__(self, "dilations", ds)
        object.__setattr__(self, "dims", int(dims))

    @property
    def candidates(self) -> List[Tuple[int, int]]:
        """All (k, d) pairs, k-major."""
        return [(k, d) for k in self.kernel_sizes for d in self.dilations]

    def __len__(self) -> int:
        return len(self.kernel_sizes) * len(self.dilations)

    def index(self, k: int, d: int) -> int:
        """Position of (k, d) among the candidates."""
        if k not in self.kernel_sizes or d not in self.dilations:
            raise ValueError(f"(k, d) = ({k!r}, {d!r}) is not in the space: kernel_sizes {self.kernel_sizes}, "
                             f"dilations {self.dilations}")
        return self.kernel_sizes.index(k) * len(self.dilations) + self.dilations.index(d)

    def pair(self, index: int) -> Tuple[int, int]:
        """The (k, d) pair at a candidate index."""
        if not 0 <= index < len(self):
            raise ValueError(f"index must be in [0, {len(self)}), got {index!r}")
        return self.kernel_sizes[index // len(self.dilations)], self.dilations[index % len(self.dilations)]

    @staticmethod
    def field(k: int, d: int) -> int:
        """Receptive field of one dilated kernel along one axis: d (k - 1) + 1."""
        return d * (k - 1) + 1

    @property
    def receptive_fields(self) -> List[int]:
        """Receptive field (per axis) of each candidate, in candidate order."""
        return [self.field(k, d) for k, d in self.candidates]

    @property
    def max_field(self) -> int:
        """S, the largest receptive field: the size of the aggregated (mixed-weight) kernel per axis."""
        return max(self.receptive_fields)

    def num_architectures(self, num_layers: int) -> int:
        """How many discrete networks a supernet with ``num_layers`` searched layers holds: |K x D| ** layers."""
        return len(self) ** num_layers

    def offsets(self, causal: bool = False) -> List[int]:
        """Distinct tap offsets (per axis) used by any candidate, relative to the output position.

        Centred: candidate (k, d) taps at d * (j - (k - 1) / 2), j = 0..k-1. Causal (1D): d * (j - (k - 1)).
        """
        out = set()
        for k, d in self.candidates:
            shift = (k - 1) if causal else (k - 1) // 2
            out.update(d * (j - shift) for j in range(k))
        return sorted(out)

    def to_dict(self) -> dict:
        return {"kernel_sizes": list(self.kernel_sizes), "dilations": list(self.dilations), "dims": self.dims}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(tuple(d["kernel_sizes"]), tuple(d["dilations"]), int(d["dims"]))

    def __repr__(self) -> str:
        return (f"SearchSpace(kernel_sizes={self.kernel_sizes}, dilations={self.dilations}, dims={self.dims}; "
                f"{len(self)} candidates, max field {self.max_field})")
