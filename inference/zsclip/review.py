"""The offline review page of `zsclip-label --review DIR`: DIR/index.html + review.js + thumbs/.

Thumbnails are grouped by predicted class, problem images first; the page works from file:// with no
network. Keys: arrows or j/k move, Enter or y confirms, f fixes (type a class index or name), u undoes,
e exports the decisions as corrections.csv (file,predicted,label,class_name,status).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence

from zsclip.errors import InputDataError
from zsclip.preprocess import ImageDecodeError, load_image

if TYPE_CHECKING:
    from zsclip.label import ImageLabel

logger = logging.getLogger(__name__)

THUMB_SIZE = 160
ASSETS = Path(__file__).parent
DATA_MARKER = "/*REVIEW_DATA*/null"


def write_thumbnail(source: Path, target: Path, size: int = THUMB_SIZE) -> bool:
    """A JPEG thumbnail through the runtime's hardened decoder; False if the image is undecodable."""
    try:
        image = load_image(source, size)
    except ImageDecodeError as exc:
        logger.warning("%s: no thumbnail (%s)", source, exc)
        return False
    image.thumbnail((size, size))
    image.save(target, "JPEG", quality=85)
    return True


def page_data(rows: Sequence[ImageLabel], classes: Sequence[str], thumbs: Dict[int, str]) -> Dict:
    """The JSON the page renders: classes and one item per image, in review order."""
    items = [
        {"id": i, "file": r.path.name, "label": r.label, "confidence": round(r.confidence, 4), "problem": r.problem,
         "reason": r.reason or ("disagree" if r.problem else ""), "views": [r.zero_shot, r.knn, r.kmeans],
         "thumb": thumbs.get(i)}
        for i, r in enumerate(rows)
    ]
    has_problems = {r.label for r in rows if r.problem}
    # groups with problems first, then by class index; inside a group problems first, least confident first
    order = sorted(range(len(rows)), key=lambda i: (rows[i].label not in has_problems, rows[i].label,
                                                    not rows[i].problem, rows[i].confidence, rows[i].path.name))
    items = [items[i] for i in order]
    # the page saves its decisions in localStorage under this key: a regenerated page starts clean
    run = hashlib.sha256(json.dumps([classes, items], ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]
    return {"classes": list(classes), "items": items, "run": run}


def embed_json(data: object) -> str:
    """JSON safe inside a <script> element (no `</script>`, no `<!--`)."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def prepare_review_dir(review_dir: Path) -> Path:
    """Create `review_dir/thumbs` (before any work is done); returns it.

    Raises:
        InputDataError: the folder cannot be created or written (a file in the way, read-only, ...).
    """
    thumbs_dir = Path(review_dir) / "thumbs"
    try:
        thumbs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputDataError(f"review folder {review_dir}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(thumbs_dir, os.W_OK):
        raise InputDataError(f"review folder {review_dir} is not writable")
    return thumbs_dir


def write_review(
    review_dir: Path, rows: Sequence[ImageLabel], classes: Sequence[str]
) -> Path:
    """Write the review page and its thumbnails; returns index.html.

    Raises:
        InputDataError: the folder cannot be created or written.
    """
    try:
        return write_review_files(Path(review_dir), rows, classes)
    except OSError as exc:
        raise InputDataError(f"review folder {review_dir}: cannot write ({exc.strerror or exc})") from None


def write_review_files(review_dir: Path, rows: Sequence[ImageLabel], classes: Sequence[str]) -> Path:
    thumbs_dir = prepare_review_dir(review_dir)
    thumbs: Dict[int, str] = {}
    for i, row in enumerate(rows):
        name = f"{i:06d}.jpg"  # never the original file name: it may hold anything
        if not row.reason.startswith("undecodable") and write_thumbnail(row.path, thumbs_dir / name):
            thumbs[i] = f"thumbs/{name}"
    template = (ASSETS / "review.html").read_text(encoding="utf-8")
    html = template.replace(DATA_MARKER, embed_json(page_data(rows, classes, thumbs)))
    shutil.copyfile(ASSETS / "review.js", review_dir / "review.js")
    index = review_dir / "index.html"
    tmp = review_dir / ".index.html.tmp"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, index)
    return index


def review_items(index_html: Path) -> List[Dict]:
    """The items embedded in a written page (for tests and scripts)."""
    text = Path(index_html).read_text(encoding="utf-8")
    start = text.index('<script id="review-data" type="application/json">') + len(
        '<script id="review-data" type="application/json">')
    return json.loads(text[start : text.index("</script>", start)])["items"]
