"""Run Poetry, falling back to the index's simple JSON API when the per-release JSON API is missing.

Some package mirrors (including our build machines') serve only the simple index (PEP 691/658), and
Poetry's PyPI repository then reports every package as "not found". This shim gives that repository
the same fallback Poetry's legacy repositories already use, and changes nothing where the JSON API
answers. It runs inside Poetry's own environment: `python tools/poetry_shim.py <poetry args>`.
"""

from __future__ import annotations

import sys
from typing import Any


def _patch_pypi_repository() -> None:
    from poetry.inspection.info import PackageInfo
    from poetry.repositories.exceptions import PackageNotFoundError
    from poetry.repositories.pypi_repository import PyPiRepository

    json_release_info = PyPiRepository._get_release_info
    json_links = PyPiRepository.find_links_for_package

    def release_info(self: PyPiRepository, name: Any, version: Any) -> dict[str, Any]:
        try:
            return json_release_info(self, name, version)
        except PackageNotFoundError:
            page = self.get_page(name)
            links = list(page.links_for_version(name, version))
            info = PackageInfo(
                name=name,
                version=version.text,
                summary="",
                requires_dist=[],
                requires_python=None,
                files=[],
                yanked=page.yanked(name, version),
                cache_version=str(self.CACHE_VERSION),
            )
            return self._links_to_data(links, info)

    def find_links(self: PyPiRepository, package: Any) -> list[Any]:
        links = json_links(self, package)
        if links:
            return links
        return list(self.get_page(package.name).links_for_version(package.name, package.version))

    PyPiRepository._get_release_info = release_info  # type: ignore[method-assign]
    PyPiRepository.find_links_for_package = find_links  # type: ignore[method-assign]


if __name__ == "__main__":
    _patch_pypi_repository()
    from poetry.console.application import main

    sys.argv[0] = "poetry"
    sys.exit(main())
