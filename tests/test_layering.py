"""Import layering: modules that only describe or process arrays load without the slide backend."""

from __future__ import annotations

import subprocess
import sys

from tests.paths import REPO  # noqa: E402


def test_config_qc_and_detection_do_not_import_openslide():
    # Only features/sources/openslide_reader.py imports openslide, and only code that opens slides imports
    # it: reading a config (or running QC / detection on arrays) must not need the OpenSlide library.
    code = (
        "import sys\n"
        "import mil.config, features.pipeline.config\n"
        "import features.smear.qc, features.smear.qc_thumbnail, features.smear.detect, features.smear.nuclei, features.smear.crops\n"
        "assert 'openslide' not in sys.modules, 'openslide imported'\n"
        "import features.sources.openslide_reader\n"
        "assert 'openslide' in sys.modules\n"  # the check above can fail
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
