import pytest
import torch

from yoloslim.threads import torch_threads


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_sets_then_restores(threads):
    other = 1 if threads != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == threads


def test_none_keeps_the_count_and_restores_a_change_inside(threads):
    other = 1 if threads != 1 else 2
    with torch_threads(None):
        assert torch.get_num_threads() == threads
        torch.set_num_threads(other)
    assert torch.get_num_threads() == threads


def test_restores_after_an_error(threads):
    other = 1 if threads != 1 else 2
    with pytest.raises(RuntimeError, match="boom"), torch_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == threads


def test_as_a_decorator_each_call(threads):
    other = 1 if threads != 1 else 2

    @torch_threads(None)
    def sets(n):
        torch.set_num_threads(n)
        return torch.get_num_threads()

    assert sets(other) == other
    assert torch.get_num_threads() == threads
    assert sets(other) == other  # a second call works too (a fresh context each call)
    assert torch.get_num_threads() == threads
    assert sets.__name__ == "sets"
