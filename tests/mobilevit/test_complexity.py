"""The analytic counter equals fvcore on the built network, exactly, for any spec."""

import optuna
import pytest

from mobilevit import MobileViT, get_fixed_point, list_models, num_params
from mobilevit.complexity import complexity
from nas.profile import profile
from search_spaces import MobileViTSpace
from tests.mobilevit.test_model import ODD_SPECS


def random_specs(n: int, seed: int, max_params: int = 8_000_000) -> list:
    """``n`` random specs of the whole space under ``max_params`` (to keep fvcore quick)."""
    space = MobileViTSpace(num_classes=10, resolution=256)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs = []
    while len(specs) < n:
        trial = study.ask()
        spec = space.sample(trial)
        study.tell(trial, 0.0)
        if complexity(spec).params < max_params:
            specs.append(spec)
    return specs


SPECS = {**{n: get_fixed_point(n).spec for n in list_models()}, **ODD_SPECS,
         **{f"random{i}": s for i, s in enumerate(random_specs(8, seed=1))}}


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("res", [256, 224, 97])
def test_analytic_counts_equal_fvcore(name, res):
    spec = SPECS[name]
    analytic, measured = complexity(spec, res), profile(spec, res)
    assert analytic.params == measured.params == num_params(MobileViT(spec))
    assert analytic.macs == measured.macs
    assert analytic.macs_by_group == measured.macs_by_group
