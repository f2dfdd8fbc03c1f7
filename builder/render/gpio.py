"""GPIO claims: which header pins a role's config.txt lines and `gpio:` entries use, and their clashes.

Pins are BCM GPIO numbers. The power button (`dtoverlay=gpio-shutdown`) sits on GPIO3, which
is also I2C1's SCL, so anything else on GPIO3 is a wiring conflict the board cannot resolve.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from builder.config.grammar import shown
from builder.config.model import Node
from builder.errors import InputError

log = logging.getLogger("clusterbake")

POWER_BUTTON_PIN = 3
POWER_BUTTON_OVERLAY = "gpio-shutdown"


def with_button_hold(lines: Sequence[str], hold_ms: int) -> tuple[str, ...]:
    """Every `dtoverlay=gpio-shutdown` line with `debounce=<hold_ms>`: the key is reported only once the
    button has been held that long (the overlay's `debounce` is gpio-keys' `debounce-interval`, in ms).
    The cluster file's `power_button.hold_ms` decides; a `debounce=` a profile wrote is replaced."""
    out = []
    for line in lines:
        key, _, value = line.partition("=")
        name, *params = value.split(",")
        if key.strip() == "dtoverlay" and name.strip() == POWER_BUTTON_OVERLAY:
            params = [p for p in params if p.split("=", 1)[0].strip() != "debounce"]
            line = ",".join([f"dtoverlay={POWER_BUTTON_OVERLAY}", *params, f"debounce={hold_ms}"])
        out.append(line)
    return tuple(out)

# dtparams that switch on a fixed block of pins.
DTPARAM_PINS: dict[str, tuple[int, ...]] = {
    "i2c_arm": (2, 3),
    "i2c": (2, 3),
    "i2c1": (2, 3),
    "spi": (7, 8, 9, 10, 11),
    "i2s": (18, 19, 20, 21),
    "uart0": (14, 15),       # Pi 5: UART0 on GPIO14/15 (/dev/ttyAMA0)
}

# Overlays and the pins they use when no pin parameter is given (from the overlays' README).
OVERLAY_DEFAULT_PINS: dict[str, tuple[int, ...]] = {
    "gpio-shutdown": (3,),
    "pps-gpio": (18,),
    "gpio-poweroff": (26,),
    "w1-gpio": (4,),
    "gpio-fan": (12,),
    "i2c-rtc": (2, 3),
    "i2c-gpio": (23, 24),
    "uart0": (14, 15),
    "uart0-pi5": (14, 15),
}

PIN_PARAMS = ("gpiopin", "gpio_pin", "pin", "gpio")


@dataclass(frozen=True)
class GpioClaim:
    pin: int
    what: str        # the config.txt line or the profile's description of the use
    profile: str     # the profile that claims it


def claims_of_line(line: str, profile: str) -> list[GpioClaim]:
    """The pins one config.txt line uses (none for lines that use no header pins)."""
    text = line.split("#", 1)[0].strip()
    key, _, value = text.partition("=")
    pins: tuple[int, ...] = ()
    if key == "enable_uart" and value.strip() == "1":
        pins = (14, 15)
    elif key == "dtparam":
        for param in value.split(","):
            name, _, setting = param.partition("=")
            if setting.strip() in ("on", "1", "true", "") and name.strip() in DTPARAM_PINS:
                pins += DTPARAM_PINS[name.strip()]
    elif key == "dtoverlay":
        overlay, *params = value.split(",")
        explicit = [p.partition("=")[2] for p in params if p.partition("=")[0].strip() in PIN_PARAMS]
        if explicit:
            pins = tuple(int(p) for p in explicit if p.strip().isdigit())
        else:
            pins = OVERLAY_DEFAULT_PINS.get(overlay.strip(), ())
    return [GpioClaim(pin, text, profile) for pin in pins]


def check_gpio(role: str, claims: Iterable[GpioClaim]) -> None:
    """Two uses of one pin in one image is an error, naming both and where they come from."""
    first: dict[int, GpioClaim] = {}
    for claim in claims:
        other = first.setdefault(claim.pin, claim)
        if other is claim:
            continue
        hint = "move one of them to a free GPIO or drop it"
        if claim.pin == POWER_BUTTON_PIN:
            hint = "GPIO3 (pin 5) is the power button; move the other use elsewhere (I2C needs GPIO2/3: drop it)"
        raise InputError(
            f"profiles/{role}.yaml: GPIO{claim.pin} is claimed twice: {shown(other.what)} ({other.profile}.yaml) "
            f"and {shown(claim.what)} ({claim.profile}.yaml)",
            hint=hint,
        )


def warn_pi5_power_button(claims: Sequence[GpioClaim], nodes: Sequence[Node]) -> None:
    """A Pi 5 halts on the button but only its own power button (J2) starts it again."""
    if not any(c.pin == POWER_BUTTON_PIN and "gpio-shutdown" in c.what for c in claims):
        return
    pi5 = [n.name for n in nodes if n.board == "pi5"]
    if pi5:
        log.warning("%s (Pi 5): the GPIO3 button (pin 5 to GND, pin 6) shuts the board down but cannot wake it; "
                    "press the board's own power button (J2) to start it again", ", ".join(pi5))
