#!/usr/bin/env bash
# Installs the two OSCAL validators (PyPI) when either is missing; flk-compliance's OSCAL test
# runs both through flk-compliance/tests/render_oscal_validate.py:
# * compliance-trestle: its AssessmentResults model (pydantic models generated from the NIST
#   OSCAL JSON schema: required fields, patterns, no unknown keys);
# * oscal: validation against NIST's OSCAL metaschema, which it ships for every release
#   (structure, data types, allowed values, cardinality).
set -euo pipefail

if python3 -c 'import oscal, trestle.oscal.assessment_results' >/dev/null 2>&1; then
  exit 0
fi

python3 -m pip install --quiet --disable-pip-version-check 'compliance-trestle>=3,<6' 'oscal>=3.2,<4'
python3 -c 'import oscal, trestle.oscal.assessment_results'
