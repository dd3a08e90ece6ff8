"""The one validator of mode-like fields: Literal, Optional[Literal] and tuple-of-Literal fields, error wording."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from choices import ChoiceError, check_choice, check_fields, options

Colour = Literal["red", "green"]


@dataclass
class Paint:
    colour: Colour = "red"
    trim: Colour | None = None
    layers: tuple[Colour, ...] = ("red",)
    name: str = "any text"

    def __post_init__(self) -> None:
        check_fields(self)


def test_accepted_values_come_from_the_literal_in_order():
    assert options(Colour) == ("red", "green")
    with pytest.raises(TypeError, match="is not a Literal type"):
        options(str)


def test_every_literal_field_is_checked_and_free_fields_are_not():
    Paint(colour="green", trim=None, layers=("green", "red"), name="whatever")
    with pytest.raises(ChoiceError, match=r"^Paint\.colour must be one of red, green, got 'blue'$"):
        Paint(colour="blue")
    with pytest.raises(ChoiceError, match=r"^Paint\.trim must be one of red, green, got 'teal'$"):
        Paint(trim="teal")
    with pytest.raises(ChoiceError, match=r"^Paint\.layers\[1\] must be one of red, green, got 'Red'$") as error:
        Paint(layers=("red", "Red"))
    assert (error.value.value, error.value.accepted) == ("Red", ("red", "green"))


def test_a_value_arriving_per_request_uses_the_same_wording():
    assert check_choice("green", Colour, "colour") == "green"
    with pytest.raises(ValueError, match=r"^colour must be one of red, green, got None$"):
        check_choice(None, Colour, "colour")


def test_a_choice_error_survives_pickling_as_itself():
    import pickle

    error = ChoiceError("music", "loud", ("auto", "always", "never"))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ChoiceError and str(again) == str(error) and again.accepted == error.accepted
