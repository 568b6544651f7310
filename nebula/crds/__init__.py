"""The CustomResourceDefinitions of ``nebula.dev``: generated from the models, checked, applied.

Pure functions of the resource models, no cluster access. :mod:`~nebula.crds.generating` turns
each kind's pydantic model into a structural CRD and writes the ``crds/`` folder (the
``nebula crds`` command); :mod:`~nebula.crds.structural` checks a CRD against the rules the API
server enforces; :mod:`~nebula.crds.validating` checks objects against a CRD's schema as a strict
API server would, for the tests that run against an emulator that checks nothing. The models stay
the only source of truth: nothing here may add a rule the models do not state.
"""

from nebula.crds import generating, structural, validating
from nebula.crds.generating import all_crds, crd, diff, file_name, write
from nebula.crds.structural import violations
from nebula.crds.validating import errors, validator

__all__ = [
    "all_crds",
    "crd",
    "diff",
    "errors",
    "file_name",
    "generating",
    "structural",
    "validating",
    "validator",
    "violations",
    "write",
]
