"""Import layering: modules that only describe or process arrays load without the slide backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_config_qc_and_detection_do_not_import_openslide():
    # Only features/sources/openslide_reader.py imports openslide, and only code that opens slides imports
    # it: reading a config (or running QC / detection on arrays) must not need the OpenSlide library.
    code = (
        "import sys\n"
        "import mil.config, features.config\n"
        "import features.qc, features.qc_thumbnail, features.detect, features.nuclei, features.crops\n"
        "assert 'openslide' not in sys.modules, 'openslide imported'\n"
        "import features.sources.openslide_reader\n"
        "assert 'openslide' in sys.modules\n"  # the check above can fail
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
