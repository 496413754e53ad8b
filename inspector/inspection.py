"""One frame to one verdict: the model's decision made at least as strict as the plausibility gate.

The station (``edge/runtime.py``) and ``inspector predict`` both decide through :func:`decide_frame`, so a
picture gets the same verdict on the line as on a desk. Preprocessing is left to the caller because the
station prepares frames ahead on its capture thread.

Example:
    >>> gate = bundle_gate(clf.bundle.manifest)                               # doctest: +SKIP
    >>> prepared = clf.preprocessor.prepare(image, "rgb")                     # doctest: +SKIP
    >>> decide_frame(clf, gate, prepared, image, order="rgb").verdict            # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from inspector.bundle import Manifest
from inspector.inference import Classification, Classifier
from inspector.plausibility import GateReport, GateSettings, PlausibilityGate
from inspector.preprocess import ChannelOrder
from inspector.protocol.enums import Verdict


@dataclass
class FrameDecision:
    """The model's classification, the gate's findings (None without a gate) and the final verdict."""

    classification: Classification
    verdict: Verdict
    findings: Optional[GateReport]

    @property
    def gated(self) -> bool:
        """True when the gate flagged the frame (its verdict is then at least the gate's action)."""
        return self.findings is not None and not self.findings.ok

    @property
    def gate_reasons(self) -> Optional[List[str]]:
        return self.findings.reasons if self.gated and self.findings is not None else None

    def line(self, name: str) -> str:
        """One line for a person: verdict, defect score, top class, the picture's name, the gate's reasons."""
        c = self.classification
        reasons = self.gate_reasons
        gate = f"  gate: {'; '.join(reasons)}" if reasons else ""
        return f"{self.verdict.value:<6} {c.defect_score:6.3f}  {c.top_class:<14} {name}{gate}"


def bundle_gate(manifest: Manifest, settings: Optional[GateSettings] = None) -> Optional[PlausibilityGate]:
    """The plausibility gate a bundle describes under ``settings`` (None when the settings disable it)."""
    settings = settings or GateSettings()
    return PlausibilityGate(manifest.plausibility, settings, manifest.camera) if settings.enabled else None


def decide_frame(
    clf: Classifier,
    gate: Optional[PlausibilityGate],
    prepared: np.ndarray,
    frame: Optional[np.ndarray] = None,
    preprocess_ms: float = 0.0,
    findings: Optional[GateReport] = None,
    order: ChannelOrder | str = ChannelOrder.BGR,
) -> FrameDecision:
    """Classify one model input and apply the gate; ``findings`` are the gate's, when already checked.

    ``frame`` (in channel ``order``) is the picture ``prepared`` was made from: the gate looks at it, and a
    bundle with tiled inference scores its tiles (the bundle's inference runs in ``Classifier``).
    """
    if gate is not None and findings is None:
        findings = gate.check(prepared, frame)
    c = clf.classify_prepared(prepared, preprocess_ms, frame, order)
    findings = findings if gate is not None else None
    verdict = (
        gate.apply(c.verdict, findings) if gate is not None and findings is not None and not findings.ok else c.verdict
    )
    return FrameDecision(c, verdict, findings)
