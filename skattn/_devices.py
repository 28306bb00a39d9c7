"""Devices, precision and seeding: where and in which float type a fit runs."""

import warnings
from contextlib import contextmanager

import torch

try:
    from ._fast import cpu_has_native_bf16, int8_linear_works, int8_pays
except ImportError:  # without the fast paths, the CPU runs float32

    def cpu_has_native_bf16():
        return False

    def int8_linear_works():
        return False

    def int8_pays(device):
        return False


def resolve_device(device):
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available, else the CPU. A CUDA device always
    comes with its index.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError as error:
            raise ValueError(
                f"device={device!r} is not a valid device: use 'auto', 'cpu', 'cuda' or "
                f"'cuda:N'."
            ) from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: skattn trains and predicts on 'cpu' and 'cuda' devices only.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    if resolved.type == "cuda" and resolved.index is None:
        # The device tensors report: "cuda" alone never equals a tensor's "cuda:0".
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def available_device(device, warn=False):
    """:func:`resolve_device`, or the CPU where that device is missing here (a model fitted elsewhere).

    With ``warn``, say so in a ``UserWarning`` (shown once per process by
    Python's default filters).
    """
    try:
        return resolve_device(device)
    except ValueError as error:
        if warn:
            warnings.warn(f"{error} Running on the CPU instead.", UserWarning, stacklevel=4)
        return torch.device("cpu")


def resolve_precision(precision, device):
    """Return the training autocast dtype for ``precision`` on ``device``, or None for fp32.

    ``"auto"`` uses bfloat16 on CUDA devices that support it and on CPUs with
    native bfloat16 instructions (AVX512-BF16 or AMX), where it is faster.
    ``"int8"`` trains in float32.
    """
    if precision in ("fp32", "int8"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def resolve_inference_precision(precision, device):
    """Return the dtype ``predict`` and ``transform`` run in: bfloat16, ``torch.qint8`` or None for fp32.

    As :func:`resolve_precision`, except that ``torch.qint8`` (linear layers
    in int8, see ``_fast.int8_replica``) replaces float32 on the CPU for
    ``"int8"`` where PyTorch's dynamically quantized linear layer works, and
    for ``"auto"`` where it also pays (x86 CPUs without native bfloat16).
    """
    if precision == "int8":
        return torch.qint8 if device.type == "cpu" and int8_linear_works() else None
    dtype = resolve_precision(precision, device)
    if dtype is None and precision == "auto" and int8_pays(device):
        return torch.qint8
    return dtype


@contextmanager
def seeded_torch(seed, device):
    """Seed torch's global generators for a block and restore them afterwards.

    Dropout and ``nn.init`` draw from the global generators; forking them keeps
    the user's random state untouched while making the fit repeatable.
    """
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
