"""`earmark-device`: run the device, tune wake words, list mics, fetch models, make the key.

Every error prints one line naming what to do; its exit code says what kind it was
(earmark.wire.errors): 2 fix something, 75 try again later (systemd restarts), 1 refused.
Tracebacks are bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from earmark.device.audio.source import FRAME_SECONDS, AudioSource, WavFileSource
from earmark.device.listening.models import LICENCE, fetch_models, locate_models
from earmark.device.settings import (
    BUILTIN_WAKE_WORDS,
    DeviceSettings,
    WakeWordSettings,
    default_data_dir,
    load_settings,
    validate,
)
from earmark.device.sync.identity import load_or_create_key, public_key_of
from earmark.runtime.command import confirmed, run_command, version
from earmark.runtime.config import add_flags, blame_flags, flag_values
from earmark.wire.errors import EarmarkError, TransientError

log = logging.getLogger("earmark.device")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"where the key, models, spool and config live (default: "
                             f"$EARMARK_DATA_DIR or {default_data_dir()})")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config file (default: <data-dir>/device.toml if it exists)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earmark-device",
        description="Earmark voice device: wake word, recording, signed clips, durable spool.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="listen, record after the wake word, spool signed clips")
    _common(run)
    run.add_argument("--audio-file", type=Path, help="a WAV file as the microphone; exits at its end")
    run.add_argument("--realtime", action="store_true", help="pace --audio-file like a live mic (always, with "
                                                                 "--wyoming: from Home Assistant's run-satellite on)")
    add_flags(run, DeviceSettings, ["gpio.mock", "spool.directory", "device_id", "owner_id", "recipients", "mic.device",
                                    "broker.url", "satellite.wyoming", "satellite.speaker_file"])
    run.add_argument("--no-zeroconf", dest="setting:satellite.zeroconf", action="store_const", const=False,
                     default=None, help="with --wyoming: do not announce the satellite on the network")
    run.add_argument("--wake-word", action="append", dest="wake_words",
                     help=f"{', '.join(BUILTIN_WAKE_WORDS)} or a .onnx path, at its default rule (repeatable; "
                          "default: the configured words)")
    run.add_argument("--drain-timeout", type=float, default=30.0,
                     help="with --audio-file: seconds to wait for the spool to drain at the end (default 30)")
    run.set_defaults(handler=cmd_run)

    detect = sub.add_parser("detect", help="print wake-word detections in WAV files as JSON lines")
    _common(detect)
    detect.add_argument("files", nargs="+", type=Path)
    detect.add_argument("--wake-word", action="append", dest="wake_words",
                        help=f"{', '.join(BUILTIN_WAKE_WORDS)} or a .onnx path (repeatable; "
                             "default: the configured words)")
    detect.add_argument("--threshold", type=float, help="score that counts as a detection")
    detect.set_defaults(handler=cmd_detect)

    mics = sub.add_parser("mics", help="list audio inputs")
    _common(mics)
    mics.set_defaults(handler=cmd_mics)

    models = sub.add_parser("models", help="wake-word model files")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser("fetch", help="install the model files into the data dir")
    _common(fetch)
    fetch.add_argument("--from", dest="source", type=Path,
                       help="the openwakeword 0.4.0 wheel or a folder holding the .onnx files "
                            "(default: download the wheel from PyPI)")
    fetch.set_defaults(handler=cmd_models_fetch)

    spool = sub.add_parser("spool", help="list the clips waiting in the spool, oldest first")
    _common(spool)
    add_flags(spool, DeviceSettings, ["spool.directory"])
    spool.add_argument("--json", action="store_true", help="one JSON object per clip")
    spool.set_defaults(handler=cmd_spool)

    enroll = sub.add_parser("enroll", help="print what the cloud needs to pair this device; the public key last")
    _common(enroll)
    enroll.set_defaults(handler=cmd_enroll)

    provision = sub.add_parser("provision", help="install a pairing bundle from `earmark-cloud device add`")
    _common(provision)
    provision.add_argument("bundle", type=Path)
    provision.set_defaults(handler=cmd_provision)

    reset = sub.add_parser("reset", help="before handing the device to someone else: delete its key, pairing "
                                         "and spool (says first what was never sent)")
    _common(reset)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=cmd_reset)

    keygen = sub.add_parser("keygen", help="make the device key if missing; print the public key last")
    _common(keygen)
    keygen.set_defaults(handler=cmd_keygen)

    voice = sub.add_parser("voice", help="household voices: teach a wake word how the household says it, so "
                                         "it wakes for them reliably (not a lock against other voices)")
    voice_sub = voice.add_subparsers(dest="voice_command", required=True)
    enroll_voice = voice_sub.add_parser(
        "enroll", help="teach a wake word one person's voice from 3-5 recordings of them saying it",
        description="Each --positive WAV holds the person saying the wake word once, after a second of quiet; "
                    "--negative WAVs (optional) hold the same person, or the room, saying anything else. "
                    "Enroll each member of the household under their own --name.")
    _common(enroll_voice)
    enroll_voice.add_argument("--wake-word", required=True, help=f"{', '.join(BUILTIN_WAKE_WORDS)} or a .onnx path")
    enroll_voice.add_argument("--positive", nargs="+", required=True, type=Path, help="WAVs of the wake word")
    enroll_voice.add_argument("--negative", nargs="*", default=[], type=Path, help="WAVs of anything else")
    enroll_voice.add_argument("--name", default="household", help="whose voice this is (default: household)")
    enroll_voice.set_defaults(handler=cmd_voice_enroll)
    list_voices = voice_sub.add_parser("list", help="the enrolled voices and the marks learnt, per wake word")
    _common(list_voices)
    list_voices.add_argument("--json", action="store_true", help="a JSON array")
    list_voices.set_defaults(handler=cmd_voice_list)
    remove_voice = voice_sub.add_parser("remove", help="forget one person's voice for a wake word (or everyone's)")
    _common(remove_voice)
    remove_voice.add_argument("--wake-word", required=True)
    remove_voice.add_argument("--name", help="whose voice (default: every voice for the word)")
    remove_voice.set_defaults(handler=cmd_voice_remove)
    not_meant = voice_sub.add_parser(
        "not-meant", help="teach a wake word that these recordings are not it (false wakes, a name, an advert)",
        description="Each WAV is a false wake as the device recorded it, or any recording of what should not "
                    "wake it. The device keeps the wake model's features of it (never the audio) and refuses what "
                    "sounds nearer to them than to the wake word. `run` and `detect` decide with them.")
    _common(not_meant)
    not_meant.add_argument("files", nargs="*", type=Path, metavar="FILE.wav")
    not_meant.add_argument("--clip", nargs="+", default=[], metavar="ID",
                           help="recorded clips by id (`spool`, or the portal): the device learns from what it kept "
                                "of each one's wake word")
    not_meant.add_argument("--wake-word", help="the word it should not wake (default: each configured word that "
                                               "hears something in the recording)")
    not_meant.set_defaults(handler=cmd_voice_not_meant)
    forget_marks = voice_sub.add_parser("forget-marks", help="undo `not-meant`: forget the marks of a wake word "
                                                             "(of every word without --wake-word)")
    _common(forget_marks)
    forget_marks.add_argument("--wake-word")
    forget_marks.set_defaults(handler=cmd_voice_forget_marks)
    return parser


def _settings(args: argparse.Namespace) -> DeviceSettings:
    """The settings, with the flags this command was given (generated from the settings'
    own fields: runtime/config.py)."""
    config = args.config
    if config is None:
        default = (args.data_dir or default_data_dir()) / "device.toml"
        config = default if default.is_file() else None
    flags = flag_values(args)
    if getattr(args, "wake_words", None):
        flags["wake.words"] = tuple(WakeWordSettings(str(name)) for name in args.wake_words)
    with blame_flags(args, {"wake.words": ("--wake-word", getattr(args, "wake_words", None))}):
        return load_settings(config, args.data_dir, flags)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    from earmark.device.assembly import assemble

    s = _settings(args)
    s.require_identity()
    source: AudioSource
    if args.audio_file:  # a satellite hears it as a live mic: at its pace
        source = WavFileSource(args.audio_file, channel=s.mic.channel,
                               realtime=args.realtime or bool(s.satellite.wyoming))
    else:
        from earmark.device.audio.microphone import Microphone

        source = Microphone(s.mic.device, s.mic.channel, s.mic.rate)
    stop = _stop_on_signals()
    with assemble(s, source, stop=stop) as device:
        if device.satellite is not None and args.audio_file:
            log.info("waiting for Home Assistant to run the satellite before reading %s", args.audio_file)
            device.satellite.wait_running(stop)
        stats = device.run()
        drained = device.wait_drained(args.drain_timeout) if args.audio_file else True
        rejected = device.publisher.rejected if device.publisher is not None else 0
    waiting = len(device.spool.clips())
    print(f"{len(stats.clips)} clip(s) recorded from {stats.frames * FRAME_SECONDS:.1f} s of audio; "
          f"{waiting} clip(s) waiting in {device.spool.directory}")
    if stats.refused:
        raise ClipsNotKept(f"{stats.refused} clip(s) were refused because the spool was full")
    if not drained:
        raise ClipsStillWaiting(f"{waiting} clip(s) still waiting for the cloud after {args.drain_timeout:.0f} s "
                                "(they are sent when it answers)")
    if rejected:
        raise ClipsNotKept(f"{rejected} clip(s) were rejected by the cloud; they are kept in "
                           f"{device.spool.rejected_dir} with the reason")
    return 0


class ClipsStillWaiting(TransientError):
    """`run --audio-file` ended with clips the cloud has not received yet: it may come back."""


class ClipsNotKept(EarmarkError):
    """Clips were refused (spool full) or rejected by the cloud: the answer was no."""


def cmd_detect(args: argparse.Namespace) -> int:
    from earmark.device.listening.learnt import learnt
    from earmark.device.listening.wake import WakeDetector

    s = _settings(args)
    if args.threshold is not None:
        s = replace(s, wake=replace(s.wake, words=tuple(replace(w, threshold=args.threshold) for w in s.wake.words)))
        with blame_flags(args, {"wake.words": ("--threshold", [args.threshold] * len(s.wake.words))}):
            validate(s)  # flags are checked like the config file
    wake = s.wake
    models = locate_models(s.models_dir, [w.name for w in wake.words])
    household = learnt(Path(s.data_dir), list(models.wake_words))
    sources = [WavFileSource(path) for path in args.files]  # fail before any output
    logging.getLogger("earmark.device.listening.wake").setLevel(logging.WARNING)  # each detection: its JSON line
    for path, source in zip(args.files, sources, strict=True):
        detector = WakeDetector(wake, models, household)
        heard = 0
        source.start()
        while (frame := source.read()) is not None:
            hit = detector.process(frame)
            if hit is not None:
                heard += 1
                t = round((hit.frame_index + 1) * FRAME_SECONDS, 2)
                print(json.dumps({"file": str(path), "t": t, "wake_word": hit.wake_word,
                                  "score": hit.score}), flush=True)
        source.stop()
        if not heard:  # on stderr: standard output stays JSON lines
            print(f"{path}: no wake word heard ({', '.join(w.name for w in wake.words)})", file=sys.stderr)
    return 0


def cmd_mics(args: argparse.Namespace) -> int:
    from earmark.device.audio.microphone import list_mics

    mics = list_mics()
    if not mics:
        print("no audio inputs found", file=sys.stderr)
        return 1
    print(f"{'index':>5}  {'channels':>8}  {'rate':>6}  name")
    for m in mics:
        print(f"{m.index:>5}  {m.channels:>8}  {m.default_rate:>6}  {m.name}")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    s = _settings(args)
    names = fetch_models(s.models_dir, args.source)
    print(f"{len(names)} model files verified in {s.models_dir}")
    print(LICENCE)
    return 0


def cmd_spool(args: argparse.Namespace) -> int:
    from earmark.device.sync.spool import Spool
    from earmark.wire.envelope import EnvelopeError, decode_envelope

    s = _settings(args)
    key = load_or_create_key(s.key_path)[0].public_key() if s.key_path.exists() else None
    clips = Spool(s.spool_dir, s.spool.max_bytes).clips()
    for clip in clips:
        try:
            env = decode_envelope(clip.read())
        except EnvelopeError as exc:
            print(f"{clip.path.name}: unreadable envelope ({exc})")
            continue
        h = env.header
        signed = "unchecked" if key is None else ("valid" if env.verify(key) else "INVALID")
        row = {"clip_id": h.clip_id, "captured_at": h.captured_at, "duration_s": h.duration_ms / 1000,
               "trigger": h.trigger, "wake_word": h.wake_word, "wake_score": h.wake_score,
               "device_id": h.device_id, "owner_id": h.owner_id, "bytes": clip.path.stat().st_size,
               "signature": signed}
        if args.json:
            print(json.dumps(row))
        else:
            what = f"{h.wake_word} ({h.wake_score:.2f})" if h.wake_word else "talk button"
            print(f"{h.clip_id}  {h.captured_at}  {h.duration_ms / 1000:5.1f} s  {what:<18} "
                  f"owner {h.owner_id}  signature {signed}")
    if not args.json:
        print(f"{len(clips)} clip(s) waiting in {s.spool_dir}")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    s = _settings(args)
    key = load_or_create_key(s.key_path)[0]
    if s.device_id:
        print(f"device {s.device_id} (owner {s.owner_id or 'unset'})")
    print("pair it with: earmark-cloud device add --owner OWNER_ID --public-key KEY --bundle-out bundle.json")
    print(public_key_of(key))
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from earmark.device.sync.pairing import install_bundle

    s = _settings(args)
    written = install_bundle(Path(s.data_dir), args.bundle)
    print(f"paired as {written.device_id} for owner {written.owner_id}, broker {written.broker_url}")
    print(f"wrote {s.pairing_path}; delete {args.bundle}: it holds this device's broker password")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from earmark.device.sync.pairing import reset_identity
    from earmark.device.sync.spool import Spool

    s = _settings(args)
    unsent = Spool(s.spool_dir, s.spool.max_bytes).clips() if s.spool_dir.exists() else []
    print(f"{len(unsent)} clip(s) in {s.spool_dir} were never sent to the cloud; they will be deleted"
          if unsent else "no clip waits to be sent")
    if not confirmed(args.yes, "reset cannot be undone", "Delete this device's key, pairing and spool?", "reset"):
        return 1
    removed = reset_identity(Path(s.data_dir), s.spool_dir)
    print(f"deleted {len(removed)} item(s); on the cloud, revoke the old device id, then enroll this device "
          "again (`earmark-device enroll`) for its new owner")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    s = _settings(args)
    key, created = load_or_create_key(s.key_path)
    print(f"device key {'created' if created else 'already present'} at {s.key_path}")
    print(public_key_of(key))
    return 0


def cmd_voice_enroll(args: argparse.Namespace) -> int:
    from earmark.device.listening.enrollment import enroll
    from earmark.device.settings import wake_word_id

    s = _settings(args)
    word = wake_word_id(args.wake_word)
    models = locate_models(s.models_dir, [args.wake_word])
    enrolled, best = enroll(Path(s.data_dir), models, word, args.positive, args.negative, args.name)
    print(f"enrolled {args.name} for {word} from {len(best)} samples (wake scores "
          f"{', '.join(f'{b:.2f}' for b in best)}); enrolled voices for {word}: {', '.join(sorted(enrolled.members))}")
    print(f"{word} now listens for how the enrolled voices say it (and still refuses background talk); it is not "
          f"a lock against other voices. `earmark-device voice remove --wake-word {word}` undoes it")
    return 0


def cmd_voice_list(args: argparse.Namespace) -> int:
    from earmark.device.listening.marks import counts
    from earmark.device.listening.voices import enrolled_words, load

    s = _settings(args)
    rows: list[dict[str, object]] = []
    for word in enrolled_words(Path(s.data_dir)):
        enrolled = load(Path(s.data_dir), word)
        for name, member in sorted(enrolled.members.items()) if enrolled else []:
            rows.append({"wake_word": word, "name": name, "samples": member.samples,
                         "enrolled_at": member.created})
    marked = counts(Path(s.data_dir))
    if args.json:
        print(json.dumps(rows + [{"wake_word": word, "marks": n} for word, n in marked.items()]))
        return 0
    if not rows:
        print("no voices enrolled: every voice wakes the device")
    for row in rows:
        print(f"{row['wake_word']:<12} {row['name']:<20} {row['samples']} samples, enrolled {row['enrolled_at']}")
    for word, n in marked.items():
        print(f"{word:<12} {n} recording(s) marked not meant for it")
    return 0


def cmd_voice_not_meant(args: argparse.Namespace) -> int:
    from earmark.device.listening.marks import MarkError, mark_recordings
    from earmark.device.settings import wake_word_id

    s = _settings(args)
    if args.clip:
        return _not_meant_clips(s, args.clip)
    if not args.files:
        raise MarkError("name the recordings (FILE.wav …) or the recorded clips (--clip ID …) that were not meant")
    names = [args.wake_word] if args.wake_word else [w.name for w in s.wake.words]
    models = locate_models(s.models_dir, names)
    taught = []
    for name in names:
        word = wake_word_id(name)
        try:
            marks = mark_recordings(Path(s.data_dir), models, word, args.files)
        except MarkError:
            if args.wake_word or len(names) == 1:
                raise
            continue  # another configured word may hear it
        taught.append(word)
        print(f"{word}: learnt {len(args.files)} recording(s) as not meant; {len(marks.marks)} mark(s) in all. "
              f"`earmark-device voice forget-marks --wake-word {word}` undoes it")
    if not taught:
        raise MarkError(f"no configured wake word ({', '.join(names)}) hears anything in these recordings: "
                        "nothing to learn")
    return 0


def _not_meant_clips(s: DeviceSettings, clip_ids: list[str]) -> int:
    from earmark.device.listening.marks import MarkError, mark_clips

    learnt, refused = mark_clips(Path(s.data_dir), clip_ids, s.marks.keep_days)
    for word, marks in learnt.items():
        print(f"{word}: learnt from the recorded clip(s) as not meant; {len(marks.marks)} mark(s) in all")
    if refused and not learnt:
        raise MarkError("nothing learnt: " + "; ".join(refused))
    for line in refused:
        print(f"not learnt: {line}", file=sys.stderr)
    return 0


def cmd_voice_forget_marks(args: argparse.Namespace) -> int:
    from earmark.device.listening.marks import forget
    from earmark.device.settings import wake_word_id

    s = _settings(args)
    gone = forget(Path(s.data_dir), wake_word_id(args.wake_word) if args.wake_word else None)
    print(f"forgot the marks of {', '.join(gone)}" if gone else "no marks to forget")
    return 0


def cmd_voice_remove(args: argparse.Namespace) -> int:
    from earmark.device.listening.enrollment import remove
    from earmark.device.settings import wake_word_id

    s = _settings(args)
    word = wake_word_id(args.wake_word)
    removed = remove(Path(s.data_dir), word, args.name)
    print(f"removed {', '.join(removed)} for {word}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("earmark-device", build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
