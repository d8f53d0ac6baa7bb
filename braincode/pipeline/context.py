"""What a pipeline step is: a function, the config sections it reads, and the steps whose outputs it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from braincode.pipeline.config import PipelineConfig


@dataclass(frozen=True)
class StepContext:
    """What a step sees: the config, the subject, and the final folders of the steps before it."""

    config: PipelineConfig
    subject: str
    subject_dir: Path

    def step_dir(self, step: str) -> Path:
        """Final folder of ``step`` for this subject (only read it from a step that runs after ``step``)."""
        return self.subject_dir / step


#: A step writes its outputs into the folder it is given and returns nothing.
StepFn = Callable[[StepContext, Path], None]


@dataclass(frozen=True)
class Step:
    """A pipeline step and what its outputs depend on.

    Attributes
    ----------
    run : StepFn
        Writes the step's outputs into the folder it is given.
    sections : tuple of str
        The parts of :class:`~braincode.pipeline.config.PipelineConfig` it reads (``"data"``, ``"encoding"``...):
        editing any other part does not re-run it.
    upstream : tuple of str
        The steps whose outputs it reads (those not configured are ignored): when their outputs change, it
        re-runs.
    """

    run: StepFn
    sections: tuple[str, ...]
    upstream: tuple[str, ...] = ()
