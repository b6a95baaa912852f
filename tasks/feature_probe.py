"""An offline linear probe on extracted features (multinomial logistic regr.).

`tools/extract_features.py --format=tfrecord` writes one pooled feature per
video with its label; this module fits a softmax classifier on the training
split's features and reports top-1 on both splits. It is the quick check of
whether a backbone's features carry a label *linearly*, independent of the
linear-evaluation training run (`tasks/video_classification.py`: SGD with
augmentation and a schedule): features are standardized with the training
mean and std, and the classifier minimizes the mean cross-entropy +
l2 / 2 * ||W||^2 with L-BFGS (scipy) and the exact gradient. The problem is
strictly convex for l2 > 0, so the result does not depend on a seed or a
step size; each row reports the final gradient norm.

Multi-clip features [K, C] are averaged over clips first.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import optimize

from tasks import features as features_lib


def read_labelled_features(path: str) -> Tuple[List[str], np.ndarray,
                                                np.ndarray]:
  """(names, features [N, C] float64, labels [N] int) of a feature TFRecord.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: an unreadable file or record (`features.iter_feature_
      records`), a record without exactly one label or with a negative one,
      non-finite features, feature sizes or endpoints that differ, naming
      the record.
  """
  return _read_labelled_features(path)[:3]


def _read_labelled_features(path: str) -> Tuple[List[str], np.ndarray,
                                                 np.ndarray, str]:
  """`read_labelled_features` and the file's endpoint ('' if unrecorded)."""
  names, feats, labels, endpoints = [], [], [], set()
  for name, x, label, endpoint in features_lib.iter_feature_records(
      path, with_endpoint=True):
    if len(label) != 1:
      raise ValueError(f'{path}: record {name!r} has {len(label)} labels '
                       f'({label}); the probe needs exactly one')
    if label[0] < 0:
      raise ValueError(f'{path}: record {name!r} has label {label[0]}; '
                       'labels must be >= 0')
    shape = list(x.shape)
    if not np.all(np.isfinite(x)):
      raise ValueError(f'{path}: record {name!r} has non-finite features '
                       '(NaN or inf); re-extract them from a finite '
                       'checkpoint')
    x = x.astype(np.float64)
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
    if endpoint:
      endpoints.add(endpoint)
    if len(endpoints) > 1:
      raise ValueError(f'{path}: records of several endpoints '
                       f'{sorted(endpoints)} (record {name!r})')
    names.append(name)
    feats.append(x)
    labels.append(label[0])
  if not names:
    raise ValueError(f'{path}: no records')
  return (names, np.stack(feats), np.asarray(labels, np.int64),
          endpoints.pop() if endpoints else '')


def fit_softmax(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
                max_iterations: int = 1000) -> Dict[str, np.ndarray]:
  """Fits W, b on standardized `x` (L-BFGS on the regularized objective).

  Args:
    x: [N, C] training features.
    y: [N] labels in [0, num_classes).
    num_classes: number of classes.
    l2: weight of l2 / 2 * ||W||^2 (not on the bias); > 0.
    max_iterations: L-BFGS iteration cap.

  Returns:
    dict with `w` [C, K], `b` [K], `mean` [C], `std` [C] (the
    standardization), `loss` (final objective) and `grad_norm` (its final
    gradient's norm: ~0 at the optimum).
  """
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f'need x [N, C] and y [N], got {x.shape} and {y.shape}')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'labels must be in [0, {num_classes}), got '
                     f'[{y.min()}, {y.max()}]')
  if l2 <= 0:
    raise ValueError(f'l2 must be > 0, got {l2}')
  mean = x.mean(axis=0)
  std = x.std(axis=0) + 1e-6
  z = (x - mean) / std
  n, c = z.shape
  onehot = np.eye(num_classes)[y]

  def objective(theta):
    w = theta[:c * num_classes].reshape(c, num_classes)
    b = theta[c * num_classes:]
    logits = z @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -np.mean(np.sum(onehot * log_p, axis=1)) + 0.5 * l2 * np.sum(w * w)
    r = (np.exp(log_p) - onehot) / n
    grad = np.concatenate([(z.T @ r + l2 * w).ravel(), r.sum(axis=0)])
    return loss, grad

  theta0 = np.zeros(c * num_classes + num_classes)
  result = optimize.minimize(objective, theta0, jac=True, method='L-BFGS-B',
                             options={'maxiter': max_iterations,
                                      'gtol': 1e-8, 'ftol': 1e-12})
  loss, grad = objective(result.x)
  return {'w': result.x[:c * num_classes].reshape(c, num_classes),
          'b': result.x[c * num_classes:], 'mean': mean, 'std': std,
          'loss': float(loss), 'grad_norm': float(np.linalg.norm(grad))}


def top1(model: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
  """Top-1 accuracy of a `fit_softmax` model."""
  z = (x - model['mean']) / model['std']
  return float(np.mean((z @ model['w'] + model['b']).argmax(axis=1) == y))


def probe(train_path: str, validation_path: str,
          l2s: Sequence[float] = (1e-1, 1e-2, 1e-3),
          max_iterations: int = 1000) -> Dict[str, object]:
  """Fits one probe per l2 strength; top-1 on both splits.

  Raises:
    ValueError: as `read_labelled_features`, or the two files hold
      features of different sizes or endpoints.

  Returns:
    dict with `num_train`, `num_validation`, `num_classes` (1 + the largest
    label of either split), `chance` (the most frequent validation class's
    share) and `rows`: [{l2, train_top1, validation_top1, loss,
    grad_norm}].
  """
  _, x_train, y_train, ep_train = _read_labelled_features(train_path)
  _, x_val, y_val, ep_val = _read_labelled_features(validation_path)
  if ep_train and ep_val and ep_train != ep_val:
    raise ValueError(f'{train_path} holds {ep_train} features, '
                     f'{validation_path} {ep_val}; extract both splits with '
                     'the same --endpoint')
  if x_train.shape[1] != x_val.shape[1]:
    raise ValueError(f'{train_path} has {x_train.shape[1]} features per '
                     f'video, {validation_path} {x_val.shape[1]}')
  num_classes = int(max(y_train.max(), y_val.max())) + 1
  rows = []
  for l2 in l2s:
    model = fit_softmax(x_train, y_train, num_classes, l2, max_iterations)
    rows.append({'l2': float(l2), 'train_top1': top1(model, x_train, y_train),
                 'validation_top1': top1(model, x_val, y_val),
                 'loss': model['loss'], 'grad_norm': model['grad_norm']})
  return {'num_train': int(len(y_train)), 'num_validation': int(len(y_val)),
          'num_classes': num_classes,
          'chance': float(np.bincount(y_val).max() / len(y_val)),
          'rows': rows}
