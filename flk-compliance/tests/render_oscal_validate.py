"""Validates OSCAL assessment-results JSON files (the arguments) with two independent validators.

1. compliance-trestle's AssessmentResults model (pydantic models generated from the NIST OSCAL
   JSON schema: required fields, patterns of uuids, tokens and datetimes, no unknown keys);
2. the `oscal` package's metaschema validation against NIST's OSCAL metaschema for the
   document's `oscal-version` (structure, data types, allowed values, cardinality, choices);

and its internal references must resolve: every finding's related observation exists and
every finding's target is a reviewed control. Exit 0 when every file is valid; exit 1 with the
validators' messages, each naming its file, otherwise; exit 2 when a validator is missing.
"""

import json
import logging
import sys

try:
    import oscal
    from trestle.oscal.assessment_results import AssessmentResults
except ImportError as e:  # pragma: no cover
    print(f"an OSCAL validator is not installed ({e}); .ci/deps/oscal.sh installs them", file=sys.stderr)
    sys.exit(2)

PHASES = ("well-formed", "structure", "data-types", "allowed-values", "cardinality", "choice")


def metaschema_errors(doc):
    # The import-ap href names no fetchable plan on purpose; its resolution failure is logged
    # by the library and is not a validation phase.
    logging.getLogger("oscal").setLevel(logging.CRITICAL)
    content = oscal.OSCAL.loads(json.dumps(doc))
    # validate() passes everything when it has no metaschema for the version: refuse that.
    if content._support.get_metaschema_index(content.oscal_version, content.model) is None:
        return f"the oscal package has no metaschema for OSCAL {content.oscal_version}"
    content.validate()
    failed = [p for p in PHASES if content.validation_status.get(p) is not True]
    if failed:
        return f"metaschema validation failed ({', '.join(failed)}): {content.validation_errors[:10]}"
    return None


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if list(doc) != ["assessment-results"]:
        return f"top-level keys must be exactly ['assessment-results'], got {list(doc)}"
    try:
        AssessmentResults.model_validate(doc["assessment-results"])
    except Exception as e:  # pydantic.ValidationError carries every failing path
        return f"not a valid OSCAL assessment-results document:\n{e}"
    err = metaschema_errors(doc)
    if err:
        return err
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
    failed = False
    for path in sys.argv[1:]:
        err = main(path)
        if err:
            print(f"{path}: {err}", file=sys.stderr)
            failed = True
        else:
            print(f"{path}: valid")
    sys.exit(1 if failed else 0)
