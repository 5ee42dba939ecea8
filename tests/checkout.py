"""A copy of the checkout's tracked files (symlinks kept), for tests that install or build it:
whatever a build leaves behind (build/, *.egg-info) then lands in the copy, not in the repo."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_checkout(dest: Path) -> Path:
    """Copy every file git tracks (as it is in the working tree) into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.exists():  # deleted in the working tree but not yet in git
            shutil.copy2(source, target)
    return dest
