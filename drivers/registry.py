"""Model name -> driver class, and one factory that opens an instrument with its limits applied.

VISA models open with the pyvisa-py backend (`@py`) on real (or simulated-lab) addresses, or
with pyvisa-sim (`@sim`) on the static YAML in `ionpilot.sim:yaml/<model>.yaml` for command
tests. The instrument returned is owned by one thread (QCoDeS is not thread-safe); after a
timeout close it, back off and call `open_instrument` again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ionpilot.drivers.base import IonpilotDriver
from ionpilot.drivers.bristol_871a import Bristol871a
from ionpilot.drivers.dlc_pro import DlcPro
from ionpilot.drivers.hardware import MODELS
from ionpilot.drivers.hmc8043 import Hmc8043
from ionpilot.drivers.ionpilot_pulser import IonpilotPulser
from ionpilot.drivers.keysight_53230a import Keysight53230a
from ionpilot.drivers.limits import apply_limits
from ionpilot.drivers.menlo_fc1500 import MenloFc1500
from ionpilot.drivers.qdac2 import Qdac2
from ionpilot.drivers.rs_smb100a import RsSmb100a
from ionpilot.drivers.thorlabs_sc10 import ThorlabsSc10

DRIVERS: dict[str, type[IonpilotDriver]] = {
    cls.model_name: cls
    for cls in (
        RsSmb100a,
        Qdac2,
        Hmc8043,
        DlcPro,
        Bristol871a,
        MenloFc1500,
        Keysight53230a,
        ThorlabsSc10,
        IonpilotPulser,
    )
}

VISA_TRANSPORTS = frozenset({"visa-socket", "telnet"})
# Models whose real unit greets each connection with a banner; pyvisa-sim cannot.
_BANNER_MODELS = frozenset({"dlc_pro", "bristol_871a"})


def driver_class(model: str) -> type[IonpilotDriver]:
    """The driver class of a model; KeyError names the known models."""
    try:
        return DRIVERS[model]
    except KeyError:
        raise KeyError(f"unknown instrument model {model!r} (known: {sorted(DRIVERS)})") from None


def is_visa(model: str) -> bool:
    """Whether the model is opened through PyVISA."""
    return MODELS[model].transport in VISA_TRANSPORTS


def sim_yaml(model: str) -> str:
    """The pyvisa-sim file of a VISA model, as QCoDeS' `pyvisa_sim_file` wants it."""
    if not is_visa(model):
        raise ValueError(f"{model} is not a VISA instrument: no pyvisa-sim YAML")
    return f"ionpilot.sim:yaml/{model}.yaml"


def open_instrument(
    name: str,
    model: str,
    address: str,
    limits: Mapping[str, Any] | None = None,
    *,
    simulated: bool = False,
    timeout_s: float | None = None,
    **driver_kwargs: Any,
) -> IonpilotDriver:
    """Open `model` at `address` as QCoDeS instrument `name`, with `limits` applied.

    `simulated=True` opens a VISA model on its pyvisa-sim YAML (address: a resource in that
    file). If the limits are bad the instrument is closed again and LimitsConfigError raised.
    """
    factory: Callable[..., IonpilotDriver] = driver_class(model)
    kwargs = dict(driver_kwargs)
    if is_visa(model):
        if simulated:
            kwargs["pyvisa_sim_file"] = sim_yaml(model)
            if model in _BANNER_MODELS:
                kwargs.setdefault("read_banner", False)
        else:
            kwargs.setdefault("visalib", "@py")
        if timeout_s is not None:
            kwargs["timeout"] = timeout_s
    else:
        if simulated:
            raise ValueError(f"{model} is not a VISA instrument: no pyvisa-sim simulation")
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
    instrument = factory(name, address, **kwargs)
    try:
        apply_limits(instrument, limits or {})
    except BaseException:
        instrument.close()
        raise
    return instrument
