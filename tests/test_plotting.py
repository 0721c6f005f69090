import subprocess
import sys


def _backend(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code + "\nimport matplotlib; print(matplotlib.get_backend())"],
                         capture_output=True, text=True, check=True, env={"MPLBACKEND": "svg", "PATH": ""})
    return out.stdout.strip().lower()


def test_commands_draw_on_agg_and_leave_a_notebook_backend_alone():
    # A command (pyplot not yet imported): Agg, whatever the environment asks.
    assert _backend("from astrolearn.plotting import pyplot; pyplot()") == "agg"
    # A session that already uses pyplot (a notebook's inline backend): kept, so plt.show() still shows.
    assert _backend("import matplotlib.pyplot; from astrolearn.plotting import pyplot; pyplot()") == "svg"
