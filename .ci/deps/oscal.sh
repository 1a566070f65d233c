#!/usr/bin/env bash
# Installs compliance-trestle (PyPI) when it is missing: flk-compliance's OSCAL test loads the
# report with trestle's AssessmentResults model (pydantic models generated from the NIST OSCAL
# JSON schema: required fields, patterns, no unknown keys) through
# flk-compliance/tests/render_oscal_validate.py.
set -euo pipefail

if python3 -c 'import trestle.oscal.assessment_results' >/dev/null 2>&1; then
  exit 0
fi

python3 -m pip install --quiet --disable-pip-version-check 'compliance-trestle>=3,<6'
python3 -c 'import trestle.oscal.assessment_results'
