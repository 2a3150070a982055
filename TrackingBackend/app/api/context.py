"""What the routes share: the config store and the supervisor, owned by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from app.config.store import ConfigStore
from app.runtime.supervisor import Supervisor


@dataclass
class ServiceContext:
    store: ConfigStore
    supervisor: Supervisor
    demo: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


def get_context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context
