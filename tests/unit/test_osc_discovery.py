"""The VRChat finder's lifecycle: browsing only while someone wants VRChat's port."""

from __future__ import annotations

from app.osc.discovery import VrchatOscFinder, finder_while


def test_finder_while_starts_one_finder_keeps_it_and_closes_it_when_no_longer_wanted() -> None:
    assert finder_while(None, False) is None
    finder = finder_while(None, True)
    assert isinstance(finder, VrchatOscFinder)
    try:
        assert finder_while(finder, True) is finder  # still wanted: the same browser keeps running
        assert finder.error is not None or finder._zeroconf is not None  # browsing, or told why not
    finally:
        assert finder_while(finder, False) is None
    assert finder._zeroconf is None and finder._browser is None
