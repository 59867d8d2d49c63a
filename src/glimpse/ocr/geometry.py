"""The geometry around the OCR networks: DB boxes from a probability map, detector tiles, reading order, crops.

Everything here is numpy + OpenCV on plain arrays; the engine (``glimpse.ocr.engine``) runs the networks.

DB ("differentiable binarization") detection outputs a text probability map. A text region is a connected
component of ``map > thresh``; its minimum-area rectangle is kept when the mean probability inside it
reaches ``box_thresh``, then grown on every side by ``area * unclip_ratio / perimeter`` (the network is
trained to predict a shrunk text kernel; growing it by that distance recovers the full line).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_BOX_SIDE = 3.0  # px on the map: thinner components are noise


@dataclass(frozen=True)
class DbParams:
    """DB post-processing settings (see the module docstring)."""

    thresh: float
    box_thresh: float
    unclip_ratio: float
    dilate: bool
    max_candidates: int = 1000


def order_quad(points: np.ndarray) -> np.ndarray:
    """``points`` (4, 2) as top-left, top-right, bottom-right, bottom-left (clockwise with y pointing down).

    The two leftmost points are the left side (the upper one first), the two rightmost the right side.
    """
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def _mean_inside(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean of ``prob`` over the pixels inside the polygon ``quad`` (evaluated on its bounding box only)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(quad - (x0, y0)).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def db_boxes(prob: np.ndarray, params: DbParams) -> list[tuple[np.ndarray, float]]:
    """Text boxes in a DB probability map ``prob`` (H, W) float32 in [0, 1].

    Returns ``(quad, score)`` pairs: ``quad`` (4, 2) float32 in the map's pixels, ordered by
    :func:`order_quad`; ``score`` the mean probability inside the un-grown rectangle.
    """
    mask: np.ndarray = (prob > params.thresh).astype(np.uint8)
    if params.dilate:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) > params.max_candidates:  # keep the biggest: a speckled map must not crowd out real lines
        contours = sorted(contours, key=cv2.contourArea, reverse=True)[: params.max_candidates]
    found: list[tuple[np.ndarray, float]] = []
    for contour in contours:
        center, (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < MIN_BOX_SIDE:
            continue
        score = _mean_inside(prob, cv2.boxPoints((center, (w, h), angle)))
        if score < params.box_thresh:
            continue
        # Growing a rectangle's outline by d (round joins) and taking the minimum-area rectangle of the result
        # gives the rectangle with both sides longer by 2d: the unclip step, with no polygon clipping library.
        grow = w * h * params.unclip_ratio / (2.0 * (w + h))
        w, h = w + 2 * grow, h + 2 * grow
        if min(w, h) < MIN_BOX_SIDE + 2:
            continue
        found.append((order_quad(cv2.boxPoints((center, (w, h), angle))), score))
    return found


@dataclass(frozen=True)
class Tile:
    """One detector window: the region ``[y0:y1, x0:x1]`` of the detector-scale image."""

    x0: int
    y0: int
    x1: int
    y1: int


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Windows of at most ``tile`` px along the long axis, overlapping by ``overlap`` px, covering the image.

    Only the long axis is cut (the caller scales the short side to at most ``tile``). ``overlap`` must exceed
    the tallest text line expected, so every line lies whole inside at least one window.
    """
    long_is_y = height >= width
    length = height if long_is_y else width
    if length <= tile:
        return [Tile(0, 0, width, height)]
    step = tile - overlap
    starts = [*range(0, length - tile, step), length - tile]
    if long_is_y:
        return [Tile(0, s, width, s + tile) for s in starts]
    return [Tile(s, 0, s + tile, height) for s in starts]


def _aabb(quad: np.ndarray) -> tuple[float, float, float, float]:
    return float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max())


def dedupe_boxes(boxes: list[tuple[np.ndarray, float]], min_cover: float = 0.5) -> list[tuple[np.ndarray, float]]:
    """Drop boxes found twice in overlapping tiles: of two boxes whose intersection covers more than
    ``min_cover`` of the smaller one, keep the larger (a line cut at a tile edge is the smaller copy)."""
    order = sorted(range(len(boxes)), key=lambda i: -_area(_aabb(boxes[i][0])))
    kept: list[int] = []
    for i in order:
        a = _aabb(boxes[i][0])
        duplicate = False
        for j in kept:
            b = _aabb(boxes[j][0])
            iw = min(a[2], b[2]) - max(a[0], b[0])
            ih = min(a[3], b[3]) - max(a[1], b[1])
            if iw > 0 and ih > 0 and iw * ih > min_cover * min(_area(a), _area(b)):
                duplicate = True
                break
        if not duplicate:
            kept.append(i)
    return [boxes[i] for i in sorted(kept)]


def _area(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def reading_order(quads: list[np.ndarray]) -> list[int]:
    """Indices of ``quads`` in reading order: lines top to bottom, boxes of one line left to right.

    Boxes are taken by their vertical centre; a box joins the current line when its centre lies within
    half a line height of the line's first box (so a slightly slanted line stays one line).
    """
    if not quads:
        return []
    boxes = [_aabb(q) for q in quads]
    by_y = sorted(range(len(quads)), key=lambda i: ((boxes[i][1] + boxes[i][3]) / 2, boxes[i][0]))
    lines: list[list[int]] = []
    anchor_cy = anchor_h = 0.0
    for i in by_y:
        _, y0, _, y1 = boxes[i]
        cy, h = (y0 + y1) / 2, y1 - y0
        if lines and abs(cy - anchor_cy) <= 0.5 * min(h, anchor_h):
            lines[-1].append(i)
        else:
            lines.append([i])
            anchor_cy, anchor_h = cy, h
    return [i for line in lines for i in sorted(line, key=lambda k: boxes[k][0])]


def crop_line(image: np.ndarray, quad: np.ndarray, max_height: int,
              turn: bool | None = None) -> tuple[np.ndarray, bool]:
    """The text line inside ``quad`` (4, 2, in ``image``'s pixels, ordered by :func:`order_quad`), upright.

    ``image`` is (H, W, 3) uint8. Returns ``(crop, turned)``: the perspective-corrected crop, at most
    ``max_height`` px high (a bigger line is scaled down while warping: the recogniser sees 48 px anyway),
    and whether it was turned 90° counter-clockwise because it was much taller than wide (vertical text);
    ``turn`` forces that choice (a lengthened copy of a box must be read the way the box was).
    """
    width = max(float(np.linalg.norm(quad[0] - quad[1])), float(np.linalg.norm(quad[3] - quad[2])), 1.0)
    height = max(float(np.linalg.norm(quad[0] - quad[3])), float(np.linalg.norm(quad[1] - quad[2])), 1.0)
    turned = height >= 1.5 * width if turn is None else turn
    short = width if turned else height
    scale = min(1.0, max_height / short)
    out_w, out_h = max(round(width * scale), 1), max(round(height * scale), 1)
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)
    if turned:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop, turned


def extend_quad(quad: np.ndarray, vertical: bool, head: float, tail: float, width: int, height: int) -> np.ndarray:
    """``quad`` (4, 2, ordered by :func:`order_quad`) lengthened along its reading axis, clipped to the image.

    The reading axis is the top edge (``vertical`` False) or the left edge (``vertical`` True); ``head``
    px are added on the side of corner 0 (left, or top) and ``tail`` px on the opposite side. Returns a new
    (4, 2) float32 array in the same corner order.
    """
    q = quad.astype(np.float32)
    axis = (q[3] - q[0]) if vertical else (q[1] - q[0])
    unit = axis / max(float(np.linalg.norm(axis)), 1e-6)
    out = q.copy()
    heads, tails = ((0, 1), (3, 2)) if vertical else ((0, 3), (1, 2))
    for i in heads:
        out[i] = q[i] - head * unit
    for i in tails:
        out[i] = q[i] + tail * unit
    out[:, 0] = np.clip(out[:, 0], 0, width - 1)
    out[:, 1] = np.clip(out[:, 1], 0, height - 1)
    return out
