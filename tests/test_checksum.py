"""bits_checksum (the fused inference copy's key): the CPU kernel and the CUDA kernel under
the emulation against the pure-PyTorch reference, its sensitivity, its launches and its
argument checks."""

import pytest
import torch

from yolact_fast import ops, reference
from yolact_fast.testing import emulated_cuda as cuda

CHUNK = 1 << 16  # kChecksumChunkWords (csrc/common/checksum_math.h): a CUDA block's words
DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.float16,
    torch.bfloat16,
    torch.int32,
    torch.float32,
    torch.int64,
    torch.float64,
    torch.complex64,
    torch.complex128,
]
BACKENDS = {"cpu": ops.bits_checksum, "emulated_cuda": cuda.bits_checksum}


def random_tensor(numel, dtype, g):
    if dtype == torch.bool:
        return torch.rand(numel, generator=g) < 0.5
    if dtype.is_complex:
        return torch.randn(numel, generator=g, dtype=dtype) * 1e3
    if dtype.is_floating_point:
        values = (torch.randn(numel, generator=g, dtype=torch.float64) * 1e3).to(dtype)
        values[: min(numel, 3)] = torch.tensor([float("nan"), float("inf"), -0.0], dtype=dtype)[: min(numel, 3)]
        return values
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, (numel,), generator=g, dtype=dtype)


def random_tensors(seed):
    """Tensors of every width, empty and 0-d ones, a partial and several whole chunks,
    non-contiguous and offset views."""
    g = torch.Generator().manual_seed(seed)
    sizes = [0, 1, 7, 300, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5]
    tensors = []
    for i in range(12):
        dtype = DTYPES[int(torch.randint(len(DTYPES), (1,), generator=g))]
        numel = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
        tensor = random_tensor(numel, dtype, g)
        kind = i % 4
        if kind == 1 and numel >= 4:
            tensor = tensor[: numel - numel % 2].view(2, -1).t()  # transposed
        elif kind == 2 and numel >= 2:
            tensor = tensor[1:]  # a storage offset of one element
        elif kind == 3:
            tensor = tensor[:1].reshape(()) if numel else tensor.reshape(0, 3)
        tensors.append(tensor)
    return tensors


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_equals_the_reference(backend, seed):
    tensors = random_tensors(seed)
    want = reference.bits_checksum(tensors)
    if backend == "emulated_cuda":
        with cuda.schedule(seed=seed + 1):
            got = BACKENDS[backend](tensors)
    else:
        got = BACKENDS[backend](tensors)
    assert got.dtype == torch.int64 and got.shape == (len(tensors),)
    assert torch.equal(got, want)


def test_chunks_and_widths_by_hand():
    """Word i times weight(i), summed modulo 2**64; complex128's words are its float64
    halves, bool's its bytes; conjugate and negative views count as their values."""
    weights = reference._checksum_weights(3, "cpu")
    assert bool((weights & 1).all())
    assert ops.bits_checksum([torch.tensor([True, False, True])]).item() == int(weights[0] + weights[2])
    pair = torch.tensor([1.5 + 2.0j], dtype=torch.complex128)
    halves = torch.tensor([1.5, 2.0], dtype=torch.float64)
    assert torch.equal(ops.bits_checksum([pair]), ops.bits_checksum([halves]))
    assert ops.bits_checksum([torch.zeros(5), torch.empty(0)]).tolist() == [0, 0]
    z = torch.tensor([1.0 + 2.0j, -3.0 - 0.5j])
    for view, value in ((z.conj(), z.conj().resolve_conj()), (z.conj().imag, z.conj().imag.resolve_neg())):
        for checksum in (ops.bits_checksum, cuda.bits_checksum, reference.bits_checksum):
            assert torch.equal(checksum([view]), ops.bits_checksum([value.clone()]))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.uint8])
def test_every_single_bit_flip_changes_it(backend, dtype):
    g = torch.Generator().manual_seed(1)
    tensor = random_tensor(CHUNK + 9, dtype, g)
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
    checksum = BACKENDS[backend]
    key = checksum([tensor]).item()
    for position in [0, 1, CHUNK - 1, CHUNK, CHUNK + 8] + torch.randint(0, CHUNK + 9, (6,), generator=g).tolist():
        for bit in (0, 8 * tensor.element_size() - 1):
            edited = tensor.clone()
            edited.view(width)[position] ^= torch.tensor(1 << bit if bit < 63 else -(1 << 63)).to(width)
            assert checksum([edited]).item() != key, (position, bit)


@pytest.mark.parametrize("copies", [220, 400])
def test_one_launch_for_any_number_of_tensors(copies):
    """yolact_base has 660 weight tensors: one kernel for all of them (after the sums are
    zeroed and the table copied), a block per chunk of 2**16 words up to 1024 blocks, which
    then loop over the chunks (800 + 2 chunks: some blocks take two)."""
    g = torch.Generator().manual_seed(copies)
    tensors = [torch.randn(n, generator=g) for n in [3, 0, 64] * copies] + [torch.randn(CHUNK + 1, generator=g)]
    with cuda.schedule(seed=copies), cuda.launches() as log:
        got = cuda.bits_checksum(tensors)
    assert torch.equal(got, reference.bits_checksum(tensors))
    assert [(launch.kernel, launch.grid, launch.block) for launch in log] == [
        ("bits_checksum", (min(2 * copies + 2, 1024), 1, 1), (256, 1, 1))
    ]
    with cuda.launches() as log:
        cuda.bits_checksum([torch.empty(0), torch.empty(0, 4)])
    assert list(log) == []  # nothing to read: no launch


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(
    "tensors, error, match",
    [
        ([], ValueError, "at least one tensor"),
        (torch.zeros(3), TypeError, "tensors must be a sequence"),
        ([torch.zeros(3), 4], TypeError, r"tensors\[1\] must be a torch.Tensor"),
        ([torch.zeros(3), torch.zeros(2, device="meta")], ValueError, r"tensors\[1\] must be on the device"),
    ],
)
def test_bad_arguments(backend, tensors, error, match):
    with pytest.raises(error, match=match):
        BACKENDS[backend](tensors)


def test_reference_refuses_an_empty_list_too():
    with pytest.raises(ValueError, match="at least one tensor"):
        reference.bits_checksum([])


def test_sparse_tensors_are_refused():
    with pytest.raises(TypeError, match="dense"):
        ops.bits_checksum([torch.zeros(3, 3).to_sparse()])
