"""The README's Python API example runs as written (on a small synthetic dataset)."""

import re
from pathlib import Path

from empo import pipeline
from tests.test_loop_support import synthetic_transitions

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one example"
    return blocks[0]


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    data = synthetic_transitions(n=600)
    monkeypatch.setattr(pipeline, "prepare_dataset", lambda *args, **kwargs: data)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(api_example(), "README.md", "exec"), namespace)
    assert namespace["summary"]["status"] == "finished"
    assert namespace["actions"].shape == (4, 3)
    assert (tmp_path / "runs" / "api-smoke" / "checkpoint.pt").is_file()
    assert "(4, 3)" in capsys.readouterr().out
