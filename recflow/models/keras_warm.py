"""Warm starts of the Keras models: tonight's network starts from the earlier fit's weights, grown by id.

One mechanism for two_tower, dssm, hybrid and mult_vae (``recflow.models.warm`` has the id maps and
the epoch rule every warm model shares). A warm fit first builds its network exactly as a cold fit
would, for tonight's sizes and with the cold fit's seeds, so every row that is new tonight (a new
user's or item's embedding row, a new feature column's kernel row) already holds what a cold fit
starts from. ``carry_weights`` then overwrites, layer by layer (matched by name through nested
sub-models), what the earlier fit learnt:

* a weight the model names in ``grown`` (an ID embedding table, a kernel whose rows are items or
  input columns) is grown along its axis by a map: the new position's earlier position, or ``-1``
  (keep the fresh value). Old rows move by id, never by position: tonight's dense indices of the
  same raw ids can differ from the earlier fit's (a new id sorts before them);
* any other trainable weight (hidden layers, biases, the output affine) is copied as it is; it has
  the same shape because the parameters are the same (``Recommender._warm`` checks that);
* frozen (non-trainable) layers are tonight's data (feature tables, the history table, the
  content table, the cold-item mask) and keep tonight's values.

Everything is computed before anything is set, so a weight that cannot be carried (an unnamed
weight whose shape changed) leaves the cold network untouched: ``CannotCarry``, and the model fits
cold and says so (``warm_started_`` False). Optimizer state is not carried: a warm fit starts with
fresh Adam moments, as BPR's does. TensorFlow is not imported here; the models pass their networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recflow.models.warm import grow_rows


class CannotCarry(ValueError):
    """The earlier network's weights do not fit tonight's (a model then fits cold and states it)."""


@dataclass(frozen=True)
class Grow:
    """How one weight grows: ``mapping[new position]`` is its earlier position along ``axis``, ``-1`` for none."""

    mapping: np.ndarray
    axis: int = 0


def names_map(old: Sequence[str], new: Sequence[str]) -> np.ndarray:
    """For each of ``new`` (column names), its position in ``old``, ``-1`` where absent."""
    where = {str(name): k for k, name in enumerate(old)}
    return np.array([where.get(str(name), -1) for name in new], dtype=np.int64)


def concat_map(*blocks: tuple[np.ndarray, int]) -> np.ndarray:
    """The map of a concatenation's rows (a dense layer over ``Concatenate``): each block is (its
    map into the earlier block, the earlier block's width); earlier positions are offset block by block."""
    parts, offset = [], 0
    for mapping, old_width in blocks:
        mapping = np.asarray(mapping, dtype=np.int64)
        parts.append(np.where(mapping >= 0, mapping + offset, -1))
        offset += int(old_width)
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def same(n: int) -> np.ndarray:
    """The map of a block whose ``n`` rows mean the same every night (an embedding's dimensions)."""
    return np.arange(int(n), dtype=np.int64)


def weighted_layers(model) -> dict:
    """Every layer holding weights, by name, through nested sub-models (a sub-model itself is not one)."""
    out: dict = {}
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        inner = getattr(layer, "layers", None)
        if inner:
            stack.extend(inner)
            continue
        if not layer.weights:
            continue
        if layer.name in out and out[layer.name] is not layer:
            raise ValueError(f"two layers named {layer.name!r}: weights are carried over by layer name")
        out[layer.name] = layer
    return out


def carry_weights(new_model, old_model, grown: dict[str, Grow | dict[int, Grow]]) -> list[str]:
    """Set ``new_model``'s trainable weights from ``old_model``'s (see the module doc); returns the layers set.

    ``grown``: per layer name, the ``Grow`` of its first weight (an embedding table, a kernel), or
    ``{weight index: Grow}``. Raises ``CannotCarry`` (nothing set) when the networks do not fit.
    """
    new_layers, old_layers = weighted_layers(new_model), weighted_layers(old_model)
    unknown = sorted(set(grown) - set(new_layers))
    if unknown:
        raise ValueError(f"no layers named {unknown} in the network (layers: {sorted(new_layers)})")
    planned: list[tuple[object, list[np.ndarray]]] = []
    for name, layer in new_layers.items():
        if not layer.trainable:
            continue  # tonight's data (feature tables, history, masks)
        old = old_layers.get(name)
        if old is None:
            raise CannotCarry(f"the earlier network has no layer {name!r}")
        rules = grown.get(name, {})
        rules = {0: rules} if isinstance(rules, Grow) else rules
        fresh, earlier = layer.get_weights(), old.get_weights()
        if len(fresh) != len(earlier):
            raise CannotCarry(f"layer {name!r} holds {len(earlier)} weights in the earlier network, {len(fresh)} tonight")
        values = []
        for k, (f, e) in enumerate(zip(fresh, earlier)):
            if k in rules:
                try:
                    values.append(grow_rows(e, rules[k].mapping, f, rules[k].axis).astype(f.dtype, copy=False))
                except (ValueError, IndexError) as err:
                    raise CannotCarry(f"layer {name!r}, weight {k}: {err}") from err
            elif e.shape == f.shape:
                values.append(e.astype(f.dtype, copy=False))
            else:
                raise CannotCarry(f"layer {name!r}, weight {k}: shape {e.shape} in the earlier network, {f.shape} tonight")
        planned.append((layer, values))
    for layer, values in planned:
        layer.set_weights(values)
    return [layer.name for layer, _ in planned]
