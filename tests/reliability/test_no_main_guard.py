"""Issue 17: the README's Python example works as a plain script, without an ``if __name__ == "__main__":`` guard.

Before, DataLoader workers started from a fork server that re-imported the
user's script, which called ``imagefit.train`` again inside every worker
("An attempt has been made to start a new process before the current process
has finished its bootstrapping phase"), and the run crashed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import color_dataset

# The README's example as a new user saves it: top-level code, no guard.
SCRIPT = """
import imagefit

run = imagefit.train({data!r}, out={out!r}, model="simple_cnn", pretrained=False, strategy="finetune",
                     epochs=1, batch_size=4, workers=2, seed=0)
print("TRAINED", run.path, flush=True)
"""


def test_finetune_from_a_script_without_main_guard(tmp_path: Path) -> None:
    data = color_dataset(tmp_path / "data", 6)
    script = tmp_path / "train_pets.py"
    script.write_text(textwrap.dedent(SCRIPT.format(data=str(data), out=str(tmp_path / "run"))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("TRAINED") == 1  # trained once: the workers did not run the script again
    assert "bootstrapping" not in proc.stderr
    assert (tmp_path / "run" / "imagefit.json").is_file()
