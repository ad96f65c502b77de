"""The session's U-Net trainer: when a round is due, a trainer process, and whether its model is kept.

After 5, 10, 20, 40 ... labels, or when the tablet has been idle with enough new labels, the
session freezes a *round*: the pinned label masks and a ``request.json`` in a folder of the app's
own data (:mod:`labelassist.training.request`). A separate process (``labelassist _train-round
FOLDER``, at idle priority on one thread) trains or fine-tunes the U-Net there, exports it to
ONNX and scores it on the newest labels it did not train on. The UI process never imports torch
and the trainer never opens the project's database: the folder is all they share.

When the trainer's ``result.json`` arrives, the session scores the pre-label it uses now on the
very same held-out labels and installs the new model only when it matches them better
(:func:`should_install`). Installing is one atomic switch of ``models/current.json``
(:mod:`labelassist.models.history`), so a crash or power cut at any moment leaves the old model
or the new one, never a mix; roll back is the same switch back to the earlier files.

Each round ends as a ``training_round`` event (installed, kept the current model, failed, stopped),
which the next session reads back to know where the schedule stands.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from labelassist.errors import LabelAssistError
from labelassist.project import Project
from labelassist.session.trainer_watch import kill, round_budget, watch_trainer
from labelassist.session.training_round import TrainingRound, incumbent_scores, tablet_card
from labelassist.session.training_rules import (
    FIRST_ROUND_AT,
    MAX_HELD_OUT,
    MIN_GAP_S,
    Decision,
    current_model_entry,
    held_out_count,
    round_due,
    should_install,
    trained_on,
    unet_fp32_path,
)
from labelassist.store import DamagedLabelError

log = logging.getLogger(__name__)

#: A round trains on at most this many labels (the newest).
MAX_TRAIN_LABELS = 100
#: Seconds of training a round is given (the child plans its steps from it).
BUDGET_S = 90.0
#: Failed rounds in a row after which the session stops training (the Admin screen says why).
MAX_FAILURES = 2
#: Round folders kept for their logs.
KEEP_ROUNDS = 2
#: Another project's round folders untouched this many days are removed (moved or deleted projects).
STALE_DAYS = 30


class SessionTrainer:
    """The U-Net trainer of one session (see the module's notes).

    Parameters
    ----------
    project : Project
    author : str or None
        Recorded with the events.
    assistance : Assistance
        The session's pre-label choice: what a new model is compared with, invalidated on install.
    enabled : bool
        False for read-only tools: no round starts by itself (``start_round(force=True)`` still runs one).
    on_install : callable, optional
        Called after a model was installed or rolled back (the session invalidates what the old
        model made).

    Attributes
    ----------
    listeners : list of callable
        ``listener(event)`` on a round's start, progress and end, on the trainer's thread.
    progress : dict or None
        The trainer's last progress line (``stage``, ``step``, ``steps``).
    last_outcome : dict or None
        The details of the last round's ``training_round`` event.
    """

    def __init__(self, project: Project, author: str | None, assistance, enabled: bool = True,
                 on_install: Callable[[], None] | None = None, prompt_models=None):
        from labelassist.training.request import trainer_available

        self.project, self.store, self.author, self.assistance = project, project.store, author, assistance
        self.available = trainer_available()
        self.enabled = bool(enabled)
        self.on_install = on_install
        self.prompt_models = prompt_models  # session/prompt_model.PromptModels: tap-to-segment learns too
        self.listeners: list[Callable[[dict], None]] = []
        self.progress: dict | None = None
        self.failures = 0
        self.failed: str | None = None
        self._round: TrainingRound | None = None
        self._latest: TrainingRound | None = None  # the last round started (wait() answers it when it has ended)
        self._lock = threading.Lock()
        self._closed = False
        past = self.rounds()
        started = self.store.events("training_started", newest=1)
        started = dict(started[0].get("details") or {}) if started else {}
        if int(started.get("round", 0)) > max([int(e.get("round", 0)) for e in past] + [0]):
            # That round never ended: the app was stopped or the power went during training.
            interrupted = dict(started, status="failed", reason="the app stopped during training")
            self.store.defer_event("training_round", actor=author, **interrupted)
            past.insert(0, interrupted)
        self.last_outcome: dict | None = past[0] if past else None
        self._last_number = max([int(e.get("round", 0)) for e in past] + [0])
        self._last_labelled = int(past[0].get("labelled", 0)) if past else 0
        self._last_started_at = 0.0
        self._labelled = len(self.store.labelled_ids())

    # -- what the screens show ---------------------------------------------------------------
    @property
    def paused(self) -> bool:
        """``prelabel.train`` is off (Admin's Pause)."""
        return not bool(self.project.settings["prelabel"].get("train", True))

    @property
    def running(self) -> bool:
        return self._round is not None

    @property
    def pid(self) -> int | None:
        """The trainer process's id while a round runs (for the log and the crash tests)."""
        round_ = self._round
        return None if round_ is None or round_.process is None else round_.process.pid

    @property
    def state(self) -> str:
        """``unavailable``, ``running``, ``paused``, ``off`` (a session that starts no round by itself:
        the CLI, tests), ``failed`` or ``idle``."""
        if not self.available:
            return "unavailable"
        if self.running:
            return "running"
        if self.paused:
            return "paused"
        if not self.enabled:
            return "off"
        if self.failed:
            return "failed"
        return "idle"

    def words(self) -> str:
        """The trainer's state in plain words, for the Admin screen."""
        state = self.state
        if state == "unavailable":
            return "Training is not installed on this tablet"
        if state == "running":
            p = self.progress or {}
            if p.get("stage") == "train" and p.get("steps"):
                return f"Training: step {p.get('step', 0)} of {p['steps']}"
            stage = {"read": "reading your labels", "export": "saving the model", "int8": "making it faster",
                     "score": "comparing it with your newest labels",
                     "prompt": "teaching tap-to-segment your objects"}.get(p.get("stage"), "starting")
            return f"Training: {stage}"
        if state == "paused":
            return "Training is paused"
        if state == "off":
            return "Training runs while the kiosk labels this project"
        if state == "failed":
            return f"Training has stopped: {self.failed}"
        last = self.last_outcome
        if not last:
            return (f"Training starts after {FIRST_ROUND_AT} labels" if self._labelled < FIRST_ROUND_AT
                    else "Training starts when the tablet is idle")
        return f"Last training, on {last.get('labelled', '?')} labels: {last.get('reason', '')}"

    def rounds(self) -> list[dict[str, Any]]:
        """Past rounds (the details of their ``training_round`` events), newest first."""
        out = []
        for event in reversed(self.store.events("training_round", newest=50)):
            details = dict(event.get("details") or {})
            details.setdefault("at", event.get("at"))
            out.append(details)
        return out

    # -- when a round starts ------------------------------------------------------------------
    def _may_start(self) -> bool:
        return (self.available and self.enabled and not self.paused and not self.failed and not self._closed
                and self._round is None)

    def after_save(self, labelled: int) -> None:
        """A label was saved (on the store's thread): start a round when one is due."""
        self._labelled = labelled
        if self._may_start() and round_due(labelled, self._last_labelled, 0.0):  # a milestone passed
            self.start_round()

    def idle(self, seconds: float) -> None:
        """The canvas has had no input for ``seconds`` (on the store's thread): an idle round when due."""
        if self._may_start() and round_due(self._labelled, self._last_labelled, seconds) \
                and time.monotonic() - self._last_started_at >= MIN_GAP_S:
            self.start_round()

    def start_round(self, force: bool = False, budget_s: float = BUDGET_S, prompt: bool | None = None) -> bool:
        """Freeze the labels into a round folder and start the trainer (on the store's thread).

        ``force`` runs a round now whatever the schedule and the Pause (``labelassist learn``).
        ``prompt``: adapt tap-to-segment's decoder too (None: when it has been used, or ``force``).
        Returns False when none started (one is running, training is not installed, too few
        labels).
        """
        if not self.available or self._closed or self._round is not None:
            return False
        if not force and not self._may_start():
            return False
        try:
            round_ = self.prepare_round(budget_s, measure=force, prompt=prompt)
        except Exception as exc:  # noqa: BLE001 - a full disk or an odd model never fails the save
            log.exception("training round could not be prepared")
            self._failed_start(f"the training files could not be written ({type(exc).__name__})")
            return False
        if round_ is None:
            return False
        from labelassist.training.request import trainer_command

        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        flags = 0
        if os.name == "nt":  # idle priority and no console window for the child
            flags = 0x00000040 | 0x08000000  # IDLE_PRIORITY_CLASS | CREATE_NO_WINDOW
        # Started from the store's thread, which lives as long as the session: Linux's parent-death
        # signal (the child's own guard) fires when the *thread* that started it ends.
        try:
            with open(round_.folder / "trainer.log", "ab") as stderr:
                round_.process = subprocess.Popen(trainer_command(round_.folder), stdin=subprocess.PIPE,
                                                  stdout=subprocess.PIPE, stderr=stderr, env=env,
                                                  creationflags=flags)
        except OSError as exc:
            log.error("the trainer could not start: %r", exc)
            self._finish(round_, {"status": "failed", "reason": "the trainer could not start (the log says why)"})
            return False
        self._round = round_
        self._say({"stage": "started", "round": round_.number})
        threading.Thread(target=self._watch, args=(round_,), name="trainer-watch", daemon=True).start()
        return True

    def _failed_start(self, reason: str) -> None:
        # The round counts as tried (the schedule moves on) and as failed (two in a row stop training).
        self._last_labelled = self._labelled
        self._last_started_at = time.monotonic()
        self._last_number += 1
        self._record_failure(reason)
        details = {"status": "failed", "reason": reason, "round": self._last_number, "labelled": self._labelled}
        self.last_outcome = details
        self.store.defer_event("training_round", actor=self.author, **details)

    def _record_failure(self, reason: str) -> None:
        self.failures += 1
        log.warning("training round failed: %s", reason)
        if self.failures >= MAX_FAILURES:
            self.failed = reason

    def prepare_round(self, budget_s: float = BUDGET_S, measure: bool = False,
                      prompt: bool | None = None) -> TrainingRound | None:
        """The next round's folder, written: the pinned masks and ``request.json`` (store reads: the
        store's thread). None when there are too few labels. :meth:`start_round` then starts the
        trainer on it; tests hand a prepared round a result of their own (:meth:`consider`).
        ``measure``: measure the pre-label in use now when it is not known (a round asked for by hand);
        otherwise no round is prepared until it is (a save never waits for a measurement).
        ``prompt``: see :meth:`start_round`."""
        from labelassist.training.request import round_folder

        frozen = self._freeze(measure)
        if frozen is None:
            return None
        request, masks, held, trained, incumbent, base, current = frozen
        request.budget_s = float(budget_s)
        if self.prompt_models is not None and prompt is not False:
            try:
                request.prompt = self.prompt_models.round_config(budget_s, force=measure or bool(prompt))
            except Exception:  # noqa: BLE001 - the U-Net still trains; tap-to-segment waits for the next round
                log.exception("tap-to-segment will not learn in this round")
        folder = round_folder(Path(self.project.folder), request.round)
        self._clean_rounds(folder.parent)
        shutil.rmtree(folder, ignore_errors=True)
        request.write(folder, masks)
        self._last_number = request.round
        self._last_labelled = self._labelled
        self._last_started_at = time.monotonic()
        round_ = TrainingRound(request.round, folder, self._labelled, held, trained, incumbent, base,
                               time.monotonic(), outcome=Future(), model_id=None if current is None else current.id,
                               prompt=request.prompt)
        self._latest = round_
        try:
            self.store.log_event("training_started", actor=self.author, round=request.round,
                                 labelled=self._labelled, trained_on=len(trained), held_out=len(held),
                                 recipe=request.recipe, base=base)
        except LabelAssistError as exc:  # the record is a courtesy; the round itself changes nothing stored
            log.warning("the start of training round %d was not logged: %s", request.round, exc)
        return round_

    def _freeze(self, measure: bool):
        """The round's request and masks from the newest labels (store reads: the store's thread)."""
        from labelassist.training.request import RoundItem, RoundRequest

        choice = self._incumbent(measure)
        if choice is None:
            return None
        pairs = sorted(self.store.latest_labels(), key=lambda p: -p[1].id)  # newest first
        current = current_model_entry(self.project)
        trained_before = trained_on(current, self.project.name)
        # Nor is tap-to-segment's adapted decoder scored on what it learned from.
        prompt_trained = trained_on(self.prompt_models.boxes.prompt_entry(), self.project.name) \
            if self.prompt_models is not None else trained_on(None)
        scored = None
        if choice.method == "learned":  # its record is its score: only labels it was scored on compare
            learner = self.assistance.learner
            scored = {s.sample for s in learner.scores(64)} if learner is not None else set()
        items, masks, previous = [], {}, {}
        for sample, label in pairs:
            if len(items) >= MAX_TRAIN_LABELS + MAX_HELD_OUT:
                break
            path = self.project.resolve(sample.path)
            try:
                mask = label.mask
                stat = path.stat()
            except (DamagedLabelError, OSError) as exc:  # a damaged label or a gone image trains nothing
                log.info("left out of training: %s: %s", sample.name, exc)
                continue
            if self.project.image_changed(sample):
                continue
            masks[label.id] = mask
            items.append((sample, label.id, RoundItem(sample_id=sample.id, label_id=label.id, name=sample.name,
                                                      path=str(path), page=int(sample.page), size=stat.st_size,
                                                      mtime_ns=stat.st_mtime_ns,
                                                      shape=(sample.height, sample.width))))
        k = held_out_count(len(items))
        if len(items) < k + 2:
            return None
        # The newest labels the current model did not train on are held out; the rest train.
        held = [it for it in items if it[0] not in trained_before and it[0] not in prompt_trained
                and (scored is None or it[0].name in scored)][:k]
        if len(held) < 2:
            return None
        held_ids = {it[1] for it in held}
        train = [it for it in items if it[1] not in held_ids][:MAX_TRAIN_LABELS]
        for sample, label_id, _ in held:
            previous[label_id] = self.assistance.previous_mask(sample)
        incumbent = choice.method
        base_name, base = self._base(choice)
        request = RoundRequest(round=self._last_number + 1, project=Path(self.project.folder).name,
                               train=[it[2] for it in train], held_out=[it[2] for it in held], base=base,
                               recipe="fine-tune" if base else "from-scratch", budget_s=BUDGET_S, threads=1,
                               seed=self._last_number + 1)
        held_state = [(s, lid, masks[lid], previous[lid]) for s, lid, _ in held]
        trained_state = [(s.id, lid, s.name) for s, lid, _ in train]
        return request, masks, held_state, trained_state, incumbent, base_name, current

    def _incumbent(self, measure: bool):
        """The pre-label choice in use now, or None while it is being measured (then no round starts:
        the save never waits for a measurement; the next save or idle tick starts it)."""
        if self.project.settings["prelabel"]["method"] != "auto":  # a setting: nothing to measure
            return self.assistance.prelabel_choice(wait=False)
        choice = self.assistance.current_choice()
        if choice is None or not choice.labelled_at:
            self.assistance.prelabel_choice(wait=measure or not self.assistance.background.running)
            choice = self.assistance.current_choice()
        return choice if choice is not None and choice.labelled_at else None

    def _base(self, choice) -> tuple[str | None, dict | None]:
        """The U-Net to fine-tune: the best measured U-Net candidate matching the labels well enough."""
        if choice is None or choice.evaluation is None:
            return None, None
        min_dsc = float(self.project.settings["prelabel"]["min_dsc"])
        ranked = sorted(choice.evaluation.summaries.values(), key=lambda s: -s.dice_mean)
        for summary in ranked:
            if summary.dice_mean < min_dsc:
                break
            path = unet_fp32_path(self.project, summary.method)
            if path is not None:
                from labelassist.fileio import file_hash
                from labelassist.models.card import card_path, read_card

                card = read_card(card_path(path))
                return summary.method, {"path": str(path), "name": card.name, "version": card.version,
                                        "sha256": file_hash(path)}
        return None, None

    def _clean_rounds(self, parent: Path) -> None:
        # Old rounds' folders go; the last KEEP_ROUNDS stay for their logs. Other projects' folders
        # untouched for STALE_DAYS (a project moved or deleted) go too.
        if parent.is_dir():
            for folder in sorted(parent.glob("round-*"))[:-KEEP_ROUNDS or None]:
                shutil.rmtree(folder, ignore_errors=True)
        now = time.time()
        for other in parent.parent.glob("*") if parent.parent.is_dir() else ():
            try:
                stale = other != parent and other.is_dir() and now - other.stat().st_mtime > STALE_DAYS * 86400
            except OSError:
                continue
            if stale:
                shutil.rmtree(other, ignore_errors=True)

    # -- watching the trainer ------------------------------------------------------------------
    def _watch(self, round_: TrainingRound) -> None:
        def heard(line: dict) -> None:
            line["last"] = time.monotonic()
            self.progress = line
            self._say(dict(line, round=round_.number))

        stopped = watch_trainer(round_.process, round_.started, round_budget(round_.folder, BUDGET_S), heard,
                                lambda: round_.stopped or ("the session closed" if self._closed else None))
        code = round_.process.wait()
        stopped = stopped or round_.stopped or ("the session closed" if self._closed else None)
        if stopped:
            self._finish(round_, {"status": "stopped", "reason": f"stopped: {stopped}"})
        else:
            self.consider(round_, code)

    def consider(self, round_: TrainingRound, code: int = 0) -> dict[str, Any]:
        """The round's result compared with the pre-label in use; the new model installed only when
        it matches the held-out labels better. Ends the round: returns its ``training_round`` details."""
        try:
            outcome = self._compare(round_, code)
            prompt = self._consider_prompt(round_)
            if prompt is not None:
                outcome["prompt"] = prompt
        except LabelAssistError as exc:  # the new model refused, or the history not written: plain words
            log.warning("training round %d: %s", round_.number, exc)
            outcome = {"status": "failed", "reason": f"the new model was not installed: {exc}"}
        except Exception:  # noqa: BLE001 - whatever went wrong, the installed model stays
            log.exception("training round %d could not be considered", round_.number)
            outcome = {"status": "failed", "reason": "the new model could not be checked (the log says why)"}
        return self._finish(round_, outcome)

    def _compare(self, round_: TrainingRound, code: int) -> dict[str, Any]:
        from labelassist.training.request import RoundResult

        if self._closed:  # the project may be another session's now: install nothing
            return {"status": "stopped", "reason": "stopped: the session closed"}
        result = RoundResult.read(round_.folder)
        if result is None:
            log.warning("training round %d: the trainer stopped without a result (exit code %s); its log is %s",
                        round_.number, code, round_.folder / "trainer.log")
            return {"status": "failed", "reason": "the trainer stopped without a result (the log says why)"}
        if result.status != "ok":
            return {"status": "failed", "reason": result.reason}
        if self._model_changed_since(round_):
            return {"status": "stopped", "reason": "stopped: you changed the model during training"}
        candidate = {int(k): float(v) for k, v in result.held_out.items()}
        try:
            incumbent = incumbent_scores(self.project, self.assistance, round_)
        except Exception as exc:  # noqa: BLE001 - a model that fails to run: keep what is installed
            log.warning("the current pre-label could not be measured: %r", exc, exc_info=True)
            return {"status": "failed", "reason": "the pre-label in use could not be measured (the log says why)"}
        decision = should_install(candidate, incumbent)
        outcome = {"status": "installed" if decision.install else "kept", "reason": decision.reason,
                   "candidate_dsc": decision.candidate_mean, "incumbent_dsc": decision.incumbent_mean,
                   "compared_on": decision.labels, "incumbent": round_.incumbent, "variant": result.variant,
                   "recipe": result.recipe, "steps": result.steps, "seconds": result.seconds}
        if decision.install:
            outcome["model_id"] = self._install(round_, result, decision, candidate, incumbent)
        return outcome

    def _consider_prompt(self, round_: TrainingRound) -> dict[str, Any] | None:
        """Tap-to-segment's adapted decoder of the round, installed when it measures better."""
        from labelassist.training.request import RoundResult

        if self.prompt_models is None or round_.prompt is None or self._closed:
            return None
        result = RoundResult.read(round_.folder)
        return self.prompt_models.consider(round_.number, round_.folder, round_.prompt,
                                           None if result is None else result.prompt, lambda: self._closed)

    def _model_changed_since(self, round_: TrainingRound) -> bool:
        current = current_model_entry(self.project)
        return (None if current is None else current.id) != round_.model_id

    def _install(self, round_: TrainingRound, result, decision: Decision, candidate: dict, incumbent: dict) -> int:
        from labelassist import models
        from labelassist.models import history

        card = tablet_card(round_, json.loads((round_.folder / result.card).read_text(encoding="utf-8")),
                           decision, candidate, incumbent)
        onnx = round_.folder / result.onnx
        # What the kiosk checks at every import (the card fits the graph, finite probabilities); the
        # copy below must then be these very bytes (the SHA-256 result.json gave).
        models.check_model(onnx, card=card)
        extra = {}
        fp32 = round_.folder / "candidate.onnx"
        if result.onnx != fp32.name and fp32.is_file() and fp32.with_suffix(".json").is_file():
            # The next round warm-starts from the full-precision weights (an int8 graph cannot be trained).
            extra = {"model.fp32.onnx": fp32, "model.fp32.json": fp32.with_suffix(".json")}
        with self._lock:  # close() waits for a switch under way, and a closed session installs nothing
            if self._closed:
                raise LabelAssistError("the session closed during the comparison")
            if self._model_changed_since(round_):
                raise LabelAssistError("you changed the model during training")
            entry = history.add_model(self.project, onnx, card, "tablet", decision.reason, extra=extra,
                                      expected_sha256=result.sha256)
            history.activate(self.project, entry.id, decision.reason)
        self._installed()
        if self.project.settings["prelabel"]["method"] == "auto":
            self.assistance.provisional("onnx", f"onnx: just installed ({decision.reason})", round_.labelled)
        self.store.defer_event("model_install", actor=self.author, model_id=entry.id, name=entry.name,
                               version=entry.version, source="tablet", reason=decision.reason)
        return entry.id

    def _installed(self) -> None:
        self.assistance.invalidate()
        if self.on_install is not None:
            self.on_install()

    def _finish(self, round_: TrainingRound, outcome: dict[str, Any]) -> dict[str, Any]:
        details = dict(outcome, round=round_.number, labelled=round_.labelled, trained_on=len(round_.trained_on),
                       held_out=len(round_.held_out), wall_s=round(time.monotonic() - round_.started, 1))
        if outcome["status"] == "failed":
            self._record_failure(outcome["reason"])
        elif outcome["status"] != "stopped":
            self.failures = 0
        self.last_outcome = details
        self.store.defer_event("training_round", actor=self.author, **details)
        with self._lock:
            self._round = None
            self.progress = None
        self._say(dict(details, stage="end"))
        round_.outcome.set_result(details)
        return details

    def _say(self, event: dict) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a screen's listener never stops the trainer
                log.exception("a trainer listener failed")

    def wait(self, timeout: float | None = None) -> dict | None:
        """Until the last round started ends: its ``training_round`` details (None: none started)."""
        round_ = self._latest
        if round_ is None or round_.outcome is None:
            return None
        return round_.outcome.result(timeout=timeout)

    # -- Pause, Resume, roll back -------------------------------------------------------------
    def pause(self) -> None:
        """Stop the running round and start no other until :meth:`resume` (kept in the settings)."""
        self._set_train(False)
        self._stop("paused")

    def resume(self) -> None:
        """Train again (a failed trainer gets a fresh start)."""
        self.failures, self.failed = 0, None
        self._set_train(True)

    def _set_train(self, on: bool) -> None:
        settings = self.project.settings
        if bool(settings["prelabel"].get("train", True)) == on:
            return
        settings["prelabel"]["train"] = on
        self.project.save_settings(settings, actor=self.author)

    def roll_back(self, entry_id: int | None) -> None:
        """Make an earlier model (or none: ``None``) the project's model again, bit for bit."""
        from labelassist.models import history

        reason = "rolled back by the user" if entry_id is not None else "model switched off by the user"
        self._stop("you changed the model")
        history.activate(self.project, entry_id, reason)
        self.store.log_event("model_rollback", actor=self.author, model_id=entry_id, reason=reason)
        self._installed()

    def close(self) -> None:
        """Kill a running trainer at once (a system stop has 2 s); the round is recorded as stopped."""
        with self._lock:
            self._closed = True
        self._stop("the session closed")
        self.listeners.clear()

    def stop(self, why: str) -> None:
        """Stop a running round (its model is not installed); not counted as a failure."""
        self._stop(why)

    def _stop(self, why: str) -> None:
        round_ = self._round
        if round_ is not None and round_.process is not None:
            round_.stopped = why
            kill(round_.process)
