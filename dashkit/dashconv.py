"""DashConv: a convolution whose kernel size and dilation are searched (DASH, Shen et al., NeurIPS 2022).

One weight tensor per (k, d) candidate and one architecture vector ``alpha`` per layer. The forward pass mixes
the candidates with coefficients ``c = relax(alpha)`` and, by linearity, convolves once with the aggregated
kernel (mixed weights), built from dilated candidates, in the Fourier domain or directly, whichever is faster
for the layer's shape on this device (``backend="auto"``).

The fast path never materialises the S x S aggregated kernel for the FFT: the candidates' taps land on few
distinct offsets per axis (31 for k <= 9, d in {1, 3, 7, 15}), so the kernel's spectrum is a product of the
per-offset weights with a small table of complex exponentials. Offsets that cannot reach the input (further
than n - 1 from the centre) are dropped, which makes large dilations free on small feature maps.

`DashConv`'s docstring states what it computes in terms of the reference functions of `dashkit.ops`
(`ops.aggregate_kernel`, `ops.direct_conv`, `ops.fft_conv`), which the learner reads; the fast machinery is
`dashkit.spectral`, and the FFT/direct choice is `dashkit.conv_choice`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import conv_choice, ops, spectral
from .checks import check_bool, check_float, check_int
from .layers import plain_conv
from .space import SearchSpace

__all__ = ["DashConv", "RELAXATIONS", "DECISION_Z", "UNDECIDED_LAYERS"]

RELAXATIONS = ("gumbel", "softmax")

# a layer's choice counts as decided when its lead over every rival is at least this many gradient-noise units
# (`DashConv.decision` states the statistic and why 3 keeps false decisions rare)
DECISION_Z = 3.0
# what a network built from an ArchCard has in a layer that did not decide: the search's argmax ("searched", DASH), or
# the backbone's own convolution ("default_kernels"); `RunConfig`'s search_undecided, `ArchCard.apply`'s undecided
UNDECIDED_LAYERS = ("searched", "default_kernels")
# the persistent buffers of the decision record
_DECISION_BUFFERS = ("decision_sum", "decision_sq", "decision_steps")


@dataclass
class _Plan:
    """Index tables for one input size: where each candidate tap goes (the DFT tables are `spectral.dft_tables`)."""

    n: Tuple[int, ...]
    N: Tuple[int, ...]  # FFT length per axis
    reach: Tuple[int, ...]  # largest kept |offset| per axis
    n_offsets: Tuple[int, ...]  # kept offsets per axis
    tap_src: torch.Tensor  # (T',) index into the concatenated candidate taps
    tap_cand: torch.Tensor  # (T',) candidate of each kept tap
    grid_idx: torch.Tensor  # (T',) flat index in the offset grid (|O|^s)
    dense_idx: torch.Tensor  # (T',) flat index in the dense cropped kernel
    dense_size: Tuple[int, ...]  # dense cropped kernel size per axis
    axis_offs: List[List[int]]  # kept offsets per axis


class DashConv(nn.Module):
    """A searchable 1D or 2D convolution over the (kernel size, dilation) pairs of a `SearchSpace`.

    Args:
        in_channels, out_channels: as in ``nn.Conv1d`` / ``nn.Conv2d``.
        space: the candidates; ``space.dims`` decides 1D or 2D.
        stride: output subsampling; outputs have size ceil(n / stride) ("same" padding).
        groups: groups of the convolution during search (``in_channels`` for depthwise search).
        bias: keep a bias (DASH keeps only the original convolution's bias, shared by all candidates).
        causal: 1D only; the output at time t sees inputs at times <= t.
        backend: "auto" (measured per layer shape), "fft", "direct" (aggregated kernel, PyTorch conv) or
            "mixed_results" (one convolution per candidate, the DARTS baseline).
        relaxation: "gumbel" (DASH: Gumbel-softmax of log-softmax(alpha), resampled every training forward; plain
            softmax in eval mode) or "softmax".
        tau: temperature of the relaxation.
        grad_scale: DASH's arch-gradient normalisation, g <- g / (grad_scale (||g|| + 1e-8)); 0 disables it.
        rf_penalty: DASH's receptive-field penalty, g <- g + rf_penalty * (d (k - 1) + 1); 0 disables it.
        init_std: candidate weights start as N(0, init_std^2) (DASH: 0.01).
        retrain_groups: groups of the plain convolution that `to_conv` returns (e.g. 1 for a layer searched
            depthwise and retrained as a full convolution); default ``groups``.
        retrain_causal: whether `to_conv` returns a causal convolution (1D); default ``causal``. DASH's TCN
            search searches causal convolutions centred (``causal=False``) and retrains them causal
            (``retrain_causal=True``).

    Shapes: input (B, C_in, L) or (B, C_in, H, W) -> output (B, C_out, *ceil(n / stride)).

    What it computes, in the reference functions of `dashkit.ops`, with ``c = coefficients()`` (the relaxed
    alpha), ``W = list(weights)``, ``D`` the candidates' dilations and ``b`` the bias (0 without one)::

        forward(x) == ops.direct_conv(x, ops.aggregate_kernel(W, c, D, causal=causal), stride, groups, causal) + b
                   == ops.fft_conv(x, ops.aggregate_kernel(W, c, D, causal=causal), stride, groups, causal=causal) + b
                   == ops.mixed_results(x, W, c, D, stride, groups, causal) + b

    whatever the backend, up to rounding; and, with N >= n + S per axis, ``ops.circular_conv`` of the aggregated
    kernel gives the same (stride 1, groups 1). ``tests/test_dashconv.py::test_forward_equals_the_reference_composition``
    checks this in float64 for 1D and 2D, causal, stride 2 and depthwise layers. The backends differ only in the
    route: "direct" builds the mixed kernel already cropped to the input (`aggregated_kernel`, equal to
    ``ops.aggregate_kernel(..., crop_to=n)``) with index tables; "fft" never builds it, but sums each candidate tap
    into its offset and takes the spectrum by small DFT matmuls (`dashkit.spectral.tap_spectrum`); "mixed_results"
    is the left-hand side of the mixed-weights identity.

    Example:
        >>> conv = DashConv(8, 8, SearchSpace((3, 5), (1, 2), dims=1), backend="fft")
        >>> conv(torch.randn(4, 8, 50)).shape
        torch.Size([4, 8, 50])
    """

    def __init__(self, in_channels: int, out_channels: int, space: SearchSpace, stride: int = 1, groups: int = 1,
                 bias: bool = True, causal: bool = False, backend: str = "auto", relaxation: str = "gumbel",
                 tau: float = 1.0, grad_scale: float = 100.0, rf_penalty: float = 1e-5, init_std: float = 0.01,
                 retrain_groups: Optional[int] = None, retrain_causal: Optional[bool] = None):
        super().__init__()
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space={space!r} has type {type(space).__name__}; accepted: a dashkit.SearchSpace")
        in_channels = check_int("in_channels", in_channels, 1)
        out_channels = check_int("out_channels", out_channels, 1)
        stride = check_int("stride", stride, 1)
        groups = check_int("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups!r} does not divide in_channels={in_channels} and "
                             f"out_channels={out_channels}; accepted: a common divisor of both")
        if backend not in conv_choice.SEARCH_BACKENDS:
            raise ValueError(f"backend={backend!r} is not supported; accepted: "
                             f"{', '.join(map(repr, conv_choice.SEARCH_BACKENDS))}")
        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation={relaxation!r} is not supported; accepted: {', '.join(map(repr, RELAXATIONS))}")
        tau = check_float("tau", tau, 0.0, low_open=True)
        grad_scale = check_float("grad_scale", grad_scale, 0.0)
        rf_penalty = check_float("rf_penalty", rf_penalty, 0.0)
        init_std = check_float("init_std", init_std, 0.0)
        check_bool("bias", bias)
        check_bool("causal", causal)
        if causal and space.dims != 1:
            raise ValueError(f"causal=True with a {space.dims}D space: a causal convolution is 1D; accepted: "
                             f"causal=False, or a space with dims=1")
        if retrain_causal is None:
            retrain_causal = causal
        elif not isinstance(retrain_causal, bool):
            raise TypeError(f"retrain_causal={retrain_causal!r} has type {type(retrain_causal).__name__}; "
                            f"accepted: None (the same as causal), True or False")
        if retrain_causal and space.dims != 1:
            raise ValueError(f"retrain_causal=True with a {space.dims}D space: a causal convolution is 1D; "
                             f"accepted: retrain_causal=False, or a space with dims=1")
        retrain_groups = groups if retrain_groups is None else check_int("retrain_groups", retrain_groups, 1)
        if in_channels % retrain_groups or out_channels % retrain_groups:
            raise ValueError(f"retrain_groups={retrain_groups!r} does not divide in_channels={in_channels} and "
                             f"out_channels={out_channels}; accepted: a common divisor of both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.space, self.stride, self.groups, self.causal = space, stride, groups, causal
        self.backend, self.relaxation, self.tau = backend, relaxation, float(tau)
        self.grad_scale, self.rf_penalty = float(grad_scale), float(rf_penalty)
        self.retrain_groups, self.retrain_causal = retrain_groups, retrain_causal
        s = space.dims
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn((out_channels, in_channels // groups) + (k,) * s) * init_std)
            for k, _ in space.candidates)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(space)))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("receptive_fields", torch.tensor(space.receptive_fields, dtype=torch.float32),
                             persistent=False)
        # the decision record (see `decision`): sums of the post-processed alpha gradients g_t (M,), of their outer
        # products g_t g_t^T (M, M), and the number of alpha steps; persistent, so a checkpoint carries them. The
        # sums follow the module's dtype (float32 keeps z to about 1e-7 T, and MPS has no float64)
        m = len(space)
        self.register_buffer("decision_sum", torch.zeros(m))
        self.register_buffer("decision_sq", torch.zeros(m, m))
        self.register_buffer("decision_steps", torch.zeros((), dtype=torch.long))
        self._plans: Dict[Tuple[int, ...], _Plan] = {}
        self.last_backend: Optional[str] = None  # what the last forward used (for benchmarks and teaching)

    # ---------------------------------------------------------------------------------------------------- search
    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    def coefficients(self) -> torch.Tensor:
        """Mixing coefficients c (M,) on the simplex."""
        if self.relaxation == "gumbel" and self.training:
            return F.gumbel_softmax(F.log_softmax(self.alpha, dim=0), tau=self.tau, hard=False)
        return F.softmax(self.alpha / self.tau, dim=0)

    def chosen(self) -> Tuple[int, int]:
        """The (k, d) with the largest alpha: DASH's discretisation."""
        return self.space.pair(int(self.alpha.detach().argmax()))

    @torch.no_grad()
    def postprocess_alpha_grad(self) -> None:
        """DASH's arch-gradient post-processing; call after backward (and any all-reduce), before the step.

        Also adds the post-processed gradient g (M,) to the decision record (`decision`): ``decision_sum += g``,
        ``decision_sq += g g^T``, ``decision_steps += 1``. The record is read from g, never written to it, so the
        alpha step is what it would be without it. Call it once per alpha step; after DDP's all-reduce every
        rank adds the same g, so the records agree across ranks.
        """
        g = self.alpha.grad
        if g is None:
            return
        if self.grad_scale > 0:
            g.div_(self.grad_scale * (g.norm() + 1e-8))
        if self.rf_penalty > 0:
            g.add_(self.rf_penalty * self.receptive_fields.to(g.dtype))
        gr = g.to(self.decision_sum.dtype)
        self.decision_sum.add_(gr)
        self.decision_sq.add_(torch.outer(gr, gr))  # += g g^T (addr_ would round differently: recorded z moves)
        self.decision_steps.add_(1)

    def decision(self, threshold: float = DECISION_Z) -> Dict[str, Any]:
        """Whether the search's gradients chose this layer's candidate, or alpha's argmax is what noise gave.

        DASH's arch step is normalised per layer (``g / (grad_scale (||g|| + 1e-8))``, then the receptive-field
        push), so alpha moves by about ``arch_lr / grad_scale`` per step whatever the data say, and how far it
        moved says little by itself. What says something is whether the steps agree. With g_t (M,) the
        post-processed gradient of step t, j the chosen candidate (argmax alpha) and r a rival, SGD moves
        ``alpha_j - alpha_r`` by ``lr * u_t`` with ``u_t = g_t[r] - g_t[j]`` (momentum filters the same u_t).
        The statistic of the pair is the self-normalised sum

            z_r = sum_t u_t / sqrt(sum_t u_t^2) = (S_r - S_j) / sqrt(Q_rr + Q_jj - 2 Q_rj),

        from ``S = decision_sum = sum_t g_t`` (M,) and ``Q = decision_sq = sum_t g_t g_t^T`` (M, M). Under "no
        preference between j and r" (increments of either sign alike), z_r is about N(0, 1) whatever the step
        size; a consistent push gives up to sqrt(T). Conditionally on the |u_t|, independent symmetric signs make
        z_r sub-Gaussian (Hoeffding): P(z_r >= c) <= exp(-c^2 / 2) for any T, with no normality assumed.

        The layer's ``z`` is the smallest z_r over all M - 1 rivals, and ``runner_up`` that rival (the closest
        one in gradient terms; usually alpha's second largest). Decided means z >= threshold: j beats every rival
        by the threshold (an intersection-union test: no multiplicity correction is needed for the rivals).

        Why 3 is safe despite the selection of j as the argmax: when every candidate's gradients are alike, at
        most one candidate can lead all others (z_jr >= c > 0 for all r makes j the unique smallest S), so the
        chance of a decision is the sum over j of P(j leads every rival by c). For M = 2 that is P(|z| >= 3) =
        0.27% (Gaussian); for M > 2 exchangeable candidates the top two of M lie closer together, so it is
        smaller. Simulated null searches (i.i.d. gradients through DASH's normalisation, 10 to 300 steps) give
        0.3% for M = 2, under 0.05% for M = 4 and none in 20,000 for M = 16 or 20; ``tests/test_dashconv.py``
        checks the rate on DashConv itself. The bound 2 exp(-4.5) = 2.2% holds for M = 2 with no normal
        approximation.

        Limits. Gradients correlated across many steps (a slow drift of the weights that favours a candidate for
        a while) count as evidence, and the receptive-field push is part of g, so a long search with no other
        preference can decide for the smallest field: both are real pushes on alpha, not noise. The search's own
        preferences are such pushes too: with the training targets shuffled among the examples
        (`dashkit.tasks.shuffle_targets`), where the data prefer nothing, the standard search decided 15 of 30
        planted1d layers (z median 3.3, at most 11.7, against 34.7 on the real targets) and 20 of 27 OSULeaf
        layers, for the same widest pair it chose on the real labels (RESULTS.md, "What the search chooses when
        the targets are shuffled"). A decision says that the steps agreed; that the data, not the method, made
        them agree is what a shuffled-target control shows. The other way,
        once alpha saturates (softmax(alpha) near one-hot, e.g. with a very large arch learning rate) the
        normalised steps that follow carry little signal but count as steps, so z shrinks like
        sqrt(T_decisive / T); a search that decided early and then ran long can read as undecided, with a
        p(choice) near 1 beside it.

        Args:
            threshold: the z a decision needs.

        Returns:
            ``{"z": float or None, "chosen": (k, d), "runner_up": (k, d) or None, "steps": T, "decided": bool}``:
            z is 0.0 before any step (no evidence) and None, with decided True, in a one-candidate space (nothing
            to choose).
        """
        threshold = check_float("threshold", threshold)
        j = int(self.alpha.detach().argmax())
        steps = int(self.decision_steps)
        out: Dict[str, Any] = {"z": None, "chosen": self.space.pair(j), "runner_up": None, "steps": steps,
                               "decided": True}
        m = len(self.space)
        if m == 1:
            return out
        S = self.decision_sum.detach().double().cpu()
        Q = self.decision_sq.detach().double().cpu()
        lead = S - S[j]  # (M,) sum of u_t against each rival
        var = (Q.diagonal() + Q[j, j] - 2 * Q[:, j]).clamp_min(0.0)  # (M,) sum of u_t^2
        # where u_t is ~0 (two candidates with the same gradients) var is rounding: no spread, no evidence; and
        # |z| <= sqrt(T) holds exactly (Cauchy-Schwarz)
        eps = torch.finfo(self.decision_sq.dtype).eps
        tiny = var <= 64 * eps * math.sqrt(max(steps, 1)) * (Q.diagonal() + Q[j, j])
        z = torch.where(tiny, torch.zeros_like(lead), lead / var.clamp_min(1e-300).sqrt())
        z = z.clamp(-math.sqrt(steps), math.sqrt(steps))
        z[j] = math.inf
        r = int(z.argmin())
        out.update(z=float(z[r]), runner_up=self.space.pair(r), decided=bool(float(z[r]) >= threshold))
        return out

    # ---------------------------------------------------------------------------------------------------- state
    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # a state_dict saved before the decision record existed loads with an empty record (counting from here)
        for name in _DECISION_BUFFERS:
            if prefix + name not in state_dict:
                state_dict[prefix + name] = torch.zeros_like(getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---------------------------------------------------------------------------------------------------- plans
    def _plan(self, n: Tuple[int, ...], device: torch.device) -> _Plan:
        """Where each candidate tap that reaches an input of size n goes: in the offset grid (the FFT path's
        `spectral.tap_spectrum`) and in the dense cropped kernel (`aggregated_kernel`). Cached per size and device."""
        key = n + (str(device),)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        s = self.space.dims
        # every axis of a square kernel uses the same 1D offsets; crop each axis to what its input size reaches
        # (|offset| <= n - 1, the rule of ops.kept_taps and ops.crop_kernel)
        offs_all = self.space.offsets(causal=self.causal)
        axis_offs = [[o for o in offs_all if abs(o) <= m - 1] for m in n]
        axis_pos = [{o: i for i, o in enumerate(ax)} for ax in axis_offs]
        reach = [max(abs(o) for o in ax) for ax in axis_offs]
        dense = [(r + 1) if self.causal else (2 * r + 1) for r in reach]
        src, cand, grid, dns = [], [], [], []
        base = 0
        for ci, (k, d) in enumerate(self.space.candidates):
            shift = (k - 1) if self.causal else (k - 1) // 2
            taps1 = [d * (j - shift) for j in range(k)]
            kept = [ops.kept_taps(k, d, m, self.causal) for m in n]  # (first, count) of the taps per axis
            for t in range(k ** s):  # the candidate's taps in its weight's (row-major) order
                idx = [(t // k ** (s - 1 - a)) % k for a in range(s)]
                if all(first <= i < first + count for i, (first, count) in zip(idx, kept)):
                    o = [taps1[i] for i in idx]
                    src.append(base + t)
                    cand.append(ci)
                    g = 0
                    for a in range(s):
                        g = g * len(axis_offs[a]) + axis_pos[a][o[a]]
                    grid.append(g)
                    q = 0
                    for a in range(s):
                        q = q * dense[a] + (o[a] + (dense[a] - 1 if self.causal else reach[a]))
                    dns.append(q)
            base += k ** s
        N = tuple(ops.fft_len_for(m, r, self.stride) for m, r in zip(n, reach))
        as_t = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
        plan = _Plan(n=n, N=N, reach=tuple(reach), n_offsets=tuple(len(a) for a in axis_offs), tap_src=as_t(src),
                     tap_cand=as_t(cand), grid_idx=as_t(grid), dense_idx=as_t(dns), dense_size=tuple(dense),
                     axis_offs=axis_offs)
        self._plans[key] = plan
        return plan

    # ---------------------------------------------------------------------------------------------------- compute
    def _tap_values(self, c: torch.Tensor, plan: _Plan) -> torch.Tensor:
        """Each kept candidate tap times its coefficient: (C_out * C_in/groups, T')."""
        cc = self.out_channels * (self.in_channels // self.groups)
        wcat = torch.cat([w.reshape(cc, -1) for w in self.weights], dim=1)  # (CC, T)
        if plan.tap_src.numel() != wcat.shape[1]:  # some taps cannot reach the input: drop them
            wcat = wcat.index_select(1, plan.tap_src)
        return wcat * c.index_select(0, plan.tap_cand).to(wcat.dtype)

    def aggregated_kernel(self, c: torch.Tensor, n: Tuple[int, ...]) -> torch.Tensor:
        """The mixed-weight kernel, cropped to what reaches an input of size n: (C_out, C_in/groups, *S')."""
        plan = self._plan(tuple(n), self.alpha.device)
        vals = self._tap_values(c, plan)
        S = plan.dense_size
        dense = vals.new_zeros(vals.shape[0], math.prod(S)).index_add(1, plan.dense_idx, vals)
        return dense.view((self.out_channels, self.in_channels // self.groups) + S)

    def _forward_direct(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        W = self.aggregated_kernel(c, tuple(x.shape[2:]))
        return ops.direct_conv(x, W.to(x.dtype), self.stride, self.groups, self.causal)

    def _kernel_spectrum(self, c: torch.Tensor, plan: _Plan, dtype: torch.dtype) -> torch.Tensor:
        """Spectrum of the aggregated kernel without building it: per-offset weights times DFT tables."""
        vals = self._tap_values(c, plan).to(dtype)  # (CC, T')
        CC = vals.shape[0]
        O = plan.n_offsets
        grid = vals.new_zeros(math.prod(O), CC).index_add(0, plan.grid_idx, vals.t())  # (|O_h| |O_w|, CC)
        K = spectral.tap_spectrum(grid.view(O + (CC,)), plan.N, plan.axis_offs)  # (F, CC)
        return spectral.spectrum_layout(K, self.out_channels, self.in_channels // self.groups, self.groups,
                                        self.depthwise)

    def _forward_fft(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n = tuple(x.shape[2:])
        plan = self._plan(n, x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf, out_dtype = spectral.fft_input(x)
            K = self._kernel_spectrum(c.to(xf.dtype), plan, xf.dtype)
            y = spectral.spectral_conv(xf, K, plan.N, self.stride, self.groups, self.depthwise)
        return y.to(out_dtype)

    def _forward_mixed(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return ops.mixed_results(x, [w.to(x.dtype) for w in self.weights], c.to(x.dtype),
                                 [d for _, d in self.space.candidates], self.stride, self.groups, self.causal)

    def _resolve_backend(self, x: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        n = tuple(x.shape[2:])
        plan = self._plan(n, x.device)
        params = [p for p in self.parameters() if p.requires_grad]
        grad = conv_choice.needs_grad(x, params)
        key = ("dashconv", x.device.type, x.dtype, self.space.dims, x.shape[0], self.in_channels, self.out_channels,
               self.groups, n, self.stride, self.causal, plan.reach, plan.n_offsets, plan.tap_src.numel(), grad)
        hit = conv_choice.backend_choice(key)  # every forward after the first of a shape: skip the estimates
        if hit is not None:
            return hit
        ci = self.in_channels // self.groups
        # the FFT path also builds the kernel's spectrum from its taps: one DFT-table matmul per offset
        estimates = conv_choice.conv_costs(
            x.shape[0], self.in_channels, self.out_channels, self.groups,
            math.prod(-(-m // self.stride) for m in n), math.prod(plan.dense_size), plan.N,
            kernel_transform=self.out_channels * ci * max(plan.n_offsets) * math.prod(plan.N))

        def coefficients() -> torch.Tensor:
            return F.softmax(self.alpha / self.tau, dim=0)  # no Gumbel noise: timing must not draw random numbers

        forwards = {"fft": lambda xp: self._forward_fft(xp, coefficients()),
                    "direct": lambda xp: self._forward_direct(xp, coefficients())}
        return conv_choice.measure(key, forwards, x, params, grad, estimates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.space.dims
        if x.dim() != s + 2 or x.shape[1] != self.in_channels:
            want = "(B, C, L)" if s == 1 else "(B, C, H, W)"
            raise ValueError(f"DashConv expects input {want} with C = {self.in_channels}, got shape {tuple(x.shape)}")
        backend = self._resolve_backend(x)
        self.last_backend = backend
        c = self.coefficients()
        if backend == "fft":
            y = self._forward_fft(x, c)
        elif backend == "direct":
            y = self._forward_direct(x, c)
        else:
            y = self._forward_mixed(x, c)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view((1, -1) + (1,) * s)
        return y

    # ---------------------------------------------------------------------------------------------------- discretise
    def to_conv(self, groups: Optional[int] = None) -> nn.Module:
        """The plain convolution of the chosen (k, d): ``nn.Conv1d/2d``, or `CausalConv1d` when ``retrain_causal``
        (built by `dashkit.layers.plain_conv`).

        The chosen candidate's weights (and the bias) are copied when the plain convolution computes what the
        candidate did: the same groups as the search and the same causality. Otherwise (e.g. searched depthwise
        and retrained full, or searched centred and retrained causal) it keeps PyTorch's initialisation.

        Args:
            groups: groups of the plain convolution; default ``retrain_groups``.
        """
        groups = self.retrain_groups if groups is None else groups
        k, d = self.chosen()
        bias = self.bias is not None
        conv = plain_conv(self.in_channels, self.out_channels, k, d, stride=self.stride, groups=groups, bias=bias,
                          causal=self.retrain_causal, dims=self.space.dims, device=self.alpha.device,
                          dtype=self.alpha.dtype)
        if groups == self.groups and self.retrain_causal == self.causal:
            with torch.no_grad():
                conv.weight.copy_(self.weights[self.space.index(k, d)])
                if bias:
                    conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, K={self.space.kernel_sizes}, D={self.space.dilations}, "
                f"stride={self.stride}, groups={self.groups}, causal={self.causal}, backend={self.backend!r}, "
                f"relaxation={self.relaxation!r}")
