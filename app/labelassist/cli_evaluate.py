"""The command line's measuring commands: ``select``, ``prelabel``, ``learn``, ``evaluate
prelabel|box|selector``, ``simulate`` and ``inspect``.

:func:`add_measuring_commands` adds their arguments to ``cli.build_parser``; each ``cmd_*``
takes the parsed arguments and returns an exit code; errors are raised as
:class:`~labelassist.errors.LabelAssistError` for ``cli.main`` to print.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from labelassist.cli_support import (EXIT_OK, EXIT_PARTIAL, check_plot_target, count_arg, open_project,
                                     open_session, pick_samples, print_progress, whole_number_arg, write_plot)
from labelassist.errors import LabelAssistError
from labelassist.progress import ProgressBar


def cmd_select(args) -> int:
    with open_project(args.project) as project, open_session(project) as session:
        with ProgressBar("computing features") as bar:
            session.update_features(progress=bar)
        if project.settings["selector"]["weights"].get("uncertainty", 0) > 0:
            with ProgressBar("model predictions for the uncertainty") as bar:
                session.update_uncertainty(progress=bar)
        ranked = session.ranking(top=args.top)
        if args.json:
            print(json.dumps([{"sample_id": r.sample.id, "name": r.sample.name, "sequence": r.sample.sequence,
                               "frame": r.sample.frame, "score": round(r.score, 6),
                               "scores": {k: round(v, 6) for k, v in r.scores.items()}} for r in ranked], indent=2))
        else:
            from labelassist.textout import safe  # names come from files: no raw control characters

            if not ranked:
                print("every sample is labelled")
            for k, r in enumerate(ranked, 1):
                detail = ", ".join(f"{safe(name)} {v:.2f}" for name, v in r.scores.items())
                print(f"{k:3d}. {safe(r.sample.name):<32} score {r.score:.3f}  ({detail})")
        if session.missing:
            print(f"{len(session.missing)} images are missing and were not ranked "
                  f"(run 'labelassist relink')", file=sys.stderr)
        return EXIT_OK


def cmd_prelabel(args) -> int:
    from labelassist.export import plan_mask_names, prepare_output

    method = args.method
    learns = method in ("auto", "learned")
    with open_project(args.project) as project:
        samples = pick_samples(project, args.samples)
        # Every output path is checked before the first pre-label runs: never over an image, never
        # into the project folder (see export.prepare_output).
        names = plan_mask_names(samples)
        out = prepare_output(project, args.out, names) if args.out else None
        if learns and project.settings["prelabel"]["learn"]:
            with ProgressBar("learning from your newest labels") as bar:
                _learn_held_out(project, progress=bar)
        with open_session(project, learn=True if learns else None) as session:
            if learns:
                session.learner.wait()  # it learns the newest labels as the kiosk does when it opens
            if method == "auto":
                # The session's current choice, the instant learner included; said in one line.
                choice = session.prelabel_choice(wait=True)
                if choice.method is None:
                    print(f"auto: no pre-label ({choice.reason})")
                    return EXIT_OK
                method = choice.method
                print(f"auto: using {method} ({_why(choice)})")
            return _prelabel_samples(project, session, method, samples, names, out)


def _why(choice) -> str:
    """The reason of a pre-label choice without the method's name it starts with (said just before)."""
    prefix = f"{choice.method}: "
    return choice.reason[len(prefix):] if choice.reason.startswith(prefix) else choice.reason


def _prelabel_samples(project, session, method, samples, names, out) -> int:
    import numpy as np

    from labelassist.export import DamagedLabel, damaged_lines, decode_label, encode_png, write_file
    from labelassist.workflow.metrics import dice

    scores, damaged = [], []
    with ProgressBar(f"pre-labelling with {method}") as bar:
        for done, sample in enumerate(samples, 1):
            result = session.prelabel(sample.id, method)
            line = f"{sample.name}: {int(result.mask.sum())} foreground pixels"
            label = project.store.latest_label(sample.id)
            saved = None if label is None else decode_label(sample, label, project.store)
            if isinstance(saved, DamagedLabel):
                damaged.append(saved)  # named below; the pre-label itself is still good
                line += ", no DSC (the saved label is damaged)"
            elif saved is not None:
                scores.append(dice(result.mask, saved))
                line += f", DSC {scores[-1]:.3f} against the saved label"
            if result.note:
                line += f" ({result.note})"
            if out:
                write_file(out / names[done - 1], encode_png(result.mask, sample.name))
            print(line)
            bar(done, len(samples))
    if scores:
        print(f"mean DSC {float(np.mean(scores)):.3f} over {len(scores)} labelled samples")
    for line in damaged_lines(damaged, project.folder):
        print(f"labelassist: {line}", file=sys.stderr)
    return EXIT_PARTIAL if damaged else EXIT_OK


def _learn_held_out(project, progress=None) -> int:
    """Give the instant learner a held-out record of the newest labels that have none; returns how many.

    ``auto`` compares the learner by its record: each label predicted by the learner trained on
    the labels before it, then learned (:mod:`labelassist.learning.instant`). The kiosk writes it
    as ``learned`` events at each save; labels that came another way (``init --masks``, an older
    version) have none. This walks the newest labels in the order they were saved, as the kiosk
    would have, and writes the missing scores as the same ``learned`` events (the session reads
    them back when it opens). The labels themselves are only read.
    """
    from labelassist.errors import ImageReadError
    from labelassist.learning.instant import MAX_LABELS, InstantLearner
    from labelassist.session.assistance import EVALUATION_SAMPLES
    from labelassist.store import DamagedLabelError

    store = project.store
    pairs = sorted(store.latest_labels(), key=lambda p: p[1].id)  # in the order they were saved
    window = pairs[-EVALUATION_SAMPLES:]
    recorded = {e["label_id"] for e in store.events("learned")}
    if all(label.id in recorded for _, label in window):
        return 0
    before = pairs[:len(pairs) - len(window)][-MAX_LABELS:]  # what the learner knew before the window
    learner, written, steps = InstantLearner(), 0, before + window
    for done, (sample, label) in enumerate(steps, 1):
        try:
            image, mask = project.read_image(sample), label.mask
        except (ImageReadError, DamagedLabelError) as exc:
            print(f"labelassist: the learner leaves out {sample.name}: {exc}", file=sys.stderr)
            continue
        in_window = done > len(before)
        if in_window and learner.model is None and learner.learned:
            learner.retrain()  # the labels before the window, learned at once
        scored = in_window and label.id not in recorded
        score = learner.learn(sample.id, sample.name, image, mask, score=scored, retrain=in_window)
        if score is not None:
            # The event SessionLearner writes at a save (labelassist.session.learning).
            store.defer_event("learned", actor="labelassist learn", sample_id=sample.id, label_id=label.id,
                              **score.to_event())
            written += 1
        if progress is not None:
            progress(done, len(steps))
    store.flush_events()
    return written


def cmd_learn(args) -> int:
    from labelassist.eval_tables import prelabel_table
    from labelassist.session.assistance import EVALUATION_SAMPLES
    from labelassist.textout import safe  # method names may come from plug-in files

    with open_project(args.project) as project:
        if not project.store.labelled_ids():
            raise LabelAssistError("the project has no labels yet to learn from: label a few in the kiosk, "
                                   "or import masks ('labelassist import PROJECT SRC --masks DIR')")
        enabled = bool(project.settings["prelabel"]["learn"])
        start = time.perf_counter()
        written = 0
        if enabled:
            with ProgressBar("learning from your newest labels") as bar:
                written = _learn_held_out(project, progress=None if args.json else bar)
        learned_s = time.perf_counter() - start
        # The U-Net round first (a session of its own, which takes the project); then what the kiosk
        # will use, measured with whatever the round installed.
        unet = {"status": "skipped", "reason": "left out (--no-unet)"} if args.no_unet else \
            _train_unet(project, args.budget, quiet=args.json)
        with open_session(project, learn=True) as session:
            session.learner.wait()
            choice = session.prelabel_choice(wait=True)
            evaluation = choice.evaluation
            if evaluation is None:  # a method set by hand: measure the candidates all the same
                with ProgressBar("measuring the pre-labels") as bar:
                    evaluation = session.evaluate_prelabels(limit=EVALUATION_SAMPLES,
                                                            progress=None if args.json else bar)
            candidates = session.assistance.candidates()
            learner = session.learner
            record = learner.scores(EVALUATION_SAMPLES)
            payload = {
                "learner": {"enabled": enabled, "failed": learner.failed,
                            "learned_from": None if learner.model is None else learner.model.labels,
                            "held_out": [{"sample": r.sample, "dice": round(r.dice, 4),
                                          "effort": round(r.effort, 4) if math.isfinite(r.effort) else None,
                                          "labels": r.labels} for r in record],
                            "new_scores": written, "seconds": round(learned_s, 1)},
                "candidates": [{"method": m.method, "title": candidates[m.method].title if m.method in candidates
                                else m.method, "n": m.n, "dice_mean": round(m.dice_mean, 4),
                                "effort_mean": round(m.effort_mean, 4) if math.isfinite(m.effort_mean) else None}
                               for m in evaluation.ranking()],
                "choice": {"method": choice.method, "reason": choice.reason},
                "unet": unet,
            }
    if args.json:
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    if not enabled:
        print("the instant learner is switched off in the project settings (prelabel.learn = false)")
    elif learner.failed:
        print(f"the instant learner stopped: {safe(learner.failed)}")
    elif learner.model is None:
        print("the instant learner learned nothing: the newest labels hold only object or only background")
    else:
        mean = (f", its held-out DSC {sum(r.dice for r in record) / len(record):.2f} on your last {len(record)}"
                if record else "")
        print(f"instant learner: learned from your newest {learner.model.labels} labels in {learned_s:.1f} s{mean}"
              f" ({written} held-out scores new)")
    print(prelabel_table(evaluation, name=safe))
    if choice.method is None:
        print(f"the kiosk will use no pre-label: {safe(choice.reason)}")
    else:
        print(f"the kiosk will use {safe(choice.method)}: {safe(_why(choice))}")
    print(f"U-Net: {safe(_unet_words(unet))}")
    if isinstance(unet.get("prompt"), dict):
        print(f"tap-to-segment: {safe(_prompt_words(unet['prompt']))}")
    return EXIT_OK


def _prompt_words(outcome: dict) -> str:
    """One line on the round's adapted tap-to-segment decoder (``training_round`` details' ``prompt``)."""
    status, reason = outcome.get("status"), str(outcome.get("reason"))
    if status == "installed":
        return f"installed (model {outcome.get('model_id')}): {reason}"
    return reason if status in ("kept", "stopped") else f"did not learn: {reason}"


def _train_unet(project, budget_s: float, quiet: bool) -> dict:
    """One U-Net round on the project's labels, as the kiosk runs it (its own process, compared with the
    pre-label in use on the newest labels, installed only when better); its ``training_round`` details."""
    from labelassist.errors import ProjectError
    from labelassist.session import Session
    from labelassist.training.request import trainer_available

    if not trainer_available():
        return {"status": "unavailable", "reason": "training is not installed here (torch is missing)"}
    if not project.settings["prelabel"].get("train", True):
        return {"status": "paused", "reason": "training is paused in the project settings (prelabel.train)"}
    try:
        session = Session(project, author="labelassist learn", background=False, own=True, learn=True, train=False)
    except ProjectError as exc:  # the kiosk has it: it trains there by itself
        return {"status": "skipped", "reason": f"not trained now: {exc}"}
    bar = ProgressBar("training the U-Net")

    def heard(event: dict) -> None:
        if not quiet and event.get("stage") == "train" and event.get("steps"):
            bar(int(event.get("step", 0)), int(event["steps"]))

    try:
        session.learner.wait()  # the pre-label in use is what the new model must beat
        session.trainer.listeners.append(heard)
        with bar:
            if not session.trainer.start_round(force=True, budget_s=budget_s):
                return {"status": "skipped", "reason": "too few labels to train and compare on (at least 4)"}
            return session.trainer.wait(timeout=10 * budget_s + 600) or {}
    finally:
        session.close()


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds above 0 (``learn --budget``)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _unet_words(outcome: dict) -> str:
    status = outcome.get("status")
    reason = str(outcome.get("reason"))
    how = (f" (trained on {outcome.get('trained_on')} labels, {outcome.get('recipe')}, in {outcome.get('wall_s')} s)"
           if outcome.get("wall_s") is not None else "")
    if status == "installed":
        return f"a new model is installed{how}: {reason}"
    if status == "kept":
        return f"{reason}{how}"
    if status in ("failed", "stopped"):
        reason = reason.removeprefix(f"{status}: ")
        return f"training {status}{how}: {reason}; the current pre-label stays"
    return reason


def cmd_evaluate_prelabel(args) -> int:
    from labelassist.eval_tables import prelabel_table
    from labelassist.research import folder_eval
    from labelassist.research.plots import plot_evaluation
    from labelassist.textout import safe  # method names may come from plug-in files

    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    plot = Path(args.plot) if args.plot else None
    if args.project:
        if args.images or args.masks:
            raise LabelAssistError("give either PROJECT or --images and --masks, not both")
        with open_project(args.project) as project, open_session(project) as session:
            if plot:  # checked before the (long) evaluation: never over an image or into the project
                from labelassist.export import prepare_output

                plot = prepare_output(project, plot.absolute().parent, [plot.name], claim=False) / plot.name
                check_plot_target(plot, ())
            with ProgressBar("evaluating pre-labels") as bar:
                result = session.evaluate_prelabels(methods=methods, progress=bar)
            threshold = float(project.settings["prelabel"]["min_dsc"])
    elif args.masks and not args.images:
        if methods and methods != ["previous"]:
            raise LabelAssistError("with --masks alone only the 'previous' pre-label can be measured (no pixels)")
        if plot:
            check_plot_target(plot, (Path(args.masks),))
        with ProgressBar("evaluating pre-labels") as bar:
            result = folder_eval.evaluate_masks_only(Path(args.masks), progress=bar)
        threshold = args.min_dsc
    else:
        if not (args.images and args.masks):
            raise LabelAssistError("give a PROJECT, or --images DIR and --masks DIR (or --masks DIR alone)")
        if plot:
            check_plot_target(plot, (Path(args.images), Path(args.masks)))
        with ProgressBar("evaluating pre-labels") as bar:
            result = folder_eval.evaluate_folders(Path(args.images), Path(args.masks), methods, progress=bar)
        threshold = args.min_dsc
    if plot:
        source = Path(args.project or args.masks).absolute()
        name = source.parent.name if source.name in ("masks", "images") else source.name
        write_plot(lambda target: plot_evaluation(result, target, title=name), plot)
    best = result.best(threshold)
    if args.json:
        payload = result.to_dict()
        payload["best"] = best
        payload["min_dsc"] = threshold
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    print(prelabel_table(result, name=safe))
    print(f"best: {safe(best)}" if best else f"no method reaches a DSC of {threshold:.2f}: pre-labelling stays off")
    return EXIT_OK


def cmd_evaluate_box(args) -> int:
    with open_project(args.project) as project, open_session(project) as session:
        installed = session.box_segmenter() is not None
        adapted = session.boxes.prompt_entry()
        with ProgressBar("comparing tap-to-segment methods") as bar:
            result = session.evaluate_box_prompts(limit=args.samples, progress=bar, points=True)
        choice = session.box_choice()
    if args.json:
        payload = result.to_dict()
        payload["choice"] = {"method": choice.method, "reason": choice.reason}
        payload["box_model_installed"] = installed
        payload["adapted"] = None if adapted is None else {
            "model_id": adapted.id, "version": adapted.version, "reason": adapted.reason,
            "note": "box_model is the adapted decoder, litemedsam LiteMedSAM's own; the labels it "
                    "learned from are left out of this measurement"}
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    from labelassist.eval_tables import box_table
    from labelassist.textout import safe  # the reason may quote a model card's name

    if adapted is not None:
        print(f"box_model is LiteMedSAM adapted to this project ({safe(adapted.version)}), litemedsam its "
              f"own decoder; the labels it learned from are left out")
    print(box_table(result, name=safe))
    if not installed:
        print("no box-prompt model is installed (models/build_litemedsam.py export): GrabCut only")
    print(f"a drawn box runs {safe(choice.method)} ({safe(choice.reason)})")
    return EXIT_OK


def cmd_evaluate_selector(args) -> int:
    from labelassist.research.plots import plot_selector
    from labelassist.research.selector_experiment import evaluate_selector

    if len(args.images) != len(args.masks):
        raise LabelAssistError("give one --masks folder for each --images folder")
    pairs = list(zip(args.images, args.masks))
    if args.plot:  # before the experiment: a bad path costs nothing and never replaces an input
        check_plot_target(Path(args.plot), tuple(Path(f) for f in [*args.images, *args.masks]))
    result = evaluate_selector(
        pairs if len(pairs) > 1 else pairs[0][0], masks=None if len(pairs) > 1 else pairs[0][1],
        budget=args.budget, strategies=[s.strip() for s in args.strategies.split(",")], seeds=args.seeds,
        test_fraction=args.test_fraction, epochs=args.epochs, scale=args.scale, sequence_ids=args.sequence_ids,
        progress=None if args.json else print_progress)
    if args.plot:
        write_plot(lambda tmp: plot_selector(result, tmp), Path(args.plot))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    return EXIT_OK


def cmd_simulate(args) -> int:
    from labelassist.research.plots import plot_simulation
    from labelassist.research.simulated_annotator import simulate

    if args.plot:
        check_plot_target(Path(args.plot), (Path(args.project), Path(args.ground_truth)))
    result = simulate(args.project, args.ground_truth, retrain_every=args.retrain_every,
                      epochs=args.epochs, limit=args.limit, scale=args.scale, in_place=args.in_place,
                      progress=None if args.json else print_progress, from_scratch=args.from_scratch)
    if args.plot:
        write_plot(lambda tmp: plot_simulation(result, tmp), Path(args.plot))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    from labelassist.textout import safe  # sample names come from files

    print(f"{'label':>5} {'sample':<24} {'pre-label':<22} {'DSC':>6} {'effort':>7} {'wait s':>7}")
    for s in result.samples:
        effort = f"{s['effort']:.3f}" if math.isfinite(s["effort"]) else "inf"
        print(f"{s['index']:>5} {safe(s['name']):<24} {safe(s['prelabel']):<22} {s['dsc']:>6.3f} {effort:>7} "
              f"{s['wait_s']:>7.1f}")
    print()
    print(f"{'labels':<10} {'effort':>7} {'DSC':>6}  pre-labels")
    for block in result.blocks():
        effort = "-" if block["effort_mean"] is None else f"{block['effort_mean']:.2f}"
        methods = ", ".join(f"{m or 'none'} {n}" for m, n in block["methods"].items())
        print(f"{block['labels']:<10} {effort:>7} {block['dsc_mean']:>6.2f}  {methods}")
    summary = result.to_dict()
    n = len(result.samples)
    for what, key in ((f"labels 2-{min(n, 10)}", "effort_labels_2_10"), (f"the first {min(n, 30)} labels",
                                                                          "effort_first_30")):
        value = summary[key]
        print(f"mean correction effort over {what}: {'-' if value is None else f'{value:.3f}'}")
    for r in result.retrains:
        if "status" in r:  # the kiosk's trainer
            print(f"U-Net round after {r['after_labels']} labels ({r['recipe'] or '-'}, waited {r['seconds']:.0f} s): "
                  f"{r['status']}: {safe(str(r['reason']))}")
        else:
            print(f"U-Net retrained in memory after {r['after_labels']} labels in {r['seconds']:.0f} s")
    if not result.retrains:
        print("no U-Net round was due in this walk (the kiosk trains after 5, 10, 20, 40 ... labels)")
    return EXIT_OK


def cmd_inspect(args) -> int:
    from labelassist.export import DamagedLabel, damaged_lines, decode_label

    with open_project(args.project) as project, open_session(project) as session:
        rows, damaged = [], []
        pairs = list(project.store.latest_labels())
        with ProgressBar("inspecting labels") as bar:
            for done, (sample, label) in enumerate(pairs, 1):
                # A damaged label is named and skipped: it must not hide the other labels' results.
                mask = decode_label(sample, label, project.store)
                if isinstance(mask, DamagedLabel):
                    damaged.append(mask)
                else:
                    rows.append((sample, label, session.inspect(mask)))
                bar(done, len(pairs))
        warned = [r for r in rows if r[2] is not None and r[2].warning]
        code = EXIT_PARTIAL if damaged else EXIT_OK
        if args.json:
            print(json.dumps({
                "labels": len(rows), "warnings": len(warned),
                "gamma0": project.settings["inspection"]["gamma0"],
                "results": [{
                    "sample_id": s.id, "name": s.name, "label_version": lab.id,
                    "score": None if rep is None else round(rep.score, 6),
                    "warning": bool(rep is not None and rep.warning),
                    "failed": [] if rep is None else [{"check": c.name, "message": c.message,
                                                        "score": round(c.score, 6)} for c in rep.failed],
                } for s, lab, rep in rows],
                "damaged": [{"sample_id": d.sample.id, "name": d.sample.name, "label_version": d.label_id,
                             "message": d.line(project.folder)} for d in damaged],
            }, indent=2))
        else:
            for sample, label, report in rows:
                if report is None:
                    print(f"{sample.name}: nothing to check (set the priors in project.toml)")
                elif report.warning:
                    print(f"{sample.name}: WARNING γ={report.score:.2f}: "
                          + "; ".join(c.message for c in report.failed))
            print(f"{len(warned)} of {len(rows)} labels warn (γ ≤ {project.settings['inspection']['gamma0']})")
        for line in damaged_lines(damaged, project.folder):
            print(f"labelassist: {line}", file=sys.stderr)
        return code


def add_measuring_commands(sub) -> None:
    """Add the measuring commands (``select`` ... ``inspect``) to the sub-commands of ``labelassist``."""
    p = sub.add_parser("select", help="the selector's ranking of unlabelled samples",
                       description="Rank the unlabelled samples with the project's selector weights.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--top", type=count_arg, default=10, metavar="K", help="how many to list (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("prelabel", help="run a pre-label method on samples",
                       description="Run pre-label method M on the given samples (default: all) and report "
                                   "its agreement with saved labels; --out writes the masks as PNG.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--method", required=True, metavar="M",
                   help="auto (the session's current choice, the instant learner included: it names the method "
                        "and why), otsu, previous, onnx, learned, shipped:NAME or a plug-in's name")
    p.add_argument("--samples", nargs="+", metavar="NAME", help="sample names (as 'status' lists them) or ids")
    p.add_argument("--out", metavar="DIR", help="write each pre-label as a PNG mask here (a folder outside the "
                                                "project that does not hold the images)")
    p.set_defaults(func=cmd_prelabel)

    p = sub.add_parser("learn", help="one round of everything learnable now, and which pre-label the kiosk uses",
                       description="The instant learner learns the project's newest labels (each scored before "
                                   "it is learned: its held-out record), every pre-label candidate is measured "
                                   "on the newest labels, and the one the kiosk will use is named with the "
                                   "reason. Then a U-Net is trained on the labels in a process of its own, as "
                                   "the kiosk does after 5, 10, 20, 40 ... labels: it is installed only when it "
                                   "matches the newest labels (held out from its training) better than the "
                                   "pre-label in use. Needs the project closed in the kiosk.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--json", action="store_true")
    p.add_argument("--budget", type=positive_seconds, default=90.0, metavar="S",
                   help="seconds of training for the U-Net round (default 90, as on the tablet)")
    p.add_argument("--no-unet", action="store_true", help="leave the U-Net round out (the instant learner only)")
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser("evaluate", help="measure pre-labels against known masks")
    evaluate_sub = p.add_subparsers(dest="what", metavar="WHAT")
    evaluate_sub.required = True
    q = evaluate_sub.add_parser(
        "prelabel", help="DSC of each pre-label method, ranked",
        description="Compute the Dice-Sørensen coefficient of each pre-label method against the labels of a "
                    "project (or a folder of masks) and rank the methods.")
    q.add_argument("project", metavar="PROJECT", nargs="?")
    q.add_argument("--images", metavar="DIR")
    q.add_argument("--masks", metavar="DIR")
    q.add_argument("--methods", metavar="A,B", help="comma-separated (default: the automatic ones)")
    q.add_argument("--min-dsc", type=float, default=0.5, help="with --images: the DSC below which no method is used")
    q.add_argument("--plot", metavar="PNG", help="also draw the DSC per method as box plots")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evaluate_prelabel)

    q = evaluate_sub.add_parser(
        "box", help="tap-to-segment: the box-prompt model against GrabCut on this project's labels",
        description="Draw the bounding box of each object of the newest labelled samples, segment it with the "
                    "box-prompt model (LiteMedSAM, when installed) and with GrabCut, and compare the DSC per "
                    "object. With prelabel.box_method = 'auto' the better one is what a drawn box runs.")
    q.add_argument("project", metavar="PROJECT")
    q.add_argument("--samples", type=count_arg, default=4, help="newest labelled samples to use (default 4, what the "
                                                          "session measures for 'auto')")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evaluate_box)

    q = evaluate_sub.add_parser(
        "selector", help="the paper's Table 1: train a U-Net on each strategy's picks, compare DSC",
        description="For each selection strategy, pick BUDGET samples (uncertainty in rounds from a small random "
                    "start), train the U-Net on them, measure DSC on a fixed test split, repeat over seeds; "
                    "plus a baseline trained on the whole training split. Repeat --images/--masks to pool sets. "
                    "Needs the train extra (torch).")
    q.add_argument("--images", action="append", required=True, metavar="DIR")
    q.add_argument("--masks", action="append", required=True, metavar="DIR")
    q.add_argument("--budget", type=int, default=32)
    q.add_argument("--strategies", default="sequential,random,sequence_aware,diversity,uncertainty")
    q.add_argument("--seeds", type=int, default=3)
    q.add_argument("--test-fraction", type=float, default=0.25)
    q.add_argument("--epochs", type=int, default=12)
    q.add_argument("--scale", type=float, default=0.25, help="image scale for training (CPU-sized)")
    q.add_argument("--sequence-ids", action="store_true", help="give the selector the folders as sequences")
    q.add_argument("--json", action="store_true")
    q.add_argument("--plot", metavar="PNG")
    q.set_defaults(func=cmd_evaluate_selector)

    p = sub.add_parser("simulate", help="a simulated annotator walks the whole workflow",
                       description="Walk the session as the kiosk does (selector, pre-label, corrections to the "
                                   "ground truth, inspection, post-processing, save; samples prepared ahead and "
                                   "the instant learner learning each saved label on threads of their own, the "
                                   "kiosk's U-Net trainer after 5, 10, 20, 40 ... labels in a process of its "
                                   "own; the walk waits for each round), and report per label the pre-label "
                                   "used, its DSC, the correction effort and the wall time. Works on a copy of "
                                   "PROJECT unless --in-place.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--ground-truth", required=True, metavar="DIR", help="the true masks, named like the images")
    p.add_argument("--from-scratch", action="store_true",
                   help="no shipped and no imported model: the honest learning curve of a new project "
                        "(the copy gets prelabel.shipped_models = false and no model)")
    p.add_argument("--retrain-every", type=whole_number_arg, default=None, metavar="N",
                   help="instead of the kiosk's trainer, retrain a small U-Net in memory every N labels "
                        "(research; default 0: the kiosk's trainer and its schedule)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--limit", type=int, help="stop after this many samples")
    p.add_argument("--in-place", action="store_true", help="label the project itself, not a copy")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="PNG")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("inspect", help="score every latest label against the project's priors",
                       description="Run the inspection checks on every latest label and list the warnings.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
