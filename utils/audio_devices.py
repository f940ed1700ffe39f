"""Sound-card helpers of ``cantor vc`` on top of sounddevice (PortAudio): the device table, a device
by name or index, the sample rate both devices accept, and PortAudio's errors explained in one line
each (wrong sample rate and host-API trouble are the commonest realtime complaints of the peer
tools). Functions take the ``sounddevice`` module as an argument (imported by the caller), so they
can be tested without a sound card."""
from __future__ import annotations

from typing import Sequence

# Rates tried after the model's own, before giving up: what USB and onboard devices run at.
COMMON_RATES = (48000, 44100)


class AudioDeviceError(RuntimeError):
    """A device that cannot be found, or a stream that cannot be opened; the message says why and
    what to try."""


def _host_api(sd, device: dict) -> str:
    return sd.query_hostapis(device["hostapi"])["name"]


def device_table(sd) -> str:
    """Every PortAudio device, one line each: index, name, host API, input/output channels,
    default rate; ``>`` marks the default input, ``<`` the default output."""
    devices = sd.query_devices()
    default_in, default_out = sd.default.device
    lines = [" idx  name (host API): inputs/outputs, default rate"]
    for i, d in enumerate(devices):
        mark = (">" if i == default_in else " ") + ("<" if i == default_out else " ")
        lines.append(f"{mark}{i:3d}  {d['name']} ({_host_api(sd, d)}): {d['max_input_channels']} in"
                     f"/{d['max_output_channels']} out, {d['default_samplerate']:g} Hz")
    if not devices:
        lines.append("  (none: PortAudio sees no sound card here)")
    return "\n".join(lines)


def resolve_device(devices: Sequence[dict], spec: str | None, kind: str) -> int | None:
    """The index of the ``kind`` ("input" or "output") device named by ``spec``: an index, or a
    case-insensitive part of its name (exact names win over partial ones); None for the default.

    Raises: AudioDeviceError when no device of that kind matches or several do (listing them).
    """
    if spec is None:
        return None
    key = f"max_{kind}_channels"
    usable = [(i, d) for i, d in enumerate(devices) if d[key] > 0]
    if spec.strip().isdigit():
        index = int(spec)
        if any(i == index for i, _ in usable):
            return index
        raise AudioDeviceError(f"no {kind} device with index {index}; {kind} devices: "
                               + ", ".join(f"{i} {d['name']!r}" for i, d in usable))
    exact = [i for i, d in usable if d["name"].lower() == spec.lower()]
    partial = [i for i, d in usable if spec.lower() in d["name"].lower()]
    found = exact or partial
    if len(found) == 1:
        return found[0]
    if not found:
        raise AudioDeviceError(f"no {kind} device named like {spec!r}; {kind} devices: "
                               + (", ".join(f"{i} {d['name']!r}" for i, d in usable) or "none"))
    raise AudioDeviceError(f"{spec!r} matches several {kind} devices: "
                           + ", ".join(f"{i} {devices[i]['name']!r}" for i in found)
                           + "; give the index")


def negotiate_rate(sd, input_device: int | None, output_device: int | None, model_rate: int,
                   channels: tuple[int, int] = (1, 1)) -> int:
    """The first rate both devices accept: the model's own, then each device's default rate, then
    :data:`COMMON_RATES` (a rate other than the model's is resampled by the caller).

    Raises: AudioDeviceError listing the rates tried and what PortAudio said about the model's.
    """
    info_in = sd.query_devices(input_device, "input")
    info_out = sd.query_devices(output_device, "output")
    candidates = [model_rate, int(info_in["default_samplerate"]), int(info_out["default_samplerate"]),
                  *COMMON_RATES]
    first_error = None
    for rate in dict.fromkeys(candidates):
        try:
            sd.check_input_settings(device=input_device, samplerate=rate, channels=channels[0],
                                    dtype="float32")
            sd.check_output_settings(device=output_device, samplerate=rate, channels=channels[1],
                                     dtype="float32")
            return rate
        except sd.PortAudioError as e:
            first_error = first_error or e
    raise AudioDeviceError(explain(str(first_error), info_in["name"], info_out["name"])
                           + f" (tried {', '.join(str(r) for r in dict.fromkeys(candidates))} Hz)")


def explain(message: str, input_name: str = "the input", output_name: str = "the output") -> str:
    """One line for a PortAudio error ``message``: what it means here and what to try."""
    text = message.lower()
    if "invalid sample rate" in text:
        why = (f"{input_name!r} / {output_name!r} cannot run at the rates tried; choose a device "
               "that resamples (on Linux the 'pulse', 'pipewire' or 'default' device; on Windows a "
               "non-exclusive WASAPI or MME device), or set the device's rate in the sound settings")
    elif "illegal combination" in text or "host api" in text:
        why = (f"{input_name!r} and {output_name!r} belong to different host APIs (e.g. MME and "
               "WASAPI, or ALSA and JACK); pick both from the same host API (--list-devices)")
    elif "unavailable" in text or "busy" in text or "unanticipated host error" in text:
        why = (f"{input_name!r} or {output_name!r} is busy or gone (another program may hold it "
               "exclusively, or it was unplugged); close that program or pick another device")
    elif "invalid number of channels" in text:
        why = f"{input_name!r} has no input or {output_name!r} no output channel; see --list-devices"
    elif "querying device -1" in text or "no default" in text:
        why = ("no default sound device: PortAudio sees no sound card here; name one with "
               "--input-device/--output-device (--list-devices), or convert a file with "
               "--input FILE --output FILE")
    else:
        why = "see --list-devices, and try another device or host API"
    return f"PortAudio: {message.strip()}: {why}"
