"""Multi-object tracking scores of MOT-challenge boxes: CLEAR-MOT's MOTA (Bernardin &
Stiefelhagen 2008) and IDF1 (Ristani et al. 2016) by ``motmetrics`` (py-motmetrics), HOTA with
its DetA / AssA (Luiten et al., IJCV 2021) by ``trackeval``'s ``HOTA`` (the MOT challenge's
official code).

Boxes match at ``IoU >= iou_thr`` (0.5, the MOT challenge's) for MOTA / IDF1; HOTA sweeps
its own thresholds 0.05..0.95 and averages. IoUs come from ``trackeval``'s box IoU, for both
libraries (``motmetrics.distances.iou_matrix`` uses ``np.asfarray``, gone in numpy 2).
Evaluation is class-agnostic, as on MOT17: every box is an object.

Both libraries are in the ``dev`` extras (``pip install motmetrics trackeval``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["MOT_COLUMNS", "evaluate_mot"]

# the scores :func:`evaluate_mot` returns per sequence, in table order
MOT_COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN", "GT")
_MOTMETRICS = {
    "mota": "MOTA",
    "idf1": "IDF1",
    "num_switches": "IDSW",
    "num_false_positives": "FP",
    "num_misses": "FN",
    "num_objects": "GT",
}


def _libraries():
    try:
        import motmetrics
        from trackeval.datasets._base_dataset import _BaseDataset
        from trackeval.metrics import HOTA
    except ImportError as err:
        raise ImportError(
            f"tracking scores need motmetrics and trackeval ({err}): "
            "pip install motmetrics trackeval (both in the dev extras: pip install -e .[dev])"
        ) from err
    return motmetrics, HOTA, _BaseDataset._calculate_box_ious


def evaluate_mot(
    gt: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray], iou_thr: float = 0.5
) -> dict[str, dict[str, float]]:
    """Scores of the tracks ``pred`` against ``gt``, per sequence and ``"OVERALL"`` (all
    sequences' boxes pooled, as the MOT challenge combines them).

    gt, pred: sequence name -> (N, 7) rows ``frame, id, x, y, w, h, conf`` as
    :func:`~visionfm.data.mot_format.read_mot` returns them; a sequence of ``gt`` missing
    from ``pred`` is refused (ValueError), one only in ``pred`` too.

    Returns ``{name: {column: value}}`` with the columns of ``MOT_COLUMNS``: HOTA, DetA, AssA
    (averaged over the 19 thresholds), MOTA, IDF1 (fractions, 1 = perfect), IDSW (identity
    switches), FP, FN (boxes at ``iou_thr``) and GT (ground-truth boxes).
    """
    if set(gt) != set(pred):
        raise ValueError(
            f"sequences without predictions: {sorted(set(gt) - set(pred))}; predictions "
            f"without ground truth: {sorted(set(pred) - set(gt))}"
        )
    motmetrics, HOTA, box_ious = _libraries()
    hota = HOTA()
    accumulators, hota_results, names = [], {}, sorted(gt)
    for name in names:
        accumulator, data = _match_sequence(gt[name], pred[name], iou_thr, motmetrics, box_ious)
        accumulators.append(accumulator)
        hota_results[name] = hota.eval_sequence(data)
    summary = motmetrics.metrics.create().compute_many(
        accumulators, metrics=list(_MOTMETRICS), names=names, generate_overall=True
    )
    hota_results["OVERALL"] = hota.combine_sequences(hota_results)
    out = {}
    for name in [*names, "OVERALL"]:
        row = {column: float(summary.loc[name, key]) for key, column in _MOTMETRICS.items()}
        row.update({k: float(np.mean(hota_results[name][k])) for k in ("HOTA", "DetA", "AssA")})
        out[name] = {column: row[column] for column in MOT_COLUMNS}
    return out


def _match_sequence(gt: np.ndarray, pred: np.ndarray, iou_thr: float, motmetrics, box_ious):
    """A filled ``motmetrics.MOTAccumulator`` and trackeval's per-sequence ``data`` dict (ids
    renumbered 0..n-1, one IoU matrix (gt, pred) per frame) for one sequence."""
    num_frames = int(max(gt[:, 0].max(initial=0), pred[:, 0].max(initial=0)))
    gt_ids, gt_index = np.unique(gt[:, 1], return_inverse=True)
    pred_ids, pred_index = np.unique(pred[:, 1], return_inverse=True)
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    data = {
        "num_timesteps": num_frames,
        "num_gt_ids": len(gt_ids),
        "num_tracker_ids": len(pred_ids),
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(pred),
        "gt_ids": [],
        "tracker_ids": [],
        "similarity_scores": [],
    }
    for frame in range(1, num_frames + 1):
        g, p = gt[:, 0] == frame, pred[:, 0] == frame
        iou = box_ious(gt[g, 2:6], pred[p, 2:6], box_format="xywh")
        distance = np.where(iou >= iou_thr, 1.0 - iou, np.nan)
        accumulator.update(gt[g, 1].astype(int).tolist(), pred[p, 1].astype(int).tolist(), distance)
        data["gt_ids"].append(gt_index[g])
        data["tracker_ids"].append(pred_index[p])
        data["similarity_scores"].append(iou)
    return accumulator, data
