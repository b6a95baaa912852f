"""Build a cached folder once, atomically, safe across processes.

The toy world, the toy AVA files, the toy tracking sequences and derived
segment-box records are generated on first use into a cache folder. Several
processes may ask for the same folder at once (a benchmark runs training
jobs in parallel; multi-worker tests start two processes), and a run killed
half-way must not leave a folder that looks complete. So every such folder
is written under a temporary sibling name, finished with a `_COMPLETE`
marker, and renamed into place; a folder without the marker is never used.
"""
import os
import shutil
from typing import Callable
import uuid

from absl import logging

COMPLETE_MARKER = '_COMPLETE'


def is_complete(folder: str) -> bool:
  return os.path.exists(os.path.join(folder, COMPLETE_MARKER))


def build_once(folder: str, build: Callable[[str], None],
               what: str = 'cache') -> bool:
  """Makes `folder` by `build(tmp)` unless a complete copy exists.

  Args:
    folder: The final folder.
    build: Writes the folder's content into the (new, empty) folder it is
      given. It is called at most once per call of `build_once`.
    what: A name for the logs (e.g. 'toy world').

  Returns:
    True if this call built the folder, False if a complete one was reused
    (also when another process finished its copy first).

  Raises:
    Whatever `build` raises; the temporary folder is removed either way.
  """
  if is_complete(folder):
    logging.info('%s: reusing %s', what, folder)
    return False
  root = os.path.dirname(os.path.abspath(folder))
  os.makedirs(root, exist_ok=True)
  tmp = os.path.join(root, f'.tmp-{os.path.basename(folder)}-{os.getpid()}-'
                     f'{uuid.uuid4().hex[:8]}')
  os.makedirs(tmp)
  try:
    build(tmp)
    with open(os.path.join(tmp, COMPLETE_MARKER), 'w') as f:
      f.write('ok\n')
    if os.path.exists(folder) and not is_complete(folder):
      # A folder without the marker is never renamed into place by this
      # function: someone edited the cache. Set it aside and replace it.
      stale = f'{folder}.stale-{uuid.uuid4().hex[:8]}'
      logging.warning('%s: %s has no %s marker; moving it to %s', what,
                      folder, COMPLETE_MARKER, stale)
      try:
        os.rename(folder, stale)
      except OSError:
        pass
    try:
      os.rename(tmp, folder)
    except OSError:
      # Another process renamed its complete copy into place first.
      if not is_complete(folder):
        raise
      logging.info('%s: another process created %s first', what, folder)
      return False
    return True
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
