import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama-architecture ChatML model saved to disk (about 0.2 s to build)."""
    from safelrm.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def shared_data():
    from safelrm.data.paths import data_root

    root = data_root(required=False)
    if root is None:
        pytest.skip("../shared/data is not present")
    return root


_FIGURES: list[str] = []


@pytest.fixture
def report_figure():
    """``report_figure("parity: 31/32")`` prints the line in the terminal summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
