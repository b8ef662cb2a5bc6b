"""Prompts: named prompts with immutable, numbered versions (a text `template` or chat `messages`
with `{{ name }}` placeholders and declared, typed variables), labels such as `production` that
point at a version, rendering with variable checks, and diffs between versions.

Events `registry.Prompt*` on the stream `prompt:{tenant}:{prompt_id}`; views `prompts` and
`prompt_versions`. The template syntax is documented in `template.py`.
"""

from __future__ import annotations

from fastapi import FastAPI

from ailab_runtime.service import Runtime

from ..adapters.runtime_recorder import RuntimeEventRecorder
from ..features import Feature
from .api import router
from .ports import PromptPorts
from .projections import prompt_projections
from .samples import demo_sample_prompt
from .schemas import TEMPLATE_SYNTAX
from .store import VIEWS, MongoPromptViews, ensure_indexes


def build_ports(runtime: Runtime) -> PromptPorts:
    return PromptPorts(views=MongoPromptViews(runtime.db), recorder=RuntimeEventRecorder(runtime))


def _setup(app: FastAPI) -> None:
    app.state.prompt_ports = build_ports(app.state.runtime)


async def _migrations(runtime: Runtime) -> None:
    await demo_sample_prompt(runtime, build_ports(runtime))


FEATURE = Feature(
    name="prompts",
    routers=(router,),
    projections=prompt_projections,
    indexes=ensure_indexes,
    migrations=_migrations,
    setup=_setup,
    openapi_tags=(
        {
            "name": "prompts",
            "description": "Prompts: name, description, tags, metadata, status, labels (label -> version) "
            "and latest version.",
        },
        {
            "name": "prompt-versions",
            "description": "Immutable, numbered prompt versions (text `template` or chat `messages`, typed "
            "`variables`, `model_params`), labels, rendering and diffs. Template syntax: " + TEMPLATE_SYNTAX,
        },
    ),
)

__all__ = ["FEATURE", "VIEWS", "build_ports"]
