"""The host emulation of CUDA blocks (csrc/emulation/emulation.h) catches planted bugs
(missing barrier, races, out-of-bounds shared indices, unwritten shared reads, over-limit
launches, deadlocked warp collectives), runs barriers, shared memory and warp collectives
as the GPU does, and shuffles the schedule by seed."""

import pytest
import torch

from yolact_fast import _emulation
from yolact_fast.testing import emulated_cuda as ecuda

selftest = _emulation.selftest


def run(name, block=(64, 1, 1), grid=(1, 1, 1), **kwargs):
    return selftest.run(name, list(grid), list(block), **kwargs)


def threads_of(block):
    return block[0] * block[1] * block[2]


# --- correct kernels run as on the GPU ---------------------------------------------------


@pytest.mark.parametrize("block", [(64, 1, 1), (8, 4, 2), (1024, 1, 1), (33, 1, 1)])
def test_barrier_orders_shared_memory(block):
    n = threads_of(block)
    out = run("reverse", block=block, grid=(2, 1, 1), arg=1)
    want = torch.arange(n - 1, -1, -1).repeat(2)
    assert torch.equal(out[:-1], want)


def test_dynamic_shared_memory():
    out = run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=128 * 4)
    assert torch.equal(out[:-1], (torch.arange(128) + 1) % 128)


@pytest.mark.parametrize("name", ["warp_sum_down", "warp_sum_xor"])
def test_warp_reductions(name):
    out = run(name, block=(96, 1, 1))[:-1]
    want = torch.arange(96).view(3, 32).sum(1).repeat_interleave(32)
    assert torch.equal(out, want)


def test_ballot_and_popc():
    out = run("warp_ballot", block=(64, 1, 1))[:-1]
    lanes = torch.arange(64)
    for warp in range(2):
        votes = sum(1 << lane for lane in range(32) if (32 * warp + lane) % 3 == 0)
        count = bin(votes).count("1")
        assert (out[lanes // 32 == warp] == votes + (count << 32)).all()


def test_half_warps_with_disjoint_masks():
    out = run("half_warp_rotate", block=(32, 1, 1))[:-1]
    lane = torch.arange(32)
    assert torch.equal(out, (lane // 16) * 16 + (lane % 16 + 1) % 16)


def test_syncwarp_orders_lanes_of_one_warp():
    out = run("warp_exchange", block=(64, 1, 1), arg=0)[:-1]
    assert torch.equal(out, torch.arange(64) ^ 1)


def test_results_do_not_depend_on_the_seed_for_correct_kernels():
    for seed in range(5):
        with ecuda.schedule(seed=seed):
            assert torch.equal(run("warp_sum_down", block=(64, 1, 1)), run("warp_sum_down", block=(64, 1, 1)))


# --- planted bugs are caught -------------------------------------------------------------


def test_missing_syncthreads_is_a_race():
    with pytest.raises(RuntimeError, match=r"kernel 'reverse', block \(0, 0, 0\).*shared-memory race.*thread \("):
        run("reverse", arg=0)


def test_unsynchronised_read_modify_write_is_a_race():
    with pytest.raises(
        RuntimeError, match=r"shared-memory race: thread .* 's'\[0\] \(byte \d+ .*\) after thread .* wrote"
    ):
        run("unsynchronised_sum")


def test_write_after_read_is_a_race():
    # Depending on the schedule the writer comes before or after some reader: either way a race.
    for seed in range(4):
        with ecuda.schedule(seed=seed), pytest.raises(RuntimeError, match="shared-memory race"):
            run("write_after_read")


def test_write_after_a_broadcast_read_by_other_warps_is_a_race():
    """A value every thread reads, overwritten by warp 0 after a __syncwarp only, once warp 0's
    own threads are its last readers: a race with the other warps' reads (the check keeps the
    last readers of two different warps, not only the last two readers)."""
    other_warp = r"(3[2-9]|[4-9]\d|1[0-2]\d)"  # threads 32..127
    race = rf"shared-memory race: thread \(0, 0, 0\) writes 's'\[0\] .* after thread \({other_warp}, 0, 0\) read it"
    for seed in range(6):
        with ecuda.schedule(seed=seed), pytest.raises(RuntimeError, match=race):
            run("broadcast_then_warp_write", block=(128, 1, 1), arg=64)
    with ecuda.schedule(check_races=False):  # the same kernel runs without the check
        assert run("broadcast_then_warp_write", block=(128, 1, 1), arg=64)[:32].eq(14).all()


def test_syncwarp_does_not_order_other_warps():
    with pytest.raises(RuntimeError, match="shared-memory race"):
        run("warp_exchange", block=(64, 1, 1), arg=1)


def test_race_check_can_be_turned_off():
    with ecuda.schedule(check_races=False):
        out = run("reverse", arg=0)
    assert out.shape == (65,)


def test_unwritten_shared_read():
    with pytest.raises(RuntimeError, match="which no thread of the block has written"):
        run("uninitialised_read")


@pytest.mark.parametrize("block,extra", [((65, 1, 1), 0), ((8, 1, 1), -9)])
def test_static_out_of_bounds(block, extra):
    with pytest.raises(RuntimeError, match=r"indexes shared array 's' of 64 elements at (64|-\d)"):
        run("static_out_of_bounds", block=block, arg=extra)
    # Bounds are checked even without race checks.
    with ecuda.schedule(check_races=False), pytest.raises(RuntimeError, match="indexes shared array"):
        run("static_out_of_bounds", block=block, arg=extra)


def test_dynamic_out_of_bounds():
    with pytest.raises(RuntimeError, match="indexes shared array 's' of 127 elements at 127"):
        run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=127 * 4)


def test_shuffle_with_an_exited_lane():
    with pytest.raises(RuntimeError, match="lane 5 .*has exited"):
        run("shuffle_with_exited_lane", block=(32, 1, 1))


def test_kernel_requirement_fails_the_launch():
    """YF_REQUIRE (a trap on a GPU): class_nms requires blocks of kSelectThreads threads."""
    assert run("block_size_required", block=(64, 1, 1), arg=64)[:64].eq(1).all()
    with pytest.raises(RuntimeError, match=r"block_size_required.*requirement failed: blockDim.x == threads_required"):
        run("block_size_required", block=(32, 1, 1), arg=64)


def test_collective_deadlock():
    with pytest.raises(RuntimeError, match="deadlock"):
        run("collective_deadlock", block=(32, 1, 1))


def test_mask_naming_missing_lanes():
    with pytest.raises(RuntimeError, match="does not exist in a block of 48 threads"):
        run("warp_sum_down", block=(48, 1, 1))


@pytest.mark.parametrize(
    "block,grid,message",
    [
        ((1025, 1, 1), (1, 1, 1), "1025 threads exceeds"),
        ((32, 32, 2), (1, 1, 1), "2048 threads exceeds"),
        ((1, 1, 65), (1, 1, 1), "exceeds the limits"),
        ((32, 1, 1), (1, 65536, 1), "grid .* exceeds"),
        ((32, 1, 1), (1, 1, 65536), "grid .* exceeds"),
        ((0, 1, 1), (1, 1, 1), "must be positive"),
    ],
)
def test_launch_limits(block, grid, message):
    with pytest.raises(ValueError, match=message):
        run("warp_sum_down", block=block, grid=grid)


def test_large_dynamic_shared_memory_needs_an_opt_in():
    with pytest.raises(ValueError, match="exceed 48 KiB without an opt-in"):
        run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=49 * 1024)
    out = run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=49 * 1024, large_shared=True)
    assert torch.equal(out[:-1], (torch.arange(128) + 1) % 128)
    with pytest.raises(ValueError, match="exceed the device's 227 KiB"):
        run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=228 * 1024, large_shared=True)
    # a device with less shared memory (compute capability 7.5: 64 KiB with the opt-in)
    with ecuda.schedule(opt_in_shared_bytes=64 * 1024):
        with pytest.raises(ValueError, match="exceed the device's 64 KiB"):
            run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=65 * 1024, large_shared=True)
        out = run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=64 * 1024, large_shared=True)
        assert torch.equal(out[:-1], (torch.arange(128) + 1) % 128)


# --- the schedule is shuffled by the seed --------------------------------------------------


@pytest.mark.parametrize("name", ["atomic_tickets", "global_atomic_tickets"])
def test_order_dependent_results_change_with_the_seed(name):
    results = []
    for seed in range(4):
        with ecuda.schedule(seed=seed):
            out = run(name, block=(64, 1, 1))[:64]
            again = run(name, block=(64, 1, 1))[:64]
        assert torch.equal(out, again), "one seed, one schedule"
        assert torch.equal(out.sort().values, torch.arange(64)), "each ticket taken once"
        results.append(out)
    assert len({tuple(r.tolist()) for r in results}) == 4


def test_blocks_run_in_an_order_the_seed_shuffles():
    """No kernel may rely on the order in which blocks run (class_nms's merge runs in the
    block that finishes last, whichever it is): with one OS thread, seed 0 runs the blocks
    in index order, and each nonzero seed in an order of its own."""
    blocks, threads = 40, 32
    orders = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(4):
            with ecuda.schedule(seed=seed):
                out = run("block_tickets", grid=(blocks, 1, 1), block=(threads, 1, 1))
            tickets = out[:-1].view(blocks, threads)[:, 0]
            assert torch.equal(tickets.sort().values, torch.arange(blocks)), "each ticket taken once"
            assert out[-1] == blocks
            orders.append(tuple(tickets.tolist()))
    finally:
        torch.set_num_threads(previous)
    assert orders[0] == tuple(range(blocks))
    assert len(set(orders)) == 4


def test_schedule_restores_the_previous_settings():
    before = _emulation.options()
    with ecuda.schedule(seed=7, check_races=False, opt_in_shared_bytes=99 * 1024):
        assert _emulation.options() == (7, False, 99 * 1024)
        with ecuda.schedule(seed=8):  # the device stays that of the enclosing block
            assert _emulation.options() == (8, True, 99 * 1024)
            with ecuda.schedule(opt_in_shared_bytes=64 * 1024):
                assert _emulation.options() == (0, True, 64 * 1024)
        assert _emulation.options() == (7, False, 99 * 1024)
    assert _emulation.options() == before
    with pytest.raises(ValueError, match="seed"):
        with ecuda.schedule(seed=-1):
            pass


def test_launches_are_recorded_and_nest():
    with ecuda.launches() as outer:
        run("reverse", block=(64, 1, 1), grid=(3, 1, 1), arg=1)
        with ecuda.launches() as inner:
            run("dynamic_per_thread", block=(128, 1, 1), shared_bytes=512)
        assert outer == []  # filled on exit
    assert inner == [ecuda.Launch("dynamic_per_thread", (1, 1, 1), (128, 1, 1), 512)]
    assert [l.kernel for l in outer] == ["reverse", "dynamic_per_thread"]
    assert outer[0].grid == (3, 1, 1) and outer[0].block == (64, 1, 1)
    with ecuda.launches() as after:
        pass
    assert after == []


def test_barrier_after_an_exited_thread():
    """CUDA leaves a __syncthreads() that some thread of the block never reaches undefined."""
    for seed in range(3):
        with (
            ecuda.schedule(seed=seed),
            pytest.raises(
                RuntimeError,
                match=r"kernel 'barrier_after_exit', block \(0, 0, 0\): thread \(\d+, 0, 0\) waits "
                r"at __syncthreads\(\) after thread \(5, 0, 0\) of the block has exited",
            ),
        ):
            run("barrier_after_exit", block=(64, 1, 1), arg=5)
    # Every thread returning before the barrier is fine.
    assert torch.equal(run("barrier_after_exit", block=(64, 1, 1), arg=-1)[:-1], torch.arange(64))


# --- global-memory access paths ----------------------------------------------------------


@pytest.mark.parametrize("name, width", [("vector_load_at", 16), ("quad_store_at", 4)])
def test_misaligned_vector_accesses_fail(name, width):
    """A vector access must be aligned to its width, as on the GPU (a misaligned address
    error there); the launch log names the path the aligned launch took."""
    path = "vector_loads" if width == 16 else "quad_stores"
    with ecuda.launches() as log:
        run(name, block=(32, 1, 1), arg=2 * width)
    assert log[0].paths == (path,)
    for offset in (1, width // 2):
        with pytest.raises(
            RuntimeError,
            match=rf"{name}.*makes a {width}-byte vector access at .*"
            rf"not {width}-byte aligned",
        ):
            run(name, block=(32, 1, 1), arg=offset)
