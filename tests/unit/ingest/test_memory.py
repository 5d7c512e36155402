"""--max-matrix-mb bounds the peak memory of co-activation (issue 15, item 5).

Measured as the process's peak resident set (VmHWM) in a fresh interpreter, over its
baseline after the model is built: a memory bound, not a timing.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import torch
from torch import nn
from deepatlas.data.base import ImageSet
from deepatlas.ingest.coactivation import compute_coactivation
torch.set_num_threads(1)
torch.manual_seed(0)
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3000), nn.ReLU(), nn.Linear(3000, 3000), nn.ReLU(),
                      nn.Linear(3000, 10)).eval()
data = ImageSet.from_tensors(torch.rand(300, 1, 8, 8), torch.arange(300) % 10, tuple("abcdefghij"), "rand", "test")
warm = data.subset(4)
compute_coactivation(nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10)), warm)
base = rss("VmRSS")
res = compute_coactivation(model, data, batch_size=100, max_matrix_mb=BUDGET)
print(res.passes, rss("VmHWM") - base)
"""


def peak(budget: float) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", PROBE.replace("BUDGET", repr(budget))], capture_output=True, text=True, check=True)
    passes, mb = out.stdout.split()
    return int(passes), float(mb)


def test_peak_stays_within_budget_plus_a_fixed_margin() -> None:
    # 6,010 nodes: the dense co-moments alone are 276 MB; a 32 MB budget needs 9+ passes
    passes, mb = peak(32)
    assert passes >= 9
    assert mb < 32 + 200, f"peak {mb:.0f} MB over baseline with a 32 MB budget"
