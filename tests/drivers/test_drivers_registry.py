"""Registry: every model has a driver, a YAML where it is VISA, and consistent bus hooks."""

import inspect
import itertools
from importlib.resources import files

import pytest

from ionpilot.drivers.base import GuardedParameter
from ionpilot.drivers.hardware import MODELS
from ionpilot.drivers.registry import DRIVERS, driver_class, is_visa, open_instrument, sim_yaml

_names = itertools.count()
VISA_MODELS = sorted(m for m in MODELS if is_visa(m))


def test_every_model_has_a_driver():
    assert set(DRIVERS) == set(MODELS)
    for model, cls in DRIVERS.items():
        assert cls.model_name == model
        assert cls.__doc__ and inspect.getmodule(cls).__doc__
        for method in cls.bus_methods:
            assert not method.startswith("_") and callable(getattr(cls, method))
    with pytest.raises(KeyError, match="known"):
        driver_class("hp_8643a")


@pytest.mark.parametrize("model", VISA_MODELS)
def test_visa_models_open_on_their_yaml_with_hardware_parameters(model):
    module, path = sim_yaml(model).split(":")
    assert (files(module) / path).is_file()
    inst = open_instrument(
        f"{model}{next(_names)}",
        model,
        "TCPIP0::127.0.0.1::5025::SOCKET",
        simulated=True,
        timeout_s=0.2,
    )
    try:
        spec = MODELS[model]
        telemetry = {name.rsplit(".", 1)[-1] for name in inst.telemetry_parameters()}
        assert set(spec.parameter_names()) <= telemetry
        guarded = inst.guarded_parameters()
        assert {name.rsplit(".", 1)[-1] for name in guarded} == set(spec.parameters)
        for name, param in guarded.items():
            hw = spec.parameters[name.rsplit(".", 1)[-1]]
            assert isinstance(param, GuardedParameter)
            assert param.hardware_range() == (hw.minimum, hw.maximum)
            assert param.unit == hw.unit
        if spec.channels:
            assert len(inst.channel_modules()) == spec.channels
        for method in inst.bus_methods:
            assert not method.startswith("_")
            assert callable(getattr(inst, method))
    finally:
        inst.close()


def test_non_visa_models_have_no_simulation():
    with pytest.raises(ValueError):
        open_instrument("comb_x", "menlo_fc1500", "http://127.0.0.1:1/RPC2", simulated=True)
