"""``motion-align label`` (the labelling web app, :mod:`motion_align.labelling.launch`) and ``motion-align
app`` (the demo page, :mod:`motion_align.labelling.demo_page`)."""

from __future__ import annotations

from typing import Any

from motion_align.labelling.launch import HELP, add_label_arguments


def add_label_command(commands: Any) -> None:
    """Register ``label`` on the ``motion-align`` subcommands."""
    add_label_arguments(commands.add_parser("label", help=HELP))


def export_store_labels(args: Any) -> tuple[Any, Any]:
    """``motion-align pairs labels --store labels.db --out OUT``: write the store's majorities and the
    report (:func:`motion_align.labelling.export.export_labels`), print a summary; returns (the pairs'
    path, the dataset card's information for ``--push-to-hub``)."""
    from motion_align.cli.pair_hub import PairCardInfo
    from motion_align.data.preferences import DEGREES
    from motion_align.labelling.export import export_labels

    out, report_path, dataset, report = export_labels(
        args.store, args.out, args.min_votes, overwrite=args.overwrite
    )
    kappa, fleiss, bias = report["cohen_kappa"]["mean"], report["fleiss_kappa"], report["position_bias"]
    print(
        f"wrote {out}: {len(dataset)} pairs from {report['labels']} labels by {len(report['labellers'])} "
        f"labellers; " + ", ".join(f"{d} {report['degrees'][d]}" for d in DEGREES)
    )
    print("dropped: " + ", ".join(f"{name} {count}" for name, count in report["dropped"].items()))
    print(
        f"agreement: Cohen's kappa (mean over labeller pairs) {kappa}, Fleiss' kappa {fleiss['kappa']} over "
        f"{fleiss['pairs']} pairs; position bias: {bias['left']} of {bias['votes']} votes for the left "
        f"motion (p = {bias['p_value']}); report {report_path}"
    )
    counts = {
        "labels": report["labels"],
        "labellers": len(report["labellers"]),
        "pairs": len(dataset),
        **{f"dropped ({name.replace('_', ' ')})": n for name, n in report["dropped"].items()},
        **{f"pairs {d}": report["degrees"][d] for d in DEGREES},
        "Cohen's kappa (mean)": kappa,
        "Fleiss' kappa": fleiss["kappa"],
        "votes for the left motion": f"{bias['left']} of {bias['votes']} (p = {bias['p_value']})",
    }
    card = PairCardInfo(
        made_by="labelled by people in `motion-align label` (two motions side by side, shown order random)",
        degree_rule="each pair's majority picks chosen and rejected; the degree is the median of the "
        "majority's degrees (the weaker middle one); ties and skipped pairs are dropped",
        made_from={"label store": str(args.store)},
        settings={"min votes": args.min_votes},
        counts=counts,
    )
    return out, card


def add_app_command(commands: Any) -> None:
    """Register ``app`` (the demo page) on the ``motion-align`` subcommands."""
    from motion_align.labelling.demo_page import add_app_arguments

    add_app_arguments(
        commands.add_parser("app", help="demo page: captions to motions from one or two policies")
    )
