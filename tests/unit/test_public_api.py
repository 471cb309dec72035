"""The public API of ``netboard`` as the README uses it."""

from __future__ import annotations

import subprocess
import sys


def test_render_is_the_function_even_after_the_report_modules_are_imported() -> None:
    import netboard.reports.html
    import netboard.reports.markdown
    from netboard import load_case, recommend, render

    assert callable(render)
    assert render is netboard.reports.render
    answer = recommend(load_case({"primary_site": "ileum", "ki67_percent": 2}))
    assert render(answer, "markdown").startswith("# netboard tumour board report")
    assert render(answer, "html").startswith("<!DOCTYPE html>")


def test_readme_python_example_runs_in_a_fresh_interpreter() -> None:
    code = (
        "from netboard import load_case, recommend, render\n"
        'answer = recommend(load_case({"primary_site": "ileum", "ki67_percent": 2, '
        '"metastatic_sites": ["liver"]}))\n'
        'print(render(answer, "markdown"))\n'
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("# netboard tumour board report")


def test_every_public_name_resolves() -> None:
    import netboard

    for name in netboard.__all__:
        assert getattr(netboard, name) is not None, name
