"""`bmg.checks` and the frozen configs built on it: a value of another type is refused in one
sentence naming the field (numbers refuse bools, bool fields refuse anything but a bool)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing

import numpy as np
import pytest

from bmg.agents.configs import ActorCriticConfig, OnlineConfig, QLambdaConfig
from bmg.agents.stacx import StacxConfig
from bmg.checks import check_bool, check_integer, check_real
from bmg.core import MetaConfig
from bmg.envs.atari import AtariConfig
from bmg.train.sebulba import SebulbaConfig


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.1", None, float("nan"), 1j])
def test_check_real_refuses_what_is_not_a_finite_real(value):
    with pytest.raises(ValueError, match=re.escape(f"x must be a finite number, got {value!r}.")):
        check_real("x", value)


@pytest.mark.parametrize("value", [True, 1.0, np.int64(3), "3", None])
def test_check_integer_refuses_what_is_not_an_int(value):
    with pytest.raises(ValueError, match=re.escape(f"n must be an integer >= 0, got {value!r}.")):
        check_integer("n", value, 0)


@pytest.mark.parametrize("value", ["yes", 1, 0, np.bool_(True), None])
def test_check_bool_refuses_what_is_not_a_bool(value):
    with pytest.raises(ValueError, match=re.escape(f"flag must be True or False, got {value!r}.")):
        check_bool("flag", value)
    assert check_bool("flag", True) is True and check_bool("flag", False) is False


def typed_fields(config: type) -> list[tuple[str, object]]:
    """(field, a value of another type) for every number field (True) and bool field ("yes")
    of a config dataclass, read from its annotations."""
    hints = typing.get_type_hints(config, include_extras=True)
    cases = []
    for field in dataclasses.fields(config):
        hint = hints[field.name]
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = set(typing.get_args(hint) if union else (hint,)) - {type(None)}
        if kinds and kinds <= {int, float}:
            cases.append((field.name, True))
        elif kinds == {bool}:
            cases.append((field.name, "yes"))
    return cases


CONFIGS = [
    MetaConfig,
    OnlineConfig,
    ActorCriticConfig,
    QLambdaConfig,
    StacxConfig,
    AtariConfig,
    SebulbaConfig,
]
CASES = [
    pytest.param(config, name, value, id=f"{config.__name__}.{name}")
    for config in CONFIGS
    for name, value in typed_fields(config)
]


@pytest.mark.parametrize("config,name,value", CASES)
def test_every_config_field_refuses_a_value_of_another_type(config, name, value):
    with pytest.raises(ValueError) as error:
        config(**{name: value})
    message = str(error.value)
    assert name in message and repr(value) in message and "\n" not in message, message


def test_every_typed_field_of_stacx_config_but_one_refuses_another_type():
    for name, value in typed_fields(StacxConfig):
        if name != "truncation_bootstrap":
            with pytest.raises(ValueError, match=name):
                StacxConfig(**{name: value})
