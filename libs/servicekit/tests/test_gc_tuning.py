"""The garbage-collector tuning a service process applies at start."""

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from pimms_servicekit.runtime import GC_THRESHOLD, full_collections, tune_gc
from pimms_servicekit.settings import SettingsError


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_default_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    assert tune_gc(None) == GC_THRESHOLD
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_setting_overrides_the_thresholds() -> None:
    assert tune_gc("700,10,10") == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("setting", ["20000", "a,b,c", "0,10,10", "1,2,3,4", "-5,1,1"])
def test_a_bad_setting_is_refused_with_its_name(setting: str) -> None:
    before = gc.get_threshold()
    with pytest.raises(SettingsError, match="PIMMS_GC_THRESHOLD"):
        tune_gc(setting)
    assert gc.get_threshold() == before


def test_cycles_are_still_collected() -> None:
    tune_gc(None)

    class Node:
        other: "Node"

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


async def test_cyclic_garbage_is_freed_by_the_periodic_full_collection() -> None:
    """Automatic collections stay off here, as they hardly ever reach the old generation in a
    tuned service: the service's own periodic full collection frees the cycle."""
    gc.disable()
    try:
        node = _Node()
        freed = weakref.ref(node)
        del node
        assert freed() is not None
        task = asyncio.create_task(full_collections(every_s=0.01))
        await asyncio.sleep(0.1)
        task.cancel()
        assert freed() is None
    finally:
        gc.enable()
