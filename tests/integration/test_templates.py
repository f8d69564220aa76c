"""Type-check detection over create-vite's real templates, as the npm registry serves them."""

import json
from pathlib import Path

import pytest

from orchestrator.core.plan import ProjectType, detect_project_type, detect_typecheck

pytestmark = pytest.mark.integration

EXPECTED = {
    "template-react-ts": "tsc -b",
    "template-vue-ts": "vue-tsc -b",
    "template-svelte-ts": "npm run check",
    "template-vanilla-ts": "tsc",
    "template-react": None,
    "template-vanilla": None,
}


def test_every_template_is_a_vite_project_with_its_own_type_check(templates: Path) -> None:
    found = sorted(p.name for p in templates.glob("template-*"))
    assert len(found) >= 12
    for name in found:
        folder = templates / name
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        package = json.loads((folder / "package.json").read_text())
        assert detect_project_type(files, package) is ProjectType.VITE
        check = detect_typecheck(files, package)
        if name.endswith("-ts"):
            assert check.command, f"{name}: no type check found ({check.reason})"
        if name in EXPECTED:
            assert check.command == EXPECTED[name], name
