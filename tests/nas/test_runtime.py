import os
import subprocess
import sys

# Page faults per forward pass of MobileViT-XXS at batch 16, 256x256 (activations of 16-64 MiB).
# One intra-op thread: each extra thread has its own malloc arena, which reaches its peak size on
# its own schedule, so on a many-core machine a single pass after warm-up may still be growing.
# The fewest faults over a few passes is the steady state.
PROBE = """
import resource, sys
import torch
import mobilevit
from nas.runtime import tune_cpu_allocator
ok = tune_cpu_allocator() if sys.argv[1] == "tuned" else None
torch.set_num_threads(1)
model = mobilevit.create_model("mobilevit_xxs").eval()
x = torch.randn(16, 3, 256, 256)
faults = []
with torch.no_grad():
    model(x)
    model(x)  # the heap reaches its peak size over the first passes
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(ok, min(faults))
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
