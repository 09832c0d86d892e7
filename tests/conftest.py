import pytest
import torch

from golden_data import GOLDEN_DIRS, golden_cases, load_golden

GOLDEN_CASES = golden_cases()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU and the extension's CUDA kernels: skipped otherwise."""
    from yolact_fast import ops

    if torch.cuda.is_available() and ops.cuda_kernels_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and the extension built with its CUDA kernels")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", params=GOLDEN_CASES or ["<missing>"])
def golden(request):
    if request.param == "<missing>":
        pytest.fail(f"no golden cases in {GOLDEN_DIRS}; set YOLACT_FAST_GOLDEN")
    return load_golden(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def rule_model():
    """Factory ``(config_name, seed) -> yf.Yolact`` with weight-rule weights, cached per session
    (a ResNet-101 costs seconds to build and fill)."""
    import yolact_fast as yf
    from yolact_fast.model.weight_rule import rule_weights

    cache = {}

    def get(config_name, seed=0):
        if (config_name, seed) not in cache:
            cache[config_name, seed] = yf.load(rule_weights(config_name, seed), config=config_name)
        return cache[config_name, seed]

    return get


@pytest.fixture
def one_thread():
    """Tiny ops: one thread avoids OpenMP spin-waits when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
