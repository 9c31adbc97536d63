"""``Compose``: run transforms in order; a transform returning None drops the sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from visionfm.registry import TRANSFORMS

__all__ = ["Compose"]


@TRANSFORMS.register_module()
class Compose:
    """Chain transforms given as config dicts (built by ``visionfm.registry.TRANSFORMS``) or
    callables. ``Compose(...)(results)`` returns the final dict, or None as soon as a
    transform returns None (mmengine's ``BaseDataset`` then fetches another sample).
    """

    def __init__(self, transforms: Sequence[dict | Callable] | None = None) -> None:
        self.transforms: list[Callable] = []
        for i, t in enumerate(transforms or []):
            if isinstance(t, dict):
                t = TRANSFORMS.build(t)
            if not callable(t):
                raise TypeError(
                    f"pipeline[{i}] must be a dict or a callable, got {type(t).__name__}"
                )
            self.transforms.append(t)

    def __call__(self, results: dict) -> dict | None:
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose({inner}\n)"
