"""Sample prompt of the `demo` tenant (specification: InitialTenantSetup creates sample prompts)."""

from __future__ import annotations

from dataclasses import replace

from ailab_runtime.service import Runtime

from ..migrations import already_applied, mark_applied
from . import handlers
from .domain import CreatePrompt, CreatePromptVersion
from .ports import PromptPorts

MIGRATION_ID = "prompts-001-demo-sample-prompt"
SAMPLE_PROMPT_ID = "pmt_demo_support_answer"  # fixed: a retried migration finds what it created


async def demo_sample_prompt(runtime: Runtime, ports: PromptPorts) -> None:
    """A chat prompt with one version labelled `production`, created once."""
    if await already_applied(runtime, MIGRATION_ID):
        return
    ports = replace(ports, new_id=lambda prefix: SAMPLE_PROMPT_ID)
    actor = "migration:prompts-001"
    prompt = await ports.views.prompt("demo", SAMPLE_PROMPT_ID)
    if prompt is None:
        prompt = await handlers.create_prompt(
            CreatePrompt(
                tenant_id="demo",
                actor=actor,
                name="Support answer",
                description="Sample chat prompt answering a support ticket",
                tags=["sample"],
            ),
            ports,
        )
    if prompt.latest_version is None:
        await handlers.create_prompt_version(
            CreatePromptVersion(
                tenant_id="demo",
                prompt_id=SAMPLE_PROMPT_ID,
                actor=actor,
                messages=[
                    {"role": "system", "content": "You are a {{ tone }} support agent. Answer briefly."},
                    {"role": "user", "content": "Ticket from {{ customer_name }}:\n{{ ticket }}"},
                ],
                variables=[
                    {"name": "tone", "type": "string", "required": False, "default": "friendly"},
                    {"name": "customer_name", "type": "string", "required": True},
                    {"name": "ticket", "type": "string", "required": True},
                ],
                model_params={"provider": "local", "model": "local-echo", "temperature": 0},
                changelog="Sample version",
                labels=["production"],
            ),
            ports,
        )
    await mark_applied(runtime, MIGRATION_ID)
