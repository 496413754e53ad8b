"""The review page's options as one typed model, checked before the server starts.

The page writes into the training data, so it listens on loopback unless told otherwise, and anywhere else
only with a token: a plant network is shared, and a label is an edit of what the next model learns.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from pathlib import Path
from typing import List, Optional

from pydantic import Field, SecretStr, field_validator, model_validator

from inspector.config import StrictModel

TOKEN_ENV = "INSPECTOR_REVIEW_TOKEN"
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): still say something
        return "unknown"


class ReviewConfig(StrictModel):
    """What ``inspector review`` serves and where it writes labels."""

    data: Path = Field(description="Labeled dataset root: DATA/<class>/<image>; labels are copied here")
    archives: List[Path] = Field(min_length=1, description="Station archive folders (edge/archive.py layout)")
    good_class: str = Field("good", min_length=1, description="The pass class; always offered as a label")
    run: Optional[Path] = Field(None, description="Last training run: gains are counted against its split")
    bundle: Optional[Path] = Field(None, description="Bundle whose region of interest gives the ROI crop")
    host: str = Field("127.0.0.1", description="Address to bind")
    port: int = Field(8765, ge=0, le=65535, description="Port (0: any free port)")
    token: Optional[SecretStr] = Field(None, description=f"Access token (or ${TOKEN_ENV}); required off loopback")
    user: str = Field(default_factory=default_user, min_length=1, description="Who labels (provenance)")

    @field_validator("archives")
    @classmethod
    def _archives_exist(cls, value: List[Path]) -> List[Path]:
        missing = [str(p) for p in value if not p.is_dir()]
        if missing:
            raise ValueError(f"archive folder(s) not found: {', '.join(missing)}")
        return value

    @field_validator("data")
    @classmethod
    def _data_parent_exists(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a dataset folder")
        if not value.exists() and not value.parent.is_dir():
            raise ValueError(f"neither {value} nor its parent folder exists")
        return value

    @field_validator("run")
    @classmethod
    def _run_has_split(cls, value: Optional[Path]) -> Optional[Path]:
        if value is not None and not (value / "split.json").is_file():
            raise ValueError(f"{value}: not a training run (no split.json); give the folder `inspector train` wrote")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ReviewConfig:
        token = self.token.get_secret_value() if self.token is not None else None
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the token must have at least {MIN_TOKEN_CHARS} characters")
        if token is None and not is_loopback(self.host):
            raise ValueError(
                f"--host {self.host} is reachable from other machines: give --token or set {TOKEN_ENV} "
                f"(at least {MIN_TOKEN_CHARS} characters), or bind 127.0.0.1"
            )
        return self

    @classmethod
    def token_from_env(cls) -> Optional[str]:
        return os.environ.get(TOKEN_ENV) or None
