"""Tests of hios.cost.timing: CPU wall clock everywhere, CUDA graph / event timing where a GPU exists."""

import time

import pytest

from hios.errors import HiosError
from hios.cost.timing import TimingStats, wall_time


def test_stats_from_samples():
    s = TimingStats.from_samples([3.0, 1.0, 2.0, 10.0], 4, "wall")
    assert s.median_ms == 2.5
    assert s.min_ms == 1.0 and s.max_ms == 10.0
    assert s.mean_ms == 4.0
    assert s.repeats == 4 and s.inner == 4
    assert s.spread == pytest.approx(9.0 / 2.5)
    d = s.to_dict()
    assert "samples" not in d and d["median_ms"] == 2.5
    assert s.to_dict(samples=True)["samples"] == [3.0, 1.0, 2.0, 10.0]
    with pytest.raises(HiosError):
        TimingStats.from_samples([], 1, "wall")


def test_wall_time_measures_sleep():
    calls = []

    def fn(x):
        calls.append(x)
        time.sleep(0.002)

    s = wall_time(fn, (7,), warmup=1, repeats=3, inner=2)
    assert len(calls) == 1 + 3 * 2
    assert set(calls) == {7}
    assert 1.9 <= s.median_ms < 20.0
    assert s.method == "wall" and s.inner == 2


def test_wall_time_grows_inner_for_short_calls():
    s = wall_time(lambda: None, warmup=0, repeats=3, min_time_ms=0.5)
    assert s.inner > 1
    assert s.median_ms < 0.1


def test_wall_time_calls_synchronize():
    syncs = []
    wall_time(lambda: None, warmup=1, repeats=2, synchronize=lambda: syncs.append(1))
    assert len(syncs) >= 1 + 2 * 2


@pytest.mark.parametrize("kw", [{"repeats": 0}, {"inner": 0}, {"warmup": -1}, {"repeats": 1.5}])
def test_bad_counts_rejected(kw):
    with pytest.raises(HiosError, match=next(iter(kw))):
        wall_time(lambda: None, **kw)


def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


def test_cuda_timing_without_gpu_is_an_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists")
    from hios.cost.timing import cuda_graph_time, event_time
    with pytest.raises(HiosError, match="no CUDA device"):
        cuda_graph_time(lambda: None)
    with pytest.raises(HiosError, match="no CUDA device"):
        event_time(lambda: None)


def test_cuda_graph_time_scales_with_work():
    torch = _cuda()
    from hios.cost.timing import cuda_graph_time, event_time
    a = torch.randn(2048, 2048, device="cuda")
    small = cuda_graph_time(torch.mm, (a, a), warmup=2, repeats=10, inner=4)
    x = torch.randn(4096, 4096, device="cuda")
    big = cuda_graph_time(torch.mm, (x, x), warmup=2, repeats=10, inner=4)
    assert small.method == "cuda_graph" and small.median_ms > 0
    assert big.median_ms > 4 * small.median_ms  # 8x the flops
    ev = event_time(torch.mm, (x, x), warmup=2, repeats=10, inner=4)
    assert ev.median_ms == pytest.approx(big.median_ms, rel=0.3)


def test_cuda_graph_removes_launch_overhead():
    torch = _cuda()
    from hios.cost.timing import cuda_graph_time, event_time
    x = torch.randn(16, device="cuda")

    def many(v):
        for _ in range(50):
            v = v + 1
        return v

    g = cuda_graph_time(many, (x,), warmup=2, repeats=10)
    e = event_time(many, (x,), warmup=2, repeats=10)
    assert g.median_ms < e.median_ms


def test_concurrent_group_not_slower_than_serial():
    torch = _cuda()
    from hios.cost.timing import cuda_graph_concurrent_time, cuda_graph_time
    a = torch.randn(64, 64, device="cuda")

    def small(v):
        for _ in range(20):
            v = torch.relu(v)
        return v

    one = cuda_graph_time(small, (a,), warmup=2, repeats=10)
    four = cuda_graph_concurrent_time([(small, (a,))] * 4, warmup=2, repeats=10)
    assert four.method == "cuda_graph_concurrent"
    assert four.median_ms < 4 * one.median_ms * 1.1


def test_graph_time_excludes_host_launch_latency():
    torch = _cuda()
    from hios.cost.timing import cuda_graph_time
    x = torch.randn(256, device="cuda")
    st = cuda_graph_time(lambda v: v.add_(1.0), (x,), warmup=2, repeats=20, inner=1)
    # one tiny kernel: a few microseconds of GPU time, not the host's ~10 us graph launch
    assert st.median_ms < 0.008


def test_precision_is_a_block_that_restores_torch_flags():
    pytest.importorskip("torch")
    from hios.cost.timing import precision, precision_state
    before = precision_state()
    with precision(True):
        assert precision_state() == "tf32"
        with precision(False):
            assert precision_state() == "fp32"
        assert precision_state() == "tf32"
    assert precision_state() == before
    with pytest.raises(ValueError):
        with precision(True):
            raise ValueError("inside")
    assert precision_state() == before
