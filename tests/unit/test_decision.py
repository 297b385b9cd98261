"""The wake decision (device/listening/decision.py) on synthetic scores: each rule pinned
with the checks answering as told."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from earmark.device.listening.decision import Candidate, WakeDecision, WordRule, rule_for
from earmark.device.settings import WakeSettings, WakeWordSettings


@dataclass
class Told:
    """Checks that answer what the test says, and remember what they were asked."""

    speech_score: float = 1.0
    confirm_score: float | None = 1.0
    voice_score: float | None = None
    micro_score: float | None = 1.0
    marked_score: float | None = None
    asked: list[tuple[str, int]] = field(default_factory=list)

    def speech(self, word: str, index: int) -> float:
        self.asked.append(("speech", index))
        return self.speech_score

    def confirm(self, word: str, index: int) -> float | None:
        self.asked.append(("confirm", index))
        return self.confirm_score

    def voice(self, word: str, index: int) -> float | None:
        self.asked.append(("voice", index))
        return self.voice_score

    def micro(self, word: str, index: int) -> float | None:
        self.asked.append(("micro", index))
        return self.micro_score

    def marked(self, word: str, index: int) -> float | None:
        self.asked.append(("marked", index))
        return self.marked_score


def fired(scores: list[float], rule: WordRule, checks: Told | None = None, refractory: int = 25,
          quiet_until: int = -1) -> list[int]:
    decision = WakeDecision({"alexa": rule}, refractory, quiet_until)
    return [i for i, s in enumerate(scores) if decision.step(i, {"alexa": s}, checks or Told())]


def test_a_score_at_the_threshold_fires_once_per_rise_and_then_rests() -> None:
    scores = [0.1, 0.6, 0.9, 0.7, 0.1, 0.1, 0.8, 0.2]
    assert fired(scores, WordRule(threshold=0.5)) == [1]  # the second rise falls in the refractory period
    assert fired(scores, WordRule(threshold=0.5), refractory=3) == [1, 6]


def test_patience_wants_frames_in_a_row_and_smoothing_averages() -> None:
    spike = [0.0, 0.9, 0.1, 0.0, 0.6, 0.6, 0.0]
    assert fired(spike, WordRule(threshold=0.5, patience=2)) == [5]
    assert fired(spike, WordRule(threshold=0.55, smooth=2)) == [5]  # (0.9 + 0.1) / 2 misses; (0.6 + 0.6) / 2 holds


def test_a_score_at_the_threshold_needs_no_verifier_unless_the_rule_sets_a_veto() -> None:
    # People's voices are what openWakeWord learnt: a verifier that learnt from synthesisers
    # refused two of three real "alexa"s when it could veto them. A veto is the rule's own choice.
    rule = WordRule(threshold=0.5, confirm=0.9)
    checks = Told(confirm_score=0.0)
    assert fired([0.0, 0.0, 0.9, 0.0], rule, checks) == [2]
    assert ("confirm", 2) not in checks.asked


def test_the_veto_refuses_what_the_score_alone_admits_under_its_bar_and_nothing_else() -> None:
    # Issue 40: a sentence of people reading English that both model families heard as alexa
    # (openWakeWord 0.9, microWakeWord 0.1); the verifier, trained on people too, scored it low.
    rule = WordRule(threshold=0.5, veto=0.7)
    assert fired([0.0, 0.9, 0.0], rule, Told(confirm_score=0.6)) == []
    assert fired([0.0, 0.9, 0.0], rule, Told(confirm_score=0.7)) == [1]
    assert fired([0.0, 0.9, 0.0], rule, Told(confirm_score=None)) == [1]  # a custom model has no verifier
    assert fired([0.0, 0.9, 0.0], replace(rule, veto=0.0), Told(confirm_score=0.0)) == [1]  # bar 0: off
    # the household's own verifier may still take what the veto refused, and the checks follow
    voice = replace(rule, voice=0.5, voice_from=0.02, micro=0.2)
    assert fired([0.0, 0.9, 0.0], voice, Told(confirm_score=0.1, voice_score=0.9)) == [1]
    assert fired([0.0, 0.9, 0.0], voice, Told(confirm_score=0.1, voice_score=0.9, micro_score=0.1)) == []
    # a rise the verifier refuses at first and hears on a later frame is taken there
    later = iter([0.2, 0.9])
    checks = Told()
    checks.confirm = lambda word, index: next(later)  # type: ignore[method-assign]
    assert fired([0.0, 0.6, 0.8, 0.0], rule, checks) == [2]
    assert rule_for(WakeSettings(), WakeWordSettings("alexa", veto_check=0.0)).veto == 0.0


def test_the_word_verifier_admits_a_weak_score_from_its_own_floor_up() -> None:
    rule = WordRule(threshold=0.5, confirm=0.9, confirm_from=0.1)
    assert fired([0.0, 0.2, 0.0], rule, Told(confirm_score=0.95)) == [1]
    assert fired([0.0, 0.2, 0.0], rule, Told(confirm_score=0.85)) == []  # below its bar
    assert fired([0.0, 0.05, 0.0], rule, Told(confirm_score=0.99)) == []  # below its floor: not asked
    assert fired([0.0, 0.2, 0.0], rule, Told(confirm_score=None)) == []  # a custom model has none
    assert fired([0.0, 0.2, 0.0], replace(rule, confirm=0.0), Told(confirm_score=0.99)) == []  # bar 0: off


def test_checks_run_cheapest_first_and_only_on_a_candidate() -> None:
    rule = WordRule(threshold=0.5, speech=0.5, confirm=0.3, voice=0.5)
    checks = Told(confirm_score=0.1, voice_score=0.1)
    assert fired([0.0, 0.0, 0.3, 0.0], rule, checks) == []
    assert checks.asked == [("confirm", 2), ("voice", 2)]  # no way admitted it: Silero is not asked
    checks = Told(speech_score=0.2, voice_score=0.9)
    assert fired([0.0, 0.9, 0.0], rule, checks) == []
    assert checks.asked == [("speech", 1)]  # the score admitted it; Silero, the dearest, refused it


def test_the_second_family_refuses_what_it_does_not_hear_whichever_way_admitted_it() -> None:
    # Issue 40: openWakeWord alone woke on "Alisa is not very good at volleyball"; microWakeWord
    # did not hear alexa there. Both must hear the word, by whichever way it was admitted.
    rule = WordRule(threshold=0.5, micro=0.2, voice=0.5, voice_from=0.02, speech=0.5)
    assert fired([0.0, 0.9, 0.0], rule, Told(micro_score=0.1)) == []
    assert fired([0.0, 0.9, 0.0], rule, Told(micro_score=0.3)) == [1]
    assert fired([0.0, 0.03, 0.0], rule, Told(voice_score=0.9, micro_score=0.1)) == []
    assert fired([0.0, 0.03, 0.0], rule, Told(voice_score=0.9, micro_score=0.3)) == [1]
    assert fired([0.0, 0.9, 0.0], rule, Told(micro_score=None)) == [1]  # a word it has no model for
    assert fired([0.0, 0.9, 0.0], replace(rule, micro=0.0), Told(micro_score=0.0)) == [1]  # bar 0: off
    checks = Told(micro_score=0.1)
    fired([0.0, 0.9, 0.0], rule, checks)
    assert ("speech", 1) not in checks.asked  # refused before Silero, the dearest, is asked


def test_a_rise_the_second_family_hears_late_is_taken_on_a_later_frame() -> None:
    # The two families' peaks fall a frame or two apart: a rise refused on its first frame is
    # asked again on the next, and taken there.
    refused: list[Candidate] = []
    decision = WakeDecision({"alexa": WordRule(threshold=0.5, micro=0.5)}, 25, on_refused=refused.append)
    micro = [0.0, 0.1, 0.2, 0.9, 0.9]
    taken = [i for i, s in enumerate([0.0, 0.9, 0.9, 0.9, 0.2])
             if decision.step(i, {"alexa": s}, Told(micro_score=micro[i]))]
    assert taken == [3]
    assert [(c.index, c.failed) for c in refused] == [(1, "micro"), (2, "micro")]


def test_the_marks_refuse_a_rise_near_them_and_the_rest_of_it_and_nothing_without_marks() -> None:
    # Issue 36: a rise the household's marks refuse on one frame is not asked again on its
    # later frames (their windows hold what followed the name); the next rise is.
    rule = WordRule(threshold=0.5, marked=0.9)
    checks = Told(marked_score=0.95)
    assert fired([0.0, 0.9, 0.9, 0.9, 0.0], rule, checks) == []
    assert [a for a in checks.asked if a[0] == "marked"] == [("marked", 1)]
    assert fired([0.0, 0.9, 0.9, 0.0, 0.9], rule, Told(marked_score=0.5)) == [1]  # not sure enough
    assert fired([0.0, 0.9, 0.0], rule, Told(marked_score=None)) == [1]  # no marks learnt
    assert fired([0.0, 0.9, 0.0], replace(rule, marked=0.0), Told(marked_score=1.0)) == [1]  # bar 0: off


def test_patience_holds_back_a_spike_but_a_verifier_may_still_admit_it() -> None:
    spike = [0.0, 0.08, 0.54, 0.19, 0.0]  # a real false accept of bare openWakeWord, frame by frame
    assert fired(spike, WordRule(threshold=0.5)) == [2]
    assert fired(spike, WordRule(threshold=0.5, patience=2)) == []
    assert fired(spike, WordRule(threshold=0.5, patience=2, confirm=0.9), Told(confirm_score=0.95)) == [1]


def test_a_refused_rise_tries_every_frame_but_the_speech_check_only_a_few_times() -> None:
    # A rise's first frames hold only the start of the word: the verifiers look again at each
    # frame (cheap), while Silero runs on at most `attempts` frames of one rise.
    refused: list[Candidate] = []
    decision = WakeDecision({"alexa": WordRule(threshold=0.5, confirm=0.3, attempts=2)}, 25, on_refused=refused.append)
    for i, score in enumerate([0.2, 0.2, 0.2, 0.2, 0.01, 0.2]):
        assert decision.step(i, {"alexa": score}, Told(confirm_score=0.0)) is None
    assert [(c.index, c.failed) for c in refused] == [(0, "admit"), (1, "admit"), (2, "admit"), (3, "admit"),
                                                      (5, "admit")]
    refused.clear()
    decision = WakeDecision({"alexa": WordRule(threshold=0.5, speech=0.5, attempts=2)}, 25, on_refused=refused.append)
    for i, score in enumerate([0.9, 0.9, 0.9, 0.9, 0.1, 0.9]):
        assert decision.step(i, {"alexa": score}, Told(speech_score=0.0)) is None
    assert [(c.index, c.failed, c.way) for c in refused] == [(0, "speech", "score"), (1, "speech", "score"),
                                                             (5, "speech", "score")]


def test_an_enrolled_voice_admits_its_weak_scores_and_no_enrolled_voice_means_no_voice_way() -> None:
    rule = WordRule(threshold=0.5, voice=0.5, voice_from=0.02)
    assert fired([0.0, 0.03], rule, Told(voice_score=0.2)) == []
    assert fired([0.0, 0.03], rule, Told(voice_score=0.8)) == [1]
    assert fired([0.0, 0.03], rule, Told(voice_score=None)) == []
    assert fired([0.0, 0.9], rule, Told(voice_score=0.0)) == [1]  # the score alone still wakes it


def test_nothing_fires_before_quiet_until_nor_during_a_hold() -> None:
    assert fired([0.9, 0.9, 0.9, 0.0, 0.9], WordRule(threshold=0.5), quiet_until=2) == [4]
    decision = WakeDecision({"alexa": WordRule(threshold=0.5)}, 10)
    decision.hold(3, 0)
    assert [i for i in range(6) if decision.step(i, {"alexa": 0.9 if i != 3 else 0.0}, Told())] == [4]


def test_the_config_overrides_a_tuned_rule_value_by_value() -> None:
    wake = WakeSettings(words=(WakeWordSettings("alexa", threshold=0.42), WakeWordSettings("custom.onnx")))
    tuned = rule_for(WakeSettings(), WakeWordSettings("alexa"))
    assert rule_for(wake, wake.words[0]) == WordRule(**{**tuned.__dict__, "threshold": 0.42})
    assert rule_for(wake, wake.words[1]) == WordRule()  # a custom model: openWakeWord's plain threshold
    assert rule_for(WakeSettings(patience=3), wake.words[1]).patience == 3  # the old global key still works


def test_an_enrolled_voice_opens_the_voice_way_and_the_config_still_wins() -> None:
    alexa = WakeWordSettings("alexa")
    tuned, enrolled = rule_for(WakeSettings(), alexa), rule_for(WakeSettings(), alexa, enrolled=True)
    assert tuned.voice == 0.0 and enrolled.voice > 0.0
    assert enrolled.floor < tuned.floor and replace(enrolled, voice=0.0) == tuned
    assert rule_for(WakeSettings(), WakeWordSettings("alexa", voice_check=0.7), enrolled=True).voice == 0.7
    assert rule_for(WakeSettings(), WakeWordSettings("alexa", voice_check=0.7)).voice == 0.0  # nobody enrolled
    assert rule_for(WakeSettings(), WakeWordSettings("custom.onnx"), enrolled=True).voice > 0.0
