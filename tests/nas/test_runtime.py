import os
import subprocess
import sys

# Page faults per forward pass of MobileViT-XXS at batch 16, 256x256 (activations of 16-64 MiB).
PROBE = """
import resource, sys
import torch
import mobilevit
from nas.runtime import tune_cpu_allocator
ok = tune_cpu_allocator() if sys.argv[1] == "tuned" else None
model = mobilevit.create_model("mobilevit_xxs").eval()
x = torch.randn(16, 3, 256, 256)
with torch.no_grad():
    model(x)
    model(x)  # the heap reaches its peak size over the first passes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x)
print(ok, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


def test_tuned_allocator_stops_refaulting_activations():
    _, default = _faults("default")
    ok, tuned = _faults("tuned")
    # glibc's default maps, faults in and unmaps every large activation on every pass.
    assert default > 50_000
    assert ok == "True" and tuned < default / 20


def test_opt_out():
    ok, faults = _faults("tuned", NAS_MALLOC_TUNING="0")
    assert ok == "False" and faults > 50_000
