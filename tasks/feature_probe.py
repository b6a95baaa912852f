"""An offline linear probe on extracted features (multinomial logistic regr.).

`tools/extract_features.py --format=tfrecord` writes one pooled feature per
video with its label; this module fits a softmax classifier on the training
split's features and reports top-1 on both splits. It is the quick check of
whether a backbone's features carry a label *linearly*, independent of the
linear-evaluation training run (`tasks/video_classification.py`: SGD with
augmentation and a schedule): features are standardized with the training
mean and std, the classifier is fitted by full-batch gradient descent on the
mean cross-entropy + l2 / 2 * ||W||^2 (a convex problem: the result does not
depend on a seed), for each l2 strength given.

Multi-clip features [K, C] are averaged over clips first.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from dataloaders import video_records
from tasks import features as features_lib


def read_labelled_features(path: str) -> Tuple[List[str], np.ndarray,
                                                np.ndarray]:
  """(names, features [N, C] float64, labels [N] int) of a feature TFRecord.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: a record has no label (or several), or the feature sizes
      differ, naming the record.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: no such feature file (write it with '
                            'tools/extract_features.py --format=tfrecord)')
  names, feats, labels = [], [], []
  for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature
    name = f[video_records.VIDEO_ID_KEY].bytes_list.value[0].decode('utf-8')
    label = list(f[video_records.LABEL_KEY].int64_list.value)
    if len(label) != 1:
      raise ValueError(f'{path}: record {name!r} has {len(label)} labels '
                       f'({label}); the probe needs exactly one')
    shape = list(f[features_lib.FEATURE_SHAPE_KEY].int64_list.value)
    x = np.asarray(f[features_lib.FEATURE_KEY].float_list.value,
                   np.float64).reshape(shape)
    if x.ndim == 2:  # [clips, C]
      x = x.mean(axis=0)
    if x.ndim != 1:
      raise ValueError(f'{path}: record {name!r} has features of shape '
                       f'{shape}; the probe needs pooled features [C] or '
                       '[clips, C] (endpoint res5g_pooled or '
                       'global_embedding)')
    if feats and x.shape != feats[0].shape:
      raise ValueError(f'{path}: record {name!r} has {x.shape[0]} features, '
                       f'the first record {feats[0].shape[0]}')
    names.append(name)
    feats.append(x)
    labels.append(label[0])
  if not names:
    raise ValueError(f'{path}: no records')
  return names, np.stack(feats), np.asarray(labels, np.int64)


def fit_softmax(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
                steps: int = 2000, learning_rate: float = 0.5
                ) -> Dict[str, np.ndarray]:
  """Fits W, b by full-batch gradient descent on standardized `x`.

  Args:
    x: [N, C] training features.
    y: [N] labels in [0, num_classes).
    num_classes: number of classes.
    l2: weight of l2 / 2 * ||W||^2 (not on the bias).
    steps: gradient steps.
    learning_rate: step size (the standardized problem is well scaled).

  Returns:
    dict with `w` [C, K], `b` [K], `mean` [C], `std` [C] (the
    standardization), `loss` (final objective).
  """
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f'need x [N, C] and y [N], got {x.shape} and {y.shape}')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'labels must be in [0, {num_classes}), got '
                     f'[{y.min()}, {y.max()}]')
  mean = x.mean(axis=0)
  std = x.std(axis=0) + 1e-6
  z = (x - mean) / std
  n, c = z.shape
  onehot = np.eye(num_classes)[y]
  w = np.zeros((c, num_classes))
  b = np.zeros(num_classes)
  loss = None
  for _ in range(steps):
    logits = z @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    g = (p - onehot) / n
    w -= learning_rate * (z.T @ g + l2 * w)
    b -= learning_rate * g.sum(axis=0)
  logits = z @ w + b
  logits -= logits.max(axis=1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  loss = -log_p[np.arange(n), y].mean() + 0.5 * l2 * np.sum(w * w)
  return {'w': w, 'b': b, 'mean': mean, 'std': std, 'loss': float(loss)}


def top1(model: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
  """Top-1 accuracy of a `fit_softmax` model."""
  z = (x - model['mean']) / model['std']
  return float(np.mean((z @ model['w'] + model['b']).argmax(axis=1) == y))


def probe(train_path: str, validation_path: str,
          l2s: Sequence[float] = (1e-1, 1e-2, 1e-3), steps: int = 2000
          ) -> Dict[str, object]:
  """Fits one probe per l2 strength; top-1 on both splits.

  Returns:
    dict with `num_train`, `num_validation`, `num_classes` (1 + the largest
    label of either split), `chance` (the most frequent validation class's
    share) and `rows`: [{l2, train_top1, validation_top1, loss}].
  """
  _, x_train, y_train = read_labelled_features(train_path)
  _, x_val, y_val = read_labelled_features(validation_path)
  if x_train.shape[1] != x_val.shape[1]:
    raise ValueError(f'{train_path} has {x_train.shape[1]} features per '
                     f'video, {validation_path} {x_val.shape[1]}')
  num_classes = int(max(y_train.max(), y_val.max())) + 1
  rows = []
  for l2 in l2s:
    model = fit_softmax(x_train, y_train, num_classes, l2, steps)
    rows.append({'l2': float(l2), 'train_top1': top1(model, x_train, y_train),
                 'validation_top1': top1(model, x_val, y_val),
                 'loss': model['loss']})
  return {'num_train': int(len(y_train)), 'num_validation': int(len(y_val)),
          'num_classes': num_classes,
          'chance': float(np.bincount(y_val).max() / len(y_val)),
          'rows': rows}
