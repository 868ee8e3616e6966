"""The dataset card (README.md) of a build: what the dataset is, the exact command(s), settings, counts, masks and
notes."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from .rows import MASK_SOURCES, SPLITS
from .work import PreparePlan, WorkDir, WorkItem

__all__ = ["card_text"]


def card_text(
    plan: PreparePlan, sources: Sequence[tuple[WorkDir, Sequence[WorkItem]]], commands: Sequence[str]
) -> str:
    """README.md: what the dataset is, the exact command(s), settings, counts, masks and notes."""
    stats = [workdir.read_meta(item)["stats"] for workdir, items in sources for item in items]
    unit = plan.card.get("unit", "video")
    lines = [
        "---",
        f"pretty_name: {plan.card['title']}",
        "task_categories:",
        "- image-classification",
        "- image-segmentation",
        "tags:",
        "- deepfake-detection",
        "- mesofcn",
        "---",
        "",
        f"# {plan.card['title']}",
        "",
        plan.card["intro"].strip(),
        "",
        "## Command",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Settings",
        "",
        *(f"- {key}: {value}" for key, value in plan.settings.items()),
        "",
        *_count_tables(stats, unit, plan.features["method"].names),
        *_notes(plan.notes, stats),
    ]
    return "\n".join(lines) + "\n"


def _count_tables(stats: list[dict[str, Any]], unit: str, method_names: Sequence[str]) -> list[str]:
    """Markdown tables: rows per split / compression / method / label, and rows per mask source."""
    groups: dict[tuple, Counter] = defaultdict(Counter)
    masks: dict[tuple, Counter] = defaultdict(Counter)
    for entry in stats:
        key = (SPLITS.index(entry["split"]), entry["compression"], method_names.index(entry["method"]), entry["label"])
        groups[key].update({k: entry.get(k, 0) for k in ("videos", "sampled", "rows", "no_face")})
        masks[key].update(entry["mask_sources"])
    sampled = "sampled frames" if unit == "video" else "images"
    head = ["split", "compression", "method", "label"] + (["videos"] if unit == "video" else [])
    lines = [
        "## Counts",
        "",
        "| " + " | ".join([*head, sampled, "faces (rows)", f"{sampled} without a face"]) + " |",
        "|" + "---|" * (len(head) + 3),
    ]
    totals: dict[str, Counter] = defaultdict(Counter)
    for key in sorted(groups):
        counts = groups[key]
        cells = [SPLITS[key[0]], key[1], method_names[key[2]], key[3]]
        cells += [str(counts["videos"])] if unit == "video" else []
        cells += [str(counts["sampled"]), str(counts["rows"]), str(counts["no_face"])]
        lines.append("| " + " | ".join(cells) + " |")
        totals[SPLITS[key[0]]].update(counts)
    lines += ["", "| split | faces (rows) | " + f"{sampled} without a face |", "|---|---|---|"]
    for split in SPLITS:
        lines.append(f"| {split} | {totals[split]['rows']} | {totals[split]['no_face']} |")
    lines += ["", "## Masks (rows per mask_source)", "", "| split | compression | method | label | "]
    lines[-1] += " | ".join(MASK_SOURCES) + " |"
    lines.append("|" + "---|" * (4 + len(MASK_SOURCES)))
    for key in sorted(masks):
        cells = [SPLITS[key[0]], key[1], method_names[key[2]], key[3], *(str(masks[key][s]) for s in MASK_SOURCES)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _notes(plan_notes: list[str], stats: list[dict[str, Any]]) -> list[str]:
    notes = [*plan_notes, *(note for entry in stats for note in entry.get("notes", []))]
    if not notes:
        return []
    return ["## Notes", "", *(f"- {note}" for note in notes), ""]
