"""The device side must work where TensorFlow cannot even be imported (a Raspberry Pi)."""

import os
import pkgutil
import subprocess
import sys

import edge
from conftest import ROOT

_BLOCK_TF = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError('No module named ' + name + ' (blocked by the test)')
sys.meta_path.insert(0, _NoTensorFlow())
"""


def _run_blocked(code: str, *args: str):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", _BLOCK_TF + code, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def test_every_edge_module_imports_without_tensorflow():
    modules = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "print('ok', len(sys.modules))")
    result = _run_blocked(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_no_edge_source_imports_tensorflow_at_module_level():
    for path in (ROOT / "edge").rglob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.startswith(("import tensorflow", "from tensorflow", "import keras",
                                        "from keras")), f"{path}: {line}"


def test_train_and_export_without_tensorflow_say_which_extra_to_install():
    for command in (["train", "--data", "x", "--out", "y"],
                    ["export", "--model", "m.keras", "--out", "m.tflite"]):
        result = _run_blocked("import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))",
                              *command)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "needs TensorFlow" in lines[0] and "[train]" in lines[0]


def test_eval_runs_without_tensorflow(tmp_path):
    from edge.data.synthetic import write_classification_folder

    data = write_classification_folder(tmp_path / "cls", n_per_class=3, size=64, seed=0)
    result = _run_blocked("import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))",
                          "eval", "--data", str(data), "--json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.json").is_file()
