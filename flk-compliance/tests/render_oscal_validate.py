"""Validates an OSCAL assessment-results JSON file (argv[1]).

The document must load with compliance-trestle's AssessmentResults model (generated from the
NIST OSCAL JSON schema: required fields, patterns of uuids, tokens and datetimes, no unknown
keys), and its internal references must resolve: every finding's related observation exists
and every finding's target is a reviewed control. Exit 0 and "valid" on success; exit 1 with
the validator's message otherwise; exit 2 when trestle is missing.
"""

import json
import sys

try:
    from trestle.oscal.assessment_results import AssessmentResults
except ImportError as e:  # pragma: no cover
    print(f"compliance-trestle is not installed ({e}); .ci/deps/oscal.sh installs it", file=sys.stderr)
    sys.exit(2)


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if list(doc) != ["assessment-results"]:
        return f"top-level keys must be exactly ['assessment-results'], got {list(doc)}"
    try:
        AssessmentResults.model_validate(doc["assessment-results"])
    except Exception as e:  # pydantic.ValidationError carries every failing path
        return f"not a valid OSCAL assessment-results document:\n{e}"
    for result in doc["assessment-results"]["results"]:
        observations = {o["uuid"] for o in result.get("observations", [])}
        reviewed = set()
        for sel in result["reviewed-controls"]["control-selections"]:
            reviewed |= {c["control-id"] for c in sel.get("include-controls", [])}
        for finding in result.get("findings", []):
            if finding["target"]["target-id"] not in reviewed:
                return f"finding {finding['uuid']} targets {finding['target']['target-id']}, not a reviewed control"
            for rel in finding.get("related-observations", []):
                if rel["observation-uuid"] not in observations:
                    return f"finding {finding['uuid']} relates to unknown observation {rel['observation-uuid']}"
    return None


if __name__ == "__main__":
    err = main(sys.argv[1])
    if err:
        print(err, file=sys.stderr)
        sys.exit(1)
    print("valid")
