"""Drop-in FORGE optimizers: `loss.backward(); opt.step(); opt.zero_grad()` stays the loop.

At construction the optimizer takes over every eligible `nn.Linear` of the model: its forward
becomes `ForgeLinearFunction`, whose backward updates the weight in place through the fused
kernel, so the weight never gets a `.grad`. Every other parameter (embeddings, norms, biases,
tied or shared weights, linears with a custom forward) keeps its `.grad` and is stepped by
`opt.step()` with the same rule. Parameter groups, `state_dict()` and learning-rate schedulers
work as with torch's optimizers: the fused update reads the group's current `lr`.

What cannot be done exactly is refused with an error rather than done wrong:
- gradient accumulation over micro-batches (a second forward or backward through a layer before
  `opt.step()`: its weight was already stepped by the first backward), calling one linear layer
  several times in one step, and activation checkpointing that re-runs the forward;
- global-norm gradient clipping: the norm needs every gradient before any weight moves, but
  FORGE moves each weight as soon as its gradient tile exists. `torch.nn.utils.clip_grad_norm_`
  and `clip_grad_value_` raise when given a FORGE-managed weight;
- DistributedDataParallel / FSDP: the update would run before gradients are averaged.

`capturable=True` keeps each group's step count and step scalars on the device
(`rules.DeviceScalars`), so forward + backward + step can be captured in one CUDA graph and each
replay is the next step (`kernels.forge.capture`); see NOTES.md, "Capturing the step".
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernels.runtime.hyper import check_hyper
from kernels.runtime.optim import closure_loss

from . import ops, reference
from .launch import UNUSED_SCALARS, LayerLauncher, forge_linear, triton_available
from .rules import DeviceScalars, Rule, StepScalars

ACCUMULATION_ERROR = (
    "FORGE: {name} received a second gradient before opt.step(). FORGE updates each "
    "nn.Linear weight inside backward, so gradient accumulation over micro-batches, calling "
    "one linear layer more than once per step, and activation checkpointing (which re-runs "
    "the forward) cannot be done exactly and are not supported. Call opt.step() after every "
    "backward (use a larger batch instead of accumulation), and run evaluation forwards "
    "under torch.no_grad()."
)
CLIP_ERROR = (
    "FORGE: global-norm gradient clipping is not supported: the norm needs every gradient "
    "before any weight is updated, but FORGE updates each nn.Linear weight inside backward "
    "and never materialises its gradient."
)

# id(param) -> weakref of every FORGE-managed weight, for the clipping guard.
_MANAGED: dict[int, weakref.ref] = {}


def _is_managed(p: Any) -> bool:
    ref = _MANAGED.get(id(p))
    return ref is not None and ref() is p


def _guard_clipping(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a torch clipping function so that it refuses FORGE-managed weights."""
    if getattr(fn, "_forge_guard", False):
        return fn

    @functools.wraps(fn)
    def guarded(parameters: Any, *args: Any, **kwargs: Any) -> Any:
        params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        if any(_is_managed(p) for p in params):
            raise RuntimeError(CLIP_ERROR)
        return fn(params, *args, **kwargs)

    guarded._forge_guard = True  # type: ignore[attr-defined]
    return guarded


def _install_clipping_guard() -> None:
    """Make torch's gradient-clipping entry points refuse weights whose gradient never exists."""
    import torch.nn.utils as nn_utils
    import torch.nn.utils.clip_grad as clip_mod

    for mod in (nn_utils, clip_mod):
        for name in ("clip_grad_norm_", "clip_grad_value_"):
            if hasattr(mod, name):
                setattr(mod, name, _guard_clipping(getattr(mod, name)))


class _Slot:
    """One FORGE-managed nn.Linear: its weight, the patched forward's use count, its state."""

    def __init__(
        self, opt: ForgeOptimizer, module: nn.Linear, name: str, index: int, group: int
    ) -> None:
        self._opt = weakref.ref(opt)
        # Weak: the module holds this slot (its forward), so a strong link back would be a
        # cycle that keeps a dropped model's weights on the GPU until the garbage collector runs.
        self._module = weakref.ref(module)
        self.param = module.weight
        self.name = name
        self.index = index
        self.group = group  # position of its parameter group (load_state_dict keeps the order)
        self.uses = 0  # forwards with grad since the last step()/zero_grad()
        self.updated = False  # fused update done since the last step()
        self.op_id = ops.register_slot(self)  # names this slot inside a torch.compile'd graph
        self.update_token = ops.update_token(self.param)  # its update's mark there (ops.py)

    @property
    def module(self) -> nn.Linear:
        module = self._module()
        if module is None:
            raise RuntimeError(f"FORGE: the layer {self.name} no longer exists")
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        module = self.module
        if self._opt() is None:  # the optimizer is gone: a plain linear layer again
            return F.linear(x, module.weight, module.bias)
        if type(module.weight).__name__ == "DTensor":  # tensor parallel: kernels/forge/parallel.py
            return _sharded_forward(self, x)  # eager, also under torch.compile (a graph break)
        if torch.compiler.is_compiling():  # torch.compile: the registered ops (ops.py)
            return ops.compiled_linear(x, module.weight, module.bias, self.update_token, self.op_id)
        return self._checked_forward(x)

    def _checked_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The eager forward: the weight is still the one the optimizer took, used once."""
        module = self.module
        if module.weight is not self.param:
            raise RuntimeError(
                f"FORGE: {self.name}.weight was replaced after the optimizer took it"
            )
        if torch.is_grad_enabled() and self.param.requires_grad:
            self.uses += 1
            if self.uses > 1:
                raise RuntimeError(ACCUMULATION_ERROR.format(name=f"{self.name}.weight"))
        if type(module.weight).__name__ == "DTensor":
            from .parallel import forge_linear_sharded

            return forge_linear_sharded(x, module.weight, module.bias, self)
        return forge_linear(x, module.weight, module.bias, self)

    def check_can_update(self) -> None:
        if self.updated:
            raise RuntimeError(ACCUMULATION_ERROR.format(name=f"{self.name}.weight"))

    def fused_update(
        self, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None = None
    ) -> None:
        opt = self._opt()
        if opt is None:
            raise RuntimeError("FORGE: the optimizer that owns this layer no longer exists")
        opt._fused_update(self, dy, x, w_old_out)


@torch.compiler.disable
def _sharded_forward(slot: _Slot, x: torch.Tensor) -> torch.Tensor:
    """A tensor-parallel layer's forward, always eager: the registered ops (ops.py) know only
    whole weights, and a DTensor weight there would be stepped as one tensor, not on its shard;
    under torch.compile this is a graph break and the sharded path runs as in eager mode."""
    return slot._checked_forward(x)


def _eligible(module: nn.Module, shared: set[int]) -> bool:
    """A plain nn.Linear whose 2-D fp32/bf16 weight is used by this module alone."""
    if not isinstance(module, nn.Linear) or type(module).forward is not nn.Linear.forward:
        return False
    w = module.weight
    return (
        isinstance(w, nn.Parameter)
        and w.requires_grad
        and w.dim() == 2
        and w.dtype in (torch.float32, torch.bfloat16)
        and w.is_contiguous()
        and w.device.type != "meta"
        and id(w) not in shared
    )


class ForgeOptimizer(torch.optim.Optimizer):
    """Base of the FORGE optimizers: one element-wise `rule`, fused for linear weights."""

    rule: Rule

    def __init__(
        self,
        model: nn.Module,
        defaults: dict[str, Any],
        *,
        bf16_rounding: str = "stochastic",
        seed: int = 0,
        backend: str = "auto",
        max_grad_norm: float | None = None,
        capturable: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("FORGE optimizers take the model (an nn.Module), not a parameter list")
        kind = type(model).__name__
        if (
            isinstance(model, nn.parallel.DistributedDataParallel)
            or "FullyShardedDataParallel" in kind
        ):
            raise NotImplementedError(
                f"FORGE does not support {kind}: weights are updated inside backward, before "
                "gradients could be averaged across ranks"
            )
        if max_grad_norm is not None:
            raise NotImplementedError(CLIP_ERROR)
        if bf16_rounding not in ("stochastic", "nearest"):
            raise ValueError(f"bf16_rounding is 'stochastic' or 'nearest', not {bf16_rounding!r}")
        if backend not in ("auto", "reference"):
            raise ValueError(f"backend is 'auto' or 'reference', not {backend!r}")
        self.stochastic = bf16_rounding == "stochastic"
        self.seed = int(seed)
        self.backend = backend
        params = [p for p in dict.fromkeys(model.parameters()) if p.requires_grad]
        if not params:
            raise ValueError("the model has no parameter that requires grad")
        self._building = True
        super().__init__(params, defaults)
        self._building = False
        self._index = {p: i for i, p in enumerate(params)}
        # Group by position: load_state_dict() replaces the group dicts, keeping their order.
        self._group_index = {p: i for i, g in enumerate(self.param_groups) for p in g["params"]}

        counts: dict[int, int] = {}
        for _, p in model.named_parameters(remove_duplicate=False):
            counts[id(p)] = counts.get(id(p), 0) + 1
        shared = {i for i, c in counts.items() if c > 1}
        self._slots: dict[nn.Parameter, _Slot] = {}
        for name, module in model.named_modules():
            if _eligible(module, shared) and module.weight not in self._slots:
                w = module.weight
                label = name or type(module).__name__
                slot = _Slot(self, module, label, self._index[w], self._group_index[w])
                module.forward = slot.forward  # instance attribute: nn.Module.__call__ uses it
                self._slots[module.weight] = slot
                _MANAGED[id(module.weight)] = weakref.ref(module.weight)
        _install_clipping_guard()
        self._state_names = self.rule.state_names
        # Each fused layer's bound launcher, by parameter index. Kept here, not on the slot:
        # it holds the states, which must go with the optimizer, though the model stays.
        self._launchers: list[LayerLauncher | None] = [None] * len(params)
        # Per parameter group: (hyper-parameters + step, StepScalars, kernel arguments) of the
        # last fused update, so the layers of one step share one computation of the scalars.
        self._scalar_cache: dict[int, tuple[tuple, StepScalars, tuple]] = {}
        self.capturable = bool(capturable)
        if self.capturable:
            self._init_capturable()

    # --- what subclasses define -------------------------------------------------------
    def _scalars(self, group: dict[str, Any], step: Any, lr: Any = None) -> StepScalars:
        """The group's scalars at `step`; `lr` overrides float(group["lr"]) (capturable mode
        passes the device step and a device lr: the same formulas, as tensor ops)."""
        raise NotImplementedError

    # The group entries `_scalars` reads (the key of the per-step scalar cache).
    hyper_keys: tuple[str, ...] = ()

    # --- the public surface -----------------------------------------------------------
    @property
    def fused_parameters(self) -> list[nn.Parameter]:
        """The weights updated inside backward (they never get a .grad)."""
        return list(self._slots)

    def fused_modules(self) -> Iterator[tuple[str, nn.Linear]]:
        """(name, module) of every linear layer this optimizer steps inside backward."""
        for slot in self._slots.values():
            yield slot.name, slot.module

    def release(self) -> None:
        """Give the linear layers their own forward back (the optimizer stops fusing)."""
        for slot in self._slots.values():
            module = slot._module()
            if module is not None:
                module.__dict__.pop("forward", None)
            _MANAGED.pop(id(slot.param), None)
        self._slots.clear()
        self._launchers = [None] * len(self._launchers)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not getattr(self, "_building", True):
            raise NotImplementedError("FORGE optimizers take their parameters from the model")
        super().add_param_group(param_group)

    def clip_grad_norm_(self, *args: Any, **kwargs: Any) -> None:
        """Refused: see CLIP_ERROR."""
        raise NotImplementedError(CLIP_ERROR)

    def zero_grad(self, set_to_none: bool = True) -> None:
        # torch's zero_grad opens a profiler range and groups gradients by device for foreach
        # zeroing (~20 µs of host time a step); most FORGE parameters never have a gradient.
        if any(p.grad is not None for g in self.param_groups for p in g["params"]):
            super().zero_grad(set_to_none=set_to_none)
        for slot in self._slots.values():
            slot.uses = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Step every parameter that has a .grad; the fused weights were stepped in backward."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                slot = self._slots.get(p)
                if slot is not None and slot.updated:
                    raise RuntimeError(
                        f"FORGE: {slot.name}.weight was both stepped inside backward and given a "
                        ".grad (it is used outside its nn.Linear forward); exclude that layer"
                    )
                if p.grad.is_sparse:
                    raise NotImplementedError("FORGE optimizers do not take sparse gradients")
                if self.capturable:
                    self._step_from_buffer(group, p)
                    continue
                step, states = self._advance(p)
                reference.apply_update_(
                    self.rule,
                    self._scalars(group, step),
                    p,
                    p.grad,
                    states,
                    stochastic=self.stochastic,
                    seed_key=reference.sr_seed_key(self.seed, self._index[p], step),
                )
        for slot in self._slots.values():
            slot.updated = False
            slot.uses = 0
        if self.capturable:
            self._advanced = [False] * len(self._advanced)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, but states stay fp32 (torch would cast them to a bf16 weight's dtype)."""
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        steps: dict[int, float] = {}  # capturable: the group's step count
        for pid, p in zip(saved_ids, params, strict=True):
            for key, value in state_dict["state"].get(pid, {}).items():
                if key == "step":
                    self.state[p][key] = int(value)
                    gi = self._group_index[p]
                    steps[gi] = max(steps.get(gi, 0), int(value))
                elif torch.is_tensor(value):
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32).clone()
        if self.capturable:
            # One step count a group (see _init_capturable); every state links to it.
            for gi, dev in enumerate(self._dev):
                dev.load(steps.get(gi, 0))
                for p in self.param_groups[gi]["params"]:
                    if self.state[p]:
                        self.state[p]["step"] = dev.step
            self._advanced = [False] * len(self._dev)
        self._scalar_cache.clear()
        self._launchers = [None] * len(self._launchers)  # bound to the replaced states

    # --- internals --------------------------------------------------------------------
    def _advance(self, p: torch.Tensor) -> tuple[int, list[torch.Tensor]]:
        """Count one more step for `p` (creating its fp32 states at the first) and return them."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            for name in self.rule.state_names:
                state[name] = torch.zeros(p.shape, dtype=torch.float32, device=p.device)
        # A plain int (torch keeps a tensor): read by the host every step, never by a kernel.
        step = state["step"] = int(state["step"]) + 1
        return step, [state[name] for name in self.rule.state_names]

    def _step_scalars(self, slot: _Slot, step: int) -> tuple[StepScalars, tuple]:
        """The group's scalars for this step, computed once for all the group's layers.

        Cached only while every hyper-parameter is a plain number: a tensor learning rate could
        change in place under the same object, so it is read afresh every time.
        """
        group = self.param_groups[slot.group]
        key = (step, *[group[k] for k in self.hyper_keys])
        hit = self._scalar_cache.get(slot.group)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        sc = self._scalars(group, step)
        args = sc.kernel_args()
        if all(_plain(v) for v in key):
            self._scalar_cache[slot.group] = (key, sc, args)
        return sc, args

    def _fused_update(
        self, slot: _Slot, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None
    ) -> None:
        """The hot path of backward: one fused launch per layer, little else."""
        if slot.updated:
            slot.check_can_update()  # raises
        if self.capturable:
            self._fused_update_from_buffer(slot, dy, x, w_old_out)
            return
        p = slot.param
        state = self.state[p]
        if state:
            step = state["step"] = int(state["step"]) + 1
            states = [state[name] for name in self._state_names]
        else:
            step, states = self._advance(p)
        sc, scalar_args = self._step_scalars(slot, step)
        key = 0
        if self.stochastic and p.dtype == torch.bfloat16:
            key = reference.sr_seed_key(self.seed, slot.index, step)
        launcher = self._launchers[slot.index]
        if launcher is None or not launcher.bound_to(p, states):
            if self.backend == "reference" or not triton_available(p.device):
                with torch.no_grad():
                    if w_old_out is not None:
                        w_old_out.copy_(p)
                    reference.forge_linear_step_reference(
                        dy, x, p, states, self.rule, sc, stochastic=self.stochastic, seed_key=key
                    )
                slot.updated = True
                return
            launcher = LayerLauncher(p, states, self.rule, stochastic=self.stochastic)
            self._launchers[slot.index] = launcher
        # TF32 matters for fp32 GEMM operands only; reading the flag costs a µs or two.
        tf32 = dy.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
        precision = "tf32" if tf32 else "ieee"
        if torch.is_grad_enabled():  # backward(create_graph=True): views need no_grad
            with torch.no_grad():
                launcher(dy, x, sc, scalar_args, key, precision, w_old_out)
        else:
            launcher(dy, x, sc, scalar_args, key, precision, w_old_out)
        # The kernel wrote W through a pointer: tell autograd, as an in-place op would, so a
        # graph that saved the old W refuses to use it.
        torch.autograd.graph.increment_version(p)
        slot.updated = True

    # --- capturable mode ----------------------------------------------------------------
    def _init_capturable(self) -> None:
        """One `DeviceScalars` per group on its parameters' device, and each parameter's
        stochastic-rounding key (the host part; the step's part is mixed on the device)."""
        self._dev: list[DeviceScalars] = []
        for group in self.param_groups:
            devices = {p.device for p in group["params"]}
            if len(devices) != 1:
                raise ValueError(
                    "capturable=True needs each parameter group on one device, got "
                    f"{sorted(map(str, devices))}"
                )
            self._dev.append(DeviceScalars(devices.pop()))
        self._advanced = [False] * len(self._dev)  # group scalars written for this step
        self._nesterov_sc = [
            StepScalars(lr=0.0, nesterov=bool(g.get("nesterov", False))) for g in self.param_groups
        ]
        n = len(self._index)
        self._param_keys = [
            reference.as_int32(reference.sr_param_key(self.seed, i)) for i in range(n)
        ]

    def _group_scalars(self, gi: int) -> DeviceScalars:
        """The group's device scalars for this step: advanced and written at its first
        update of the step (in backward, or in step() for a group with no fused layer)."""
        dev = self._dev[gi]
        if self._advanced[gi]:
            return dev
        group = self.param_groups[gi]
        lr = group["lr"]
        if torch.is_tensor(lr):
            if lr.device != dev.step.device:
                raise ValueError(
                    f"capturable=True: a tensor lr must live on the parameters' device "
                    f"({dev.step.device}), not {lr.device}"
                )
            lr = lr.to(torch.float64)
        else:
            lr = float(lr)
        dev.step.add_(1)
        sc = self._scalars(group, dev.step, lr=lr)
        dev.write(sc)
        self._nesterov_sc[gi] = StepScalars(lr=0.0, nesterov=sc.nesterov)
        self._advanced[gi] = True
        return dev

    def _states(self, p: torch.Tensor) -> list[torch.Tensor]:
        """`p`'s fp32 states (created at its first step); its "step" is its group's device
        step count, shared (capturable mode)."""
        state = self.state[p]
        if not state:
            state["step"] = self._dev[self._group_index[p]].step
            for name in self._state_names:
                state[name] = torch.zeros(p.shape, dtype=torch.float32, device=p.device)
        return [state[name] for name in self._state_names]

    def _step_from_buffer(self, group: dict[str, Any], p: torch.Tensor) -> None:
        """opt.step() of one parameter with a .grad, scalars read on the device."""
        gi = self._group_index[p]
        dev = self._group_scalars(gi)
        reference.apply_update_from_buffer_(
            self.rule,
            dev.values,
            p,
            p.grad,
            self._states(p),
            nesterov=bool(group.get("nesterov", False)),
            stochastic=self.stochastic,
            param_key=self._param_keys[self._index[p]],
        )

    def _fused_update_from_buffer(
        self, slot: _Slot, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None
    ) -> None:
        """`_fused_update` with the step's scalars and step count read by the kernel from the
        group's device buffer: nothing of the step is baked into the launch."""
        p = slot.param
        states = self._states(p)
        dev = self._group_scalars(slot.group)
        sc = self._nesterov_sc[slot.group]
        key = self._param_keys[slot.index] if self.stochastic and p.dtype == torch.bfloat16 else 0
        launcher = self._launchers[slot.index]
        if launcher is None or not launcher.bound_to(p, states):
            if self.backend == "reference" or not triton_available(p.device):
                with torch.no_grad():
                    if w_old_out is not None:
                        w_old_out.copy_(p)
                    reference.forge_linear_step_from_buffer(
                        dy, x, p, states, self.rule, dev.values, nesterov=sc.nesterov,
                        stochastic=self.stochastic, param_key=key,
                    )  # fmt: skip
                slot.updated = True
                return
            launcher = LayerLauncher(p, states, self.rule, stochastic=self.stochastic)
            self._launchers[slot.index] = launcher
        tf32 = dy.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
        with torch.no_grad():
            launcher(
                dy, x, sc, UNUSED_SCALARS, key, "tf32" if tf32 else "ieee", w_old_out, dev.buffer
            )
        torch.autograd.graph.increment_version(p)
        slot.updated = True


def _plain(v: Any) -> bool:
    """A Python number, or a tuple of them (what a scalar cache may compare by value)."""
    if isinstance(v, tuple):
        return all(_plain(u) for u in v)
    return isinstance(v, (int, float, bool))


class ForgeAdamW(ForgeOptimizer):
    """AdamW (decoupled weight decay, bias correction) with linear weights stepped in backward.

    Same update as `torch.optim.AdamW(foreach=False)`. fp32 weights and states are exact; bf16
    weights are updated in fp32 and rounded back stochastically (`bf16_rounding`), with fp32
    states and no master copy.
    """

    rule = Rule.ADAMW
    hyper_keys = ("lr", "betas", "eps", "weight_decay")

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        **kwargs: Any,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": check_hyper(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas),
            "eps": eps,
            "weight_decay": weight_decay,
        }
        super().__init__(model, defaults, **kwargs)

    def _scalars(self, group: dict[str, Any], step: Any, lr: Any = None) -> StepScalars:
        return StepScalars.adamw(
            step=step,
            lr=float(group["lr"]) if lr is None else lr,
            betas=group["betas"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
        )


class ForgeLion(ForgeOptimizer):
    """Lion (sign of interpolated momentum, decoupled weight decay), fused like ForgeAdamW."""

    rule = Rule.LION
    hyper_keys = ("lr", "betas", "weight_decay")

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        betas = check_hyper(lr=lr, weight_decay=weight_decay, betas=betas)
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
        super().__init__(model, defaults, **kwargs)

    def _scalars(self, group: dict[str, Any], step: Any, lr: Any = None) -> StepScalars:
        return StepScalars.lion(
            lr=float(group["lr"]) if lr is None else lr,
            betas=group["betas"],
            weight_decay=group["weight_decay"],
        )


class ForgeSGD(ForgeOptimizer):
    """SGD with momentum (as torch.optim.SGD, momentum > 0), fused like ForgeAdamW."""

    rule = Rule.SGD_MOMENTUM
    hyper_keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ) -> None:
        if not momentum > 0:
            raise ValueError("ForgeSGD is SGD with momentum: momentum must be > 0")
        if nesterov and dampening != 0:
            raise ValueError("Nesterov momentum requires zero dampening")
        check_hyper(lr=lr, weight_decay=weight_decay)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(model, defaults, **kwargs)

    def _scalars(self, group: dict[str, Any], step: Any, lr: Any = None) -> StepScalars:
        return StepScalars.sgd_momentum(
            step=step,
            lr=float(group["lr"]) if lr is None else lr,
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
        )
